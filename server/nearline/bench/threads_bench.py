"""``nearline bench threads``: prompt reading speed by thread count and OpenMP wait policy, on an
idle CPU and with another busy process, each in a fresh process (libgomp reads its policy when
llama.cpp's library loads).

Why it exists: on a 2-core machine where anything else runs, llama.cpp's threads spinning at
OpenMP barriers (the default policy) stall behind a descheduled thread; the model process now
waits passively (engine.py). This prints the numbers behind that choice.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

_CHILD = r"""
import json, sys, time
import llama_cpp
from llama_cpp import Llama
path, threads, n_tokens, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
llm = Llama(path, n_ctx=max(512, n_tokens + 16), n_threads=threads, n_threads_batch=threads,
            verbose=False)
text = open(sys.argv[5], encoding="utf-8").read()
toks = llm.tokenize(text.encode("utf-8"), add_bos=False)
while len(toks) < n_tokens:
    toks = toks + toks
toks = toks[:n_tokens]
rates = []
for _ in range(reps):
    llm.reset()
    t = time.perf_counter()
    llm.eval(toks)
    rates.append(n_tokens / (time.perf_counter() - t))
print(json.dumps(rates))
"""

_HOG = "while True:\n    pass\n"


def _measure(model: Path, threads: int, policy: str, busy: bool, n_tokens: int, reps: int,
             corpus: Path) -> list[float]:  # fmt: skip
    env = dict(os.environ)
    env["OMP_WAIT_POLICY"] = policy
    hog = subprocess.Popen([sys.executable, "-c", _HOG]) if busy else None
    try:
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, str(model), str(threads), str(n_tokens), str(reps),
             str(corpus)],
            env=env, capture_output=True, text=True, timeout=900, check=True,
        )  # fmt: skip
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    rates: list[float] = json.loads(out.stdout.strip().splitlines()[-1])
    return rates


def run_threads_bench(
    model: str | None = None, n_tokens: int = 512, reps: int = 3, out_json: str | None = None
) -> int:
    from nearline.engine.factory import model_on_disk

    entry, path = model_on_disk(model)
    corpus = Path(__file__).resolve().parents[1] / "completion" / "service.py"
    cores = multiprocessing.cpu_count()
    rows: list[dict[str, Any]] = []
    print(
        f"nearline bench threads — {entry.id}, {n_tokens}-token prompt, best and median of "
        f"{reps}, {cores} cores"
    )
    print(f"{'threads':>8} {'OpenMP wait':>12} {'other process':>14} {'best':>10} {'median':>10}")
    for busy in (False, True):
        for threads in sorted({1, max(1, min(2, cores)), cores}):
            for policy in ("ACTIVE", "PASSIVE"):
                rates = _measure(path, threads, policy, busy, n_tokens, reps, corpus)
                row = {
                    "threads": threads, "policy": policy, "busy_neighbour": busy,
                    "best_tok_s": max(rates), "median_tok_s": statistics.median(rates),
                    "runs": rates,
                }  # fmt: skip
                rows.append(row)
                print(
                    f"{threads:>8} {policy.lower():>12} {'busy' if busy else 'none':>14} "
                    f"{max(rates):>6.1f} t/s {statistics.median(rates):>6.1f} t/s",
                    flush=True,
                )
    if out_json:
        Path(out_json).write_text(json.dumps({"model": entry.id, "rows": rows}, indent=2))
    return 0
