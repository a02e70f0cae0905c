"""Syntax-aware suggestions through the real server (stdio, pytest-lsp) with SmolLM2: gating
without a model run, no repeated closers, several distinct candidates, and a syntax tree that
follows incremental edits in UTF-16 positions."""

from __future__ import annotations

from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from nearline.completion.syntax import parses_in_window

from ..conftest import SMALL_ID
from .conftest import client_fixture, edit, inline, open_doc, status, wait_ready

pytestmark = pytest.mark.model

candidates_client = client_fixture(
    {
        # One thread: on a small shared machine two spin-waiting threads run several times slower.
        "model": {"id": SMALL_ID, "threads": 1},
        "completion": {"debounceMs": 0, "timeoutMs": 60000, "maxTokens": 16, "candidates": 3},
        # Short prompts (this file only): every test here opens a new document.
        "context": {"composer": "file-level"},
    }
)


def _min_depth(text: str) -> int:
    depth = low = 0
    for c in text:
        depth += c in "([{"
        depth -= c in ")]}"
        low = min(low, depth)
    return low


def _net_depth(text: str) -> int:
    return sum(c in "([{" for c in text) - sum(c in ")]}" for c in text)


async def test_no_model_run_mid_identifier_or_in_switched_off_strings(
    candidates_client: LanguageClient, small_model: Path, tmp_path: Path
) -> None:
    client = candidates_client
    assert (await wait_ready(client))["state"] == "ready"
    text = 'def total(prices):\n    """Sum the\n    prices."""\n    return sum(prices)\n'
    uri = open_doc(client, tmp_path / "t.py", text)
    before = (await status(client))["stats"]
    assert await inline(client, uri, 3, 14) == []  # sum|(prices): text after the cursor
    assert await inline(client, uri, 0, 6) == []  # def tot|al(
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(
            settings={"nearline": {"completion": {"inStrings": False}}}
        )
    )
    assert await inline(client, uri, 2, 4) == []  # inside the docstring (begun a line above)
    after = (await status(client))["stats"]
    assert after["gated"] - before["gated"] == 3
    assert after["model"] == before["model"]


async def test_suggestions_never_repeat_the_closers_after_the_cursor(
    candidates_client: LanguageClient, small_model: Path, tmp_path: Path
) -> None:
    client = candidates_client
    await wait_ready(client)
    text = (
        "import math\n\n\ndef hypot(a, b):\n    return math.sqrt()\n\n\n"
        "def show(items):\n    print(len())\n    names = {'first': }\n"
    )
    uri = open_doc(client, tmp_path / "c.py", text)
    lines = text.split("\n")
    shown = 0
    for line, col in [(4, 21), (8, 14), (9, 22)]:
        before, after = lines[line][:col], lines[line][col:]
        for item in await inline(client, uri, line, col):
            s = item.insert_text
            assert isinstance(s, str) and s and "\n" not in s
            full = before + s + after
            # Never closes what the line did not open, never closes it twice.
            assert _min_depth(full) >= 0, full
            assert _net_depth(full) == _net_depth(before + after), full
            cut = len("\n".join(lines[:line])) + 1 + col
            assert parses_in_window("python", text[:cut], s, text[cut:]), full
            shown += 1
    assert shown, "the model showed nothing at any of the positions"


async def test_candidates_are_several_distinct_items(
    candidates_client: LanguageClient, small_model: Path, tmp_path: Path
) -> None:
    client = candidates_client
    await wait_ready(client)
    text = "def area(width, height):\n    return \n"
    uri = open_doc(client, tmp_path / "area.py", text)
    items = await inline(client, uri, 1, 11)
    texts = [it.insert_text for it in items]
    assert len(texts) >= 2, texts
    assert len(set(texts)) == len(texts)
    for t in texts:
        assert isinstance(t, str)
        assert parses_in_window("python", "def area(width, height):\n    return ", t, "\n")
    st = await status(client)
    assert st["stats"]["shown"] >= len(texts)
    assert st["stats"]["shown_parsed"] == st["stats"]["shown_checked"]
    # The completion menu offers the same candidates, the first preselected.
    res = await client.text_document_completion_async(
        types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=1, character=11),
        )
    )
    assert isinstance(res, types.CompletionList)
    assert [
        i.text_edit.new_text for i in res.items if isinstance(i.text_edit, types.TextEdit)
    ] == texts
    assert [i.preselect for i in res.items] == [True] + [False] * (len(texts) - 1)


async def test_syntax_tree_follows_incremental_edits(
    candidates_client: LanguageClient, small_model: Path, tmp_path: Path
) -> None:
    client = candidates_client
    await wait_ready(client)
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(
            settings={"nearline": {"completion": {"inStrings": False}}}
        )
    )
    text = "s = '😀'\nx = 1\n"
    uri = open_doc(client, tmp_path / "e.py", text)
    # A request the gate answers (in a string, switched off) parses the document, no model.
    # (Column 5 is inside the quotes, before the emoji: 6 would split its surrogate pair,
    # which the server refuses before looking at any tree.)
    assert await inline(client, uri, 0, 5) == []
    start = await status(client)
    # After the emoji (two UTF-16 units), then a new line; positions in UTF-16.
    edit(client, uri, 2, ((0, 7), (0, 7), " ñ"))
    edit(client, uri, 3, ((2, 0), (2, 0), "y = 'x +\n"))
    assert await inline(client, uri, 2, 8) == []  # in the new line's string: the tree knows it
    end = await status(client)
    syn0, syn1 = start["syntax"], end["syntax"]
    assert syn1["edits"] - syn0["edits"] == 2
    assert syn1["incremental_parses"] > syn0["incremental_parses"]
    assert syn1["resyncs"] == syn0["resyncs"]  # the edits reproduced the editor's text exactly
    assert end["stats"]["model"] == start["stats"]["model"]
