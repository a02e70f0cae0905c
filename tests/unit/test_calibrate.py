"""`model.id: auto`: which model is chosen from measured warm keystrokes (engine/calibrate.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nearline.engine import calibrate
from nearline.engine.calibrate import Calibration, Candidate, choose


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEARLINE_CALIBRATION_FILE", str(tmp_path / "cal.json"))


def _cand(tmp_path: Path, model_id: str, rank: int) -> Candidate:
    f = tmp_path / f"{model_id}.gguf"
    f.write_bytes(b"x" * rank)
    return Candidate(model_id, f, None, rank)


def _fake(p95: dict[str, float], calls: list[str]):
    def run(c: Candidate) -> Calibration:
        calls.append(c.model_id)
        return Calibration(c.model_id, 100.0, 20.0, p95[c.model_id] / 2, p95[c.model_id], "m", 0.0)

    return run


def test_the_best_model_that_meets_the_target_is_chosen(tmp_path: Path) -> None:
    cands = [_cand(tmp_path, "small", 1), _cand(tmp_path, "large", 3), _cand(tmp_path, "mid", 2)]
    calls: list[str] = []
    got = choose(
        cands, threads=2, measure_fn=_fake({"large": 1200, "mid": 420, "small": 90}, calls)
    )
    assert got.model_id == "mid"
    assert calls == ["large", "mid"]  # from the best down, stopping at the first that fits
    assert "420 ms" in got.reason


def test_the_smallest_is_the_fallback_without_measuring(tmp_path: Path) -> None:
    cands = [_cand(tmp_path, "small", 1), _cand(tmp_path, "large", 2)]
    calls: list[str] = []
    got = choose(cands, threads=2, measure_fn=_fake({"large": 1500, "small": 90}, calls))
    assert got.model_id == "small" and calls == ["large"]
    assert "large 1500 ms" in got.reason


def test_measurements_are_cached_per_machine_and_settings(tmp_path: Path) -> None:
    cands = [_cand(tmp_path, "small", 1), _cand(tmp_path, "large", 2)]
    calls: list[str] = []
    fake = _fake({"large": 300, "small": 90}, calls)
    assert choose(cands, threads=2, measure_fn=fake).model_id == "large"
    assert choose(cands, threads=2, measure_fn=fake).model_id == "large"
    assert calls == ["large"]  # the second start read the cache
    choose(cands, threads=1, measure_fn=fake)  # other settings: measured again
    assert calls == ["large", "large"]


def test_a_failed_measurement_falls_through(tmp_path: Path) -> None:
    cands = [_cand(tmp_path, "small", 1), _cand(tmp_path, "large", 2)]

    def boom(c: Candidate) -> Calibration:
        raise RuntimeError("measuring large failed (exit -9): killed")

    assert choose(cands, threads=2, measure_fn=boom).model_id == "small"


def test_a_corrupt_cache_is_measured_again(tmp_path: Path) -> None:
    calibrate.cache_file().write_text("{not json")
    cands = [_cand(tmp_path, "small", 1), _cand(tmp_path, "large", 2)]
    calls: list[str] = []
    assert (
        choose(cands, threads=2, measure_fn=_fake({"large": 100, "small": 1}, calls)).model_id
        == "large"
    )
    assert calls == ["large"]


def test_auto_resolves_without_measuring_on_the_request_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """resolve_model (asked per request) never measures: with nothing measured yet it answers
    with the smallest present candidate; the load's measuring call then decides."""
    from nearline.config import Settings
    from nearline.engine import factory
    from nearline.weights import catalog as cat

    monkeypatch.setenv("NEARLINE_MODELS_DIR", str(tmp_path))
    entries = {e.id: e for e in cat.load_catalog().models}
    small, large = (
        entries["qwen2.5-coder-0.5b-instruct-q4_k_m"],
        entries["qwen2.5-coder-1.5b-instruct-q4_k_m"],
    )
    for e in (small, large):
        with open(e.path, "wb") as f:
            f.truncate(e.size or 1)
    monkeypatch.setattr(factory, "_auto_choices", {})
    measured: list[str] = []

    def fake_measure(model_id: str, path: Path, **kw: object) -> Calibration:
        measured.append(model_id)
        return Calibration(model_id, 500.0, 80.0, 100.0, 200.0, "m", 0.0)

    monkeypatch.setattr(calibrate, "measure", fake_measure)
    s = Settings()
    assert factory.resolve_model(s)[0].id == small.id and measured == []
    choice = factory.auto_choice(s, measure=True)
    assert choice.model_id == large.id and measured == [large.id]
    assert factory.resolve_model(s)[0].id == large.id  # remembered, no second measurement
    assert measured == [large.id]
    s.model.id = small.id  # an explicit id is never second-guessed
    assert factory.resolve_model(s)[0].id == small.id


def test_models_auto_says_what_runs_and_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from nearline.cli import main
    from nearline.engine import factory
    from nearline.weights import catalog as cat

    monkeypatch.setenv("NEARLINE_MODELS_DIR", str(tmp_path))
    monkeypatch.setattr(factory, "_auto_choices", {})
    assert main(["models", "auto"]) == 0
    assert "the catalog's default" in capsys.readouterr().out  # nothing pulled yet
    small = cat.load_catalog().get("qwen2.5-coder-0.5b-instruct-q4_k_m")
    with open(small.path, "wb") as f:
        f.truncate(small.size or 1)
    monkeypatch.setattr(factory, "_auto_choices", {})
    assert main(["models", "auto", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"chosen": "qwen2.5-coder-0.5b-instruct-q4_k_m"' in out and "the only model" in out
