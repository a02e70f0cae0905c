"""`model.id: auto`'s measurement, for real: warm keystrokes of the small model in a child."""

from __future__ import annotations

from pathlib import Path

import pytest

from nearline.engine.calibrate import measure

from ..conftest import SMALL_ID

pytestmark = pytest.mark.model


def test_measure_reports_speeds_and_warm_keystrokes(small_model: Path) -> None:
    cal = measure(SMALL_ID, small_model, threads=1, machine="test")
    assert cal.prompt_tps > 0 and cal.gen_tps >= 0
    assert 0 < cal.warm_p50_ms <= cal.warm_p95_ms


def test_a_model_that_cannot_load_is_a_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(RuntimeError, match=r"measuring bad failed \(exit"):
        measure("bad", bad, threads=1)
