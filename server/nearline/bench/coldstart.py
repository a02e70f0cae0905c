"""``nearline bench coldstart``: the first suggestion in three cold moments, through
``nearline serve`` as an editor drives it, each against today's behaviour in the same run.

* (c) **truly cold**: empty KV state directory, the server starts, a file is opened and a
  suggestion asked for at once (as an editor does: the open's warm-up is preempted);
* (b) **a sibling of a warm file**: once the first file's prompt is in the KV cache, another
  file of the same package is opened and asked at once;
* (a) **editor restart**: the server is stopped and started again on the same state directory,
  and the first file is asked at the same place.

"new" is the product's defaults (``model.diskCacheMb``, ``completion.coldPromptTokens``);
"today" switches both off (``diskCacheMb`` 0: no state survives a restart;
``coldPromptTokens`` 0: the first answer waits for the full prompt). Each mode gets its own
empty state directory (``NEARLINE_KV_DIR``). The cursor is placed halfway into a line (the
rest of the line deleted, as when retyping it) halfway down the file (``--line`` to choose).

After (c), the "new" mode also times the request that follows the background read of the full
prompt (``after_background_read``): the answer once the short prompt has done its job.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from nearline.bench.latency import _sibling
from nearline.tools.client import EditorSession
from nearline.tools.demo import sample_project

MODES = ("today", "new")
SCENARIOS = (
    ("c", "truly cold (empty state dir, new file)"),
    ("b", "sibling of a warm file"),
    ("a", "editor restart, file seen before"),
)
BACKGROUND_READ_TIMEOUT_S = 600.0


def _note(text: str) -> None:
    print(f"bench coldstart: {text}", file=sys.stderr, flush=True)


def cursor_in(path: Path, line: int | None, fraction: float = 0.5) -> tuple[str, int, int]:
    """(buffer, 0-based line, column): the file with the cursor halfway into a non-trivial line
    (``line`` 1-based, else ``fraction`` of the way down), the rest of that line deleted."""
    lines = path.read_text(encoding="utf-8").split("\n")
    if not lines:
        raise SystemExit(f"bench coldstart: {path} is empty")
    i = int(len(lines) * fraction) if line is None else max(0, min(len(lines) - 1, line - 1))
    if line is None:
        # The first line from there that has something to complete.
        j = i
        while j < len(lines) and len(lines[j].strip()) < 10:
            j += 1
        i = j if j < len(lines) else i
    text = lines[i]
    indent = len(text) - len(text.lstrip())
    cut = indent + max(1, (len(text) - indent) // 2)
    # Not inside a word: the gate would (rightly) not run the model there.
    while cut < len(text) and (text[cut - 1].isalnum() or text[cut - 1] == "_"):
        cut += 1
    head = text[:cut]
    buffer = "\n".join([*lines[:i], head, *lines[i + 1 :]])
    return buffer, i, len(head.encode("utf-16-le")) // 2


def _model_entry(recent: list[dict[str, Any]], since: int) -> tuple[int, dict[str, Any]]:
    """The first answer (not a warm-up or speculation) recorded from index ``since`` on, and
    its index."""
    for i in range(since, len(recent)):
        if recent[i].get("source") not in ("warm-up", "speculation"):
            return i, recent[i]
    return len(recent), {}


async def _ask(
    session: EditorSession, path: Path, buffer: str, line: int, col: int
) -> dict[str, Any]:
    """Open ``path`` holding ``buffer`` and ask at once; the answer and the server's record."""
    since = len((await session.status()).get("recent") or [])
    uri = session.open(path, buffer)
    ans = await session.inline(uri, line, col)
    at, entry = _model_entry((await session.status()).get("recent") or [], since)
    return {
        "ms": round(ans.latency_s * 1000, 1),
        "text": ans.text,
        "source": entry.get("source"),
        "short": bool(entry.get("short")),
        "prompt": entry.get("prompt"),
        "evaluated": entry.get("evaluated"),
        # Inside the server: waiting for the model thread (a warm-up's batch to end), reading
        # the prompt, the whole model run.
        "wait_ms": entry.get("wait_ms"),
        "read_ms": entry.get("read_ms"),
        "engine_ms": entry.get("engine_ms"),
        "uri": uri,
        "at": at,
    }


