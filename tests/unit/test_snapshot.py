"""One version of a document's text (workspace/snapshot.py) and the languages leaf."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nearline.workspace import snapshot as snapshot_mod
from nearline.workspace.snapshot import Snapshot, replace_surrogates, snapshot

TEXTS = ["", "x", "a\nb", "a\n", "\n\n", "a\r\nbé😀\r\n\nc", "s = '\ud800'\nt = 1\n"]


@pytest.mark.parametrize("text", TEXTS)
def test_lines_and_bytes_agree_with_split_and_encode(text: str) -> None:
    snap = Snapshot(text)
    lines = text.split("\n")
    assert [snap.line(i) for i in range(snap.line_count)] == lines
    assert snap.lines(1, 99) == lines[1:]
    assert snap.data == text.encode("utf-8", "surrogatepass")
    for off in range(len(text) + 1):
        assert snap.byte_offset(off) == len(text[:off].encode("utf-8", "surrogatepass"))
        assert snap.line_of(off) == text.count("\n", 0, off)
    assert "\ud800" not in snap.clean and len(snap.clean) == len(text)


def test_a_clean_slice_is_the_slice_of_the_clean_text() -> None:
    text = "a\ud800b\udfffc"
    snap = Snapshot(text)
    assert snap.clean_slice(1, 4) == "\ufffdb\ufffd"  # from the slice alone
    assert "clean" not in snap.__dict__
    assert snap.clean == "a\ufffdb\ufffdc"
    assert snap.clean_slice(1, 4) == "\ufffdb\ufffd"  # from the shared clean text
    assert replace_surrogates("plain") == "plain"


def test_one_snapshot_per_text_object_and_immutable() -> None:
    text = "".join(["shared ", "text"])  # built at run time: not an interned constant
    snap = snapshot(text)
    assert snapshot(text) is snap
    assert snapshot("".join(["shared ", "text"])) is not snap  # equal, but another version
    with pytest.raises(AttributeError):
        snap.text = "other"  # type: ignore[misc]


def test_huge_texts_are_not_kept() -> None:
    text = "x" * (snapshot_mod.CACHE_MAX_CHARS + 1)
    assert snapshot(text) is not snapshot(text)


def test_languages_is_a_leaf_that_loads_no_grammar() -> None:
    code = (
        "import sys; import nearline.languages as L; "
        "assert L.language_info('python').grammar[0] == 'tree_sitter_python'; "
        "assert L.language_for('a/b.tsx') == 'typescriptreact'; "
        "bad = [m for m in sys.modules if m.startswith('tree_sitter') or m.startswith('nearline.') and m != 'nearline.languages']; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
