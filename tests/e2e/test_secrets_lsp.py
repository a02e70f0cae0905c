"""Secrets through the real server: a project planting every kind of secret the redactor knows
(tests/secretfixture.py) is the workspace; its files are opened in the editor (and one unsaved
buffer full of secrets that exist nowhere on disk), and no piece of any planted secret may appear

* in ``nearline.prompt``'s prompt, at the start, middle and end of every line of every file, or
* in what reaches the engine: every prompt the server sends to its completion server, for
  inline completions at the end and the middle of lines (warm-ups included).

The server counts with the real tokenizer of the default model (its GGUF is read, the model is
not loaded), with the default budget and with a tiny one whose window cuts through keys and
tokens. The engine is the remote one (``engine.backend: openai``) talking to a recording stub on
127.0.0.1: the prompt it receives is the string the server built for generation, the same
``GenerationRequest`` the local engine tokenizes. Secret files themselves (``.env``, keys)
get no completion and nothing of them reaches a prompt. Next-line speculation, which builds a
prompt from the document as if the shown suggestion were accepted, is tested on its own.
tests/unit/test_secrets_adversarial.py runs many more positions in-process, with estimated
token counts."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from nearline.workspace.index import language_for

from ..conftest import DEFAULT_ID, SERVER_CMD, server_env
from ..secretfixture import Planted, leaks, make_project
from .conftest import init_params, inline, open_doc, prompt_at, status, wait_indexed, wait_ready

pytestmark = pytest.mark.default_model

# Files that must never be read: the index skips them and they get no completions.
SECRET_FILES = (".env", ".env.local", "id_rsa", "server.pem", ".netrc", "credentials.json")


class RecordingEngine:
    """An OpenAI-compatible completions server that keeps every prompt it is sent and answers
    each with one short line."""

    def __init__(self) -> None:
        self.prompts: list[str] = []
        self._lock = threading.Lock()
        engine = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                self._reply("application/json", b'{"data": [{"id": "stub", "owned_by": "stub"}]}')

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                with engine._lock:
                    engine.prompts.append(str(body.get("prompt", "")))
                chunk = {"choices": [{"text": "return None", "index": 0, "finish_reason": "stop"}]}
                self._reply(
                    "text/event-stream", f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
                )

            def _reply(self, ctype: str, data: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def taken(self) -> list[str]:
        with self._lock:
            out, self.prompts = self.prompts, []
        return out

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def engine() -> Iterator[RecordingEngine]:
    rec = RecordingEngine()
    yield rec
    rec.stop()


@pytest.fixture
def planted(tmp_path: Path) -> Planted:
    return make_project(tmp_path / "shop")


def _options(url: str, budget: int | None, speculate: bool) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "model": {"id": DEFAULT_ID},
        "engine": {"backend": "openai", "url": url, "timeoutMs": 60_000},
        "completion": {
            "debounceMs": 0,
            "timeoutMs": 60_000,
            "suffixLines": 2,
            "speculate": speculate,
        },
    }
    if budget is not None:
        opts["context"] = {"budgetTokens": budget}
    return opts


@pytest_lsp.fixture(
    params=[None, 160],
    ids=["default-budget", "budget-160"],
    config=ClientServerConfig(server_command=SERVER_CMD, server_env=server_env()),
)
async def client(
    lsp_client: LanguageClient,
    request: pytest.FixtureRequest,
    engine: RecordingEngine,
    planted: Planted,
    default_model: Path,
):
    # Next-line speculation has a test of its own below (its background requests would be
    # checked here too, but whether one runs depends on timing).
    await lsp_client.initialize_session(
        init_params(root=planted.root, options=_options(engine.url, request.param, False))
    )
    yield
    await lsp_client.shutdown_session()


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER_CMD, server_env=server_env()))
async def speculating(
    lsp_client: LanguageClient, engine: RecordingEngine, planted: Planted, default_model: Path
):
    await lsp_client.initialize_session(
        init_params(root=planted.root, options=_options(engine.url, None, True))
    )
    yield
    await lsp_client.shutdown_session()


def _columns(line: str) -> list[int]:
    return sorted({0, len(line) // 3, len(line) // 2, len(line)})


async def test_no_planted_secret_reaches_the_prompt_or_the_engine(
    client: LanguageClient, engine: RecordingEngine, planted: Planted
) -> None:
    st = await wait_ready(client, timeout=60)
    assert st["state"] == "ready", st
    # The budget is counted with the default model's own vocabulary, not estimated.
    assert st["engine"]["exact_tokens"] is True, st["engine"]
    idx = await wait_indexed(client)
    assert idx["state"] == "ready", idx
    root = planted.root
    needles = planted.needles

    # An unsaved buffer holding every planted secret, which the index only has from the editor.
    scratch = root / "app" / "scratch.py"
    scratch_text = "".join(
        (root / rel).read_text(encoding="utf-8")
        for rel in ("app/config.py", "app/keys.py", "app/client.js", "local_settings.py")
    )
    documents = [
        (path, path.read_text(encoding="utf-8"))
        for path in planted.files
        if path.relative_to(root).as_posix() not in SECRET_FILES
    ] + [(scratch, scratch_text)]
    uris = {}
    for path, text in documents:
        uris[path] = open_doc(client, path, text, language_for(path.name))

    prompts = 0
    for path, text in documents:
        rel = path.relative_to(root).as_posix()
        for n, line in enumerate(text.split("\n")):
            for col in _columns(line):
                res = await prompt_at(client, uris[path], n, col)
                assert "prompt" in res, res
                found = leaks(res["prompt"], needles)
                assert not found, f"nearline.prompt {rel}:{n + 1}:{col + 1} leaks {found}"
                prompts += 1
    assert prompts > 1000

    # What reaches the engine: inline completions at the end and the middle of lines.
    engine.taken()
    asked = 0
    leaked: list[str] = []
    for path, text in documents:
        rel = path.relative_to(root).as_posix()
        lines = text.split("\n")
        # Every line of the small files; every 7th of the long ones (the windows of a tiny
        # budget still start in every place the loop above tried, through nearline.prompt).
        step = 1 if len(lines) < 120 else 7
        for n in range(0, len(lines), step):
            for col in sorted({len(lines[n]) // 2, len(lines[n])}):
                await inline(client, uris[path], n, col)
                asked += 1
                # (a speculation for this position may still be on its way: it is checked
                # with the next position's traffic, and the last ones after the loop)
                for sent in engine.taken():
                    if found := leaks(sent, needles):
                        leaked.append(f"{rel}:{n + 1}:{col + 1} {found}")
    await asyncio.sleep(0.5)
    leaked += [
        f"after the loop {found}" for sent in engine.taken() if (found := leaks(sent, needles))
    ]
    assert not leaked, leaked
    st = await status(client)
    # The stub's answers were used (the check above looked at real traffic, not at nothing).
    assert st["stats"]["model"] >= asked // 4, (asked, st["stats"])

    # A secret file open in the editor: no completion, and no piece of it in any prompt (its
    # warm-up reads a prompt with nothing of the file in it).
    for rel in SECRET_FILES:
        path = root / rel
        text = path.read_text(encoding="utf-8")
        uri = open_doc(client, path, text, language_for(rel))
        for n, line in enumerate(text.split("\n")):
            res = await prompt_at(client, uri, n, len(line))
            assert not leaks(res.get("prompt", ""), needles), rel
            assert await inline(client, uri, n, len(line)) == [], rel
        await asyncio.sleep(0.2)
        assert all(not leaks(sent, needles) for sent in engine.taken()), rel
        client.text_document_did_close(
            types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
        )


async def test_speculation_sends_no_planted_secret(
    speculating: LanguageClient, engine: RecordingEngine, planted: Planted
) -> None:
    client = speculating
    st = await wait_ready(client, timeout=60)
    assert st["state"] == "ready", st
    await wait_indexed(client)
    root = planted.root
    needles = planted.needles
    path = root / "scripts" / "deploy.sh"
    text = path.read_text(encoding="utf-8")
    uri = open_doc(client, path, text, "shellscript")
    lines = text.split("\n")
    leaked = []
    for n, line in enumerate(lines):
        if not line.startswith(("secret=", "export HF_TOKEN=")):
            continue
        engine.taken()
        # The stub's line is shown at the end of the secret's line; the server then computes
        # the line after it in the background, as if it were accepted.
        assert await inline(client, uri, n, len(line)), line
        for _ in range(100):
            recent = (await status(client))["recent"]
            if recent and recent[-1]["source"] == "speculation":
                break
            await asyncio.sleep(0.05)
        sent = engine.taken()
        assert len(sent) >= 2, sent  # the request and its speculation
        leaked += [f"{n + 1}: {found}" for s in sent if (found := leaks(s, needles))]
    assert leaked == []