async def _await_background_read(session: EditorSession, since: int, timeout_s: float) -> float:
    """Wait until the background read after index ``since`` finished unpreempted (a warm-up, or
    the next-line speculation, whose prompt holds the full one); seconds waited."""
    t0 = time.perf_counter()
    background = ("warm-up", "speculation")
    while time.perf_counter() - t0 < timeout_s:
        recent = (await session.status()).get("recent") or []
        if any(e.get("source") in background and not e.get("preempted") for e in recent[since:]):
            return time.perf_counter() - t0
        await asyncio.sleep(0.2)
    raise SystemExit("bench coldstart: the background read of the full prompt did not finish")


def _proc_mb(pid: Any) -> tuple[float, float] | None:
    """(resident, peak resident) MB of a process, from /proc; None where unreadable."""
    if not isinstance(pid, int):
        return None
    vals: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for ln in f:
                key, _, rest = ln.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    vals[key] = int(rest.split()[0]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        return None
    return (vals["VmRSS"], vals["VmHWM"]) if len(vals) == 2 else None


async def _memory(session: EditorSession, kv_dir: Path) -> dict[str, Any]:
    """The server's memory (and the model process's, with engine.isolation process) and the
    state directory's size on disk against the cap."""
    st = await session.status()
    rss = peak = 0.0
    for pid in (st.get("pid"), st.get("worker_pid")):
        if (mb := _proc_mb(pid)) is not None:
            rss, peak = rss + mb[0], peak + mb[1]
    disk = sum(p.stat().st_size for p in kv_dir.rglob("*") if p.is_file()) if kv_dir.is_dir() else 0
    cache = (st.get("engine") or {}).get("disk_cache") or {}
    return {
        "rss_mb": round(rss, 1),
        "peak_rss_mb": round(peak, 1),
        "disk_mb": round(disk / 2**20, 1),
        "cap_mb": cache.get("cap_mb", 0),
    }


async def _run_mode(
    mode: str,
    proj: Path,
    first: tuple[Path, str, int, int],
    sibling: tuple[Path, str, int, int],
    settings: dict[str, Any],
    kv_dir: Path,
) -> dict[str, Any]:
    os.environ["NEARLINE_KV_DIR"] = str(kv_dir)
    out: dict[str, Any] = {"settings": settings}
    session = EditorSession(proj, settings)
    _note(f"{mode}: starting nearline serve (empty state directory) ...")
    t0 = time.perf_counter()
    engine = await session.start_ready()
    if engine is None:
        raise SystemExit("bench coldstart: the model did not load")
    out["ready_s"] = round(time.perf_counter() - t0, 2)
    out["engine"] = {k: engine.get(k) for k in ("model", "threads", "isolation", "kernels")}
    try:
        out["c"] = await _ask(session, *first)
        _note(f"{mode}: (c) truly cold {out['c']['ms']:.0f} ms")
        if out["c"]["short"]:
            waited = await _await_background_read(
                session, out["c"]["at"] + 1, BACKGROUND_READ_TIMEOUT_S
            )
            since = len((await session.status()).get("recent") or [])
            # The same place again, as if the user had paused: now from the full prompt.
            ans = await session.inline(out["c"]["uri"], first[2], first[3])
            entry = _model_entry((await session.status()).get("recent") or [], since)[1]
            out["after_background_read"] = {
                "waited_s": round(waited, 2), "ms": round(ans.latency_s * 1000, 1),
                "source": entry.get("source"), "short": bool(entry.get("short")),
                "prompt": entry.get("prompt"), "evaluated": entry.get("evaluated"),
            }  # fmt: skip
        out["b"] = await _ask(session, *sibling)
        _note(f"{mode}: (b) sibling {out['b']['ms']:.0f} ms")
        out["memory"] = await _memory(session, kv_dir)
    finally:
        await session.stop()
    # The editor restarts: same state directory, same file, same place.
    session = EditorSession(proj, settings)
    try:
        if await session.start_ready() is None:
            raise SystemExit("bench coldstart: the model did not load after the restart")
        out["a"] = await _ask(session, *first)
        st = await session.status()
        out["disk_cache"] = (st.get("engine") or {}).get("disk_cache")
        _note(f"{mode}: (a) after restart {out['a']['ms']:.0f} ms")
    finally:
        await session.stop()
    return out


async def run_coldstart(
    model: str | None = None,
    root: str | None = None,
    file: str | None = None,
    sibling: str | None = None,
    line: int | None = None,
    cold_prompt_tokens: int | None = None,
    out_json: str | None = None,
    threads: int | None = None,
) -> int:
    proj = Path(root).resolve() if root else sample_project()
    rel = file or ("inventory/models.py" if root is None else None)
    if rel is None:
        raise SystemExit("bench coldstart: --project-dir needs --file (a file of that project)")
    if not (proj / rel).is_file():
        raise SystemExit(f"bench coldstart: no such file {proj / rel}")
    sib_rel = sibling or ("inventory/storage.py" if root is None else _sibling(proj, rel))
    if not (proj / sib_rel).is_file():
        raise SystemExit(f"bench coldstart: no such file {proj / sib_rel}")
    buf, ln, col = cursor_in(proj / rel, line)
    sbuf, sln, scol = cursor_in(proj / sib_rel, None, 0.6)
    first = (proj / rel, buf, ln, col)
    sib = (proj / sib_rel, sbuf, sln, scol)

    base: dict[str, Any] = {"completion": {"debounceMs": 0}}
    if model:
        base["model"] = {"id": model}
    if threads:
        base.setdefault("model", {})["threads"] = threads
    modes: dict[str, dict[str, Any]] = {}
    for mode in MODES:
        s = json.loads(json.dumps(base))
        if mode == "today":
            s.setdefault("model", {})["diskCacheMb"] = 0
            s["completion"]["coldPromptTokens"] = 0
        elif cold_prompt_tokens is not None:
            s["completion"]["coldPromptTokens"] = cold_prompt_tokens
        modes[mode] = s

    saved_kv = os.environ.get("NEARLINE_KV_DIR")
    results: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="nearline-coldstart-") as tmp:
            for mode in MODES:
                results[mode] = await _run_mode(
                    mode, proj, first, sib, modes[mode], Path(tmp) / f"kv-{mode}"
                )
    finally:
        if saved_kv is None:
            os.environ.pop("NEARLINE_KV_DIR", None)
        else:
            os.environ["NEARLINE_KV_DIR"] = saved_kv

    report: dict[str, Any] = {
        "model": (results["new"].get("engine") or {}).get("model"),
        "threads": (results["new"].get("engine") or {}).get("threads"),
        "project": str(proj),
        "file": rel,
        "line": ln + 1,
        "sibling": sib_rel,
        "sibling_line": sln + 1,
        "scenarios": {
            key: {mode: _public(results[mode][key]) for mode in MODES} for key, _ in SCENARIOS
        },
        "after_background_read": results["new"].get("after_background_read"),
        # After (b), before the restart: two files' states held, the first session's peak.
        "memory": {mode: results[mode].get("memory") for mode in MODES},
        "runs": {mode: {k: v for k, v in results[mode].items() if len(k) > 1} for mode in MODES},
    }
    _print(report)
    if out_json:
        Path(out_json).write_text(json.dumps(report, indent=2))
        _note(f"JSON: {out_json}")
    return 0


