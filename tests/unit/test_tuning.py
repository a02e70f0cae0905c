"""The load's calibration of the ``auto`` settings (engine/calibrate.py ``decide``/``tune``,
engine/options.py ``apply_tuning``): which threads, batch size and prompt-lookup drafting a
machine gets from what was measured on it, and when it is measured again."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from nearline.config import ModelSettings, parse_settings
from nearline.engine import calibrate
from nearline.engine.calibrate import (
    ACCEPT_P,
    BUSY_LOAD,
    BUSY_RETRY_S,
    MIN_DRAFT_GAIN,
    TuneMeasurement,
    Tuning,
    decide,
    draft_gain,
    tune,
)
from nearline.engine.options import LoadOptions, apply_tuning


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEARLINE_CALIBRATION_FILE", str(tmp_path / "cal.json"))


def _m(verify: dict[int, float], **kw: object) -> TuneMeasurement:
    base = dict(
        threads=2,
        step_ms={1: 70.0, 2: 58.0},
        prompt_tps={1: 113.0, 2: 182.0},
        batch_tps={64: 184.0, 128: 183.0, 256: 198.0},
        verify_ms=verify,
    )
    base.update(kw)
    return TuneMeasurement(**base)  # type: ignore[arg-type]


# A compute-bound CPU: a batch of n tokens costs nearly n steps.
COMPUTE_BOUND = {n: 60.0 * n for n in range(1, 10)}
# A memory-bound machine (a GPU, a many-core CPU): a batch costs about one step.
MEMORY_BOUND = {n: 20.0 + 0.1 * (n - 1) for n in range(1, 10)}


def test_drafting_is_off_where_a_batch_costs_its_tokens() -> None:
    t = decide(_m(COMPUTE_BOUND), default_batch=64)
    assert t.draft_tokens == 0
    assert t.reasons["draft_tokens"].startswith("off:")


def test_drafting_is_on_where_a_batch_costs_about_one_step() -> None:
    t = decide(_m(MEMORY_BOUND), default_batch=64)
    # Almost free batches: the most tokens measured pay best (each may be accepted).
    assert t.draft_tokens == 8
    assert draft_gain(t.measurement, 8) > 1 + MIN_DRAFT_GAIN  # type: ignore[arg-type]
    assert "8 drafted tokens" in t.reasons["draft_tokens"]


def test_this_xeon_vms_costs_leave_drafting_off() -> None:
    # Measured here (2-core Xeon VM, the 0.5B, quiet): a batch of 2 tokens already costs 1.8
    # steps. Three drafted tokens would gain about 1.16x per verify batch; on the sample
    # project drafting 3 or 6 tokens made no difference beyond the bench's noise.
    verify = {1: 59.8, 2: 108.4, 3: 114.0, 4: 121.3, 5: 145.5, 6: 151.6, 7: 154.1, 8: 144.8,
              9: 172.6}  # fmt: skip
    t = decide(_m(verify), default_batch=64)
    assert t.draft_tokens == 0
    assert "best 1.16x at 3" in t.reasons["draft_tokens"]


def test_drafting_takes_the_k_with_the_best_expected_gain() -> None:
    # Cheap up to 4 tokens per batch (3 drafted), then every further token costs a step.
    verify = {1: 60.0, 2: 63.0, 3: 66.0, 4: 69.0, 5: 130.0, 6: 190.0, 7: 250.0, 8: 310.0,
              9: 370.0}  # fmt: skip
    t = decide(_m(verify), default_batch=64)
    assert t.draft_tokens == 3
    gain = (1 + ACCEPT_P + ACCEPT_P**2 + ACCEPT_P**3) / (69.0 / 60.0)
    assert draft_gain(_m(verify), 3) == pytest.approx(gain)


def test_a_marginal_gain_keeps_drafting_off() -> None:
    # A gain just under the threshold: diluted over a line, not worth a near-tie swap.
    k = 2
    ratio = (1 + ACCEPT_P + ACCEPT_P**2) / (1 + MIN_DRAFT_GAIN * 0.9)
    verify = {n: 60.0 * (ratio if n == k + 1 else n) for n in range(1, 10)}
    verify[1] = 60.0
    assert decide(_m(verify), default_batch=64).draft_tokens == 0


def test_threads_change_only_when_clearly_faster() -> None:
    same = decide(_m(COMPUTE_BOUND, step_ms={1: 66.0, 2: 70.0}), default_batch=64)
    assert same.threads == 2  # 6% faster with one: within noise, the default stays
    fewer = decide(
        _m(COMPUTE_BOUND, step_ms={1: 50.0, 2: 70.0}, prompt_tps={1: 100.0, 2: 180.0}),
        default_batch=64,
    )
    assert (fewer.threads, fewer.threads_batch) == (1, 2)  # decided apart
    assert "1: 50 ms per token" in fewer.reasons["threads"]


def test_a_busy_machine_keeps_the_default_threads() -> None:
    t = decide(_m(COMPUTE_BOUND, step_ms={1: 80.0, 2: 360.0}, load=BUSY_LOAD + 1), default_batch=64)
    assert (t.threads, t.threads_batch) == (2, 2)
    assert "other programs used 150% of the CPUs" in t.reasons["threads"]


def test_a_larger_batch_needs_a_clear_gain_and_a_short_batch() -> None:
    assert decide(_m(COMPUTE_BOUND), default_batch=64).batch_size == 64  # 256: only 8% faster
    fast = {64: 400.0, 128: 800.0, 256: 1000.0}
    # 256 tokens at 1000/s is 0.26 s a batch: still a quick cancel.
    assert decide(_m(COMPUTE_BOUND, batch_tps=fast), default_batch=64).batch_size == 256
    slow = {64: 150.0, 128: 200.0, 256: 260.0}
    # Faster, but one batch would take 0.64 s (128) or 0.98 s (256) to cancel.
    assert decide(_m(COMPUTE_BOUND, batch_tps=slow), default_batch=64).batch_size == 64


def test_the_measurement_survives_json() -> None:
    m = _m(MEMORY_BOUND, load=0.3, measured_at=5.0, seconds=9.0)
    import json

    assert TuneMeasurement.from_dict(json.loads(json.dumps(m.as_dict()))) == m


def _model(tmp_path: Path) -> Path:
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF" + b"\0" * 16)
    return f


def test_tune_is_cached_and_measured_again_when_the_key_changes(tmp_path: Path) -> None:
    path = _model(tmp_path)
    calls: list[int] = []

    def fake() -> TuneMeasurement:
        calls.append(1)
        return _m(MEMORY_BOUND, measured_at=time.time())

    first = tune(path, None, threads=2, default_batch=64, build="b1", measure_fn=fake)
    assert not first.cached and first.draft_tokens == 8 and len(calls) == 1
    again = tune(path, None, threads=2, default_batch=64, build="b1", measure_fn=fake)
    assert again.cached and again.draft_tokens == 8 and len(calls) == 1  # from the cache
    # Another llama.cpp build, thread count or model file: measured again.
    tune(path, None, threads=2, default_batch=64, build="b2", measure_fn=fake)
    assert len(calls) == 2
    tune(path, None, threads=1, default_batch=64, build="b1", measure_fn=fake)
    assert len(calls) == 3
    path.write_bytes(b"GGUF" + b"\1" * 32)
    tune(path, None, threads=2, default_batch=64, build="b1", measure_fn=fake)
    assert len(calls) == 4
    # auto's model measurements share the file and are kept beside it.
    assert len(calibrate._load_cache()) == 4


def test_a_busy_measurement_is_repeated_a_day_later(tmp_path: Path) -> None:
    path = _model(tmp_path)
    calls: list[float] = []
    when = [time.time() - BUSY_RETRY_S - 60]

    def fake() -> TuneMeasurement:
        calls.append(1)
        return _m(COMPUTE_BOUND, load=BUSY_LOAD + 1, measured_at=when[0])

    tune(path, None, threads=2, default_batch=64, measure_fn=fake)
    when[0] = time.time()
    tune(path, None, threads=2, default_batch=64, measure_fn=fake)
    assert len(calls) == 2  # the first was busy and a day old
    assert tune(path, None, threads=2, default_batch=64, measure_fn=fake).cached
    assert len(calls) == 2


def test_a_malformed_cache_entry_is_measured_again(tmp_path: Path) -> None:
    path = _model(tmp_path)
    calls: list[int] = []

    def fake() -> TuneMeasurement:
        calls.append(1)
        return _m(COMPUTE_BOUND)

    tune(path, None, threads=2, default_batch=64, measure_fn=fake)
    cache = calibrate._load_cache()
    (key,) = cache
    cache[key]["verify_ms"] = {}
    calibrate._save_cache(cache)
    assert not tune(path, None, threads=2, default_batch=64, measure_fn=fake).cached
    assert len(calls) == 2


def _opts(tmp_path: Path) -> LoadOptions:
    return LoadOptions(path=_model(tmp_path), n_ctx=2048, n_threads=2, n_gpu_layers=0,
                       n_batch=64, rope_freq_base=1e6, rope_scaling="none",
                       rope_scaling_factor=1.0, yarn_orig_ctx=0)  # fmt: skip


def _fake_tune(decided: Tuning, calls: list[dict[str, object]]):
    def run(path: Path, sha: str | None, **kw: object) -> Tuning:
        calls.append(kw)
        return decided

    return run


DECIDED = Tuning(1, 2, 128, 5, {"draft_tokens": "5 drafted tokens"}, _m(MEMORY_BOUND))


def test_auto_settings_take_the_calibrations_decisions(tmp_path: Path) -> None:
    calls: list[dict[str, object]] = []
    out = apply_tuning(_opts(tmp_path), ModelSettings(), tune=_fake_tune(DECIDED, calls))
    assert (out.n_threads, out.n_threads_batch, out.n_batch, out.draft_tokens) == (1, 2, 128, 5)
    assert out.tuning is not None and out.tuning["draft_tokens"] == 5
    assert out.tuning["measured"]["verify_ms"][1] == MEMORY_BOUND[1]
    assert calls[0]["threads"] == 2 and calls[0]["default_batch"] == 64


def test_explicit_settings_override_the_calibration(tmp_path: Path) -> None:
    calls: list[dict[str, object]] = []
    ms = ModelSettings(threads=2, draft_tokens=0)
    out = apply_tuning(_opts(tmp_path), ms, tune=_fake_tune(DECIDED, calls))
    assert (out.n_threads, out.n_threads_batch, out.draft_tokens) == (2, 0, 0)
    assert out.n_batch == 128 and out.tuning is not None and out.tuning["auto"] == ["batchSize"]
    ms = ModelSettings(threads=2, draft_tokens=3, batch_size=64)
    assert apply_tuning(_opts(tmp_path), ms, tune=_fake_tune(DECIDED, calls)).tuning is None
    assert len(calls) == 1  # nothing auto: nothing measured


def test_with_a_draft_model_draft_tokens_auto_is_its_default(tmp_path: Path) -> None:
    calls: list[dict[str, object]] = []
    opts = dataclasses.replace(_opts(tmp_path), draft_path=tmp_path / "d.gguf")
    ms = ModelSettings(threads=2, batch_size=64)
    assert apply_tuning(opts, ms, tune=_fake_tune(DECIDED, calls)).draft_tokens == 0
    assert calls == []


def _boom(path: Path, sha: str | None, **kw: object) -> Tuning:
    raise RuntimeError("calibrating m.gguf failed (exit -9): killed")


def test_a_failed_calibration_keeps_the_defaults(tmp_path: Path) -> None:
    out = apply_tuning(_opts(tmp_path), ModelSettings(), tune=_boom)
    assert (out.n_threads, out.n_batch, out.draft_tokens) == (2, 64, 0)
    assert out.tuning is not None and "killed" in out.tuning["error"]


def test_auto_settings_parse() -> None:
    s, problems = parse_settings(
        {"model": {"threads": "auto", "draftTokens": "4", "batchSize": 128}}
    )
    assert not problems
    assert (s.model.threads, s.model.draft_tokens, s.model.batch_size) == ("auto", 4, 128)
    s, problems = parse_settings({"model": {"threads": None}})
    assert not problems and s.model.threads is None  # the old "unset": the same as auto
    s, problems = parse_settings({"model": {"draftTokens": "fast", "threads": 0}})
    assert [p.key for p in problems] == ["model.draftTokens", "model.threads"]
    assert 'must be a number or "auto"' in problems[0].problem
    assert s.model.draft_tokens == "auto" and s.model.threads == "auto"


def test_the_log_line_says_what_was_decided_and_why(tmp_path: Path) -> None:
    from nearline.engine.options import tuning_summary

    out = apply_tuning(_opts(tmp_path), ModelSettings(threads=2), tune=_fake_tune(DECIDED, []))
    line = tuning_summary(out.tuning)
    assert line.startswith("calibration: batch_size=128")
    assert "draft_tokens=5 (5 drafted tokens)" in line and "threads=" not in line
    assert "measured earlier" in tuning_summary({**(out.tuning or {}), "cached": True})
    failed = apply_tuning(_opts(tmp_path), ModelSettings(), tune=_boom)
    assert tuning_summary(failed.tuning).startswith("calibration failed, threads, batchSize")
