"""A small LSP client that drives ``nearline serve`` the way an editor does: used by the demo and
the latency benchmark (tests use pytest-lsp)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient
from pygls.uris import from_fs_path


@dataclass
class Answer:
    text: str | None
    latency_s: float


def client_capabilities() -> types.ClientCapabilities:
    return types.ClientCapabilities(
        general=types.GeneralClientCapabilities(
            position_encodings=[types.PositionEncodingKind.Utf16]
        ),
        text_document=types.TextDocumentClientCapabilities(
            synchronization=types.TextDocumentSyncClientCapabilities(),
            inline_completion=types.InlineCompletionClientCapabilities(),
            completion=types.CompletionClientCapabilities(),
        ),
        window=types.WindowClientCapabilities(work_done_progress=True),
    )


class EditorSession:
    """One server process, one workspace; documents edited by typing."""

    def __init__(self, root: Path, settings: dict[str, Any] | None = None,
                 server_cmd: Sequence[str] | None = None, stderr_path: Path | None = None) -> None:  # fmt: skip
        self.root = root.resolve()
        self.settings = settings or {}
        self.server_cmd = list(server_cmd or [sys.executable, "-m", "nearline", "serve"])
        self.client = LanguageClient("nearline-demo", "0")
        self.messages: list[str] = []
        self.versions: dict[str, int] = {}
        self.texts: dict[str, str] = {}
        self.stderr_path = stderr_path
        self._drain: asyncio.Task[None] | None = None

        @self.client.feature(types.WINDOW_SHOW_MESSAGE)
        def _show(params: types.ShowMessageParams) -> None:
            self.messages.append(params.message)

        @self.client.feature(types.WINDOW_LOG_MESSAGE)
        def _log(params: types.LogMessageParams) -> None:
            pass

        @self.client.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
        def _progress(params: types.WorkDoneProgressCreateParams) -> None:
            return None

        @self.client.feature(types.PROGRESS)
        def _on_progress(params: types.ProgressParams) -> None:
            pass

        @self.client.feature(types.WORKSPACE_CONFIGURATION)
        def _config(params: types.ConfigurationParams) -> list[Any]:
            return [self.settings for _ in params.items]

    async def start(self) -> None:
        await self.client.start_io(*self.server_cmd, env={**os.environ})
        proc = self.client._server
        if proc is not None and proc.stderr is not None:
            self._drain = asyncio.create_task(self._drain_stderr(proc.stderr))
        uri = from_fs_path(str(self.root)) or ""
        await self.client.initialize_async(
            types.InitializeParams(
                capabilities=client_capabilities(),
                root_uri=uri,
                workspace_folders=[types.WorkspaceFolder(uri=uri, name=self.root.name)],
                initialization_options=self.settings,
            )
        )
        self.client.initialized(types.InitializedParams())

    async def _drain_stderr(self, stream: asyncio.StreamReader) -> None:
        # The server's stderr must be read or it blocks once the pipe fills.
        sink = self.stderr_path.open("ab") if self.stderr_path else None
        try:
            while chunk := await stream.read(65536):
                if sink:
                    sink.write(chunk)
                    sink.flush()
        finally:
            if sink:
                sink.close()

    async def status(self) -> dict[str, Any]:
        res = await self.client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="nearline.status", arguments=[])
        )
        return dict(res or {})

    async def start_ready(self, timeout: float = 300) -> dict[str, Any] | None:
        """Start the server and wait for the model; None (after a message on stderr and
        stopping the server) when it does not become ready."""
        await self.start()
        st = await self.wait_ready(timeout)
        if st.get("state") != "ready":
            print(f"model not ready: {st.get('error') or self.messages}", file=sys.stderr)
            await self.stop()
            return None
        return dict(st.get("engine") or {})

    async def wait_ready(self, timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            st = await self.status()
            if st.get("state") in ("ready", "error") or time.monotonic() > deadline:
                return st
            await asyncio.sleep(0.2)

    def open(self, path: Path, text: str | None = None) -> str:
        uri = from_fs_path(str(path.resolve())) or ""
        text = path.read_text(encoding="utf-8") if text is None else text
        self.versions[uri] = 1
        self.texts[uri] = text
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=uri, language_id=_language_id(path), version=1, text=text
                )
            )
        )
        return uri

    def insert(self, uri: str, line: int, character: int, text: str) -> None:
        """Insert ``text`` at a position (UTF-16 units), as an editor's incremental change."""
        self.versions[uri] += 1
        pos = types.Position(line=line, character=character)
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(
                    uri=uri, version=self.versions[uri]
                ),
                content_changes=[
                    types.TextDocumentContentChangePartial(
                        range=types.Range(start=pos, end=pos), text=text
                    )
                ],
            )
        )

    async def inline(self, uri: str, line: int, character: int) -> Answer:
        t0 = time.perf_counter()
        res = await self.client.text_document_inline_completion_async(
            types.InlineCompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=types.Position(line=line, character=character),
                context=types.InlineCompletionContext(
                    trigger_kind=types.InlineCompletionTriggerKind.Automatic
                ),
            )
        )
        dt = time.perf_counter() - t0
        items = res.items if isinstance(res, types.InlineCompletionList) else (res or [])
        text = None
        if items:
            it = items[0].insert_text
            text = it if isinstance(it, str) else it.value
        return Answer(text, dt)

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.shutdown_async(None), 10)
            self.client.exit(None)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.stop(), 10)
        proc = self.client._server
        if proc is not None and proc.returncode is None:
            proc.kill()
        if self._drain:
            self._drain.cancel()


def _language_id(path: Path) -> str:
    from nearline.completion.service import language_for

    return language_for(path.name)
