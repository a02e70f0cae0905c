"""``nearline bench latency``: replay typing a real file through ``nearline serve`` and measure
every keystroke, the first suggestion after opening a file, and after switching to another file
and back; then replay the very same prompts, in the same run, through

- raw llama-cpp-python (``Llama.generate`` with its own prefix reuse, same model and threads), and
- llama.cpp's own C++ ``llama-server`` (built from the sources vendored in the pinned
  llama-cpp-python sdist by ``scripts/build-llama-server.sh``) with ``cache_prompt``, driven the
  way llama.vim drives it: one request per keystroke unless its client-side cache can answer
  (the user typed the start of the suggestion on screen);

and print the ratios."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from nearline.tools.client import EditorSession
from nearline.tools.demo import sample_project

MAX_TOKENS = 48


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]


def summarize(name: str, values_s: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values_s]
    return {
        "n": len(ms),
        "p50_ms": pct(ms, 50),
        "p95_ms": pct(ms, 95),
        "max_ms": max(ms) if ms else float("nan"),
        "mean_ms": statistics.fmean(ms) if ms else float("nan"),
    }


def _utf16(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


def _cut_file(path: Path, fraction: float, line: int | None = None) -> tuple[str, int, str]:
    """(text opened in the editor, line where typing starts, text to type). ``line`` (1-based)
    picks the first line typed; else ``fraction`` of the way down."""
    lines = path.read_text(encoding="utf-8").split("\n")
    start = int(len(lines) * fraction) if line is None else max(0, min(len(lines), line - 1))
    return "\n".join(lines[:start]) + "\n", start, "\n".join(lines[start:])


def _sibling(proj: Path, rel: str) -> str:
    """Another file to switch to and back from: the largest file of the same extension in the
    same folder (an editor's neighbour tab), else the nearest such file above it."""
    target = proj / rel
    folder = target.parent
    while True:
        same = [
            f for f in folder.glob(f"*{target.suffix}")
            if f.is_file() and f != target and f.stat().st_size > 0
        ]  # fmt: skip
        if same:
            return max(same, key=lambda f: f.stat().st_size).relative_to(proj).as_posix()
        if folder == proj or folder.parent == folder:
            raise SystemExit(
                f"bench latency: no other {target.suffix} file near {rel}: give --other-file"
            )
        folder = folder.parent


# What a keystroke's time went to, from the server's record of its model run: waiting (for the
# model thread, a speculation or warm-up to yield, the debounce), reading new prompt tokens,
# generating, and the rest (composing, cleaning, the LSP round trip).
CAUSES = ("typing-through", "gated", "waiting", "reading", "generating", "other")


def keystroke_causes(latency_ms: float, entry: dict[str, Any] | None) -> dict[str, float]:
    """Split one keystroke's end-to-end latency into CAUSES (milliseconds)."""
    out = dict.fromkeys(CAUSES, 0.0)
    if entry is None:
        out["gated"] = latency_ms
        return out
    if entry.get("source") != "model" or "engine_ms" not in entry:
        out["typing-through" if entry.get("source") == "typing-through" else "other"] = latency_ms
        return out
    read = float(entry.get("read_ms", 0.0))
    engine = float(entry["engine_ms"])
    out["reading"] = read
    out["generating"] = max(0.0, engine - read)
    out["waiting"] = max(0.0, float(entry.get("wait_ms", 0.0)))
    out["other"] = max(0.0, latency_ms - engine - out["waiting"])
    return out


def tail_breakdown(
    lat_ms: list[float], entries: list[dict[str, Any] | None], share: float = 0.1
) -> dict[str, Any]:
    """Where the slowest keystrokes' time went: the slowest ``share`` (at least 3), each cause's
    mean and how often it was the largest part, with the tokens read and generated."""
    order = sorted(range(len(lat_ms)), key=lambda i: -lat_ms[i])
    slow = order[: max(3, round(len(order) * share))] if order else []
    parts = [keystroke_causes(lat_ms[i], entries[i]) for i in slow]
    dominant: dict[str, int] = {}
    for p in parts:
        top = max(p, key=lambda k: p[k])
        dominant[top] = dominant.get(top, 0) + 1
    ev = [float((entries[i] or {}).get("evaluated", 0)) for i in slow]
    gen = [float((entries[i] or {}).get("generated", 0)) for i in slow]
    # What the slow ones waited for (a warm-up, a speculation, an older request), how many
    # were answered from the cold-start short prompt, and the time spent switching the KV
    # cache between documents' states (saving one, restoring another; part of "reading").
    waited: dict[str, int] = {}
    for i in slow:
        if on := (entries[i] or {}).get("waited_on"):
            waited[on] = waited.get(on, 0) + 1
    switch = [float((entries[i] or {}).get("switch_ms") or 0.0) for i in slow]
    return {
        "n": len(slow),
        "from_ms": min((lat_ms[i] for i in slow), default=float("nan")),
        "mean_ms": {c: statistics.fmean(p[c] for p in parts) if parts else 0.0 for c in CAUSES},
        "largest_part": dominant,
        "evaluated_tokens_mean": statistics.fmean(ev) if ev else 0.0,
        "generated_tokens_mean": statistics.fmean(gen) if gen else 0.0,
        "short_prompt": sum(bool((entries[i] or {}).get("short")) for i in slow),
        "waited_on": waited,
        "switch_ms_mean": statistics.fmean(switch) if switch else 0.0,
    }


class _Typist:
    """Types into one document of an EditorSession, keeping the cursor."""

    def __init__(self, session: EditorSession, uri: str, line: int) -> None:
        self.session, self.uri, self.line, self.col_text = session, uri, line, ""

    def type(self, ch: str) -> None:
        self.session.insert(self.uri, self.line, _utf16(self.col_text), ch)
        if ch == "\n":
            self.line, self.col_text = self.line + 1, ""
        else:
            self.col_text += ch

    @property
    def pos(self) -> tuple[int, int]:
        return self.line, _utf16(self.col_text)

    async def prompt(self) -> str | None:
        res = await self.session.client.workspace_execute_command_async(
            _prompt_params(self.uri, *self.pos)
        )
        return res.get("prompt") if isinstance(res, dict) else None


async def run_latency(
    model: str | None = None,
    file: str | None = None,
    max_keystrokes: int = 300,
    raw: bool = True,
    out_json: str | None = None,
    start_fraction: float = 0.5,
    other_file: str | None = None,
    llama_server: str | None = None,
    server_baseline: bool = True,
    settings_overrides: dict[str, dict[str, Any]] | None = None,
    root: str | None = None,
    extra_settings: dict[str, Any] | None = None,
    line: int | None = None,
) -> int:
    proj = Path(root).resolve() if root else sample_project()
    rel = file or ("inventory/models.py" if root is None else None)
    if rel is None:
        raise SystemExit("bench latency: --project-dir needs --file (a file of that project)")
    if not (proj / rel).is_file():
        raise SystemExit(f"bench latency: no such file {proj / rel}")
    other_rel = other_file or ("inventory/storage.py" if root is None else _sibling(proj, rel))
    target, other = proj / rel, proj / other_rel
    opened, start_line, to_type = _cut_file(target, start_fraction, line)
    to_type = to_type[:max_keystrokes]
    # The other file is opened whole, as an editor opens it (and as the index already has it),
    # and asked about at the end of a line 60% down: the user looks at it, then goes back. A
    # buffer holding only part of the file would be an unsaved edit of a file in the first one's
    # context, which rightly changes that context.
    other_opened = other.read_text(encoding="utf-8")
    other_lines = other_opened.split("\n")
    other_line = int(len(other_lines) * 0.6)
    while other_line > 0 and not other_lines[other_line].strip():
        other_line -= 1

    settings: dict[str, Any] = {"completion": {"debounceMs": 0}}
    if model:
        settings["model"] = {"id": model}
    for section, values in (settings_overrides or {}).items():
        settings.setdefault(section, {}).update(values)
    # E.g. {"engine": {"backend": "openai", "url": ...}}: the same keystrokes on a remote engine.
    for section, values in (extra_settings or {}).items():
        settings[section] = {**settings.get(section, {}), **values}
    session = EditorSession(proj, settings)
    _note(f"starting nearline serve on {proj} ...")
    engine = await session.start_ready()
    if engine is None:
        return 1
    try:
        a_uri = session.open(target, opened)
        a = _Typist(session, a_uri, start_line)
        # The first request right after opening: the whole prompt is cold.
        first = await session.inline(a_uri, *a.pos)
        prompts = [await a.prompt()]
        _note(
            f"first suggestion after open: {first.latency_s * 1000:.0f} ms; typing {len(to_type)} keystrokes ..."
        )
        lat: list[float] = []
        # Each keystroke's own record in the server (its model run's times), for the breakdown
        # of the slow ones; looked up after the answer, outside the timed part.
        records: list[dict[str, Any] | None] = []
        seen = len((await session.status()).get("recent") or [])
        for ch in to_type:
            a.type(ch)
            ans = await session.inline(a_uri, *a.pos)
            lat.append(ans.latency_s)
            recent = (await session.status()).get("recent") or []
            mine = [e for e in recent[seen:] if e.get("source") not in ("speculation", "warm-up")]
            records.append(mine[0] if mine else None)
            seen = len(recent)
            if raw or server_baseline:
                prompts.append(await a.prompt())
        # Another file: opened, asked once (cold), then back to the first one.
        b_uri = session.open(other, other_opened)
        b = _Typist(session, b_uri, other_line)
        b.col_text = other_lines[other_line]
        other_first = await session.inline(b_uri, *b.pos)
        b_prompt = await b.prompt()
        # Back to the first file: the user goes on typing where they were. The cached answer
        # for the cursor's old spot would be free, so time the next keystroke instead.
        rest = to_type[len(lat) :] or "x"
        a.type(rest[0])
        n_before = len((await session.status()).get("recent") or [])
        back = await session.inline(a_uri, *a.pos)
        back_prompt = await a.prompt()
        status = await session.status()
        back_entry: dict[str, Any] = next(
            (
                e for e in (status.get("recent") or [])[n_before:]
                if e.get("source") not in ("speculation", "warm-up")
            ),
            {},
        )  # fmt: skip
        back_source = back_entry.get("source")
        if back_entry.get("evaluated") is not None:
            back_source = f"{back_source}, {back_entry['evaluated']} tokens evaluated"
        accepts = await _accept_and_go_on(session, a)
    finally:
        await session.stop()

    recent = status.get("recent") or []
    model_runs = [r for r in recent if r.get("source") == "model"]
    evaluated = [float(r["evaluated"]) for r in model_runs]
    sources = status.get("stats") or {}
    answered = sources.get("model", 0) + sources.get("typing_through", 0)
    report: dict[str, Any] = {
        "backend": engine.get("backend"),
        "url": engine.get("url"),
        "model": engine.get("model"),
        "threads": engine.get("threads"),
        "file": rel,
        "other_file": other_rel,
        "keystrokes": len(lat),
        "settings": settings,
        "first_after_open_ms": first.latency_s * 1000,
        "first_after_opening_other_ms": other_first.latency_s * 1000,
        "after_switching_back_ms": back.latency_s * 1000,
        "after_switching_back_source": back_source,
        "accept_and_go_on": {
            **summarize("accept", [t for t, _ in accepts]),
            "sources": {src: sum(1 for _, x in accepts if x == src) for _, src in accepts},
        },
        "nearline": summarize("nearline", lat),
        "slowest_keystrokes": tail_breakdown([x * 1000 for x in lat], records),
        "per_keystroke": [
            {"ms": round(x * 1000, 1), **(rec or {})} for x, rec in zip(lat, records, strict=True)
        ],
        "sources": sources,
        "typing_through_share": sources.get("typing_through", 0) / answered if answered else 0.0,
        # The keystrokes' model runs, measured inside the server (the first three requests —
        # cold open, other file, switch back — are reported on their own above).
        "model_runs": summarize(
            "model", [r["latency_ms"] / 1000 for r in model_runs[1:-2] if "latency_ms" in r]
        ),
        "evaluated_tokens_per_model_run": {
            "mean": statistics.fmean(evaluated) if evaluated else None,
            "p50": pct(evaluated, 50) if evaluated else None,
            "p95": pct(evaluated, 95) if evaluated else None,
            "max": max(evaluated) if evaluated else None,
        },
        "engine": {
            k: (status.get("engine") or {}).get(k)
            for k in ("state_cache", "speculative", "draft_tokens", "tuning")
        },
    }
    seq = [p for p in prompts if p]
    tail = [p for p in (b_prompt, back_prompt) if p]
    if raw and seq and engine.get("backend", "local") == "local":
        _note("replaying the same prompts through raw llama-cpp-python ...")
        report["raw"] = _raw_llama(engine, seq, tail)
    if server_baseline and seq:
        binary = _find_llama_server(llama_server)
        if binary is None:
            report["llama_server"] = {
                "skipped": "llama-server not built: run `bash scripts/build-llama-server.sh` "
                "or pass --llama-server PATH"
            }
        else:
            _note(f"replaying the same prompts through {binary} ...")
            report["llama_server"] = _llama_server(binary, engine, seq, tail)
    _ratios(report)
    _print(report)
    if out_json:
        Path(out_json).write_text(json.dumps(report, indent=2))
    return 0


ACCEPT_ROUNDS = 8
READING_S = 1.5


async def _accept_and_go_on(session: EditorSession, a: _Typist) -> list[tuple[float, str]]:
    """Accepting and going on: the user reads the suggestion for a moment (the server computes
    the next line meanwhile, if ``completion.speculate``), accepts it, presses Enter (the editor
    keeps the indentation, one level more after a colon) and the next line is asked for. The
    answers after Enter: (latency, source)."""
    out: list[tuple[float, str]] = []
    # Start on a fresh line below where the typing stopped.
    a.type("\n")
    ans = await session.inline(a.uri, *a.pos)
    for _ in range(ACCEPT_ROUNDS):
        if ans.text:
            session.insert(a.uri, a.line, _utf16(a.col_text), ans.text)
            a.col_text += ans.text
        await asyncio.sleep(READING_S)
        line = a.col_text
        indent = line[: len(line) - len(line.lstrip())]
        if line.rstrip().endswith(":"):
            indent += "    "
        session.insert(a.uri, a.line, _utf16(a.col_text), "\n" + indent)
        a.line, a.col_text = a.line + 1, indent
        n_before = len((await session.status()).get("recent") or [])
        ans = await session.inline(a.uri, *a.pos)
        entries = ((await session.status()).get("recent") or [])[n_before:]
        source = next(
            (
                str(e.get("source")) for e in entries
                if e.get("source") not in ("speculation", "warm-up")
            ),
            "?",
        )  # fmt: skip
        out.append((ans.latency_s, source))
    return out


def _note(text: str) -> None:
    print(f"bench latency: {text}", file=sys.stderr, flush=True)


def _prompt_params(uri: str, line: int, character: int) -> Any:
    from lsprotocol import types

    return types.ExecuteCommandParams(
        command="nearline.prompt",
        arguments=[uri, {"line": line, "character": character}],
    )


def _raw_llama(engine: dict[str, Any], prompts: list[str], tail: list[str]) -> dict[str, Any]:
    """The same prompts through llama-cpp-python's own completion API with its prefix reuse.
    Every keystroke runs the model: raw llama-cpp-python has no client cache."""
    from nearline.engine.llama import open_llama

    llm = open_llama(
        model_path=engine["path"], n_ctx=engine["n_ctx"], n_threads=engine["threads"],
        n_threads_batch=engine["threads"], n_gpu_layers=engine["gpu_layers"],
    )  # fmt: skip

    def run(p: str) -> float:
        toks = llm.tokenize(p.encode("utf-8"), add_bos=False, special=True)
        t0 = time.perf_counter()
        for n, tok in enumerate(llm.generate(toks, temp=0.0, top_k=1)):
            piece = llm.detokenize([tok])
            if b"\n" in piece or llm.token_eos() == tok or n >= MAX_TOKENS - 1:
                break
        return time.perf_counter() - t0

    try:
        run(prompts[0])  # the cold first prompt is reported on its own for Nearline too
        lat = [run(p) for p in prompts[1:]]
        out: dict[str, Any] = summarize("raw", lat)
        if len(tail) == 2:
            run(tail[0])
            out["after_switching_back_ms"] = run(tail[1]) * 1000
        return out
    finally:
        llm.close()


def _find_llama_server(explicit: str | None) -> str | None:
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    env = os.environ.get("NEARLINE_LLAMA_SERVER")
    if env and os.access(env, os.X_OK):
        return env
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    built = cache / "nearline" / "llama-server"
    for cand in sorted(built.glob("*/bin/llama-server"), reverse=True):
        if os.access(cand, os.X_OK):
            return str(cand)
    return shutil.which("llama-server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, body: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return dict(json.loads(resp.read()))


def _llama_server(
    binary: str, engine: dict[str, Any], prompts: list[str], tail: list[str]
) -> dict[str, Any]:
    # Its log goes to a file: a pipe nobody reads would fill up and stall the server.
    with tempfile.TemporaryFile(mode="w+") as log:
        return _llama_server_run(binary, engine, prompts, tail, log)


def _llama_server_run(
    binary: str, engine: dict[str, Any], prompts: list[str], tail: list[str], log: Any
) -> dict[str, Any]:
    """The same prompts through llama.cpp's C++ server with ``cache_prompt`` (its KV reuse of
    the common prefix), driven like llama.vim: a request per keystroke, greedy, stopped at the
    end of the line, except where llama.vim's client cache answers — the user typed the start
    of the suggestion on screen, so the rest is shown without asking the server."""
    port = _free_port()
    threads = str(engine["threads"])
    cmd = [
        binary, "-m", engine["path"], "-c", str(engine["n_ctx"]), "-t", threads, "-tb", threads,
        "-ngl", str(max(0, engine.get("gpu_layers") or 0)), "--host", "127.0.0.1",
        "--port", str(port), "-np", "1", "-b", "512", "-ub", "512", "--no-webui",
    ]  # fmt: skip
    # The OpenMP wait policy Nearline's model process runs with (engine/__init__.py), so that the
    # comparison is of the runtimes and not of one environment variable.
    env = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, text=True, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not _healthy(base):
            if proc.poll() is not None:
                log.seek(0)
                err = log.read()[-2000:]
                return {"skipped": f"llama-server exited ({proc.returncode}): {err}"}
            if time.monotonic() > deadline:
                return {"skipped": "llama-server did not become healthy in 120 s"}
            time.sleep(0.3)

        def tokenize(p: str) -> list[int]:
            body = {"content": p, "add_special": False, "parse_special": True}
            return list(_post(base + "/tokenize", body)["tokens"])

        def ask(p: str) -> tuple[float, str, dict[str, Any]]:
            toks = tokenize(p)
            t0 = time.perf_counter()
            res = _post(
                base + "/completion",
                {
                    "prompt": toks, "n_predict": MAX_TOKENS, "cache_prompt": True,
                    "temperature": 0.0, "top_k": 1, "samplers": ["top_k"], "stop": ["\n"],
                },
            )  # fmt: skip
            return time.perf_counter() - t0, str(res.get("content", "")), res

        ask(prompts[0])
        every: list[float] = []
        vim: list[float] = []
        hits = 0
        shown: tuple[str, str] | None = None  # (prompt the suggestion was made for, suggestion)
        evaluated: list[float] = []
        for p in prompts[1:]:
            # llama.vim's cache: typed text that continues the suggestion on screen.
            if shown is not None and p.startswith(shown[0]):
                typed = p[len(shown[0]) :]
                if typed and "\n" not in typed and shown[1].startswith(typed):
                    vim.append(0.0)
                    hits += 1
                    shown = (p, shown[1][len(typed) :])
                    continue
            dt, text, res = ask(p)
            vim.append(dt)
            shown = (p, text)
            timings = res.get("timings") or {}
            if "prompt_n" in timings:
                evaluated.append(float(timings["prompt_n"]))
        # For the every-keystroke figure, ask all prompts in order on a fresh cache state.
        ask(prompts[0])
        for p in prompts[1:]:
            every.append(ask(p)[0])
        out: dict[str, Any] = summarize("llama-server", every)
        out["llama_vim"] = summarize("llama-server + client cache", vim)
        out["llama_vim"]["client_cache_share"] = hits / len(vim) if vim else 0.0
        out["llama_vim"]["evaluated_tokens_mean"] = (
            statistics.fmean(evaluated) if evaluated else None
        )
        if len(tail) == 2:
            ask(tail[0])
            out["after_switching_back_ms"] = ask(tail[1])[0] * 1000
        return out
    except (OSError, urllib.error.URLError, ValueError, KeyError) as exc:
        return {"skipped": f"llama-server run failed: {exc}"}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/health", timeout=2) as r:
            return bool(r.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _ratios(r: dict[str, Any]) -> None:
    n = r["nearline"]
    ratios: dict[str, float] = {}
    w = r.get("raw")
    if w and "p50_ms" in w:
        ratios["nearline/raw p50"] = n["p50_ms"] / w["p50_ms"]
        ratios["nearline/raw p95"] = n["p95_ms"] / w["p95_ms"]
    s = r.get("llama_server")
    if s and "p50_ms" in s:
        ratios["nearline/llama-server p50"] = n["p50_ms"] / s["p50_ms"]
        ratios["nearline/llama-server p95"] = n["p95_ms"] / s["p95_ms"]
        v = s["llama_vim"]
        # A percentile answered from llama.vim's client cache is 0 ms: no meaningful ratio.
        if v["p50_ms"] >= 1:
            ratios["nearline/llama.vim-driven p50"] = n["p50_ms"] / v["p50_ms"]
        if v["p95_ms"] >= 1:
            ratios["nearline/llama.vim-driven p95"] = n["p95_ms"] / v["p95_ms"]
    m = r["model_runs"]
    if w and "p50_ms" in w and m["n"]:
        ratios["nearline model runs/raw p50"] = m["p50_ms"] / w["p50_ms"]
    if s and "p50_ms" in s and m["n"]:
        ratios["nearline model runs/llama-server p50"] = m["p50_ms"] / s["p50_ms"]
    r["ratios"] = ratios


def _row(name: str, d: dict[str, Any], extra: str = "") -> str:
    return (
        f"{name:34}{d['p50_ms']:>8.0f}ms{d['p95_ms']:>8.0f}ms{d['max_ms']:>8.0f}ms"
        f"{d['n']:>6}  {extra}"
    )


def _print(r: dict[str, Any]) -> None:
    out = sys.stdout
    where = (
        f"{r['threads']} threads"
        if r.get("backend", "local") == "local"
        else f"remote {r.get('url')}"
    )
    print(
        f"\nnearline bench latency — model {r['model']}, {where}, "
        f"typing {r['keystrokes']} keystrokes into {r['file']}",
        file=out,
    )
    print(f"{'per keystroke':34}{'p50':>10}{'p95':>10}{'max':>10}{'n':>6}", file=out)
    share = r["typing_through_share"]
    print(_row("nearline (LSP, end to end)", r["nearline"], f"typing-through {share:.0%}"))
    print(_row("  of which model runs (in server)", r["model_runs"]))
    w = r.get("raw")
    if w:
        print(_row("raw llama-cpp-python (prefix reuse)", w))
    s = r.get("llama_server")
    if s and "p50_ms" in s:
        print(_row("llama-server, every keystroke", s))
        v = s["llama_vim"]
        print(_row("llama-server driven like llama.vim", v, f"client cache {v['client_cache_share']:.0%}"))  # fmt: skip
    elif s:
        print(f"llama-server: {s['skipped']}")
    tb = r.get("slowest_keystrokes")
    if tb and tb["n"]:
        parts = ", ".join(f"{c} {v:.0f}" for c, v in tb["mean_ms"].items() if v >= 0.5)
        print(
            f"slowest {tb['n']} keystrokes (from {tb['from_ms']:.0f} ms), mean ms: {parts}; "
            f"largest part: {tb['largest_part']}; tokens read {tb['evaluated_tokens_mean']:.0f}, "
            f"generated {tb['generated_tokens_mean']:.0f} (mean); "
            f"from the short prompt {tb.get('short_prompt', 0)}, "
            f"waited on {tb.get('waited_on') or 'nothing'}, "
            f"switching states {tb.get('switch_ms_mean', 0.0):.0f} ms (mean)"
        )
    e = r["evaluated_tokens_per_model_run"]
    print(
        f"tokens evaluated per model run: mean {e['mean']:.1f}, p50 {e['p50']:.0f}, "
        f"p95 {e['p95']:.0f}, max {e['max']:.0f}"
        if e["mean"] is not None
        else "no model runs"
    )
    print(f"first suggestion after opening {r['file']}: {r['first_after_open_ms']:.0f} ms (cold)")
    print(
        f"first suggestion after opening {r['other_file']}: "
        f"{r['first_after_opening_other_ms']:.0f} ms (cold)"
    )
    back = (
        f"after switching back to {r['file']}: {r['after_switching_back_ms']:.0f} ms "
        f"({r['after_switching_back_source']})"
    )
    for name, d in (("raw", w), ("llama-server", s)):
        if d and "after_switching_back_ms" in d:
            back += f"  ({name}: {d['after_switching_back_ms']:.0f} ms)"
    print(back)
    acc = r.get("accept_and_go_on")
    if acc and acc.get("n"):
        print(
            f"accept a suggestion, read it {READING_S:.1f}s, press Enter ({acc['n']} times): "
            f"next line p50 {acc['p50_ms']:.0f} ms, p95 {acc['p95_ms']:.0f} ms; by source "
            f"{acc['sources']}"
        )
    for k, v in r["ratios"].items():
        print(f"ratio {k}: {v:.2f}x")
    print(f"answers by source: {r['sources']}")
    print(f"engine: {r['engine']}")
