"""The load's calibration for real: the small model measured in a child process, and the
engine loaded with what it decided (engine/calibrate.py ``tune``, options.py ``apply_tuning``)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from nearline.config import parse_settings
from nearline.engine.base import GenerationRequest
from nearline.engine.calibrate import TUNE_BATCHES, TUNE_MAX_DRAFT, measure_tuning
from nearline.engine.factory import create_local_engine

from ..conftest import SMALL_ID

pytestmark = pytest.mark.model


def test_the_calibration_child_measures_every_choice(small_model: Path) -> None:
    m = measure_tuning(small_model, threads=2)
    assert set(m.step_ms) == set(m.prompt_tps) == {1, 2}
    assert TUNE_BATCHES[0] in m.batch_tps and set(m.batch_tps) <= set(TUNE_BATCHES)
    assert set(m.verify_ms) == set(range(1, TUNE_MAX_DRAFT + 2))
    values = [*m.step_ms.values(), *m.prompt_tps.values(), *m.batch_tps.values(),
              *m.verify_ms.values()]  # fmt: skip
    assert all(v > 0 for v in values)
    assert m.threads == 2 and m.measured_at > 0 and 0 < m.seconds < 120 and m.load >= 0


def test_the_engine_runs_with_what_the_calibration_decided(
    small_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEARLINE_CALIBRATION_FILE", str(tmp_path / "cal.json"))
    s, problems = parse_settings({"model": {"id": SMALL_ID, "diskCacheMb": 0}})
    assert not problems and s.model.draft_tokens == "auto" and s.model.threads == "auto"
    eng = create_local_engine(s)
    try:
        info = eng.info()
        tuning = info["tuning"]
        assert tuning["auto"] == ["threads", "batchSize", "draftTokens"]
        assert not tuning["cached"] and tuning["measured"]["verify_ms"]
        assert info["draft_tokens"] == tuning["draft_tokens"] == eng.opts.draft_tokens
        assert info["threads"] == tuning["threads"] and info["batch_size"] == tuning["batch_size"]
        assert info["threads_batch"] == tuning["threads_batch"]
        assert set(tuning["reasons"]) == {"threads", "threads_batch", "batch_size", "draft_tokens"}
        out = eng.generate(GenerationRequest([("def add(a, b):\n", False)], 8), threading.Event())
        assert out.text
    finally:
        eng.close()
    # The next load reads the cache: no second measurement.
    again = create_local_engine(s)
    try:
        assert again.info()["tuning"]["cached"]
    finally:
        again.close()
