"""A keystroke in a huge document costs what one in a small document does (issue 13, bug 4).

The syntax trees used to take a document of any size, encode the whole text on every change to
compare it, and encode it again before looking at its size; the service split the whole text
into lines for every answer. A text that fails the test when it is encoded or split whole shows
that nothing walks it any more; ``/tmp``-free and timing-free, so the test cannot flake.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from nearline.completion.service import CompletionService, Query
from nearline.completion.syntax import MAX_TREE_BYTES, SyntaxDocs, neighbours, neighbours_at
from nearline.config import parse_settings
from nearline.workspace.snapshot import snapshot

from .fakes import FakeEngine, approx_count


class Untouchable(str):
    """A text whose whole must not be encoded or split (slices are plain ``str``)."""

    def encode(self, *args: object, **kwargs: object) -> bytes:  # type: ignore[override]
        raise AssertionError("the whole document was encoded")

    def split(self, *args: object, **kwargs: object) -> list[str]:  # type: ignore[override]
        raise AssertionError("the whole document was split")

    def splitlines(self, *args: object, **kwargs: object) -> list[str]:  # type: ignore[override]
        raise AssertionError("the whole document was split")


def huge() -> Untouchable:
    line = "value_1 = compute(1, 'item-1')  # 漢字\n"
    return Untouchable(line * (MAX_TREE_BYTES // len(line) + 1) + "z = ")


def test_a_huge_document_is_neither_kept_nor_encoded() -> None:
    docs = SyntaxDocs()
    uri = "file:///w/huge.py"
    text = huge()
    line = text.count("\n")
    docs.open(uri, "python", text)
    assert uri not in docs
    docs.change(uri, [((line, 4), (line, 4), "v")], text)
    assert docs.tree(uri, "python", text) is None
    assert docs.scope(uri, "python", text, line, 4) is None
    assert docs.check(uri, "python", text, line, 4, "1") is None
    assert docs.stats["full_parses"] == 0


def test_a_document_grown_too_large_is_dropped() -> None:
    docs = SyntaxDocs()
    uri = "file:///w/grows.py"
    docs.open(uri, "python", "x = 1\n")
    assert uri in docs
    big = "y = 2\n" * (MAX_TREE_BYTES // 6 + 1)
    docs.change(uri, [((1, 0), (1, 0), big)], "x = 1\n" + big)
    assert uri not in docs
    docs.open(uri, "python", "x = 1\n")
    docs.change(uri, ["x = 1\n" + big], "x = 1\n" + big)
    assert uri not in docs


def test_a_keystroke_does_not_encode_the_whole_text() -> None:
    """The edits carry the change; the text a request sees is compared by ``tree``, once."""
    docs = SyntaxDocs()
    uri = "file:///w/a.py"
    docs.open(uri, "python", "x = 1\n")
    docs.tree(uri, "python", "x = 1\n")
    docs.change(uri, [((0, 5), (0, 5), "0")], Untouchable("x = 10\n"))
    tree = docs.tree(uri, "python", "x = 10\n")
    assert tree is not None and tree.root_node.text == b"x = 10\n"
    assert docs.stats["resyncs"] == 0


def test_the_snapshot_of_a_version_is_shared() -> None:
    text = "x = 'é'\n" * 3
    docs = SyntaxDocs()
    docs.open("file:///w/s.py", "python", text)
    snap = snapshot(text)
    assert "data" in snap.__dict__  # the trees' encoding is the snapshot's, kept for the others
    assert snapshot(text) is snap


@pytest.mark.parametrize(
    ("text", "offset"),
    [
        ("a\n\n  \nb|\n\nc\n", 0),
        ("a\r\nb|\r\n\r\nc", 0),
        ("|only", 0),
        ("x\n|", 0),
        ("\n\n|\n\n", 0),
        ("first\nsecond|", 0),
    ],
)
def test_neighbours_at_agrees_with_neighbours(text: str, offset: int) -> None:
    offset = text.index("|")
    text = text.replace("|", "")
    lines = text.split("\n")
    assert neighbours_at(text, offset) == neighbours(lines, text.count("\n", 0, offset))


def test_a_request_in_a_huge_document_does_not_walk_it() -> None:
    raw = {
        "completion": {"debounceMs": 0, "inComments": False},
        "context": {"composer": "file-level"},
    }
    settings, problems = parse_settings(raw)
    assert not problems
    svc = CompletionService(
        settings, lambda _s: FakeEngine(reply=" + 1"), count_tokens=approx_count
    )
    text = huge()
    line = text.count("\n")
    q = Query(
        uri="file:///w/huge.py", text=text, line=line, col=4, path=Path("/w/huge.py"),
        rel="huge.py", language="python", offset=len(text),
    )  # fmt: skip

    async def run() -> list[str]:
        await svc.start()
        try:
            out = await svc.complete(q)
        finally:
            svc.close()
        assert out.source == "model", out
        return [s.text for s in out.suggestions]

    assert asyncio.run(run()) == [" + 1"]
