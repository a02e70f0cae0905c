"""The soak benchmark's short version (``nearline bench soak --seconds 60`` is run by hand):
five seconds of typing across 20 documents at ~50 requests/s with random cancels, against
the real server and the small model. No errors, no leaked tasks or pending requests, no
memory growth worth the name."""

from __future__ import annotations

from pathlib import Path

import pytest

from nearline.bench.soak import RSS_GOAL_MB, run_soak

from ..conftest import SMALL_ID

pytestmark = pytest.mark.model


async def test_soak_five_seconds(small_model: Path) -> None:
    # A small prompt budget keeps each model run short on a CI machine's CPU.
    report = await run_soak(
        seconds=5,
        model=SMALL_ID,
        drain_s=300,
        settings={"context": {"budgetTokens": 384}, "completion": {"maxTokens": 16}},
    )
    assert report["errors"] == 0, report["error_samples"]
    assert report["sent"] >= 50
    assert report["answered"] > 0 and report["cancelled"] > 0
    assert report["answered"] + report["cancelled"] == report["sent"]
    # The model really ran, to the end, at least once (its line may have been cleaned away:
    # the small model often predicts a blank line).
    assert report["server_stats"]["model"] > 0, report["server_stats"]
    assert report["leaked_tasks"] <= 0, report
    assert report["leaked_requests"] <= 0, report
    assert report["rss_growth_mb"] < RSS_GOAL_MB, report
