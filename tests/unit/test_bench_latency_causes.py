"""bench latency: where the slow keystrokes' time went, and picking files in any project."""

from __future__ import annotations

from pathlib import Path

import pytest

from nearline.bench.latency import _cut_file, _sibling, keystroke_causes, tail_breakdown


def test_a_model_run_splits_into_waiting_reading_generating_other() -> None:
    entry = {"source": "model", "read_ms": 300.0, "engine_ms": 420.0, "wait_ms": 50.0,
             "evaluated": 64, "generated": 9}  # fmt: skip
    parts = keystroke_causes(500.0, entry)
    assert parts["reading"] == 300 and parts["generating"] == 120 and parts["waiting"] == 50
    assert parts["other"] == pytest.approx(30)
    assert sum(parts.values()) == pytest.approx(500)


def test_answers_without_a_model_run() -> None:
    assert keystroke_causes(2.0, {"source": "typing-through"})["typing-through"] == 2.0
    assert keystroke_causes(3.0, None)["gated"] == 3.0


def test_the_tail_is_the_slowest_tenth_and_names_its_largest_part() -> None:
    lat = [1.0] * 27 + [900.0, 800.0, 700.0]
    entries: list[dict | None] = [{"source": "typing-through"}] * 27 + [
        {"source": "model", "read_ms": 800.0, "engine_ms": 850.0, "evaluated": 180, "generated": 4},
        {"source": "model", "read_ms": 100.0, "engine_ms": 700.0, "evaluated": 20, "generated": 30},
        {"source": "model", "read_ms": 50.0, "engine_ms": 100.0, "wait_ms": 550.0, "evaluated": 5,
         "generated": 3},
    ]  # fmt: skip
    tb = tail_breakdown(lat, entries)
    assert tb["n"] == 3 and tb["from_ms"] == 700.0
    assert tb["largest_part"] == {"reading": 1, "generating": 1, "waiting": 1}
    assert tb["evaluated_tokens_mean"] == pytest.approx((180 + 20 + 5) / 3)


def test_the_tail_says_what_it_waited_on_and_where_it_was_answered_from() -> None:
    lat = [900.0, 800.0, 700.0, 5.0]
    entries: list[dict[str, object] | None] = [
        {"source": "model", "read_ms": 100.0, "engine_ms": 300.0, "wait_ms": 600.0,
         "waited_on": "warm-up", "short": True, "switch_ms": 30.0},
        {"source": "model", "read_ms": 100.0, "engine_ms": 300.0, "wait_ms": 500.0,
         "waited_on": "speculation", "short": False, "switch_ms": 0.0},
        {"source": "model", "read_ms": 100.0, "engine_ms": 700.0, "short": True},
        None,
    ]  # fmt: skip
    tb = tail_breakdown(lat, entries)
    assert tb["short_prompt"] == 2
    assert tb["waited_on"] == {"warm-up": 1, "speculation": 1}
    assert tb["switch_ms_mean"] == pytest.approx(10.0)


def test_the_other_file_is_a_sibling_of_the_same_kind(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / "pkg" / "big.py").write_text("x = 1\n" * 50)
    (tmp_path / "pkg" / "notes.md").write_text("# n\n" * 500)
    (tmp_path / "pkg" / "sub" / "only.py").write_text("y = 2\n")
    assert _sibling(tmp_path, "pkg/a.py") == "pkg/big.py"
    assert _sibling(tmp_path, "pkg/sub/only.py") == "pkg/big.py"  # none beside it: the folder above
    with pytest.raises(SystemExit, match=r"no other \.rs file"):
        (tmp_path / "lone.rs").write_text("fn main() {}\n")
        _sibling(tmp_path, "lone.rs")


def test_typing_starts_at_the_line_asked_for(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("a\nb\nc\nd\n")
    opened, start, rest = _cut_file(f, 0.5, line=2)
    assert (opened, start, rest) == ("a\n", 1, "b\nc\nd\n")
    assert _cut_file(f, 0.5)[1] == 2
