"""``nearline bench worker``: what running the model in its own process costs per request.

The same requests — typing a file of the sample project, one request per keystroke, so the KV
cache is warm and each request reads a few new tokens and writes one line — go through
llama.cpp in this process (``engine.isolation: thread``) and through the model process
(``process``), alternating which goes first. For each request the engine measures its own time
inside whichever process it runs in (``GenerationResult.total_s``); the overhead of the process
boundary is the caller's wall time minus that: pickling, the pipe, the cancel-flag polling.
Also: a bare round trip (``tokenize`` of one token) and the model process's start-up.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from nearline.completion.service import CompletionService, Query
from nearline.config import parse_settings
from nearline.engine.base import Engine, GenerationRequest
from nearline.engine.factory import engine_builder
from nearline.engine.worker import ProcessEngine
from nearline.tools.demo import sample_project


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def _ms(values_s: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values_s]
    return {
        "n": len(ms),
        "p50_ms": round(_pct(ms, 50), 3),
        "p95_ms": round(_pct(ms, 95), 3),
        "mean_ms": round(statistics.fmean(ms), 3) if ms else float("nan"),
    }


def _prompts(svc: CompletionService, rel: str, n: int) -> list[GenerationRequest]:
    root = sample_project()
    path = root / rel
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    start = len(lines) // 2
    before = "\n".join(lines[:start]) + "\n"
    typed = "\n".join(lines[start:])
    out: list[GenerationRequest] = []
    for i in range(n + 1):
        doc = before + typed[:i]
        line = doc.count("\n")
        col = len(doc) - (doc.rfind("\n") + 1)
        q = Query(uri=path.as_uri(), text=doc + "\n", line=line, col=col, path=path, rel=rel,
                  root=root)  # fmt: skip
        out.append(
            GenerationRequest(
                segments=svc.build_prompt(q).segments(),
                max_tokens=svc.settings.completion.max_tokens,
                # No time limit: on a busy machine it would cut one side's line and not the
                # other's, and both must do the same work.
                timeout_s=None,
            )
        )
    return out


def run_worker_bench(
    model: str | None = None,
    requests: int = 60,
    threads: int | None = None,
    file: str | None = None,
    out_json: str | None = None,
) -> int:
    raw: dict[str, Any] = {"context": {"composer": "file-level"}, "completion": {"debounceMs": 0}}
    if model:
        raw["model"] = {"id": model}
    if threads:
        raw.setdefault("model", {})["threads"] = threads
    settings, problems = parse_settings(raw)
    for p in problems:
        print(f"warning: {p}")
    builder, fmt, label = engine_builder(settings)
    svc = CompletionService(settings)
    rel = file or "inventory/models.py"
    reqs = _prompts(svc, rel, requests)

    t0 = time.perf_counter()
    local: Engine = builder()
    local_load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    proc = ProcessEngine(builder, fmt, label)
    proc_start_s = time.perf_counter() - t0
    engines: dict[str, Engine] = {"thread": local, "process": proc}
    wall: dict[str, list[float]] = {"thread": [], "process": []}
    over: dict[str, list[float]] = {"thread": [], "process": []}
    inner: dict[str, list[float]] = {"thread": [], "process": []}
    mismatches = 0
    try:
        # The first prompt is cold for both: read it, leave it out of the numbers.
        for eng in engines.values():
            eng.generate(reqs[0], threading.Event())
        for i, req in enumerate(reqs[1:]):
            order = ("thread", "process") if i % 2 == 0 else ("process", "thread")
            texts = []
            for name in order:
                # A fresh Event per request, as the service passes: the process engine polls it.
                t = time.perf_counter()
                res = engines[name].generate(req, threading.Event())
                w = time.perf_counter() - t
                wall[name].append(w)
                inner[name].append(res.total_s)
                over[name].append(w - res.total_s)
                texts.append(res.text)
            mismatches += texts[0] != texts[1]
        rt: dict[str, list[float]] = {"thread": [], "process": []}
        one = [("x", False)]
        for _ in range(200):
            for name, eng in engines.items():
                t = time.perf_counter()
                eng.tokenize(one)
                rt[name].append(time.perf_counter() - t)
        info = proc.info()
    finally:
        proc.close()
        local.close()

    report: dict[str, Any] = {
        "model": info.get("model"),
        "threads": info.get("threads"),
        "file": rel,
        "requests": len(reqs) - 1,
        "in_process_load_s": round(local_load_s, 3),
        "process_start_s": round(proc_start_s, 3),
        "request_ms": {k: _ms(v) for k, v in wall.items()},
        "engine_ms": {k: _ms(v) for k, v in inner.items()},
        "overhead_ms": {k: _ms(v) for k, v in over.items()},
        "roundtrip_ms": {k: _ms(v) for k, v in rt.items()},
        "different_answers": mismatches,
        # The boundary costs two process wake-ups per request: on a busy machine each can wait
        # for a CPU, so the overhead depends on the load as much as on the code.
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    _print(report)
    if out_json:
        Path(out_json).write_text(json.dumps(report, indent=2))
    return 0


def _print(r: dict[str, Any]) -> None:
    print(
        f"\nnearline bench worker — model {r['model']}, {r['threads']} threads, typing "
        f"{r['file']}: {r['requests']} requests, warm KV cache, same prompts both ways"
    )
    print(f"{'':38}{'thread p50':>12}{'p95':>11}{'process p50':>13}{'p95':>11}")
    rows = [
        ("request (caller's wall time)", "request_ms"),
        ("engine's own time", "engine_ms"),
        ("overhead = wall - engine time", "overhead_ms"),
        ("bare round trip (tokenize 1 token)", "roundtrip_ms"),
    ]
    for title, key in rows:
        t, p = r[key]["thread"], r[key]["process"]
        print(
            f"{title:38}{t['p50_ms']:>10.2f}ms{t['p95_ms']:>9.2f}ms"
            f"{p['p50_ms']:>11.2f}ms{p['p95_ms']:>9.2f}ms"
        )
    print(
        f"model load: in process {r['in_process_load_s']:.2f}s; model process start "
        f"(spawn + imports + load) {r['process_start_s']:.2f}s"
    )
    print(f"requests whose answers differed between the two: {r['different_answers']}")
    print(f"load average during the run: {r['load_average']}")
