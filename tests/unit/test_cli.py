"""The ``nearline`` command line, run as a subprocess: user errors are one line on stderr with
exit code 2 and never a traceback; ``prompt --json``, ``models list`` and a real ``complete``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nearline.weights.catalog import load_catalog

from ..conftest import DEFAULT_ID, ROOT, SMALL_ID, server_env
from ..servers import free_port

ZORB = ROOT / "tests" / "fixtures" / "zorb_project"
MAIN = ZORB / "main.py"  # 5 lines; line 5 is "    digest = " (13 characters)


def nearline(
    *args: str, timeout: float = 120, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nearline", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=server_env(),
        check=False,
    )


def assert_user_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit 2, exactly one line on stderr, starting with "nearline:", no traceback."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("nearline: ")
    for n in needles:
        assert n in lines[0]
    return lines[0]


def test_fixture_shape() -> None:
    lines = MAIN.read_text().split("\n")
    assert lines[4] == "    digest = "


@pytest.mark.parametrize("cmd", ["complete", "prompt"])
def test_missing_file(tmp_path: Path, cmd: str) -> None:
    missing = tmp_path / "nope.py"
    assert_user_error(nearline(cmd, f"{missing}:1:1"), "no such file", str(missing))


def test_directory_instead_of_file(tmp_path: Path) -> None:
    assert_user_error(nearline("complete", f"{tmp_path}:1:1"), "is a directory")


def test_not_utf8(tmp_path: Path) -> None:
    f = tmp_path / "latin1.py"
    f.write_bytes(b"caf\xe9 = 1\n")
    assert_user_error(nearline("prompt", f"{f}:1:1"), "not UTF-8")


@pytest.mark.parametrize("cmd", ["complete", "prompt"])
def test_line_past_the_end(cmd: str) -> None:
    assert_user_error(nearline(cmd, f"{MAIN}:99:1"), "line 99 is past the end")


@pytest.mark.parametrize("cmd", ["complete", "prompt"])
def test_column_past_the_end(cmd: str) -> None:
    assert_user_error(nearline(cmd, f"{MAIN}:5:15"), "column 15 is past the end")


def test_column_just_past_the_last_character_is_fine() -> None:
    proc = nearline("prompt", f"{MAIN}:5:14", "--model", SMALL_ID, "--composer", "file-level")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith("    digest = \n")


@pytest.mark.parametrize(
    ("loc", "needle"),
    [
        ("main.py", "expected PATH:LINE:COL"),
        ("main.py:5", "expected PATH:LINE:COL"),
        ("main.py:x:1", "must be numbers"),
        ("main.py:5:", "must be numbers"),
        ("main.py:0:1", "1-based"),
        ("main.py:1:0", "1-based"),
        ("main.py:-1:1", "1-based"),
    ],
)
def test_bad_location_syntax(loc: str, needle: str) -> None:
    assert_user_error(nearline("complete", loc, cwd=ZORB), needle)


def test_bad_settings_json() -> None:
    assert_user_error(nearline("complete", f"{MAIN}:5:14", "--settings", "{bad"), "--settings")


def test_prompt_json() -> None:
    proc = nearline(
        "prompt", f"{MAIN}:5:14", "--json", "--root", str(ZORB), "--model", SMALL_ID, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data) == {"prompt", "parts", "total_tokens"}
    parts = data["parts"]
    assert sum(p["tokens"] for p in parts) == data["total_tokens"] > 0
    paths = [p["path"] for p in parts]
    assert "helpers/zorb.py" in paths and "main.py" in paths
    assert paths.index("helpers/zorb.py") < paths.index("main.py")
    kinds = {(p["kind"], p["path"]) for p in parts}
    assert ("repo-file", "helpers/zorb.py") in kinds and ("prefix", "main.py") in kinds
    prompt = data["prompt"]
    assert prompt.startswith("<repo_name>zorb_project\n")  # SmolLM2 uses the StarCoder2 format
    assert prompt.index("<file_sep>helpers/zorb.py\n") < prompt.index("<file_sep>main.py\n")
    assert "qrx_fold_digest_v7" in prompt
    assert prompt.endswith("    digest = ")


def test_prompt_json_relative_paths_from_the_project() -> None:
    proc = nearline("prompt", "main.py:5:14", "--json", "--model", SMALL_ID, cwd=ZORB)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert sum(p["tokens"] for p in data["parts"]) == data["total_tokens"]
    assert "helpers/zorb.py" in [p["path"] for p in data["parts"]]


def test_prompt_text_goes_to_stdout_and_summary_to_stderr() -> None:
    proc = nearline("prompt", f"{MAIN}:5:14", "--root", str(ZORB), "--model", DEFAULT_ID)
    assert proc.returncode == 0, proc.stderr
    # Qwen2.5-Coder: FIM markers around the (empty) suffix.
    assert proc.stdout.rstrip("\n").endswith("    digest = <|fim_suffix|><|fim_middle|>")
    assert proc.stdout.startswith("<|repo_name|>zorb_project\n")
    assert proc.stderr.startswith("--- ") and "tokens" in proc.stderr


def test_models_list() -> None:
    proc = nearline("models", "list")
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()}
    assert set(rows) == {m.id for m in load_catalog().models}
    for model_id in (SMALL_ID, DEFAULT_ID):
        assert rows[model_id].split()[3] == "verified", rows[model_id]
    assert "(default)" in rows[DEFAULT_ID]


def test_models_path_and_unknown_id() -> None:
    proc = nearline("models", "path", SMALL_ID)
    assert proc.returncode == 0
    assert proc.stdout.strip().endswith(load_catalog().get(SMALL_ID).file)
    assert_user_error(nearline("models", "path", "nope"), "unknown model id 'nope'", SMALL_ID)


@pytest.mark.parametrize(
    ("value", "needle"),
    [("abc", "--tcp expects [HOST:]PORT"), ("127.0.0.1:70000", "out of range"), ("h:", "--tcp")],
)
def test_serve_tcp_bad_port(value: str, needle: str) -> None:
    assert_user_error(nearline("serve", "--tcp", value, timeout=60), needle)


def test_complete_unknown_model() -> None:
    proc = nearline("complete", f"{MAIN}:5:14", "--model", "nope")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.splitlines()[-1]
    assert last.startswith("nearline: unknown model id 'nope'; known: ")
    assert SMALL_ID in last and DEFAULT_ID in last


def test_complete_unknown_model_is_one_line() -> None:
    assert_user_error(nearline("complete", f"{MAIN}:5:14", "--model", "nope"))


def test_prompt_unknown_model() -> None:
    assert_user_error(
        nearline("prompt", f"{MAIN}:5:14", "--model", "nope"), "unknown model id 'nope'"
    )


def test_complete_model_path_not_gguf(tmp_path: Path) -> None:
    bogus = tmp_path / "x.gguf"
    bogus.write_text("not a model")
    proc = nearline("complete", f"{MAIN}:5:14", "--model-path", str(bogus))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("nearline: ")
    assert "not a GGUF" in proc.stderr.splitlines()[-1]


@pytest.mark.model
def test_complete_with_the_small_model(tmp_path: Path, small_model: Path) -> None:
    f = tmp_path / "calc.py"
    f.write_text("x = 1\ny = 2\nz = \n")
    proc = nearline(
        "complete",
        f"{f}:3:5",
        "-v",
        "--model",
        SMALL_ID,
        "--settings",
        json.dumps({"model": {"threads": 1}}),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    out = proc.stdout.splitlines()
    assert len(out) == 1, proc.stdout
    assert out[0].strip()
    assert "stop=" in proc.stderr  # -v prints the generation's numbers


def test_complete_with_an_unreachable_remote_engine(tmp_path: Path) -> None:
    f = tmp_path / "add.py"
    f.write_text("def add(a, b):\n    return a")
    port = free_port()  # nothing listens there
    settings = json.dumps({"engine": {"backend": "openai", "url": f"http://127.0.0.1:{port}"}})
    proc = nearline("complete", f"{f}:2:13", "--model", SMALL_ID, "--settings", settings)
    assert_user_error(proc, f"http://127.0.0.1:{port}/v1", "cannot be reached (connection refused)")
