"""``workspace/executeCommand`` handlers: the prompt, a document's text, acceptance, status and
the index. Each takes its arguments through ``command_args``."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

from lsprotocol import types

from nearline.config import settings_to_dict
from nearline.lsp.server import NearlineServer

PROMPT_COMMAND = "nearline.prompt"
STATUS_COMMAND = "nearline.status"
INDEX_COMMAND = "nearline.index"
DOCUMENT_TEXT_COMMAND = "nearline.documentText"


def command_args(args: tuple[Any, ...]) -> list[Any]:
    """A command's arguments as one list, whether pygls passed them spread out or as one list
    (it depends on how many there are)."""
    return list(args[0]) if len(args) == 1 and isinstance(args[0], list) else list(args)


async def prompt(ls: NearlineServer, *args: Any) -> dict[str, Any] | None:
    """``nearline.prompt(uri, {line, character})``: the prompt the model would be given."""
    uri, position = _uri_position(command_args(args))
    if uri is None or position is None:
        return {"error": "usage: nearline.prompt(uri, {line, character})"}
    q = ls.query(uri, position)
    if q is None or ls.service is None:
        return {"error": f"no open document {uri} with position {position}"}
    built = ls.service.build_prompt(q)
    return {
        "prompt": built.text,
        "parts": built.breakdown(),
        "total_tokens": ls.service.prompt_tokens(built),
        "document": q.text,
    }


def document_text(ls: NearlineServer, *args: Any) -> dict[str, Any]:
    """The exact text the server holds for an open document (tests check sync with it)."""
    flat = command_args(args)
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


def accepted(ls: NearlineServer, *args: Any) -> bool:
    """``nearline.accepted(id)``: the client accepted a suggestion (a local counter only)."""
    flat = command_args(args)
    stats = ls.stats
    return bool(stats is not None and flat and stats.accepted(str(flat[0])))


def status(ls: NearlineServer, *args: Any) -> dict[str, Any]:
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
        # model.id auto: which model runs and why (what was measured on this machine).
        "model_choice": svc.model_choice() if svc else None,
        "settings": settings_to_dict(ls.settings),
        "stats": svc.stats.as_dict() if svc else {},
        "syntax": dict(svc.syntax.stats) if svc else {},
        "inflight": svc.inflight if svc else 0,
        "recent": list(svc.recent) if svc else [],
        "process": process_info(ls),
    }


def index(ls: NearlineServer, *args: Any) -> dict[str, Any]:
    """Index state and its files (the first 10,000 unless ``{"limit": N}`` says otherwise;
    ``count`` is always the full number)."""
    flat = command_args(args)
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


def _uri_position(flat: list[Any]) -> tuple[str | None, types.Position | None]:
    """Accept ``[uri, {line, character}]`` or ``[{uri | textDocument: {uri}, position}]``."""
    try:
        if len(flat) == 1 and isinstance(flat[0], dict):
            d = flat[0]
            uri = d.get("uri") or (d.get("textDocument") or {}).get("uri")
            pos = d["position"]
        else:
            uri, pos = flat[0], flat[1]
        return str(uri), types.Position(line=int(pos["line"]), character=int(pos["character"]))
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        return None, None


def process_info(ls: NearlineServer) -> dict[str, Any]:
    """What a soak test watches for leaks: resident memory, asyncio tasks, threads."""
    try:
        names = sorted(t.get_name() for t in asyncio.all_tasks())
    except RuntimeError:
        names = []
    return {
        "pid": os.getpid(),
        "rss_bytes": _rss_bytes(),
        "asyncio_tasks": len(names),
        # Which ones, so that a leak report says what leaked.
        "asyncio_task_names": names,
        # The server's own and the completion service's (warm-ups, speculations): a soak test
        # waits for both before counting leaks.
        "background_tasks": len(ls.tasks) + (ls.service.background if ls.service else 0),
        "pending_requests": len(ls.protocol._request_futures),
        "threads": threading.active_count(),
    }


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None  # not Linux
