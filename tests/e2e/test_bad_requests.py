"""Bad requests never kill the server: each gets an LSP error or an empty result, a normal
request right after still answers, nothing but LSP goes to stdout (pytest-lsp fails on
anything else) and nothing the client did leaves a traceback on stderr."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient

from ..conftest import SMALL_ID
from .conftest import client_fixture, edit, inline, open_doc, prompt_at, status, wait_ready

pytestmark = pytest.mark.model

OPTIONS = {"model": {"id": SMALL_ID}, "completion": {"debounceMs": 0, "timeoutMs": 60000}}


def _workspace(tmp: Path) -> Path:
    root = tmp / "ws"
    root.mkdir()
    (root / "util.py").write_text("def double(x):\n    return 2 * x\n")
    return root


client = client_fixture(OPTIONS, root=_workspace)
_ids = itertools.count()


async def raw_request(client: LanguageClient, method: str, params: Any) -> Any:
    """Send a request exactly as given (no client-side typing), return its result or raise
    the server's error."""
    msg_id = f"raw-{next(_ids)}"
    # pygls's client answers to the future it finds under the id.
    fut: Future[Any] = Future()
    client.protocol._request_futures[msg_id] = fut
    client.protocol._send_data({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
    return await asyncio.wait_for(asyncio.wrap_future(fut), 60)


def raw_notify(client: LanguageClient, method: str, params: Any) -> None:
    client.protocol._send_data({"jsonrpc": "2.0", "method": method, "params": params})


async def command(client: LanguageClient, name: str, *args: Any) -> Any:
    return await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=name, arguments=list(args))
    )


def close(client: LanguageClient, uri: str) -> None:
    """Closed again, so the open buffers do not grow every later prompt's context."""
    client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )


async def document_text(client: LanguageClient, uri: str) -> str:
    res = await command(client, "nearline.documentText", uri)
    assert "error" not in res, res
    return str(res["text"])


class Healthy:
    """After every bad input: the server answers a normal completion on a normal file."""

    def __init__(self, client: LanguageClient, root: Path) -> None:
        self.client = client
        self.uri = open_doc(client, root / "util.py", "def double(x):\n    return 2 * x\n\ny = ")

    async def check(self) -> None:
        st = await status(self.client)
        assert st["state"] == "ready"
        # A generous limit: this checks liveness, not speed (on a busy machine the model is slow).
        items = await asyncio.wait_for(inline(self.client, self.uri, 3, 4), 300)
        assert isinstance(items, list)


