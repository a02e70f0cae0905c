"""Lifecycle and synchronisation handlers: initialize, shutdown, settings, workspace folders,
and the documents the editor opens, changes, focuses and closes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.uris import to_fs_path

from nearline.completion.service import CompletionService, Query
from nearline.config import parse_settings
from nearline.lsp.background import first_load, reload_after_pull, start_index, start_model
from nearline.lsp.server import NearlineServer
from nearline.lsp.signal import GeneratingSignal
from nearline.lsp.textdoc import NearlineWorkspace, fs_path

log = logging.getLogger(__name__)

# Editors tell us which document became active (LSP itself has no such notification).
DID_FOCUS = "nearline/didFocus"


def on_initialize(ls: NearlineServer, params: types.InitializeParams) -> None:
    # pygls has just made the workspace (with the negotiated position encoding): keep
    # documents in Nearline's own exact form instead (see textdoc.py for why).
    ls.protocol._workspace = NearlineWorkspace.replacing(ls.workspace)
    roots: list[Path] = []
    for folder in params.workspace_folders or []:
        if (p := to_fs_path(folder.uri)) is not None:
            roots.append(Path(p))
    if not roots and params.root_uri and (p := to_fs_path(params.root_uri)):
        roots.append(Path(p))
    elif not roots and params.root_path:
        roots.append(Path(params.root_path))
    ls.roots = roots
    settings, problems = parse_settings(params.initialization_options)
    ls.settings = ls.init_settings = settings
    ls.pending_problems = problems
    ls.service = CompletionService(
        settings, ls.engine_factory, on_message=ls.show, on_generating=GeneratingSignal(ls)
    )


async def on_initialized(ls: NearlineServer, params: types.InitializedParams) -> None:
    ls.report_problems(ls.pending_problems)
    ls.pending_problems = []
    ls.spawn(start_index(ls), "index")
    if ls.service is not None:
        # The load starts after the settings round trip; a request in between waits for it.
        ls.service.expect_start()
        ws = ls.client_capabilities.workspace
        ls.spawn(first_load(ls, ask_client=bool(ws is not None and ws.configuration)), "load-model")


def on_shutdown(ls: NearlineServer, *args: Any) -> None:
    ls.stop_background()


async def on_config(ls: NearlineServer, params: types.DidChangeConfigurationParams) -> None:
    raw = params.settings
    if isinstance(raw, dict) and isinstance(raw.get("nearline"), dict):
        if ls.apply_settings(raw["nearline"]):
            ls.spawn(start_model(ls), "reload-model")
        return
    ws = ls.client_capabilities.workspace
    if ws is not None and ws.configuration:
        # The usual "something changed, come and ask" (null or {} settings, e.g. Eglot).
        ls.spawn(reload_after_pull(ls), "pull-configuration")
    elif isinstance(raw, dict) and raw and ls.apply_settings(raw):
        ls.spawn(start_model(ls), "reload-model")


def on_folders(ls: NearlineServer, params: types.DidChangeWorkspaceFoldersParams) -> None:
    removed = {p for f in params.event.removed if (p := fs_path(f.uri)) is not None}
    added = [p for f in params.event.added if (p := fs_path(f.uri)) is not None]
    ls.roots = [r for r in ls.roots if r not in removed] + [a for a in added if a not in ls.roots]
    ls.spawn(start_index(ls), "reindex")


def on_open(ls: NearlineServer, params: types.DidOpenTextDocumentParams) -> None:
    uri = params.text_document.uri
    ls.sync_overlay(uri)
    if ls.service is not None:
        item = params.text_document
        ls.service.syntax.open(uri, ls.language_of(uri, item.language_id), item.text)
    ls.note_used(uri)
    warm_document(ls, uri, None)


def on_focus(ls: NearlineServer, params: Any) -> None:
    """``nearline/didFocus`` {textDocument: {uri}, position?}: the editor switched to a
    document (LSP has no notification for that). Its saved KV state is restored and what
    changed is read now, before the user types."""
    doc = _get(params, "textDocument") or _get(params, "text_document")
    uri = _get(doc, "uri")
    pos = _get(params, "position")
    if not isinstance(uri, str):
        return
    position = None
    line, char = _get(pos, "line"), _get(pos, "character")
    if isinstance(line, int) and isinstance(char, int) and line >= 0 and char >= 0:
        position = types.Position(line=line, character=char)
    ls.note_used(uri)
    warm_document(ls, uri, position)


def on_change(ls: NearlineServer, params: types.DidChangeTextDocumentParams) -> None:
    uri = params.text_document.uri
    ls.sync_overlay(uri)
    doc = ls.document(uri)
    if ls.service is None or doc is None or uri not in ls.service.syntax:
        return
    # The document's syntax tree follows the edits (tree-sitter edits, reparsed lazily).
    changes: list[Any] = []
    for ch in params.content_changes:
        if isinstance(ch, types.TextDocumentContentChangePartial):
            r = ch.range
            start, end = (r.start.line, r.start.character), (r.end.line, r.end.character)
            changes.append((start, end, ch.text))
        else:
            changes.append(ch.text)
    enc = doc.position_codec.encoding
    encoding = str(getattr(enc, "value", enc) or "utf-16")
    try:
        ls.service.syntax.change(uri, changes, doc.source, encoding)
    except Exception:
        log.exception("syntax tree update failed")
        ls.service.syntax.forget(uri)


def on_close(ls: NearlineServer, params: types.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    if ls.service is not None:
        ls.service.forget(uri)
    if ls.index is not None and (path := fs_path(uri)) is not None:
        ls.index.drop_overlay(path)


def warm_document(ls: NearlineServer, uri: str, position: types.Position | None) -> None:
    """Read the document's prompt into the KV cache in the background (at the cursor when
    the editor says where it is, else at the end: every later request there shares the
    repository context and the prefix up to it). Any real request preempts it."""
    doc = ls.document(uri)
    if ls.service is None or doc is None or not ls.settings.completion.warm_up:
        return
    if position is None:
        q: Query | None = ls.query_at(uri, doc, len(doc.source))
    else:
        q = ls.query(uri, position)
    if q is not None:
        ls.spawn(ls.service.warm(q), "warm-up")


def _get(obj: Any, name: str) -> Any:
    """A field of custom-notification params, which arrive as dicts or as attribute objects."""
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)
