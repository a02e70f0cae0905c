"""Work the server starts on its own: asking the client for settings, loading the model,
scanning and watching the workspace. Each shows its progress through ``progress.work_done``."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import TYPE_CHECKING

from lsprotocol import types

from nearline.lsp.progress import work_done
from nearline.lsp.signal import send_status
from nearline.workspace.index import WorkspaceIndex
from nearline.workspace.watcher import IndexWatcher

if TYPE_CHECKING:
    from nearline.lsp.server import NearlineServer

log = logging.getLogger(__name__)

# A client that never answers workspace/configuration must not keep the model from loading.
CONFIGURATION_TIMEOUT_S = 5.0


async def pull_configuration(ls: NearlineServer) -> bool:
    """Ask the client for the ``nearline`` section and apply it; True when the model must be
    reloaded for it."""
    try:
        result = await asyncio.wait_for(
            ls.workspace_configuration_async(
                types.ConfigurationParams(items=[types.ConfigurationItem(section="nearline")])
            ),
            CONFIGURATION_TIMEOUT_S,
        )
        raw = result[0] if result else None
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.warning("workspace/configuration failed: %s", exc or type(exc).__name__)
        raw = None
    return ls.apply_settings(raw if isinstance(raw, dict) else {}) if raw is not None else False


async def first_load(ls: NearlineServer, ask_client: bool) -> None:
    """The model load after ``initialized``: with the client's settings first where it has
    any. The service already counts as loading (``expect_start``): requests in the meantime
    wait for this model instead of finding none."""
    if ask_client:
        await pull_configuration(ls)
    await start_model(ls)


async def reload_after_pull(ls: NearlineServer) -> None:
    """The client said its settings changed: ask for them; reload the model if they change it
    (or if no model could be loaded so far)."""
    changed = await pull_configuration(ls)
    if ls.service is not None and (changed or ls.service.state in ("idle", "error")):
        await start_model(ls)


async def start_model(ls: NearlineServer) -> None:
    if ls.service is None:
        return
    t0 = time.perf_counter()
    async with work_done(ls, "load", "Nearline: loading model") as progress:
        send_status(ls, "loading")
        await ls.service.start()
        progress.end_message = ls.service.state
    send_status(ls)
    if ls.service.state == "ready" and ls.service.engine is not None:
        log.info("model ready in %.1fs: %s", time.perf_counter() - t0, ls.service.engine.info())


async def start_index(ls: NearlineServer) -> None:
    """(Re)build the workspace index in a thread, with $/progress, then start the watcher."""
    if not ls.roots:
        return
    loop = asyncio.get_running_loop()
    # A scan still running for the old settings or folders stops: this one replaces it.
    ls.scan_cancel.set()
    ls.scan_cancel = cancel = threading.Event()
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
        ls.sync_overlay(doc.uri)
    t0 = time.perf_counter()
    send_status(ls)
    async with work_done(ls, "index", "Nearline: indexing", percentage=0) as progress:
        last = [0.0]

        def report(done: int, total: int | None) -> None:
            now = time.monotonic()
            if now - last[0] < 0.25:
                return
            last[0] = now
            msg = f"{done}/{total} files" if total else f"{done} files found"
            progress.report_threadsafe(msg, int(done * 100 / total) if total else None)

        try:
            await loop.run_in_executor(None, lambda: index.scan(report, cancel))
        except Exception as exc:
            log.error("indexing failed: %s", exc)
        n = index.count()
        progress.end_message = f"{n} files"
    if cancel.is_set():
        return
    ls.index_scanned = ls.index is index
    send_status(ls)
    dt = time.perf_counter() - t0
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
