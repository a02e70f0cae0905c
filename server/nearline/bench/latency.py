"""``nearline bench latency``: replay typing a real file through ``nearline serve`` and measure
every keystroke; then replay the same prompts through raw llama-cpp-python (its own prefix
reuse, same model and threads) and print the ratio, measured in the same run."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

from ..client import EditorSession
from ..demo import sample_project


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


async def run_latency(
    model: str | None = None,
    file: str | None = None,
    max_keystrokes: int = 300,
    raw: bool = True,
    out_json: str | None = None,
    start_fraction: float = 0.5,
    extra_settings: dict[str, Any] | None = None,
) -> int:
    root = sample_project()
    rel = file or "inventory/models.py"
    target = root / rel
    full = target.read_text(encoding="utf-8")
    lines = full.split("\n")
    start_line = int(len(lines) * start_fraction)
    opened = "\n".join(lines[:start_line]) + "\n"
    to_type = "\n".join(lines[start_line:])[:max_keystrokes]
    settings: dict[str, Any] = {"completion": {"debounceMs": 0}}
    if model:
        settings["model"] = {"id": model}
    # E.g. {"engine": {"backend": "openai", "url": ...}}: the same keystrokes on a remote engine.
    for section, values in (extra_settings or {}).items():
        settings[section] = {**settings.get(section, {}), **values}
    session = EditorSession(root, settings)
    engine = await session.start_ready()
    if engine is None:
        return 1
    uri = session.open(target, opened)
    line, col_text = start_line, ""
    # First request after opening: the cold prompt.
    first = await session.inline(uri, line, 0)
    lat: list[float] = []
    prompts: list[str] = []
    for ch in to_type:
        if ch == "\n":
            session.insert(uri, line, _utf16(col_text), "\n")
            line, col_text = line + 1, ""
        else:
            session.insert(uri, line, _utf16(col_text), ch)
            col_text += ch
        ans = await session.inline(uri, line, _utf16(col_text))
        lat.append(ans.latency_s)
        if raw:
            res = await session.client.workspace_execute_command_async(
                _prompt_params(uri, line, _utf16(col_text))
            )
            if isinstance(res, dict) and "prompt" in res:
                prompts.append(res["prompt"])
    status = await session.status()
    await session.stop()
    recent = status.get("recent") or []
    evaluated = [r["evaluated"] for r in recent if r.get("source") == "model"]
    model_lat = [r["latency_ms"] / 1000 for r in recent if r.get("source") == "model"][1:]
    report: dict[str, Any] = {
        "backend": engine.get("backend"),
        "url": engine.get("url"),
        "model": engine.get("model"),
        "threads": engine.get("threads"),
        "file": rel,
        "keystrokes": len(lat),
        "first_request_ms": first.latency_s * 1000,
        "nearline": summarize("nearline", lat),
        "sources": status.get("stats"),
        # Model runs after the first (cold) one, measured inside the server.
        "model_runs": summarize("model", model_lat),
        "evaluated_tokens_per_model_run": {
            "mean": statistics.fmean(evaluated) if evaluated else None,
            "p50": pct([float(e) for e in evaluated], 50) if evaluated else None,
            "max": max(evaluated) if evaluated else None,
        },
    }
    if raw and prompts and engine.get("backend") == "local":
        report["raw"] = _raw_llama(engine, prompts)
        report["ratio_p50"] = report["nearline"]["p50_ms"] / report["raw"]["p50_ms"]
        report["ratio_p95"] = report["nearline"]["p95_ms"] / report["raw"]["p95_ms"]
    _print(report)
    if out_json:
        Path(out_json).write_text(json.dumps(report, indent=2))
    return 0


def _prompt_params(uri: str, line: int, character: int) -> Any:
    from lsprotocol import types

    return types.ExecuteCommandParams(
        command="nearline.prompt",
        arguments=[uri, {"line": line, "character": character}],
    )


def _raw_llama(engine: dict[str, Any], prompts: list[str]) -> dict[str, Any]:
    """The same prompts through llama-cpp-python's own completion API with its prefix reuse."""
    from ..engine import open_llama

    llm = open_llama(
        model_path=engine["path"], n_ctx=engine["n_ctx"], n_threads=engine["threads"],
        n_threads_batch=engine["threads"], n_gpu_layers=engine["gpu_layers"],
    )  # fmt: skip
    lat: list[float] = []
    for p in prompts:
        toks = llm.tokenize(p.encode("utf-8"), add_bos=False, special=True)
        t0 = time.perf_counter()
        for n, tok in enumerate(llm.generate(toks, temp=0.0, top_k=1)):
            piece = llm.detokenize([tok])
            if b"\n" in piece or llm.token_eos() == tok or n >= 47:
                break
        lat.append(time.perf_counter() - t0)
    llm.close()
    return summarize("raw", lat)


def _print(r: dict[str, Any]) -> None:
    n = r["nearline"]
    where = f"{r['threads']} threads" if r.get("backend") == "local" else f"remote {r['url']}"
    print(f"\nnearline bench latency — model {r['model']}, {where}, file {r['file']}")
    print(
        f"keystrokes: {r['keystrokes']}   first request after open: {r['first_request_ms']:.0f} ms"
    )
    print(f"{'':24}{'p50':>10}{'p95':>10}{'max':>10}")
    print(
        f"{'nearline (LSP, e2e)':24}{n['p50_ms']:>8.0f}ms{n['p95_ms']:>8.0f}ms{n['max_ms']:>8.0f}ms"
    )
    if "raw" in r:
        w = r["raw"]
        print(
            f"{'raw llama-cpp-python':24}{w['p50_ms']:>8.0f}ms{w['p95_ms']:>8.0f}ms{w['max_ms']:>8.0f}ms"
        )
        print(f"ratio nearline/raw: p50 {r['ratio_p50']:.2f}x, p95 {r['ratio_p95']:.2f}x")
    m = r["model_runs"]
    print(
        f"{'model runs (warm, server)':24}{m['p50_ms']:>8.0f}ms{m['p95_ms']:>8.0f}ms{m['max_ms']:>8.0f}ms  (n={m['n']})"
    )
    e = r["evaluated_tokens_per_model_run"]
    print(f"tokens evaluated per model run: mean {e['mean']}, p50 {e['p50']}, max {e['max']}")
    print(f"answers by source: {r['sources']}")
