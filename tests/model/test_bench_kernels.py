"""`nearline bench kernels` on the build this install made: the real wheel unpacked and run in a
child process with the small model (a smoke test of the command the install uses to choose)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from nearline.cli import main

from ..conftest import SMALL_ID

pytestmark = pytest.mark.model


def _installed_wheel() -> Path:
    marker = Path(sys.prefix) / ".nearline-llama-wheel"  # the environment running the tests
    if not marker.is_file():
        pytest.fail(f"{marker} is missing: run scripts/install.sh", pytrace=False)
    wheel = Path(marker.read_text().strip())
    if not wheel.is_file():
        pytest.fail(f"the installed wheel {wheel} is gone: run scripts/install.sh", pytrace=False)
    return wheel


def test_bench_kernels_measures_and_picks_a_build(small_model: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    wheel = _installed_wheel()
    out, pick = tmp_path / "k.json", tmp_path / "pick"
    rc = main(["bench", "kernels", str(wheel), str(wheel), "--model", SMALL_ID, "--tokens", "64",
               "--gen", "4", "--rounds", "1", "--threads", "1", "--json", str(out),
               "--pick", str(pick)])  # fmt: skip
    assert rc == 0
    report = json.loads(out.read_text())
    assert len(report["builds"]) == 2
    for b in report["builds"]:
        assert b["prompt_median"] > 0 and b["gen_median"] > 0
        assert "AMX_INT8" not in b["features"] and b["label"] != "amx"
    assert pick.read_text().strip() == str(wheel)
    assert "faster" in capsys.readouterr().out


def test_bench_kernels_refuses_what_is_not_a_wheel(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    bogus = tmp_path / "x.txt"
    bogus.write_text("no")
    assert main(["bench", "kernels", str(bogus)]) == 2
    assert "not a wheel file" in capsys.readouterr().err
