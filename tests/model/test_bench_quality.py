"""``nearline bench quality`` for real, on the small model: a hand-written project (no network),
a few tasks, three variants (the oracle among them); the report, the table and the chart."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from nearline.bench import quality as q

from ..conftest import SMALL_ID
from ..unit.test_bench_quality import write_project

pytestmark = pytest.mark.model


async def test_quality_smoke(
    small_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_project(tmp_path / "proj")
    out = tmp_path / "res" / "quality.json"
    png = tmp_path / "res" / "quality.png"
    t0 = time.monotonic()
    report = await q.run_quality(
        project_dirs=[str(root)], variants="file-level,path-distance,oracle", budgets="512",
        lines_per_category=2, model=SMALL_ID, out_json=str(out), out_png=str(png), quiet=True,
    )  # fmt: skip
    elapsed = time.monotonic() - t0
    assert elapsed < 90, elapsed
    saved = json.loads(out.read_text())
    assert saved["kind"] == "nearline-bench-quality" and not saved["dry_run"]
    assert not saved["partial"] and saved["model"] == SMALL_ID
    assert saved["tasks_run"] == saved["tasks_planned"] == 3
    assert [(r["variant"], r["budget"]) for r in saved["results"]] == [
        ("file-level", 512),
        ("path-distance", 512),
        ("oracle", 512),
    ]
    for r in saved["results"]:
        cats = r["categories"]
        assert set(cats) == {"inproject", "infile", "all"}
        assert cats["all"]["n"] == 3
        for key in ("em_micro", "em_macro", "es_micro", "es_macro", "em_checked_micro"):
            assert 0.0 <= cats["all"][key] <= 1.0
        # The syntax check can only take suggestions away.
        assert cats["all"]["em_checked_micro"] <= cats["all"]["em_micro"]
        assert r["latency_ms"]["p50"] is not None and r["prompt_tokens_mean"] > 0
        assert r["syntax"]["agrees_with_service"] == r["syntax"]["shown"]
    records = saved["records"]
    assert len(records) == 9 and all(r["ran"] for r in records)
    assert {r["source"] for r in records} <= {"model", "gated"}
    assert saved["service_stats"]["typing_through"] == 0  # fresh documents: no cached answers
    assert png.is_file() and png.stat().st_size > 1000
    assert report["chart"] == str(png)
    printed = capsys.readouterr().out
    assert "EM inproj" in printed and "file-level" in printed and "path-distance" in printed
    # Each variant against file-level on the same three lines.
    paired = {(r["variant"], r["category"]): r for r in saved["paired"]}
    assert set(paired) == {(v, c) for v in ("path-distance", "oracle")
                           for c in ("inproject", "infile", "all")}  # fmt: skip
    for r in paired.values():
        assert r["wins"] + r["losses"] <= r["n"] and 0.0 < r["p"] <= 1.0
    assert paired[("oracle", "all")]["n"] == 3
    assert "against file-level" in printed


async def test_quality_max_minutes_marks_partial(small_model: Path, tmp_path: Path) -> None:
    root = write_project(tmp_path / "proj")
    report = await q.run_quality(
        project_dirs=[str(root)], variants="file-level", budgets="512", model=SMALL_ID,
        max_minutes=1e-6, out_json=str(tmp_path / "r.json"), out_png=str(tmp_path / "r.png"),
        quiet=True,
    )  # fmt: skip
    assert report["partial"] and report["tasks_run"] == 0
    assert report["results"][0]["categories"]["all"]["n"] == 0


async def test_quality_typescript_smoke(small_model: Path, tmp_path: Path) -> None:
    from ..unit.test_bench_quality_ts import write_ts_project

    root = write_ts_project(tmp_path / "proj")
    out = tmp_path / "res" / "quality.json"
    report = await q.run_quality(
        project_dirs=[str(root)], language="typescript", variants="file-level,path-distance,oracle",
        budgets="512", lines_per_category=1, model=SMALL_ID, out_json=str(out), quiet=True,
    )  # fmt: skip
    saved = json.loads(out.read_text())
    assert saved["results"] == report["results"]
    assert saved["language"] == "typescript" and saved["models"] == [SMALL_ID]
    assert saved["tasks_run"] == saved["tasks_planned"] == 2
    records = saved["records"]
    assert len(records) == 6 and all(r["ran"] for r in records)
    assert {r["source"] for r in records} <= {"model", "gated"}
    # Each shown suggestion was checked with the TypeScript grammar (None: nothing shown).
    assert all(r["parses"] in (True, False, None) for r in records)
    assert any(r["source"] == "model" for r in records)
    paired = {(r["model"], r["variant"], r["category"]) for r in saved["paired"]}
    assert (SMALL_ID, "path-distance", "all") in paired and (SMALL_ID, "oracle", "all") in paired
