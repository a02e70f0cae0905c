"""The real server over stdio with a real LSP client (pytest-lsp) and the real llama.cpp
runtime with the small model."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from ..conftest import SERVER_CMD, SMALL_ID, server_env
from .conftest import (
    client_fixture,
    edit,
    init_params,
    inline,
    open_doc,
    prompt_at,
    status,
    wait_indexed,
    wait_ready,
)

pytestmark = pytest.mark.model

SMALL = {"model": {"id": SMALL_ID}, "completion": {"debounceMs": 0, "timeoutMs": 60000}}


async def test_capabilities_advertised(client: LanguageClient, small_model: Path) -> None:
    caps = client.init_result.capabilities  # type: ignore[attr-defined]
    assert caps.inline_completion_provider is not None
    assert caps.completion_provider is not None
    assert caps.position_encoding == types.PositionEncodingKind.Utf16
    sync = caps.text_document_sync
    assert isinstance(sync, types.TextDocumentSyncOptions)
    assert sync.change == types.TextDocumentSyncKind.Incremental
    assert "nearline.prompt" in (caps.execute_command_provider.commands or [])


async def test_inline_completion_shape(
    client: LanguageClient, small_model: Path, tmp_path: Path
) -> None:
    st = await wait_ready(client)
    assert st["state"] == "ready", st
    text = "def add(a, b):\n    return a\n"
    uri = open_doc(client, tmp_path / "add.py", text)
    items = await inline(client, uri, 1, 12)
    assert items, "the model gave no suggestion"
    for it in items:
        assert isinstance(it.insert_text, str) and it.insert_text.strip()
        assert "\n" not in it.insert_text
        assert it.range is not None
        assert it.range.start.line == it.range.end.line == 1
        assert it.range.start.character == 12


async def test_completion_item_with_text_edit(
    client: LanguageClient, small_model: Path, tmp_path: Path
) -> None:
    await wait_ready(client)
    text = "import os\n\n\ndef home():\n    return os.path.expa\n"
    uri = open_doc(client, tmp_path / "h.py", text)
    res = await client.text_document_completion_async(
        types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=4, character=23),
        )
    )
    assert isinstance(res, types.CompletionList) and res.is_incomplete
    assert len(res.items) == 1
    item = res.items[0]
    assert isinstance(item.text_edit, types.TextEdit)
    # Replaces the word before the cursor and starts with it, so client-side filtering keeps it.
    assert item.text_edit.range.start == types.Position(line=4, character=19)
    assert item.text_edit.range.end == types.Position(line=4, character=23)
    assert item.text_edit.new_text.startswith("expa")
    assert item.filter_text == item.text_edit.new_text
    assert "\n" not in item.text_edit.new_text


async def test_incremental_sync_and_utf16_positions(
    client: LanguageClient, small_model: Path, tmp_path: Path
) -> None:
    """Edits at UTF-16 positions after astral and CJK characters land where the client meant."""
    await wait_ready(client)
    text = "s = '😀漢字'\nt = 1\n"
    uri = open_doc(client, tmp_path / "u.py", text)
    # '😀' is 2 UTF-16 units: "s = '😀漢字" is 9 units, insert before the closing quote.
    edit(client, uri, 2, ((0, 9), (0, 9), "é"), ((1, 4), (1, 5), "len(s"))
    res = await prompt_at(client, uri, 1, 9)
    assert res["document"] == "s = '😀漢字é'\nt = len(s\n"
    # The prompt's file part ends exactly at the cursor (after "len(s").
    prefix = next(p for p in res["parts"] if p["kind"] == "prefix")
    assert prefix["tokens"] > 0
    assert "t = len(s<|fim_suffix|>" in res["prompt"] or res["prompt"].endswith("t = len(s")
    items = await inline(client, uri, 1, 9)
    for it in items:
        assert it.range.start == types.Position(line=1, character=9)
    # A position inside a surrogate pair or past the line's end gets an empty answer, not an error.
    assert await inline(client, uri, 0, 30) == []
    assert await inline(client, uri, 9, 0) == []


async def test_unopened_document_and_bad_command_args(
    client: LanguageClient, small_model: Path
) -> None:
    await wait_ready(client)
    assert await inline(client, "file:///nowhere/x.py", 0, 0) == []
    res = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="nearline.prompt", arguments=["oops"])
    )
    assert "error" in res
    # The server is still alive and answers.
    assert (await status(client))["state"] == "ready"


big_client = client_fixture(
    {
        "model": {"id": SMALL_ID, "contextLength": 8192},
        "context": {"budgetTokens": 8000, "composer": "file-level"},
        "completion": {"debounceMs": 0, "timeoutMs": 120000, "maxTokens": 200},
    }
)


async def test_cancel_request_stops_generation(
    big_client: LanguageClient, small_model: Path, tmp_path: Path
) -> None:
    client = big_client
    await wait_ready(client)
    # A long prompt makes a cold evaluation that takes seconds, so the cancel lands mid-work.
    body = "".join(f"def function_{i}(x):\n    return x * {i} + {i % 7}\n\n" for i in range(700))
    text = body + "value = function_"
    lines = text.split("\n")
    uri = open_doc(client, tmp_path / "long.py", text)
    params = types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=len(lines) - 1, character=len(lines[-1])),
        context=types.InlineCompletionContext(
            trigger_kind=types.InlineCompletionTriggerKind.Invoked
        ),
    )
    fut = asyncio.ensure_future(
        client.protocol.send_request_async(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id="cancel-me"
        )
    )
    # Cancel once the server is working on it (status is answered after the request is taken).
    for _ in range(200):
        if (await status(client))["inflight"] >= 1:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    t0 = time.monotonic()
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="cancel-me"))
    with pytest.raises(Exception) as info:
        await asyncio.wait_for(fut, 30)
    assert "cancel" in str(info.value).lower() or getattr(info.value, "code", None) == -32800
    # The worker is free again right away: a tiny request answers without waiting for the
    # cancelled one to finish its prompt.
    small = open_doc(client, tmp_path / "small.py", "x = 1\ny = x +")
    await inline(client, small, 1, 7)
    elapsed = time.monotonic() - t0
    st = await status(client)
    assert st["stats"]["cancelled"] >= 1
    cancelled = [r for r in st["recent"] if r["source"] == "cancelled"]
    assert cancelled
    # Generous bound: the cancelled prompt alone would take far longer than this.
    assert elapsed < 15, elapsed


utf8_client = client_fixture(SMALL, encodings=["utf-8", "utf-16"])


async def test_utf8_position_encoding(
    utf8_client: LanguageClient, small_model: Path, tmp_path: Path
) -> None:
    assert utf8_client.init_result.capabilities.position_encoding == "utf-8"  # type: ignore[attr-defined]
    await wait_ready(utf8_client)
    uri = open_doc(utf8_client, tmp_path / "u8.py", "s = '😀'\nt = \n")
    # In UTF-8 the emoji is 4 units: "s = '😀" is 9 bytes.
    edit(utf8_client, uri, 2, ((0, 9), (0, 9), "ü"))
    res = await prompt_at(utf8_client, uri, 1, 4)
    assert res["document"] == "s = '😀ü'\nt = \n"


bad_settings_client = client_fixture(
    {
        "model": {"id": SMALL_ID, "ropeScaling": "sideways"},
        "completion": {"maxTokens": "many", "debounceMs": 0, "timeoutMs": 60000},
        "typo": 1,
    }
)


async def test_bad_settings_are_reported_and_defaults_used(
    bad_settings_client: LanguageClient, small_model: Path, tmp_path: Path
) -> None:
    client = bad_settings_client
    st = await wait_ready(client)
    assert st["state"] == "ready"
    assert st["settings"]["completion"]["maxTokens"] == 48
    assert st["settings"]["model"]["ropeScaling"] is None
    text = " ".join(m.message for m in client.messages)
    for key in ("nearline.completion.maxTokens", "nearline.model.ropeScaling", "nearline.typo"):
        assert key in text, text
    uri = open_doc(client, tmp_path / "a.py", "def add(a, b):\n    return a")
    assert await inline(client, uri, 1, 12)


async def test_did_change_configuration(client: LanguageClient, small_model: Path) -> None:
    await wait_ready(client)
    client.set_configuration(
        {"model": {"id": SMALL_ID}, "completion": {"maxTokens": 5, "debounceMs": 0}},
        section="nearline",
    )
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))
    for _ in range(100):
        st = await status(client)
        if st["settings"]["completion"]["maxTokens"] == 5:
            break
        await asyncio.sleep(0.05)
    assert st["settings"]["completion"]["maxTokens"] == 5
    # Settings pushed directly (clients without workspace/configuration) work too.
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(
            settings={"nearline": {"model": {"id": SMALL_ID}, "completion": {"maxTokens": 9}}}
        )
    )
    for _ in range(100):
        st = await status(client)
        if st["settings"]["completion"]["maxTokens"] == 9:
            break
        await asyncio.sleep(0.05)
    assert st["settings"]["completion"]["maxTokens"] == 9
    assert st["state"] == "ready"


missing_model_client = client_fixture(
    {"completion": {"debounceMs": 0}}, env={"NEARLINE_MODELS_DIR": "/nonexistent/nearline-models"}
)


async def test_missing_model_message_and_empty_answers(
    missing_model_client: LanguageClient, tmp_path: Path
) -> None:
    client = missing_model_client
    st = await wait_ready(client)
    assert st["state"] == "error"
    msgs = [m.message for m in client.messages if m.type == types.MessageType.Error]
    assert len(msgs) == 1
    assert "nearline models pull qwen2.5-coder-0.5b-instruct-q4_k_m" in msgs[0]
    uri = open_doc(client, tmp_path / "a.py", "x = ")
    assert await inline(client, uri, 0, 4) == []
    # Asking again does not repeat the message.
    assert await inline(client, uri, 0, 4) == []
    assert len([m for m in client.messages if m.type == types.MessageType.Error]) == 1


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER_CMD, server_env=server_env()))
async def corrupt_model_client(
    lsp_client: LanguageClient, tmp_path_factory: pytest.TempPathFactory
):
    bad = tmp_path_factory.mktemp("m") / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 4096)
    await lsp_client.initialize_session(
        init_params(options={"model": {"path": str(bad)}, "completion": {"debounceMs": 0}})
    )
    yield
    await lsp_client.shutdown_session()


async def test_corrupt_model_file(corrupt_model_client: LanguageClient, tmp_path: Path) -> None:
    client = corrupt_model_client
    st = await wait_ready(client)
    assert st["state"] == "error"
    assert "broken.gguf" in (st["error"] or "")
    uri = open_doc(client, tmp_path / "a.py", "x = ")
    assert await inline(client, uri, 0, 4) == []


async def test_cancel_that_overtakes_its_request(
    client: LanguageClient, small_model: Path, tmp_path: Path
) -> None:
    """A cancel that arrives before its request still cancels it (pygls alone would drop it)."""
    await wait_ready(client)
    uri = open_doc(client, tmp_path / "e.py", "x = 1\ny = x +")
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="early-1"))
    params = types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=1, character=7),
        context=types.InlineCompletionContext(
            trigger_kind=types.InlineCompletionTriggerKind.Invoked
        ),
    )
    with pytest.raises(Exception) as info:
        await asyncio.wait_for(
            client.protocol.send_request_async(
                types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id="early-1"
            ),
            30,
        )
    assert "cancel" in str(info.value).lower()
    assert (await status(client))["state"] == "ready"


async def test_typing_on_the_line_after_a_final_newline(
    client: LanguageClient, tmp_path: Path
) -> None:
    """The empty line after a final newline is a real position (pygls alone mis-converts it)."""
    uri = open_doc(client, tmp_path / "eof.py", "a = 1\n")
    res = await prompt_at(client, uri, 1, 0)
    assert res["document"] == "a = 1\n" and "error" not in res
    edit(client, uri, 2, ((1, 0), (1, 0), "b = a"))
    res = await prompt_at(client, uri, 1, 5)
    assert res["document"] == "a = 1\nb = a"
    assert "b = a<|fim_suffix|>" in res["prompt"] or res["prompt"].endswith("b = a")


async def test_empty_configuration_change_keeps_initialization_options(
    client: LanguageClient, small_model: Path
) -> None:
    """Eglot sends didChangeConfiguration with {} after connecting: that means "ask me", and
    must not throw away the initializationOptions."""
    await wait_ready(client)
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={}))
    await asyncio.sleep(0.5)
    st = await status(client)
    assert st["settings"]["model"]["id"] == SMALL_ID
    assert st["settings"]["completion"]["timeoutMs"] == 60000
    assert st["state"] == "ready"


async def test_accept_command_counts_locally(
    client: LanguageClient, small_model: Path, tmp_path: Path
) -> None:
    await wait_ready(client)
    uri = open_doc(client, tmp_path / "acc.py", "def add(a, b):\n    return a")
    items = await inline(client, uri, 1, 12)
    assert items and items[0].command is not None
    cmd = items[0].command
    assert cmd.command == "nearline.accepted"
    # The client runs the item's command when the user accepts the suggestion.
    ok = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=cmd.command, arguments=cmd.arguments)
    )
    assert ok is True
    again = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=cmd.command, arguments=cmd.arguments)
    )
    assert again is False  # one accept per suggestion


async def test_warm_up_on_open_makes_the_first_request_warm(
    client: LanguageClient, small_model: Path, tmp_path: Path
) -> None:
    await wait_ready(client)
    # The repository context must be final first, or the request's prompt differs from the
    # warmed one (the index finishing later changes it, as it should).
    await wait_indexed(client)
    body = "".join(f"def helper_{i}(x):\n    return x + {i}\n\n" for i in range(40))
    text = body + "total = helper_"
    uri = open_doc(client, tmp_path / "warm.py", text)
    for _ in range(2400):
        st = await status(client)
        if st["stats"]["warmups"] >= 1:
            break
        await asyncio.sleep(0.05)
    warm = [r for r in st["recent"] if r["source"] == "warm-up"]
    assert warm and warm[-1]["evaluated"] > 100
    lines = text.split("\n")
    await inline(client, uri, len(lines) - 1, len(lines[-1]))
    runs = [r for r in (await status(client))["recent"] if r["source"] == "model"]
    # The whole prompt was read by the warm-up: the request itself reads almost nothing.
    assert runs[-1]["evaluated"] <= 3 < runs[-1]["prompt"]


async def _wait_warmups(client: LanguageClient, n: int) -> dict[str, Any]:
    for _ in range(2400):
        st = await status(client)
        if st["stats"]["warmups"] >= n:
            return st
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {n} warm-ups: {st['stats']}")


async def test_focus_restores_a_documents_saved_state(
    client: LanguageClient, small_model: Path, tmp_path: Path
) -> None:
    """Open A, then B (A's KV state is saved on the way), then tell the server A is active
    again: its state comes back from memory instead of A's prompt being read again."""
    await wait_ready(client)
    await wait_indexed(client)
    a_text = "".join(f"def alpha_{i}(x):\n    return x * {i}\n\n" for i in range(30)) + "y = alpha_"
    b_text = "".join(f"class Beta{i}:\n    size = {i}\n\n" for i in range(30)) + "z = Beta"
    a_uri = open_doc(client, tmp_path / "a.py", a_text)
    await _wait_warmups(client, 1)
    open_doc(client, tmp_path / "b.py", b_text)
    await _wait_warmups(client, 2)
    a_lines = a_text.split("\n")
    end = {"line": len(a_lines) - 1, "character": len(a_lines[-1])}
    client.protocol.notify("nearline/didFocus", {"textDocument": {"uri": a_uri}, "position": end})
    st = await _wait_warmups(client, 3)
    warm = [r for r in st["recent"] if r["source"] == "warm-up"]
    assert warm[0]["evaluated"] > 100 and warm[1]["evaluated"] > 100  # both read cold
    assert warm[2]["evaluated"] <= 3  # A restored: nothing to read
    cache = st["engine"]["state_cache"]
    assert cache["saved"] >= 2 and cache["restored"] >= 1
    await inline(client, a_uri, end["line"], end["character"])
    runs = [r for r in (await status(client))["recent"] if r["source"] == "model"]
    assert runs[-1]["evaluated"] <= 3 < runs[-1]["prompt"]


async def test_next_line_is_ready_when_a_suggestion_is_accepted(
    client: LanguageClient, small_model: Path, tmp_path: Path
) -> None:
    """While a suggestion is on screen the server computes the next line as if it were
    accepted; accepting it and pressing Enter is then answered without running the model."""
    await wait_ready(client)
    text = "".join(f"value_{i} = {i}\n" for i in range(1, 9)) + "value_9 = "
    uri = open_doc(client, tmp_path / "spec.py", text)
    items = await inline(client, uri, 8, 10)
    assert items
    first = items[0].insert_text
    assert isinstance(first, str) and first.strip()
    spec: list[dict[str, Any]] = []
    for _ in range(1200):
        st = await status(client)
        spec = [r for r in st["recent"] if r["source"] == "speculation"]
        if spec:
            break
        await asyncio.sleep(0.05)
    assert spec and not spec[-1]["preempted"] and spec[-1]["generated"] > 0
    models = st["stats"]["model"]
    # Accept (insert the suggestion) and press Enter.
    edit(client, uri, 2, ((8, 10), (8, 10), first + "\n"))
    nxt = await inline(client, uri, 9, 0)
    after = await status(client)
    assert nxt and isinstance(nxt[0].insert_text, str) and nxt[0].insert_text.strip()
    assert after["stats"]["speculated"] == 1
    assert after["stats"]["model"] == models  # no model run for the new line
