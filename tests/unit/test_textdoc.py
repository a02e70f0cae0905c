"""LspDocument against the naive model of the specification in tests/docmodel.py (the same
model the end-to-end sync test drives a real client with)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lsprotocol import types
from pygls.workspace.position_codec import PositionCodec

from nearline.lsp.textdoc import LspDocument

from ..docmodel import ClientDoc, lsp_lines, texts

ENCODINGS = ["utf-8", "utf-16", "utf-32"]


def make(text: str, encoding: str) -> LspDocument:
    return LspDocument("file:///w/a.py", text, 1, "python", PositionCodec(encoding))


def change(
    start: tuple[int, int], end: tuple[int, int], new: str
) -> types.TextDocumentContentChangePartial:
    return types.TextDocumentContentChangePartial(
        range=types.Range(
            start=types.Position(line=start[0], character=start[1]),
            end=types.Position(line=end[0], character=end[1]),
        ),
        text=new,
    )


@pytest.mark.parametrize("encoding", ENCODINGS)
@settings(max_examples=120, deadline=None)
@given(data=st.data(), initial=texts)
def test_edits_match_the_specification(encoding: str, data: st.DataObject, initial: str) -> None:
    doc = make(initial, encoding)
    model = ClientDoc(initial, encoding)
    for _ in range(data.draw(st.integers(1, 8))):
        offsets = model.valid_offsets()
        a, b = sorted(data.draw(st.sampled_from(offsets)) for _ in range(2))
        start, end = model.position(a), model.position(b)
        if data.draw(st.booleans()):
            # Past the end of the line: the specification says the line's end.
            end = (end[0], model.line_end_units(end[0]) + data.draw(st.integers(0, 3)))
        new = data.draw(texts)
        model.apply(start, end, new)
        doc.apply_change(change(start, end, new))
        assert doc.source == model.text
        assert doc.line_count == len(lsp_lines(model.text))
        for n, (x, y) in enumerate(lsp_lines(model.text)):
            assert doc.line_span(n) == (x, y)
    for off in model.valid_offsets():
        line, ch = model.position(off)
        pos = types.Position(line=line, character=ch)
        assert doc.exact_offset(pos) == off
        assert doc.position_at(off) == pos


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_positions_inside_a_character_and_past_the_end(encoding: str) -> None:
    doc = make("a😀b\nc", encoding)
    inside = 2 if encoding == "utf-16" else 3
    assert doc.exact_offset(types.Position(line=0, character=inside)) is None
    assert doc.offset_at(types.Position(line=0, character=inside)) == 1  # rounded down
    assert doc.exact_offset(types.Position(line=0, character=99)) is None
    assert doc.offset_at(types.Position(line=0, character=99)) == 3
    assert doc.exact_offset(types.Position(line=2, character=0)) is None
    assert doc.offset_at(types.Position(line=7, character=0)) == len(doc.source)


def test_line_breaks_python_splits_but_lsp_does_not() -> None:
    """pygls's own document splits at form feeds and U+2028; a client does not."""
    doc = make("x\x0cy\u2028z\nw", "utf-16")
    assert doc.line_count == 2
    doc.apply_change(change((1, 0), (1, 1), "W"))
    assert doc.source == "x\x0cy\u2028z\nW"


def test_joining_cr_and_lf_into_one_line_ending() -> None:
    doc = make("a\rb", "utf-16")
    assert doc.line_count == 2
    doc.apply_change(change((1, 0), (1, 1), "\n"))  # "a\r" + "\n": one CRLF now
    assert doc.source == "a\r\n" and doc.line_count == 2
    doc.apply_change(change((0, 1), (1, 0), ""))
    assert doc.source == "a" and doc.line_count == 1


def test_a_huge_document_edits_quickly() -> None:
    import time

    row = "x = 1  # a line of ordinary code to make a 10 MB file\n"
    text = row * 200_000
    doc = make(text, "utf-16")
    t0 = time.perf_counter()
    for i in range(50):
        doc.apply_change(change((100_000 + i, 1), (100_000 + i, 1), "y"))
    per_edit = (time.perf_counter() - t0) / 50
    assert doc.line_text(100_000) == "xy = 1  # a line of ordinary code to make a 10 MB file"
    assert doc.exact_offset(types.Position(line=100_001, character=2)) == len(row) * 100_001 + 1 + 2
    # Not a speed target (those are benchmarks): a guard against going back to whole-text
    # rebuilding, which takes seconds per edit here.
    assert per_edit < 0.5, per_edit
