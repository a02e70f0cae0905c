"""The remote engine end to end: the real Nearline server over LSP (pytest-lsp), generating on a
real OpenAI-compatible server started here on 127.0.0.1 with the small model —
llama-cpp-python's ``llama_cpp.server`` always, llama.cpp's C++ ``llama-server`` when it has
been built (``bash scripts/build-llama-server.sh``)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from ..conftest import SAMPLE, SERVER_CMD, SMALL_ID, server_env
from ..servers import Front, Relayed, Served, ServedPool, free_port, front
from .conftest import edit, init_params, inline, open_doc, prompt_at, status, wait_ready

pytestmark = pytest.mark.model

MAX_TOKENS = 256


def remote_options(url: str, **engine: Any) -> dict[str, Any]:
    return {
        "model": {"id": SMALL_ID},
        # Generous limits: this CPU is shared and slow; the limits themselves are unit-tested.
        "engine": {"backend": "openai", "url": url, "timeoutMs": 300_000, **engine},
        # No next-line speculation: these tests count the requests the server receives.
        "completion": {
            "debounceMs": 0,
            "timeoutMs": 120_000,
            "maxTokens": MAX_TOKENS,
            "speculate": False,
        },
    }


@pytest.fixture(scope="module", params=["llama_cpp.server", "llama-server"])
def served(request: pytest.FixtureRequest, served_pool: ServedPool) -> Served:
    return served_pool.get(request.param)


@pytest.fixture(scope="module")
def py_served(served_pool: ServedPool) -> Served:
    return served_pool.get("llama_cpp.server")


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER_CMD, server_env=server_env()))
async def remote(lsp_client: LanguageClient, served: Served):
    await lsp_client.initialize_session(init_params(options=remote_options(served.url)))
    yield
    await lsp_client.shutdown_session()


async def requests_sent(client: LanguageClient) -> int:
    return int((await status(client))["engine"]["requests"])


async def test_suggestions_come_back_from_the_remote_server(
    remote: LanguageClient, served: Served, tmp_path: Path
) -> None:
    client = remote
    st = await wait_ready(client)
    assert st["state"] == "ready", st
    assert st["engine"]["backend"] == "openai" and st["engine"]["url"] == served.url + "/v1"
    # The sample project, as in the local tests: repository context is composed here.
    src = (SAMPLE / "inventory" / "report.py").read_text()
    head = src[: src.index("    plan = {}")] + "    plan = "
    lines = head.split("\n")
    uri = open_doc(client, SAMPLE / "inventory" / "report.py", head)
    res = await prompt_at(client, uri, len(lines) - 1, len(lines[-1]))
    assert any(p["kind"] == "repo-file" for p in res["parts"]), res["parts"]
    items = await inline(client, uri, len(lines) - 1, len(lines[-1]))
    assert items, "the remote server gave no suggestion"
    assert items[0].insert_text.strip() and "\n" not in items[0].insert_text
    st = await status(client)
    assert any(r["source"] == "model" for r in st["recent"])
    assert st["engine"]["failures"] == 0 and st["engine"]["last_error"] is None

    # Typing through the suggestion is answered here, without asking the server again.
    small = open_doc(client, tmp_path / "add.py", "def add(a, b):\n    return a")
    first = await inline(client, small, 1, 12)
    assert first, "the remote server gave no suggestion"
    shown = first[0].insert_text
    assert len(shown) > 1, shown
    sent = await requests_sent(client)
    edit(client, small, 2, ((1, 12), (1, 12), shown[0]))
    again = await inline(client, small, 1, 13)
    assert again and shown.endswith(again[0].insert_text), (shown, again)
    assert await requests_sent(client) == sent
    assert (await status(client))["stats"]["typing_through"] >= 1
    assert not [m for m in client.messages if m.type == types.MessageType.Error]


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER_CMD, server_env=server_env()))
async def remote_watched(lsp_client: LanguageClient, served: Served):
    """Like ``remote``, through a relay that logs every stream (``lsp_client.front``), and
    without warm-up requests (their own hang-ups would blur what a cancel does)."""
    with front(served.url) as f:
        lsp_client.front = f  # type: ignore[attr-defined]
        options = remote_options(f.url)
        # No time limit that could end the generation before max_tokens: only the cancel may.
        options["completion"].update(warmUp=False, timeoutMs=600_000)
        options["engine"]["timeoutMs"] = 600_000
        await lsp_client.initialize_session(init_params(options=options))
        yield
        await lsp_client.shutdown_session()


async def test_cancel_request_closes_the_remote_stream(
    remote_watched: LanguageClient, served: Served, tmp_path: Path
) -> None:
    client = remote_watched
    relay: Front = client.front  # type: ignore[attr-defined]
    await wait_ready(client)
    predicted = served.metric("tokens_predicted_total") if served.kind == "llama-server" else 0
    hangups = served.log_text().count("Disconnected from client")
    # The small model continues this list on one line until max_tokens: a long generation.
    text = "values = [" + ", ".join(str(i) for i in range(1, 40)) + ","
    uri = open_doc(client, tmp_path / "long.py", text)
    params = types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=0, character=len(text)),
        context=types.InlineCompletionContext(
            trigger_kind=types.InlineCompletionTriggerKind.Invoked
        ),
    )
    fut = asyncio.ensure_future(
        client.protocol.send_request_async(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id="remote-cancel"
        )
    )

    def generating() -> Relayed | None:
        return next(
            (r for r in relay.streams if r.body.get("max_tokens") == MAX_TOKENS and r.events >= 3),
            None,
        )

    for _ in range(3000):
        if (stream := generating()) is not None:
            break
        await asyncio.sleep(0.05)
    assert stream is not None, relay.streams
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="remote-cancel"))
    with pytest.raises(Exception) as info:
        await asyncio.wait_for(fut, 60)
    assert "cancel" in str(info.value).lower() or getattr(info.value, "code", None) == -32800
    # The next request is served (the C++ server has one slot: it would wait for the whole
    # abandoned generation if that went on).
    small = open_doc(client, tmp_path / "next.py", "def add(a, b):\n    return a")
    assert await inline(client, small, 1, 12)
    # Nearline hung up mid-stream, having received far fewer tokens than it asked for...
    assert stream.client_gone and not stream.upstream_done, stream
    assert stream.events < MAX_TOKENS
    assert any(r["source"] == "cancelled" for r in (await status(client))["recent"])
    # ...and the server saw the stream closed and stopped generating.
    if served.kind == "llama-server":
        spent = served.metric("tokens_predicted_total") - predicted
        assert spent < MAX_TOKENS, spent
    else:
        for _ in range(100):
            if served.log_text().count("Disconnected from client") > hangups:
                break
            await asyncio.sleep(0.1)
        assert served.log_text().count("Disconnected from client") == hangups + 1


# -- failures: refused, HTTP 500, garbage; one message each, empty answers, then recovery --------

NO_MODELS = {"NEARLINE_MODELS_DIR": "/nonexistent/nearline-models"}
REFUSED_PORT = free_port()


@pytest_lsp.fixture(
    config=ClientServerConfig(server_command=SERVER_CMD, server_env=server_env(**NO_MODELS))
)
async def broken(lsp_client: LanguageClient):
    # Nothing listens on this port yet: the test starts a server there later.
    url = f"http://127.0.0.1:{REFUSED_PORT}"
    await lsp_client.initialize_session(init_params(options=remote_options(url)))
    yield
    await lsp_client.shutdown_session()


def errors(client: LanguageClient) -> list[str]:
    return [m.message for m in client.messages if m.type == types.MessageType.Error]


async def until_suggestion(client: LanguageClient, uri: str, line: int, col: int) -> list[Any]:
    """Ask until the engine's backoff lets a request through and it answers."""
    for _ in range(300):
        items = await inline(client, uri, line, col)
        if items:
            return items
        await asyncio.sleep(0.2)
    raise AssertionError(f"no recovery: {(await status(client))['engine']}")


