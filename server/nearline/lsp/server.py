"""The language server: capabilities, document sync, settings, thin handlers.

Handlers are ``async`` so ``$/cancelRequest`` reaches them (pygls cancels the handler's task;
the service turns that into the engine's cancel flag). Long work never runs on the event loop:
the model has its own worker thread, the workspace scan its own thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, ClassVar

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInternalError
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.uris import to_fs_path

from nearline import __version__
from nearline.completion.service import CompletionService, OutOfRange, Query
from nearline.completion.stats import ACCEPT_COMMAND, AcceptanceStats
from nearline.config import Settings, SettingsProblem, parse_settings, settings_to_dict
from nearline.engine.factory import EngineFactory
from nearline.lsp.textdoc import LspDocument, NearlineWorkspace
from nearline.workspace.index import WorkspaceIndex, language_for
from nearline.workspace.watcher import IndexWatcher

log = logging.getLogger(__name__)

PROMPT_COMMAND = "nearline.prompt"
STATUS_COMMAND = "nearline.status"
INDEX_COMMAND = "nearline.index"
# Editors tell us which document became active (LSP itself has no such notification).
DID_FOCUS = "nearline/didFocus"
DOCUMENT_TEXT_COMMAND = "nearline.documentText"


class LspLogHandler(logging.Handler):
    """Forward Nearline's own log records to the client's log (``window/logMessage``); pygls's
    own records stay out, they would echo every message back to the client."""

    LEVELS: ClassVar[dict[int, types.MessageType]] = {
        logging.ERROR: types.MessageType.Error,
        logging.WARNING: types.MessageType.Warning,
        logging.INFO: types.MessageType.Info,
    }

    def __init__(self, server: LanguageServer) -> None:
        super().__init__(logging.INFO)
        self.server = server

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("nearline"):
            return
        stop = getattr(self.server, "_stop_event", None)
        # After shutdown the client is gone: nothing may be written to it any more.
        if stop is None or stop.is_set() or self.server.protocol._shutdown:
            return
        try:
            kind = self.LEVELS.get(record.levelno, types.MessageType.Log)
            self.server.window_log_message(
                types.LogMessageParams(type=kind, message=self.format(record))
            )
        except Exception:  # pragma: no cover - logging must never raise
            pass


class _Unreadable:
    """A message whose params did not match its method (already answered with an error)."""

    jsonrpc = "2.0"


class NearlineProtocol(LanguageServerProtocol):
    """pygls drops a ``$/cancelRequest`` whose request it has not started yet (the two can
    overtake each other while the loop is busy). Remember such ids briefly and cancel the
    request when it shows up, so a cancel is never lost.

    pygls also never answers a request whose params have the wrong shape (the client waits
    forever) and logs a traceback for it: answer with InvalidParams instead, in one log line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.early_cancels: OrderedDict[Any, None] = OrderedDict()

    def structure_message(self, data: dict[str, Any]) -> Any:
        method = data.get("method")
        if "jsonrpc" not in data or not isinstance(method, str):
            return super().structure_message(data)
        msg_type = self.get_message_type(method)
        if msg_type is None:
            return super().structure_message(data)  # unknown method: pygls answers it
        try:
            return self._converter.structure(data, msg_type)
        except Exception as exc:
            reason = _one_line(exc)
            if "id" in data:
                log.warning("invalid params for %s: %s", method, reason)
                self._send_response(
                    data["id"],
                    error=types.ResponseError(
                        code=types.ErrorCodes.InvalidParams,
                        message=f"invalid params for {method}: {reason}",
                    ),
                )
            else:
                log.warning("notification %s ignored, invalid params: %s", method, reason)
            return _Unreadable()

    def handle_message(self, message: Any) -> None:
        if isinstance(message, _Unreadable):
            return
        super().handle_message(message)

    def _execute_handler(
        self,
        msg_id: Any,
        handler: Any,
        callback: Any,
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> None:
        # pygls files the future of every notification (and of every step of its own
        # generator handlers, didChange's included) in _request_futures and never takes it
        # out again: one leaked entry per keystroke. Take it out once it is done.
        super()._execute_handler(msg_id, handler, callback, args, kwargs)
        fut = self._request_futures.get(msg_id)
        if fut is not None:

            def forget(done: Any) -> None:
                if self._request_futures.get(msg_id) is done:
                    del self._request_futures[msg_id]

            fut.add_done_callback(forget)

    def _send_handler_result(self, future: Any, *, msg_id: Any) -> None:
        # An error the client caused (unknown command, bad arguments) is its answer, not a
        # server failure: one log line, no traceback.
        exc = None if future.cancelled() else future.exception()
        if isinstance(exc, JsonRpcException) and not isinstance(exc, JsonRpcInternalError):
            self._request_futures.pop(msg_id, None)
            log.warning("request %s failed: %s", msg_id, exc)
            self._send_response(msg_id, error=exc.to_response_error())
            return
        super()._send_handler_result(future, msg_id=msg_id)

    def _handle_cancel_notification(self, msg_id: Any) -> None:
        if msg_id in self._request_futures:
            super()._handle_cancel_notification(msg_id)
            return
        self.early_cancels[msg_id] = None
        while len(self.early_cancels) > 256:
            self.early_cancels.popitem(last=False)

    def _handle_request(self, msg_id: Any, method_name: str, params: Any) -> None:
        super()._handle_request(msg_id, method_name, params)
        if msg_id in self.early_cancels:
            del self.early_cancels[msg_id]
            super()._handle_cancel_notification(msg_id)


class NearlineServer(LanguageServer):
    def __init__(self, engine_factory: EngineFactory | None = None) -> None:
        super().__init__(
            "nearline",
            __version__,
            protocol_cls=NearlineProtocol,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
        )
        self.settings = Settings()
        self.init_settings = Settings()
        self.engine_factory = engine_factory
        self.service: CompletionService | None = None
        self.roots: list[Path] = []
        self.pending_problems: list[SettingsProblem] = []
        self.tasks: set[asyncio.Task[Any]] = set()
        self.index: WorkspaceIndex | None = None
        self.index_scanned = False
        self.watcher: IndexWatcher | None = None
        self._stats: AcceptanceStats | None = None

    @property
    def stats(self) -> AcceptanceStats | None:
        """Local acceptance counts; created on first use (so tests can point it elsewhere)."""
        if not self.settings.stats.enabled:
            return None
        if self._stats is None:
            self._stats = AcceptanceStats()
        return self._stats

    def record_shown(self, suggestions: list[Any], language: str | None) -> None:
        stats = self.stats
        for s in suggestions:
            if stats is not None and s.id:
                stats.shown(s.id, language or "text")

    # -- helpers -------------------------------------------------------------------------
    def spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        """Keep background tasks referenced and log their failures instead of losing them."""
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self.tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self.tasks.discard(t)
            if not t.cancelled() and (exc := t.exception()) is not None:
                log.error("background task %s failed: %s", name, exc, exc_info=exc)

        task.add_done_callback(done)
        return task

    def show(self, level: str, text: str) -> None:
        kind = {
            "error": types.MessageType.Error,
            "warning": types.MessageType.Warning,
        }.get(level, types.MessageType.Info)
        with contextlib.suppress(Exception):
            self.window_show_message(types.ShowMessageParams(type=kind, message=text))
        (log.error if level == "error" else log.warning if level == "warning" else log.info)(text)

    def report_problems(self, problems: list[SettingsProblem]) -> None:
        if problems:
            self.show("warning", "Nearline settings: " + "; ".join(str(p) for p in problems))

    def apply_settings(self, raw: Any) -> bool:
        """Parse settings from the client's configuration over its initializationOptions (a key
        the configuration does not set keeps its initialization value); returns True when the
        model must be reloaded."""
        new, problems = parse_settings(raw, self.init_settings)
        self.report_problems(problems)
        old, self.settings = self.settings, new
        if self.service is not None:
            self.service.settings = new
        if old.index != new.index and self.index is not None:
            self.spawn(start_index(self), "reindex")
        return old.model != new.model or old.engine != new.engine

    def document(self, uri: str) -> LspDocument | None:
        """An open document (by its URI quoted or not)."""
        ws = self.workspace
        return ws.document(uri) if isinstance(ws, NearlineWorkspace) else None

    def query(self, uri: str, position: types.Position) -> Query | None:
        """Convert an LSP position (in the negotiated encoding) into a service query; None for
        unopened documents and positions outside the text or inside a character."""
        doc = self.document(uri)
        if doc is None:
            return None
        offset = doc.exact_offset(position)
        return None if offset is None else self.query_at(uri, doc, offset)

    def query_at(self, uri: str, doc: LspDocument, offset: int) -> Query:
        text = doc.source
        # The service counts lines by "\n" alone (a lone "\r" is text to it): its line and
        # column come from the offset, not from the LSP position.
        line_start = text.rfind("\n", 0, offset) + 1
        path = _fs_path(uri)
        rel, root = self.rel_of(path)
        if self.index is not None and path is not None:
            self.index.set_current(path)
        language = self.language_of(uri, doc.language_id)
        return Query(
            uri=uri,
            text=text,
            line=text.count("\n", 0, offset),
            col=offset - line_start,
            offset=offset,
            path=path,
            rel=rel or (path.name if path else None),
            language=language,
            root=root,
        )

    def rel_of(self, path: Path | None) -> tuple[str | None, Path | None]:
        """(workspace-relative path, workspace folder) of a file; (None, None) outside them."""
        for r in self.roots:
            if path is not None and path.is_relative_to(r):
                return path.relative_to(r).as_posix(), r
        return None, None

    def note_used(self, uri: str) -> None:
        """Tell the service a document was opened or focused (recently used documents)."""
        path = _fs_path(uri)
        if self.service is not None and path is not None:
            self.service.note_used(self.rel_of(path)[0] or path.name)

    def language_of(self, uri: str, language_id: str | None) -> str:
        """The file name decides (as for the index); the editor's language id helps where the
        name says nothing (an untitled buffer)."""
        path = _fs_path(uri)
        lang = language_for(path.name if path else uri)
        return language_id or lang if lang == "text" else lang


def build_server(engine_factory: EngineFactory | None = None) -> NearlineServer:
    server = NearlineServer(engine_factory)

    @server.feature(types.INITIALIZE)
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
        ls.service = CompletionService(settings, ls.engine_factory, on_message=ls.show)

    @server.feature(types.INITIALIZED)
    async def on_initialized(ls: NearlineServer, params: types.InitializedParams) -> None:
        ls.report_problems(ls.pending_problems)
        ls.pending_problems = []
        ls.spawn(start_index(ls), "index")
        ws = ls.client_capabilities.workspace
        if ws is not None and ws.configuration:
            ls.spawn(pull_configuration(ls, reload_only_if_changed=True), "pull-configuration")
        else:
            ls.spawn(start_model(ls), "load-model")

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def on_config(ls: NearlineServer, params: types.DidChangeConfigurationParams) -> None:
        raw = params.settings
        if isinstance(raw, dict) and isinstance(raw.get("nearline"), dict):
            if ls.apply_settings(raw["nearline"]):
                ls.spawn(start_model(ls), "reload-model")
            return
        ws = ls.client_capabilities.workspace
        if ws is not None and ws.configuration:
            # The usual "something changed, come and ask" (null or {} settings, e.g. Eglot).
            ls.spawn(pull_configuration(ls, reload_only_if_changed=True), "pull-configuration")
        elif isinstance(raw, dict) and raw and ls.apply_settings(raw):
            ls.spawn(start_model(ls), "reload-model")

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

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def on_open(ls: NearlineServer, params: types.DidOpenTextDocumentParams) -> None:
        uri = params.text_document.uri
        sync_overlay(ls, uri)
        if ls.service is not None:
            item = params.text_document
            ls.service.syntax.open(uri, ls.language_of(uri, item.language_id), item.text)
        ls.note_used(uri)
        warm_document(ls, uri, None)

    @server.feature(DID_FOCUS)
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

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def on_change(ls: NearlineServer, params: types.DidChangeTextDocumentParams) -> None:
        uri = params.text_document.uri
        sync_overlay(ls, uri)
        doc = ls.document(uri)
        if ls.service is not None and doc is not None and uri in ls.service.syntax:
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

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def on_close(ls: NearlineServer, params: types.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        if ls.service is not None:
            ls.service.forget(uri)
        if ls.index is not None and (path := _fs_path(uri)) is not None:
            ls.index.drop_overlay(path)

    @server.feature(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
    def on_folders(ls: NearlineServer, params: types.DidChangeWorkspaceFoldersParams) -> None:
        removed = {p for f in params.event.removed if (p := _fs_path(f.uri)) is not None}
        added = [p for f in params.event.added if (p := _fs_path(f.uri)) is not None]
        ls.roots = [r for r in ls.roots if r not in removed] + [
            a for a in added if a not in ls.roots
        ]
        ls.spawn(start_index(ls), "reindex")

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def on_inline(
        ls: NearlineServer, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList | None:
        q = ls.query(params.text_document.uri, params.position)
        if q is None or ls.service is None:
            return types.InlineCompletionList(items=[])
        outcome = await complete(ls, q)
        pos = params.position
        suggestions = outcome.suggestions if outcome else []
        ls.record_shown(suggestions, q.language)
        items = [
            types.InlineCompletionItem(
                insert_text=s.text,
                range=types.Range(start=pos, end=pos),
                # LSP 3.18: the client runs this on accept; it only bumps a local counter.
                command=_accept_command(s.id),
            )
            for s in suggestions
        ]
        return types.InlineCompletionList(items=items)

    @server.feature(
        types.TEXT_DOCUMENT_COMPLETION,
        types.CompletionOptions(trigger_characters=[".", "(", "[", "{", ",", "=", ":"]),
    )
    async def on_completion(
        ls: NearlineServer, params: types.CompletionParams
    ) -> types.CompletionList:
        q = ls.query(params.text_document.uri, params.position)
        if q is None or ls.service is None:
            return types.CompletionList(is_incomplete=True, items=[])
        outcome = await complete(ls, q)
        doc = ls.document(params.text_document.uri)
        before = q.text[q.offset - q.col : q.offset] if q.offset is not None else ""
        # Clients filter items by the word before the cursor: replace that word and start the
        # new text with it, so the item survives filtering and inserts the full suggestion.
        i = len(before)
        while i > 0 and (before[i - 1].isalnum() or before[i - 1] == "_"):
            i -= 1
        word = before[i:]
        pos = params.position
        start = types.Position(
            line=pos.line, character=pos.character - (doc.units(word) if doc else len(word))
        )
        items = []
        suggestions = outcome.suggestions if outcome else []
        ls.record_shown(suggestions, q.language)
        for n, s in enumerate(suggestions):
            new_text = word + s.text
            items.append(
                types.CompletionItem(
                    label=new_text.strip() or s.text,
                    kind=types.CompletionItemKind.Text,
                    detail="Nearline",
                    filter_text=new_text,
                    sort_text=f"{n:04d}",
                    preselect=n == 0,
                    insert_text_format=types.InsertTextFormat.PlainText,
                    text_edit=types.TextEdit(
                        range=types.Range(start=start, end=params.position), new_text=new_text
                    ),
                    command=_accept_command(s.id),
                )
            )
        # Incomplete: the client asks again as the user types, so it sees fresh suggestions.
        return types.CompletionList(is_incomplete=True, items=items)

    @server.command(PROMPT_COMMAND)
    async def prompt_command(ls: NearlineServer, *args: Any) -> dict[str, Any] | None:
        uri, position = _command_position(args)
        if uri is None or position is None:
            return {"error": "usage: nearline.prompt(uri, {line, character})"}
        q = ls.query(uri, position)
        if q is None or ls.service is None:
            return {"error": f"no open document {uri} with position {position}"}
        prompt = ls.service.build_prompt(q)
        return {
            "prompt": prompt.text,
            "parts": prompt.breakdown(),
            "total_tokens": ls.service.prompt_tokens(prompt),
            "document": q.text,
        }

    @server.command(DOCUMENT_TEXT_COMMAND)
    def document_text_command(ls: NearlineServer, *args: Any) -> dict[str, Any]:
        """The exact text the server holds for an open document (tests check sync with it)."""
        flat = _flat_args(args)
        uri = flat[0] if flat else None
        if isinstance(uri, dict):
            uri = uri.get("uri")
        if not isinstance(uri, str):
            return {"error": "usage: nearline.documentText(uri)"}
        doc = ls.document(uri)
        if doc is None:
            return {"error": f"no open document {uri}"}
        return {
            "uri": uri,
            "version": doc.version,
            "text": doc.source,
            "lines": doc.line_count,
            "encoding": doc.encoding,
        }

    @server.command(ACCEPT_COMMAND)
    def accepted_command(ls: NearlineServer, *args: Any) -> bool:
        flat = list(args[0]) if len(args) == 1 and isinstance(args[0], list) else list(args)
        stats = ls.stats
        return bool(stats is not None and flat and stats.accepted(str(flat[0])))

    @server.command(STATUS_COMMAND)
    def status_command(ls: NearlineServer, *args: Any) -> dict[str, Any]:
        svc = ls.service
        engine = svc.engine if svc else None
        info = engine.info() if engine else None
        return {
            "state": svc.state if svc else "idle",
            "error": svc.error if svc else None,
            "pid": os.getpid(),
            # The model process (engine.isolation: process); None when the model runs in here.
            "worker_pid": info.get("worker_pid") if info else None,
            "engine": info,
            "settings": settings_to_dict(ls.settings),
            "stats": svc.stats.as_dict() if svc else {},
            "syntax": dict(svc.syntax.stats) if svc else {},
            "inflight": svc.inflight if svc else 0,
            "recent": list(svc.recent) if svc else [],
            "process": process_info(ls),
        }

    @server.command(INDEX_COMMAND)
    def index_command(ls: NearlineServer, *args: Any) -> dict[str, Any]:
        """Index state and its files (the first 10,000 unless ``{"limit": N}`` says otherwise;
        ``count`` is always the full number)."""
        flat = _flat_args(args)
        opts = flat[0] if flat and isinstance(flat[0], dict) else {}
        limit = opts.get("limit", 10_000)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            return {"error": "limit must be a non-negative integer"}
        idx = ls.index
        if idx is None:
            return {"state": "none", "files": [], "count": 0}
        files = idx.files()
        watcher = ls.watcher
        return {
            "state": "ready" if ls.index_scanned else "scanning",
            "version": idx.version,
            "stats": idx.stats(),
            "count": len(files),
            "files": [f.rel for f in files[:limit]],
            "watcher": watcher.info() if watcher is not None else None,
        }

    @server.feature(types.SHUTDOWN)
    def on_shutdown(ls: NearlineServer, *args: Any) -> None:
        for t in list(ls.tasks):
            t.cancel()
        if ls.watcher is not None:
            ls.watcher.stop()
        if ls._stats is not None:
            ls._stats.close()
        if ls.service is not None:
            ls.service.close()

    return server


def _accept_command(suggestion_id: str) -> types.Command:
    return types.Command(
        title="Nearline: suggestion accepted", command=ACCEPT_COMMAND, arguments=[suggestion_id]
    )


def _one_line(exc: BaseException) -> str:
    """A cattrs validation error as one line: the innermost causes, not a traceback."""
    leaves: list[str] = []

    def walk(e: BaseException, path: str) -> None:
        subs = getattr(e, "exceptions", None)
        if subs:
            notes = getattr(e, "__notes__", None) or []
            for i, sub in enumerate(subs):
                note = notes[i] if i < len(notes) else ""
                walk(sub, f"{path} {note}".strip())
        else:
            leaves.append(f"{path}: {type(e).__name__}: {e}" if path else f"{e}")

    walk(exc, "")
    text = "; ".join(dict.fromkeys(leaves)) or type(exc).__name__
    return re.sub(r"Structuring class (\w+) @ attribute (\w+)", r"\1.\2", text)[:500]


def _flat_args(args: tuple[Any, ...]) -> list[Any]:
    """A command's arguments, whether pygls passed them spread out or as one list."""
    return list(args[0]) if len(args) == 1 and isinstance(args[0], list) else list(args)


def _command_position(args: tuple[Any, ...]) -> tuple[str | None, types.Position | None]:
    """Accept ``(uri, {line, character})``, ``([uri, pos])`` or ``({uri, position})``."""
    flat: list[Any] = list(args)
    if len(flat) == 1 and isinstance(flat[0], list):
        flat = flat[0]
    try:
        if len(flat) == 1 and isinstance(flat[0], dict):
            d = flat[0]
            uri = d.get("uri") or (d.get("textDocument") or {}).get("uri")
            pos = d["position"]
        else:
            uri, pos = flat[0], flat[1]
        return str(uri), types.Position(line=int(pos["line"]), character=int(pos["character"]))
    except (KeyError, IndexError, TypeError, ValueError):
        return None, None


async def complete(ls: NearlineServer, q: Query) -> Any:
    assert ls.service is not None
    try:
        return await ls.service.complete(q)
    except OutOfRange:
        return None


async def pull_configuration(ls: NearlineServer, reload_only_if_changed: bool) -> None:
    try:
        result = await ls.workspace_configuration_async(
            types.ConfigurationParams(items=[types.ConfigurationItem(section="nearline")])
        )
        raw = result[0] if result else None
    except Exception as exc:
        log.warning("workspace/configuration failed: %s", exc)
        raw = None
    changed = ls.apply_settings(raw if isinstance(raw, dict) else {}) if raw is not None else False
    if ls.service is not None and (ls.service.state in ("idle", "error") or changed):
        await start_model(ls)


async def start_model(ls: NearlineServer) -> None:
    if ls.service is None:
        return
    t0 = time.perf_counter()
    token = f"nearline-load-{time.monotonic_ns()}"
    progress = _supports_progress(ls)
    if progress:
        with contextlib.suppress(Exception):
            # A client that never answers must not stop the model from loading.
            await asyncio.wait_for(ls.work_done_progress.create_async(token), 5)
            ls.work_done_progress.begin(
                token,
                types.WorkDoneProgressBegin(title="Nearline: loading model", cancellable=False),
            )
    await ls.service.start()
    if progress:
        with contextlib.suppress(Exception):
            ls.work_done_progress.end(token, types.WorkDoneProgressEnd(message=ls.service.state))
    if ls.service.state == "ready" and ls.service.engine is not None:
        log.info("model ready in %.1fs: %s", time.perf_counter() - t0, ls.service.engine.info())


def _get(obj: Any, name: str) -> Any:
    """A field of custom-notification params, which arrive as dicts or as attribute objects."""
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def _supports_progress(ls: NearlineServer) -> bool:
    win = ls.client_capabilities.window
    return bool(win is not None and win.work_done_progress)


def _fs_path(uri: str) -> Path | None:
    if not uri.startswith("file:"):
        return None
    fs = to_fs_path(uri)
    return Path(fs) if fs else None


def process_info(ls: NearlineServer) -> dict[str, Any]:
    """What a soak test watches for leaks: resident memory, asyncio tasks, threads."""
    import threading

    try:
        tasks = len(asyncio.all_tasks())
    except RuntimeError:
        tasks = 0
    return {
        "pid": os.getpid(),
        "rss_bytes": _rss_bytes(),
        "asyncio_tasks": tasks,
        "background_tasks": len(ls.tasks),
        "pending_requests": len(ls.protocol._request_futures),
        "threads": threading.active_count(),
    }


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None  # not Linux


def sync_overlay(ls: NearlineServer, uri: str) -> None:
    """Unsaved text wins over disk: mirror open documents into the index."""
    if ls.index is None or (path := _fs_path(uri)) is None:
        return
    doc = ls.document(uri)
    if doc is not None:
        ls.index.set_overlay(path, doc.source)


async def start_index(ls: NearlineServer) -> None:
    """(Re)build the workspace index in a thread, with $/progress, then start the watcher."""
    if not ls.roots:
        return
    loop = asyncio.get_running_loop()
    if ls.watcher is not None:
        ls.watcher.stop()
        ls.watcher = None
    cfg = ls.settings.index
    index = WorkspaceIndex(
        ls.roots,
        cfg,
        count_tokens=ls.service.count_tokens if ls.service is not None else None,
    )
    ls.index, ls.index_scanned = index, False
    if ls.service is not None:
        ls.service.index = index
    for doc in list(ls.workspace.text_documents.values()):
        sync_overlay(ls, doc.uri)
    token = f"nearline-index-{time.monotonic_ns()}"
    progress = _supports_progress(ls)
    if progress:
        try:
            await asyncio.wait_for(ls.work_done_progress.create_async(token), 5)
            ls.work_done_progress.begin(
                token, types.WorkDoneProgressBegin(title="Nearline: indexing", percentage=0)
            )
        except Exception:
            progress = False
    last = [0.0]

    def report(done: int, total: int | None) -> None:
        now = time.monotonic()
        if not progress or now - last[0] < 0.25:
            return
        last[0] = now
        msg = f"{done}/{total} files" if total else f"{done} files found"
        pct = int(done * 100 / total) if total else None
        loop.call_soon_threadsafe(
            ls.work_done_progress.report,
            token,
            types.WorkDoneProgressReport(message=msg, percentage=pct),
        )

    t0 = time.perf_counter()
    try:
        await loop.run_in_executor(None, lambda: index.scan(report))
    except Exception as exc:
        log.error("indexing failed: %s", exc)
    n = index.count()
    dt = time.perf_counter() - t0
    ls.index_scanned = ls.index is index
    if progress:
        with contextlib.suppress(Exception):
            ls.work_done_progress.end(token, types.WorkDoneProgressEnd(message=f"{n} files"))
    log.info("indexed %d files in %.2fs (%s)", n, dt, ", ".join(str(r) for r in ls.roots))
    if cfg.watch and ls.index is index:
        watcher = IndexWatcher(index)
        try:
            await loop.run_in_executor(None, watcher.start)
            ls.watcher = watcher
        except Exception as exc:
            log.warning(
                "file watching unavailable (%s); the index will not follow disk changes", exc
            )