async def test_bad_requests_get_errors_or_empty_answers(
    client: LanguageClient, small_model: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    root: Path = client.root  # type: ignore[attr-defined]
    assert (await wait_ready(client))["state"] == "ready"
    ok = Healthy(client, root)
    await ok.check()

    # Unknown methods: an error for a request, nothing for a notification.
    with pytest.raises(JsonRpcException) as info:
        await raw_request(client, "nearline/noSuchMethod", {})
    assert info.value.code == types.ErrorCodes.MethodNotFound
    raw_notify(client, "nearline/noSuchNotification", {"x": 1})
    raw_notify(client, "$/noSuchThing", None)
    await ok.check()

    # Wrong parameter types: InvalidParams, not silence (pygls alone never answers these).
    doc_id = {"uri": ok.uri}
    for method, params in [
        (types.TEXT_DOCUMENT_INLINE_COMPLETION, {"textDocument": doc_id, "position": {"line": "a", "character": -1}, "context": {"triggerKind": 1}}),
        (types.TEXT_DOCUMENT_INLINE_COMPLETION, {"textDocument": 5, "position": None}),
        (types.TEXT_DOCUMENT_COMPLETION, "not an object"),
        (types.TEXT_DOCUMENT_COMPLETION, {"textDocument": doc_id}),
        (types.WORKSPACE_EXECUTE_COMMAND, {"command": 7, "arguments": "x"}),
    ]:  # fmt: skip
        with pytest.raises(JsonRpcException) as info:
            await raw_request(client, method, params)
        assert info.value.code == types.ErrorCodes.InvalidParams, (method, info.value)
    raw_notify(client, types.TEXT_DOCUMENT_DID_CHANGE, {"textDocument": 3, "contentChanges": "x"})
    raw_notify(client, types.TEXT_DOCUMENT_DID_OPEN, {"textDocument": {"uri": ok.uri}})
    assert await document_text(client, ok.uri) == "def double(x):\n    return 2 * x\n\ny = "
    # Commands with nonsense arguments answer with an error object.
    for name, args in [
        ("nearline.prompt", [{"line": 1}]),
        ("nearline.prompt", [ok.uri, "nope"]),
        ("nearline.prompt", [ok.uri, {"line": "x", "character": 0}]),
        ("nearline.documentText", [5]),
        ("nearline.documentText", []),
        ("nearline.index", [{"limit": "all"}]),
    ]:
        res = await command(client, name, *args)
        assert "error" in res, (name, args, res)
    with pytest.raises(JsonRpcException):
        await command(client, "nearline.noSuchCommand")
    await ok.check()

    # Positions past the end of a line or the file, or inside a surrogate pair: empty.
    emoji = open_doc(client, root / "e.py", "s = '😀'\n")
    for line, ch in [(0, 99), (7, 0), (2, 0), (0, 6), (10**9, 10**9)]:
        assert await inline(client, emoji, line, ch) == [], (line, ch)
        res = await client.text_document_completion_async(
            types.CompletionParams(
                text_document=types.TextDocumentIdentifier(uri=emoji),
                position=types.Position(line=line, character=ch),
            )
        )
        assert res is not None and list(res.items) == []
        assert "error" in await prompt_at(client, emoji, line, ch)
    # An edit past the end of the file lands at its end (what clients mean by it).
    edit(client, emoji, 2, ((5, 3), (9, 9), "t = 1"))
    assert await document_text(client, emoji) == "s = '😀'\nt = 1"
    close(client, emoji)

    # Unopened documents and URIs that are not files: empty; an opened untitled buffer works.
    for uri in [
        "file:///nowhere/x.py",
        "untitled:Untitled-9",
        "http://example.com/a.py",
        "not a uri",
        "",
    ]:
        assert await inline(client, uri, 0, 0) == [], uri
        assert "error" in await prompt_at(client, uri, 0, 0)
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri="untitled:Untitled-1", language_id="python", version=1, text="def add(a, b):\n    return a"
            )
        )
    )  # fmt: skip
    res = await prompt_at(client, "untitled:Untitled-1", 1, 12)
    assert res["prompt"].rstrip().endswith("return a") or "return a<" in res["prompt"]
    assert isinstance(await inline(client, "untitled:Untitled-1", 1, 12), list)
    close(client, "untitled:Untitled-1")
    edit(client, "file:///never/opened.py", 2, ((0, 0), (0, 0), "x"))
    await ok.check()

    # NUL bytes and lone surrogates in the text.
    odd = "a\x00b = '\ud800'\nc = '\udfff' + \x00\nd = "
    odd_uri = open_doc(client, root / "odd.py", odd)
    assert await document_text(client, odd_uri) == odd
    edit(client, odd_uri, 2, ((2, 4), (2, 4), "'\udbff\x00'"))
    assert await document_text(client, odd_uri) == odd + "'\udbff\x00'"
    for line, ch in [(0, 1), (2, 4), (2, 8)]:
        assert isinstance(await inline(client, odd_uri, line, ch), list)
    res = await prompt_at(client, odd_uri, 2, 8)
    assert "\ufffd" in res["prompt"] and "\ud800" not in res["prompt"]
    close(client, odd_uri)
    await ok.check()

    # A burst of 1,000 changes: the text is exactly right afterwards and the server answers.
    burst = open_doc(client, root / "burst.py", "")
    expected = ""
    for i in range(1000):
        ch = "\n" if i % 37 == 36 else "é😀x"[i % 3]
        line = expected.count("\n")
        col = len(expected.rsplit("\n", 1)[-1].encode("utf-16-le")) // 2
        edit(client, burst, i + 2, ((line, col), (line, col), ch))
        expected += ch
    assert await document_text(client, burst) == expected
    close(client, burst)
    await ok.check()

    # One 2 MB line, and a 20 MB document: answered, typed into, prompts within budget.
    long_line = "x = '" + "ab1;" * 500_000 + "'\ny = "
    big = "".join(f"value_{i} = compute({i}, 'item-{i}')  # 漢字\n" for i in range(440_000))
    timings: dict[str, list[float]] = {}
    for name, text in [("2 MB line", long_line), ("20 MB document", big + "z = ")]:
        uri = open_doc(client, root / f"{name.split()[0]}.py", text)
        lines = text.split("\n")
        line, col = len(lines) - 1, len(lines[-1])
        spent = timings.setdefault(name, [])
        for k, ch in enumerate("value"):
            edit(client, uri, k + 2, ((line, col), (line, col), ch))
            col += 1
            t0 = time.perf_counter()
            assert isinstance(await asyncio.wait_for(inline(client, uri, line, col), 300), list)
            spent.append(time.perf_counter() - t0)
        # In the middle of the huge line (the cursor is mid-word there: gated, still answered).
        assert isinstance(await inline(client, uri, 0, 1_000_001), list)
        res = await prompt_at(client, uri, line, col)
        assert res["total_tokens"] <= 2048
        assert res["prompt"].endswith("value") or "value<|fim" in res["prompt"]
        close(client, uri)
    with capfd.disabled():
        for name, spent in timings.items():
            print(f"\n{name}: request after a keystroke, max {max(spent) * 1000:.0f} ms")
    await ok.check()

    # Nothing the client did left a traceback (the server forwards its stderr to ours).
    await asyncio.sleep(0.5)
    err = capfd.readouterr().err
    assert "Traceback" not in err, err[-5000:]
    assert "Error in server" not in json.dumps([m.message for m in client.messages])