def _public(r: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in r.items() if k not in ("uri", "at")}


def _print(report: dict[str, Any]) -> None:
    print(
        f"\nnearline bench coldstart — {report['model']}, {report['threads']} threads; "
        f"{report['file']}:{report['line']}, sibling {report['sibling']}:{report['sibling_line']}"
    )
    print(f"{'scenario':42} {'today ms':>10} {'new ms':>10} {'new: prompt read':>18}")
    for key, label in SCENARIOS:
        row = report["scenarios"][key]
        new, today = row["new"], row["today"]
        how = f"{new.get('evaluated')}/{new.get('prompt')}" + (" short" if new.get("short") else "")
        print(f"({key}) {label:38} {today['ms']:>10.0f} {new['ms']:>10.0f} {how:>18}")
    if (after := report.get("after_background_read")) is not None:
        print(
            f"new, after the background read ({after['waited_s']:.1f} s): {after['ms']:.0f} ms, "
            f"{after.get('evaluated')}/{after.get('prompt')} prompt tokens read"
        )
    mem = report.get("memory") or {}
    if all(mem.get(m) for m in MODES):
        t, n = mem["today"], mem["new"]
        print(
            f"memory after (b): RSS today {t['rss_mb']:.0f} MB, new {n['rss_mb']:.0f} MB "
            f"({n['rss_mb'] - t['rss_mb']:+.0f}); peak today {t['peak_rss_mb']:.0f} MB, new "
            f"{n['peak_rss_mb']:.0f} MB ({n['peak_rss_mb'] - t['peak_rss_mb']:+.0f}); state "
            f"directory today {t['disk_mb']:.1f} MB, new {n['disk_mb']:.1f} MB (cap "
            f"{n['cap_mb']} MB)"
        )
