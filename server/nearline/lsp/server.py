"""The language server: its state and the table of what it answers.

The handlers are module-level functions in ``sync`` (lifecycle, settings, folders, documents),
``complete`` (inline and list completion) and ``commands``; the work the server starts on its
own is in ``background``, its progress reporting in ``progress``, the fixes to pygls's JSON-RPC
handling in ``protocol``. ``build_server`` registers the handlers on a new server.

Handlers are ``async`` so ``$/cancelRequest`` reaches them (pygls cancels the handler's task;
the service turns that into the engine's cancel flag). Long work never runs on the event loop:
the model has its own worker thread, the workspace scan its own thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from pathlib import Path
from typing import Any, ClassVar

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from nearline import __version__
from nearline.completion.notebook import CODE, MARKUP, Cell, cell_view
from nearline.completion.service import CompletionService, Query
from nearline.completion.stats import ACCEPT_COMMAND, AcceptanceStats
from nearline.config import Settings, SettingsProblem, parse_settings
from nearline.engine.factory import EngineFactory
from nearline.lsp.background import start_index
from nearline.lsp.protocol import NearlineProtocol
from nearline.lsp.textdoc import LspDocument, NearlineWorkspace, fs_path
from nearline.workspace.index import WorkspaceIndex, language_for
from nearline.workspace.watcher import IndexWatcher

log = logging.getLogger(__name__)


class LspLogHandler(logging.Handler):
    """Forward Nearline's own log records to the client's log (``window/logMessage``); pygls's
    own records stay out, they would echo every message back to the client."""

    LEVELS: ClassVar[dict[int, types.MessageType]] = {
        logging.ERROR: types.MessageType.Error,
        logging.WARNING: types.MessageType.Warning,
        logging.INFO: types.MessageType.Info,
    }

    def __init__(self, server: NearlineServer) -> None:
        super().__init__(logging.INFO)
        self.server = server

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("nearline") or not self.server.connected:
            return
        try:
            kind = self.LEVELS.get(record.levelno, types.MessageType.Log)
            self.server.window_log_message(
                types.LogMessageParams(type=kind, message=self.format(record))
            )
        except Exception:  # pragma: no cover - logging must never raise
            pass


class NearlineServer(LanguageServer):
    protocol: NearlineProtocol

    def __init__(self, engine_factory: EngineFactory | None = None) -> None:
        super().__init__(
            "nearline",
            __version__,
            protocol_cls=NearlineProtocol,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
            # Every cell of every notebook (only offered to clients that can sync notebooks;
            # others send cells as separate documents): a cell completes with the cells above.
            notebook_document_sync=types.NotebookDocumentSyncOptions(
                notebook_selector=[types.NotebookDocumentFilterWithNotebook(notebook="*")]
            ),
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
        # Set to stop the running workspace scan (a new scan replaces it, or shutdown).
        self.scan_cancel = threading.Event()
        self.watcher: IndexWatcher | None = None
        self._stats: AcceptanceStats | None = None
        self._reporting_error = False

    @property
    def connected(self) -> bool:
        """Whether the client still listens: from the start of the connection until
        ``shutdown`` (or until the connection closes). Nothing else may be sent outside it."""
        stop = self._stop_event
        return (
            stop is not None
            and not stop.is_set()
            and not self.protocol._shutdown
            and not self.protocol.closed
        )

    def report_server_error(self, error: Exception, source: Any) -> None:
        # pygls shows a failure to send with window/showMessage; once the client is gone that
        # fails too, and would be reported again, without end. Only while the client listens,
        # and never about the report itself.
        if not self.connected or self._reporting_error:
            log.debug("not reported to the client: %s", error)
            return
        self._reporting_error = True
        try:
            super().report_server_error(error, source)
        finally:
            self._reporting_error = False

    def stop_background(self) -> None:
        """Stop the work nobody will wait for any more (at ``shutdown``): the scan, the watcher,
        warm-ups, speculation, model loads and progress reports."""
        self.scan_cancel.set()
        for t in list(self.tasks):
            t.cancel()
        if self.watcher is not None:
            self.watcher.stop()
        if self._stats is not None:
            self._stats.close()
        if self.service is not None:
            self.service.close()

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
        if self.connected:
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

    def sync_overlay(self, uri: str) -> None:
        """Unsaved text wins over disk: mirror an open document into the index."""
        if self.index is None or (path := fs_path(uri)) is None:
            return
        doc = self.document(uri)
        if doc is not None:
            self.index.set_overlay(path, doc.source)

    def query(self, uri: str, position: types.Position) -> Query | None:
        """Convert an LSP position (in the negotiated encoding) into a service query; None for
        unopened documents and positions outside the text or inside a character."""
        doc = self.document(uri)
        if doc is None:
            return None
        offset = doc.exact_offset(position)
        return None if offset is None else self.query_at(uri, doc, offset)

    def query_at(self, uri: str, doc: LspDocument, offset: int) -> Query:
        if (cell := self._cell_query(uri, doc, offset)) is not None:
            return cell
        return self._query(
            uri, doc.source, offset, fs_path(uri), self.language_of(uri, doc.language_id)
        )

    def _query(self, uri: str, text: str, offset: int, path: Path | None, language: str) -> Query:
        """The service's query for ``offset`` in ``text``; ``path`` gives the repository
        context (and becomes the index's current file)."""
        # The service counts lines by "\n" alone (a lone "\r" is text to it): its line and
        # column come from the offset, not from the LSP position.
        line_start = text.rfind("\n", 0, offset) + 1
        rel, root = self.rel_of(path)
        if self.index is not None and path is not None:
            self.index.set_current(path)
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

    def _cell_query(self, uri: str, doc: LspDocument, offset: int) -> Query | None:
        """A request in a notebook cell: the notebook's earlier cells are the prefix
        (``completion/notebook.py``), the notebook's file is the path for repository context."""
        ws = self.workspace
        nb = ws.get_notebook_document(cell_uri=uri) if isinstance(ws, NearlineWorkspace) else None
        if nb is None:
            return None
        cells = []
        for c in nb.cells:
            d = self.document(c.document)
            kind = CODE if c.kind == types.NotebookCellKind.Code else MARKUP
            cells.append(
                Cell(c.document, kind, (d.language_id or "") if d else "", d.source if d else "")
            )
        view = cell_view(cells, uri)
        if view is None:
            return None
        return self._query(uri, view.text, view.start + offset, fs_path(nb.uri), view.language)

    def rel_of(self, path: Path | None) -> tuple[str | None, Path | None]:
        """(workspace-relative path, workspace folder) of a file; (None, None) outside them."""
        for r in self.roots:
            if path is not None and path.is_relative_to(r):
                return path.relative_to(r).as_posix(), r
        return None, None

    def note_used(self, uri: str) -> None:
        """Tell the service a document was opened or focused (recently used documents)."""
        path = fs_path(uri)
        if self.service is not None and path is not None:
            self.service.note_used(self.rel_of(path)[0] or path.name)

    def language_of(self, uri: str, language_id: str | None) -> str:
        """The file name decides (as for the index); the editor's language id helps where the
        name says nothing (an untitled buffer)."""
        path = fs_path(uri)
        lang = language_for(path.name if path else uri)
        return language_id or lang if lang == "text" else lang


def build_server(engine_factory: EngineFactory | None = None) -> NearlineServer:
    """A new server with every handler registered. The handlers are module functions taking
    the server as ``ls`` (pygls passes it in), registered from this table rather than by
    decorators on one module-level server object: each server built here (tests build several
    in one process) has its own registrations and state."""
    # The handler modules import this one (pygls resolves a command's annotations at run
    # time to structure its arguments, so NearlineServer must be importable there).
    from nearline.lsp import commands, complete, sync

    # A feature registered without its options object is not advertised to the client: the
    # options are part of the capability.
    features: list[tuple[str, Any, Any]] = [
        (types.INITIALIZE, sync.on_initialize, None),
        (types.INITIALIZED, sync.on_initialized, None),
        (types.SHUTDOWN, sync.on_shutdown, None),
        (types.WORKSPACE_DID_CHANGE_CONFIGURATION, sync.on_config, None),
        (types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS, sync.on_folders, None),
        (types.TEXT_DOCUMENT_DID_OPEN, sync.on_open, None),
        (types.TEXT_DOCUMENT_DID_CHANGE, sync.on_change, None),
        (types.TEXT_DOCUMENT_DID_CLOSE, sync.on_close, None),
        (sync.DID_FOCUS, sync.on_focus, None),
        (
            types.TEXT_DOCUMENT_INLINE_COMPLETION,
            complete.on_inline,
            types.InlineCompletionOptions(),
        ),
        (
            types.TEXT_DOCUMENT_COMPLETION,
            complete.on_completion,
            types.CompletionOptions(trigger_characters=[".", "(", "[", "{", ",", "=", ":"]),
        ),
    ]
    command_handlers: list[tuple[str, Any]] = [
        (commands.PROMPT_COMMAND, commands.prompt),
        (commands.DOCUMENT_TEXT_COMMAND, commands.document_text),
        (ACCEPT_COMMAND, commands.accepted),
        (commands.STATUS_COMMAND, commands.status),
        (commands.INDEX_COMMAND, commands.index),
    ]
    server = NearlineServer(engine_factory)
    for method, handler, options in features:
        server.feature(method, options)(handler)
    for name, handler in command_handlers:
        server.command(name)(handler)
    return server
