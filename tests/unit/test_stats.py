from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from nearline.completion.stats import AcceptanceStats, format_report


def test_shown_once_per_suggestion_and_accepts(tmp_path: Path) -> None:
    path = tmp_path / "stats.json"
    st = AcceptanceStats(path, save_every=1000)
    st.shown("s1", "python")
    st.shown("s1", "python")  # typing through the same suggestion: still one
    st.shown("s2", "python")
    st.shown("s3", "go")
    assert st.totals() == (3, 0)
    assert st.accepted("s2") is True
    assert st.accepted("s2") is False  # counted once
    assert st.accepted("unknown") is False
    assert st.totals() == (3, 1)
    # An accept is written at once.
    data = json.loads(path.read_text())
    assert data["languages"]["python"] == {"shown": 2, "accepted": 1}
    assert data["languages"]["go"] == {"shown": 1, "accepted": 0}


def test_persists_across_instances_and_survives_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "stats.json"
    st = AcceptanceStats(path)
    st.shown("a", "rust")
    st.close()
    assert AcceptanceStats(path).totals() == (1, 0)
    path.write_text("{not json")
    assert AcceptanceStats(path).totals() == (0, 0)


def test_report_and_cli(tmp_path: Path) -> None:
    path = tmp_path / "stats.json"
    st = AcceptanceStats(path)
    for i in range(4):
        st.shown(f"x{i}", "python")
    st.accepted("x0")
    st.close()
    report = format_report(st.data)
    assert "python" in report and "25.0%" in report
    env = {"NEARLINE_STATS_FILE": str(path), "PATH": "/usr/bin:/bin"}
    stats_cli = [sys.executable, "-m", "nearline", "stats"]
    out = subprocess.run(stats_cli, capture_output=True, text=True, env=env, check=True)
    assert "25.0%" in out.stdout and "never sent" in out.stdout
    env["NEARLINE_STATS_FILE"] = str(tmp_path / "none.json")
    out = subprocess.run(stats_cli, capture_output=True, text=True, env=env, check=True)
    assert "no statistics yet" in out.stdout
