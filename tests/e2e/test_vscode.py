"""VS Code end to end: the packaged extension in code-server, driven in headless chromium.

Runs ``editors/vscode/e2e/run.sh`` once for the module (setup cached under
``~/.cache/nearline-vscode-e2e``, ``nearline.vsix`` rebuilt when the extension's sources are
newer, then ``e2e.mjs``) with this interpreter's server and the small model, and reports each
case of ``result.json`` as its own test. Screenshots: ``bench-results/vscode-e2e/*.png``.

A pytest test rather than a step after pytest in scripts/test.sh: CI reads pytest's closing
line, each case passes or fails under its own name there, ``-k vscode`` selects it, and the
model marker and fixtures apply as to the other editor tests.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ..conftest import ROOT, SMALL_ID, server_env

RUN = ROOT / "editors" / "vscode" / "e2e" / "run.sh"
OUT = ROOT / "bench-results" / "vscode-e2e"
# e2e.mjs bounds itself (E2E_TIMEOUT_MS, 7 min); this only catches a wedged process, plus a
# first-time setup (~3 min) and a rebuild of nearline.vsix (~1 min).
HARD_TIMEOUT_S = 900

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def e2e(small_model: Path) -> dict[str, Any]:
    if shutil.which("npm") is None:
        pytest.skip("no npm: the VS Code extension cannot be built (scripts/test.sh warns too)")
    env = server_env(
        NEARLINE_CMD=json.dumps([sys.executable, "-m", "nearline", "serve"]),
        NEARLINE_MODEL=SMALL_ID,
        E2E_OUT=str(OUT),
    )
    proc = subprocess.Popen(
        ["bash", str(RUN)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=HARD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(
            f"run.sh did not finish in {HARD_TIMEOUT_S}s:\n{output.decode(errors='replace')}"
        )
    text = output.decode(errors="replace")
    result_file = OUT / "result.json"
    if not result_file.exists():
        pytest.fail(f"run.sh exited {proc.returncode} without a result:\n{text}")
    result: dict[str, Any] = json.loads(result_file.read_text())
    result["_output"] = text
    result["_returncode"] = proc.returncode
    return result


def case(e2e: dict[str, Any], name: str) -> dict[str, Any]:
    got = e2e.get("cases", {}).get(name)
    assert got is not None, f"case {name} did not run: {e2e.get('error')}\n{e2e['_output'][-4000:]}"
    assert got["ok"], f"{name}: {got.get('error')}\n{e2e['_output'][-4000:]}"
    return got


def test_vscode_ghost_text_and_tab(e2e: dict[str, Any]) -> None:
    """Ghost text after typing '.', Tab inserts it; Show prompt; Toggle off and on."""
    got = case(e2e, "ghost")
    assert got["ghostText"] and got["accepted"].endswith(got["ghostText"]), got


def test_vscode_off_for_markdown(e2e: dict[str, Any]) -> None:
    """Markdown is off by default: no ghost text, and the status bar says so."""
    got = case(e2e, "markdown")
    assert "off for this language" in got["status"], got


def test_vscode_manual_trigger(e2e: dict[str, Any]) -> None:
    """completion.trigger manual: nothing while typing, a suggestion on Alt+\\."""
    got = case(e2e, "manual")
    assert got["ghostText"], got


def test_vscode_notebook_uses_earlier_cell(e2e: dict[str, Any]) -> None:
    """The second cell of a Python notebook completes with a name from the first."""
    got = case(e2e, "notebook")
    assert "compute_shipping_cost" in got["line"], got


def test_vscode_screenshots(e2e: dict[str, Any]) -> None:
    for name in ("1-ready.png", "2-ghost-text.png", "3-accepted.png"):
        assert (OUT / name).stat().st_size > 0, name
