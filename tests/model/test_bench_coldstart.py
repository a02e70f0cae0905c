"""``nearline bench coldstart``, small: end to end on the small model and the sample project,
it reports the three scenarios for both behaviours, and the new one is what it claims (the
cold first answer from the short prompt, the restart from the state on disk; today neither).
The numbers themselves are for `nearline bench coldstart` by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nearline.bench.coldstart import run_coldstart

from ..conftest import SMALL_ID

pytestmark = pytest.mark.model


async def test_bench_coldstart_small(small_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "coldstart.json"
    rc = await run_coldstart(model=SMALL_ID, cold_prompt_tokens=64, out_json=str(out), threads=1)
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["model"] == SMALL_ID
    assert r["file"] == "inventory/models.py" and r["sibling"] == "inventory/storage.py"
    sc = r["scenarios"]
    assert set(sc) == {"a", "b", "c"}
    for key in sc:
        for mode in ("today", "new"):
            run = sc[key][mode]
            assert run["ms"] > 0 and run["source"] == "model", (key, mode, run)
    # Today: every first answer reads its whole prompt (but what the open's warm-up read
    # before the request preempted it).
    for key in sc:
        today = sc[key]["today"]
        assert not today["short"] and today["evaluated"] > today["prompt"] // 2
    # New: the truly cold answer comes from the short prompt, then the full one is used...
    assert sc["c"]["new"]["short"] and sc["c"]["new"]["evaluated"] <= 64 + 16
    after = r["after_background_read"]
    assert after is not None and not after["short"] and after["evaluated"] < 16
    # ...and after the restart the state on disk holds the prompt.
    a = sc["a"]["new"]
    assert not a["short"] and a["evaluated"] < 16 < a["prompt"]
    assert r["runs"]["new"]["disk_cache"]["restored_tokens"] > 0
    # Memory: both behaviours measured; today keeps nothing on disk, the new one keeps its
    # states within the cap, and the model is in the measured processes.
    mem = r["memory"]
    assert mem["today"]["disk_mb"] == 0 and mem["today"]["cap_mb"] == 0
    assert 0 < mem["new"]["disk_mb"] <= mem["new"]["cap_mb"]
    for mode in ("today", "new"):
        assert mem[mode]["peak_rss_mb"] >= mem[mode]["rss_mb"] > 50, mem