async def test_unreachable_broken_and_recovered_server(
    broken: LanguageClient, py_served: Served, tmp_path: Path
) -> None:
    client = broken
    st = await wait_ready(client)
    # The engine does not need the model's weights: it is ready before the server even is.
    assert st["state"] == "ready", st
    # Without the GGUF here, budgets are estimated, and the user is told once how to fix that.
    for _ in range(100):
        notes = [m.message for m in client.messages if "estimated" in m.message]
        if notes:
            break
        await asyncio.sleep(0.05)
    assert len(notes) == 1 and f"nearline models pull {SMALL_ID}" in notes[0], notes

    uri = open_doc(client, tmp_path / "add.py", "def add(a, b):\n    return a")
    # Connection refused: empty answers and exactly one message, however often it is asked.
    for _ in range(4):
        assert await inline(client, uri, 1, 12) == []
        await asyncio.sleep(0.3)
    assert len(errors(client)) == 1, errors(client)
    assert "cannot be reached" in errors(client)[0]
    assert f"127.0.0.1:{REFUSED_PORT}" in errors(client)[0]
    st = await status(client)
    assert st["state"] == "ready" and st["engine"]["failures"] >= 1

    with front(py_served.url, port=REFUSED_PORT) as f:
        # The server comes up: suggestions come back without restarting anything.
        await until_suggestion(client, uri, 1, 12)
        assert (await status(client))["engine"]["failures"] == 0

        for mode, words in (("500", "HTTP 500: the model crashed"), ("garbage", "not JSON")):
            f.mode = mode
            shown = len(errors(client))
            uri2 = open_doc(client, tmp_path / f"{mode}.py", f"# {mode}\nx = 1\ny = x +")
            for _ in range(3):
                assert await inline(client, uri2, 2, 7) == []
                await asyncio.sleep(0.3)
            assert f.hits.get(mode, 0) >= 1
            new = errors(client)[shown:]
            assert len(new) == 1 and words in new[0], new
            f.mode = "proxy"
            await until_suggestion(client, uri2, 2, 7)
    assert (await status(client))["state"] == "ready"
