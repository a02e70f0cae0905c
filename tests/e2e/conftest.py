from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest_lsp
from lsprotocol import types
from pygls.uris import from_fs_path
from pytest_lsp import ClientServerConfig, LanguageClient

from ..conftest import SAMPLE, SERVER_CMD, SMALL_ID, server_env


def capabilities(encodings: list[str] | None = None) -> types.ClientCapabilities:
    return types.ClientCapabilities(
        general=types.GeneralClientCapabilities(
            position_encodings=[types.PositionEncodingKind(e) for e in encodings]
            if encodings
            else None
        ),
        text_document=types.TextDocumentClientCapabilities(
            synchronization=types.TextDocumentSyncClientCapabilities(),
            inline_completion=types.InlineCompletionClientCapabilities(),
            completion=types.CompletionClientCapabilities(),
        ),
        window=types.WindowClientCapabilities(work_done_progress=True),
        workspace=types.WorkspaceClientCapabilities(configuration=True),
    )


def init_params(
    root: Path = SAMPLE,
    options: dict[str, Any] | None = None,
    encodings: list[str] | None = None,
) -> types.InitializeParams:
    uri = from_fs_path(str(root))
    return types.InitializeParams(
        capabilities=capabilities(encodings),
        root_uri=uri,
        workspace_folders=[types.WorkspaceFolder(uri=uri or "", name=root.name)],
        initialization_options=options
        if options is not None
        else {"model": {"id": SMALL_ID}, "completion": {"debounceMs": 0, "timeoutMs": 60000}},
    )


async def status(client: LanguageClient) -> dict[str, Any]:
    res = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="nearline.status", arguments=[])
    )
    return dict(res)


async def wait_ready(client: LanguageClient, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        st = await status(client)
        if st["state"] in ("ready", "error") or time.monotonic() > deadline:
            return st
        await asyncio.sleep(0.1)


async def wait_indexed(client: LanguageClient, timeout: float = 30) -> dict[str, Any]:
    """The workspace index's answer once it is built (or the last answer, at the timeout)."""
    idx: dict[str, Any] = {}
    for _ in range(int(timeout / 0.05)):
        idx = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="nearline.index", arguments=[])
        )
        if idx["state"] == "ready":
            break
        await asyncio.sleep(0.05)
    return idx


def open_doc(client: LanguageClient, path: Path, text: str, language: str = "python") -> str:
    uri = from_fs_path(str(path)) or ""
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id=language, version=1, text=text
            )
        )
    )
    return uri


async def inline(
    client: LanguageClient, uri: str, line: int, character: int
) -> list[types.InlineCompletionItem]:
    res = await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=line, character=character),
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Invoked
            ),
        )
    )
    if res is None:
        return []
    return list(res.items if isinstance(res, types.InlineCompletionList) else res)


def client_fixture(
    options: dict[str, Any],
    *,
    encodings: list[str] | None = None,
    env: dict[str, str] | None = None,
    root: Callable[[Path], Path] | None = None,
    command: list[str] | None = None,
) -> Any:
    """A pytest-lsp client fixture for a server started with these initializationOptions (on
    the sample project, or on the workspace ``root(tmp_path)`` makes, kept as ``client.root``);
    the initialize result is kept as ``client.init_result``. ``command`` replaces the server
    command (to wrap it, e.g. in ``unshare -n``)."""

    @pytest_lsp.fixture(
        config=ClientServerConfig(
            server_command=command or SERVER_CMD, server_env=server_env(**(env or {}))
        )
    )
    async def fixture(lsp_client: LanguageClient, tmp_path: Path):
        folder = root(tmp_path) if root is not None else SAMPLE
        lsp_client.root = folder  # type: ignore[attr-defined]
        params = init_params(root=folder, options=options, encodings=encodings)
        lsp_client.init_result = await lsp_client.initialize_session(params)  # type: ignore[attr-defined]
        yield
        await lsp_client.shutdown_session()

    return fixture


client = client_fixture(
    {"model": {"id": SMALL_ID}, "completion": {"debounceMs": 0, "timeoutMs": 60000}}
)


Edit = tuple[tuple[int, int], tuple[int, int], str]


def edit(client: LanguageClient, uri: str, version: int, *edits: Edit) -> None:
    """Send incremental changes: each ((line, char), (line, char), new_text), in client units."""
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(
                        start=types.Position(line=a[0], character=a[1]),
                        end=types.Position(line=b[0], character=b[1]),
                    ),
                    text=text,
                )
                for a, b, text in edits
            ],
        )
    )


async def prompt_at(client: LanguageClient, uri: str, line: int, character: int) -> Any:
    return await client.workspace_execute_command_async(
        types.ExecuteCommandParams(
            command="nearline.prompt", arguments=[uri, {"line": line, "character": character}]
        )
    )
