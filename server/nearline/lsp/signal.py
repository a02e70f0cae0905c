"""Telling the client what the server is doing: indexing, loading, ready, generating.

Two channels, because clients differ in what they render without custom code:

- ``$/progress`` (work-done progress) is shown by VS Code, Neovim (``vim.lsp.status()``, the
  ``LspProgress`` event that statusline plugins read), Helix and Emacs with no client code at
  all. A model run gets a token only when it lasts longer than ``GENERATING_DELAY_S``: most
  answers come sooner, and a progress bar that flashes on every keystroke is noise.
- ``nearline/status`` notifications, for Nearline's own editor integrations, which ask for them
  with the client capability ``experimental.nearlineStatus``: a status bar item or statusline
  wants every change at once, and a state, not a stream of progress tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, Literal

from nearline.lsp.progress import work_done

if TYPE_CHECKING:
    from nearline.lsp.server import NearlineServer

log = logging.getLogger(__name__)

STATUS_NOTIFICATION = "nearline/status"
GENERATING_DELAY_S = 0.3

State = Literal["indexing", "loading", "ready", "generating", "error"]


def wants_status(ls: NearlineServer) -> bool:
    """Whether the client asked for ``nearline/status`` (``experimental.nearlineStatus``)."""
    try:
        exp = ls.client_capabilities.experimental
    except Exception:
        return False
    return isinstance(exp, dict) and bool(exp.get("nearlineStatus"))


def overall_state(ls: NearlineServer) -> State:
    """The server's state when no model run is going on."""
    svc = ls.service
    if svc is not None and svc.state == "loading":
        return "loading"
    if ls.index is not None and not ls.index_scanned and ls.roots:
        return "indexing"
    if svc is not None and svc.state == "error":
        return "error"
    return "ready"


def send_status(ls: NearlineServer, state: State | None = None, uri: str | None = None) -> None:
    """Send ``nearline/status`` (the server's overall state unless given) to a client that
    asked for it; never to a client that has gone."""
    if not wants_status(ls) or not ls.connected:
        return
    params: dict[str, Any] = {"state": state or overall_state(ls), "uri": uri}
    with contextlib.suppress(Exception):
        ls.protocol.notify(STATUS_NOTIFICATION, params)


class _Run:
    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.begun = False
        self.task: asyncio.Task[None] | None = None


class GeneratingSignal:
    """One model run at a time (the service supersedes older ones): its start and end, shown
    through both channels. The service calls it as ``(uri, running)``."""

    def __init__(self, ls: NearlineServer) -> None:
        self._ls = ls
        self._run: _Run | None = None

    def __call__(self, uri: str, running: bool) -> None:
        self._end()
        if running:
            send_status(self._ls, "generating", uri)
            caps = self._ls.client_capabilities.window
            if caps is not None and caps.work_done_progress:
                run = self._run = _Run()
                run.task = self._ls.spawn(self._progress(run), "generating")
        else:
            send_status(self._ls, None, uri)

    def _end(self) -> None:
        run, self._run = self._run, None
        if run is None:
            return
        run.done.set()
        # Still inside the delay: no token exists yet, so stop before one is asked for. Past
        # it, the set event lets the progress end by itself (end after begin).
        if run.task is not None and not run.begun:
            run.task.cancel()

    async def _progress(self, run: _Run) -> None:
        try:
            await asyncio.wait_for(run.done.wait(), GENERATING_DELAY_S)
            return  # ended before it was worth showing
        except TimeoutError:
            pass
        run.begun = True
        async with work_done(self._ls, "generate", "Nearline") as progress:
            progress.report("generating")
            await run.done.wait()
