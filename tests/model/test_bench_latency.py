"""The latency and thread benchmarks, small: they run end to end on the small model and report
what their help promises (the numbers themselves are for `nearline bench ...` by hand)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nearline.bench.latency import ACCEPT_ROUNDS, run_latency
from nearline.bench.threads_bench import run_threads_bench

from ..conftest import SMALL_ID

pytestmark = pytest.mark.model


async def test_bench_latency_small(small_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "latency.json"
    rc = await run_latency(
        model=SMALL_ID, max_keystrokes=12, raw=True, out_json=str(out), server_baseline=False
    )
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["nearline"]["n"] == 12
    assert r["model"] == SMALL_ID
    # The raw llama-cpp-python replay saw the same prompts, one per keystroke (the cold first
    # one is reported on its own).
    assert r["raw"]["n"] == 12
    assert r["first_after_open_ms"] > 0 and r["after_switching_back_ms"] > 0
    acc = r["accept_and_go_on"]
    assert acc["n"] == ACCEPT_ROUNDS
    assert sum(acc["sources"].values()) == ACCEPT_ROUNDS
    assert set(acc["sources"]) <= {"model", "typing-through", "gated", "cancelled", "?"}
    assert r["sources"]["model"] >= 1


def test_bench_threads_small(small_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "threads.json"
    assert run_threads_bench(model=SMALL_ID, n_tokens=32, reps=1, out_json=str(out)) == 0
    rows = json.loads(out.read_text())["rows"]
    # Idle and beside a busy process, each thread count, both wait policies.
    assert {(r["busy_neighbour"], r["policy"]) for r in rows} == {
        (False, "ACTIVE"),
        (False, "PASSIVE"),
        (True, "ACTIVE"),
        (True, "PASSIVE"),
    }
    assert all(r["best_tok_s"] > 0 for r in rows)
