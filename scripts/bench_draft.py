"""Draft-model decoding against the main model alone, on the same keystrokes.

    PYTHONPATH=server python scripts/bench_draft.py [--prompts 12] [--main ID] [--draft ID]

Prompts come from this repository's own sources: a seeded random line of a module, cut in
the middle, with up to ``--chars`` characters before it. Both engines load in this
process (``engine.isolation: thread``, the engine the model process runs). For every prompt
the engines take turns, in alternating order: each first reads the prompt (``warm``: the
editor's warm-up, so what is timed is a keystroke with the prompt cached, as while typing), then
writes one line greedily. Reported: the median line latency, generated tokens per second,
the draft model's acceptance rate, and whether the lines are identical. The machine's load
(``os.getloadavg``) is printed beside the numbers: on a shared machine they move with it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from nearline.config import parse_settings
from nearline.engine.factory import create_local_engine
from nearline.engine.llama import GenerationRequest, LlamaEngine

ROOT = Path(__file__).resolve().parents[1]


def prompts(n: int, chars: int, seed: int) -> list[str]:
    files = sorted((ROOT / "server" / "nearline").rglob("*.py"))
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < n:
        text = rng.choice(files).read_text(encoding="utf-8")
        lines = text.split("\n")
        if len(lines) < 40:
            continue
        i = rng.randrange(20, len(lines) - 1)
        line = lines[i]
        body = line.lstrip()
        if len(body) < 12 or body.startswith(("#", '"', "'")):
            continue
        # Mid-line, as kv_restart_bench.py cuts: the rest of the line is what is written.
        before = "\n".join(lines[:i]) + "\n" + line[: len(line) - len(body) // 2]
        out.append(before[-chars:])
    return out


def engine(model: str, threads: int, **extra: Any) -> LlamaEngine:
    s, problems = parse_settings(
        {"model": {"id": model, "threads": threads, "diskCacheMb": 0, **extra},
         "engine": {"isolation": "thread"}}
    )  # fmt: skip
    assert not problems, problems
    eng = create_local_engine(s)
    assert isinstance(eng, LlamaEngine)
    return eng


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--main", default="qwen2.5-coder-1.5b-instruct-q4_k_m")
    ap.add_argument("--draft", default="qwen2.5-coder-0.5b-instruct-q4_k_m")
    ap.add_argument("--prompts", type=int, default=12)
    ap.add_argument("--chars", type=int, default=1500)
    ap.add_argument("--draft-tokens", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=14)
    args = ap.parse_args()
    load = [os.getloadavg()]
    engines = {
        "alone": engine(args.main, args.threads),
        "draft": engine(args.main, args.threads, draftModel=args.draft,
                        draftTokens=args.draft_tokens),
    }  # fmt: skip
    rows: dict[str, list[dict[str, Any]]] = {k: [] for k in engines}
    same = 0
    for i, prompt in enumerate(prompts(args.prompts, args.chars, args.seed)):
        order = list(engines) if i % 2 == 0 else list(reversed(engines))
        texts: dict[str, str] = {}
        for name in order:
            eng = engines[name]
            eng.reset()
            eng.warm([(prompt, False)], threading.Event())
            t0 = time.perf_counter()
            res = eng.generate(GenerationRequest([(prompt, False)], 48), threading.Event())
            dt = time.perf_counter() - t0
            texts[name] = res.text
            rows[name].append({"s": dt, "tokens": res.generated_tokens, **res.extra})
        same += texts["alone"] == texts["draft"]
        print(i, {k: round(rows[k][-1]["s"], 3) for k in engines}, repr(texts["alone"][:60]),
              "" if texts["alone"] == texts["draft"] else f"differs: {texts['draft'][:60]!r}",
              flush=True)  # fmt: skip
    load.append(os.getloadavg())
    out: dict[str, Any] = {"load_before": load[0], "load_after": load[1], "identical": same,
                           "prompts": args.prompts}  # fmt: skip
    for name, rs in rows.items():
        toks = sum(r["tokens"] for r in rs)
        out[name] = {
            "line_p50_s": round(statistics.median(r["s"] for r in rs), 3),
            "line_mean_s": round(statistics.fmean(r["s"] for r in rs), 3),
            "tokens_per_s": round(toks / sum(r["s"] for r in rs), 2),
            "tokens": toks,
        }
    d = engines["draft"].spec_stats
    out["draft"]["acceptance"] = round(d["accepted"] / d["drafted"], 3) if d["drafted"] else None
    out["draft"]["drafted"], out["draft"]["accepted"] = d["drafted"], d["accepted"]
    out["draft"]["draft_ms_in_lines"] = round(sum(r.get("draft_ms", 0.0) for r in rows["draft"]))
    print(json.dumps(out, indent=1))
    for eng in engines.values():
        eng.close()


if __name__ == "__main__":
    main()
