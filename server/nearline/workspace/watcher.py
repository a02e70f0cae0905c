"""File watcher: keeps a :class:`~nearline.workspace.index.WorkspaceIndex` current.

watchdog delivers events on its own thread; per event we do a couple of string
checks and one set insert.  A worker thread waits until the set has been quiet
for ``quiet_s`` (200 ms) -- or the oldest pending event is ``max_latency_s``
(1 s) old, so a long storm still makes progress -- then hands the whole batch
to :meth:`WorkspaceIndex.refresh` (which re-stats in one pass and hashes only
the files named) and calls ``on_change(changed_paths)`` if anything changed.

Only content-changing events are subscribed (created / modified / closed after
writing / deleted / moved): opens and read-only closes, including the index's
own reads, never reach Python.  Events under ``.git/`` are dropped at the
door, except ``.git/info/exclude``; ``.gitignore`` changes flow through and
make the index re-evaluate the subtree they govern.

When the kernel's inotify queue overflows, events are lost and watchdog only says so in
its log (it rebuilds its watches but tells no handler): the watcher listens for that log
record and rescans every root (unchanged files are not re-read), so a storm of changes never
leaves the index wrong.

The LSP layer doesn't start a watcher when ``index.watch`` is false.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)

from nearline.workspace.index import WorkspaceIndex

__all__ = ["IndexWatcher"]

log = logging.getLogger(__name__)

_EVENT_FILTER: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileClosedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
]

_GIT_SEG = os.sep + ".git" + os.sep
_GIT_TAIL = os.sep + ".git"
_INFO_EXCLUDE = _GIT_SEG + "info" + os.sep + "exclude"


class _Handler(FileSystemEventHandler):
    def __init__(self, sink: Callable[[str], None]) -> None:
        super().__init__()
        self._sink = sink

    def dispatch(self, event: FileSystemEvent) -> None:  # hot path: keep it tiny
        src = event.src_path
        if src:
            self._sink(src if isinstance(src, str) else os.fsdecode(src))
        dest = event.dest_path
        if dest:
            self._sink(dest if isinstance(dest, str) else os.fsdecode(dest))


_OVERFLOW_LOGGERS = ("watchdog.observers.inotify_c", "watchdog.observers.inotify")


class _OverflowHook(logging.Handler):
    def __init__(self, on_overflow: Callable[[], None]) -> None:
        super().__init__(logging.WARNING)
        self.on_overflow = on_overflow

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if "overflow" in record.getMessage().lower():
                self.on_overflow()
        except Exception:  # pragma: no cover - a log handler must never raise
            pass


class IndexWatcher:
    """Watch every root of ``index`` and refresh it in debounced batches.

    ``on_change`` is called on the watcher's worker thread with the set of
    paths whose entry changed (hop to the event loop yourself if needed).
    """

    def __init__(
        self,
        index: WorkspaceIndex,
        on_change: Callable[[set[Path]], Any] | None = None,
        *,
        quiet_s: float = 0.2,
        max_latency_s: float = 1.0,
        polling_fallback: bool = True,
        polling_interval_s: float = 5.0,
    ) -> None:
        self.index = index
        self.on_change = on_change
        self.quiet_s = quiet_s
        self.max_latency_s = max_latency_s
        self.polling_fallback = polling_fallback
        self.polling_interval_s = polling_interval_s
        self._lock = threading.Lock()
        self._pending: set[str] = set()
        self._first = 0.0
        self._last = 0.0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._busy = False
        self._observer: Any = None
        self._thread: threading.Thread | None = None
        self.mode: str | None = None  # "native" / "polling"
        self._hook = _OverflowHook(self._overflowed)
        self.overflows = 0
        # counters (read without locking; informational)
        self.events = 0
        self.batches = 0
        self.last_batch_paths = 0
        self.last_batch_seconds = 0.0

    # ---------------------------------------------------------------- events

    def _add(self, path: str) -> None:
        if _GIT_SEG in path:
            if not path.endswith(_INFO_EXCLUDE):
                return
        elif path.endswith(_GIT_TAIL):
            return
        now = time.monotonic()
        with self._lock:
            if not self._pending:
                self._first = now
                self._wake.set()
            self._pending.add(path)
            self._last = now
            self.events += 1

    def _overflowed(self) -> None:
        """Events were lost: rescan every root (a refresh of a root reuses unchanged entries)."""
        self.overflows += 1
        for root in self.index.roots:
            self._add(os.fspath(root))

    # --------------------------------------------------------------- control

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Install the watches (synchronously: events from now on are seen)
        and start the batching thread."""
        if self.running:
            return
        self._stop.clear()
        for name in _OVERFLOW_LOGGERS:
            logging.getLogger(name).addHandler(self._hook)
        handler = _Handler(self._add)
        self._observer = self._start_observer(handler)
        self._thread = threading.Thread(
            target=self._run, name="nearline-index-watcher", daemon=True
        )
        self._thread.start()

    def _start_observer(self, handler: _Handler) -> Any:
        from watchdog.observers import Observer

        roots = [r for r in self.index.roots if os.path.isdir(r)]
        try:
            obs = Observer()
            for r in roots:
                obs.schedule(handler, os.fspath(r), recursive=True, event_filter=_EVENT_FILTER)
            obs.start()
            self.mode = "native"
            return obs
        except OSError as exc:
            if not self.polling_fallback:
                raise
            log.warning(
                "native file watching unavailable (%s); polling every %.0fs",
                exc,
                self.polling_interval_s,
            )
            from watchdog.observers.polling import PollingObserver

            obs = PollingObserver(timeout=self.polling_interval_s)
            for r in roots:
                obs.schedule(handler, os.fspath(r), recursive=True, event_filter=_EVENT_FILTER)
            obs.start()
            self.mode = "polling"
            return obs

    def stop(self, timeout: float = 5.0) -> None:
        """Stop watching; pending (unprocessed) events are dropped."""
        self._stop.set()
        self._wake.set()
        for name in _OVERFLOW_LOGGERS:
            logging.getLogger(name).removeHandler(self._hook)
        obs, self._observer = self._observer, None
        if obs is not None:
            try:
                obs.stop()
                obs.join(timeout)
            except Exception:  # pragma: no cover - best effort on shutdown
                log.exception("stopping the observer failed")
        th, self._thread = self._thread, None
        if th is not None and th is not threading.current_thread():
            th.join(timeout)

    def __enter__(self) -> IndexWatcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- worker

    def _take_batch(self) -> set[str] | None:
        """Wait for a batch to be due; None when stopping."""
        while not self._stop.is_set():
            self._wake.wait(1.0)
            if self._stop.is_set():
                return None
            with self._lock:
                if not self._pending:
                    self._wake.clear()
                    continue
                now = time.monotonic()
                due = min(self._last + self.quiet_s, self._first + self.max_latency_s)
                if now >= due:
                    batch, self._pending = self._pending, set()
                    self._wake.clear()
                    self._busy = True
                    return batch
            self._stop.wait(max(due - now, 0.005))
        return None

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            try:
                self._process(batch)
            finally:
                with self._lock:
                    self._busy = False

    def _process(self, batch: set[str]) -> set[Path]:
        t0 = time.perf_counter()
        try:
            changed = self.index.refresh(batch)
        except Exception:
            log.exception("index refresh failed for %d paths", len(batch))
            return set()
        self.batches += 1
        self.last_batch_paths = len(batch)
        self.last_batch_seconds = time.perf_counter() - t0
        if changed and self.on_change is not None:
            try:
                self.on_change(changed)
            except Exception:
                log.exception("index on_change callback failed")
        return changed

    def info(self) -> dict[str, Any]:
        with self._lock:
            pending, busy = len(self._pending), self._busy
        return {
            "mode": self.mode,
            "events": self.events,
            "overflows": self.overflows,
            "batches": self.batches,
            "pending": pending,
            "busy": busy,
            "last_batch_paths": self.last_batch_paths,
            "last_batch_seconds": round(self.last_batch_seconds, 3),
        }

    def flush(self) -> set[Path]:
        """Process whatever is pending now, on the calling thread."""
        with self._lock:
            batch, self._pending = self._pending, set()
            self._wake.clear()
        return self._process(batch) if batch else set()

    def wait_idle(self, timeout: float = 10.0, settle_s: float | None = None) -> bool:
        """Block until nothing is pending or being processed and no event
        arrived for ``settle_s`` (default: ``quiet_s``).  For tests / bench."""
        settle = self.quiet_s if settle_s is None else settle_s
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                idle = not self._pending and not self._busy
                last = self._last
            if idle and time.monotonic() - last >= settle:
                return True
            time.sleep(0.02)
        return False
