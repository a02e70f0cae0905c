"""The prompts Nearline builds on examples/sample_project, pinned byte for byte.

``tests/fixtures/prompts/sample_project.json`` was written by the code before the move into
subpackages (issue #13): a refactor that changes a prompt, a token count or a part's order
fails here. Built through the CLI's ``nearline prompt --json`` with the default model's own
vocabulary, as a user would see it. A deliberate change to prompts regenerates the file
(``NEARLINE_REPIN=1``) and says why in its commit.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import pytest

from nearline.cli import main

from ..conftest import SAMPLE

PINNED = Path(__file__).resolve().parents[1] / "fixtures" / "prompts" / "sample_project.json"

CASES = [
    ("inventory/report.py", 20, 5, "path-distance", None),
    ("inventory/report.py", 12, 1, "path-distance", None),
    ("inventory/cli.py", 30, 9, "path-distance", None),
    ("inventory/storage.py", 25, 5, "file-level", None),
    ("inventory/models.py", 40, 9, "path-distance", {"context": {"budgetTokens": 300}}),
    ("inventory/models.py", 10, 1, "bm25", None),
    ("inventory/cli.py", 15, 5, "ring-buffer", None),
    ("inventory/storage.py", 28, 9, "path-distance", {"completion": {"suffixLines": 5}}),
    ("inventory/report.py", 20, 5, "path-distance", {"context": {"prefixShare": 0.5}}),
    # Added with context.layout (issue #15, point 2); the nine above are unchanged.
    ("inventory/report.py", 20, 5, "path-distance", {"context": {"layout": "shared"}}),
    ("inventory/storage.py", 25, 5, "path-distance", {"context": {"layout": "shared"}}),
]


def _key(rel: str, line: int, col: int, composer: str, settings: dict | None) -> str:
    return f"{rel}:{line}:{col} {composer} {json.dumps(settings) if settings else ''}".strip()


def _prompt(rel: str, line: int, col: int, composer: str, settings: dict | None) -> dict:
    argv = ["prompt", f"{SAMPLE / rel}:{line}:{col}", "--root", str(SAMPLE), "--json"]
    argv += ["--composer", composer]
    if settings:
        argv += ["--settings", json.dumps(settings)]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(argv) == 0
    out = json.loads(buf.getvalue())
    return {"prompt": out["prompt"], "total_tokens": out["total_tokens"]}


@pytest.mark.default_model
def test_prompts_on_the_sample_project_are_unchanged(default_model: Path) -> None:
    got = {_key(*case): _prompt(*case) for case in CASES}
    if os.environ.get("NEARLINE_REPIN") == "1":
        PINNED.write_text(json.dumps(got, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    pinned = json.loads(PINNED.read_text(encoding="utf-8"))
    assert got.keys() == pinned.keys()
    for key, want in pinned.items():
        assert got[key] == want, key
