"""Typing in the current document costs the index no redaction per keystroke (issue 13,
point 5): its overlay takes the newest text when something reads the index or another document
becomes current, and never shows a text that was not redacted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nearline.workspace import index as index_mod
from nearline.workspace.index import WorkspaceIndex

TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"


@pytest.fixture
def redactions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = index_mod.redact

    def counting(text: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(text)
        return real(text, *args, **kwargs)

    monkeypatch.setattr(index_mod, "redact", counting)
    return seen


def test_keystrokes_in_the_current_document_are_not_redacted_one_by_one(
    tmp_path: Path, redactions: list[str]
) -> None:
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    code = "".join(f"def f{i}(x):\n    return x + {i}\n\n" for i in range(20))
    a.write_text(code)
    b.write_text("b = 1\n")
    idx = WorkspaceIndex([tmp_path])
    idx.scan()
    redactions.clear()
    idx.set_overlay(a, code)  # opened
    idx.set_current(a)
    text = code
    for ch in "token = '" + TOKEN + "'\n":
        text += ch
        idx.set_overlay(a, text)
    assert len(redactions) == 1  # the opening only
    # A reader gets the newest text, redacted.
    r = idx.read(a)
    assert r is not None and r[1].startswith(code + "token = '") and TOKEN not in r[1]
    assert len(redactions) == 2
    entry = idx.get(a)
    assert entry is not None and entry.size == len(r[1].encode())


def test_switching_documents_publishes_the_pending_text(
    tmp_path: Path, redactions: list[str]
) -> None:
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("a = 1\n")
    b.write_text("b = 1\n")
    idx = WorkspaceIndex([tmp_path])
    idx.scan()
    idx.set_overlay(a, "a = 1\n")
    idx.set_current(a)
    v = idx.version
    idx.set_overlay(a, "a = 2\n")
    idx.set_overlay(a, "a = 3\n")
    assert idx.version == v
    idx.set_current(b)
    assert idx.version == v + 1
    assert idx.text(a) == "a = 3\n"
    # Closing the document drops what was pending with it.
    idx.set_current(a)
    idx.set_overlay(a, "a = 4\n")
    idx.drop_overlay(a)
    assert idx.text(a) == "a = 1\n"
