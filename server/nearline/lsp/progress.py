"""Work-done progress (``$/progress``) for the server's own background work.

One helper for every piece of work the client may show a progress bar for (the workspace scan,
the model load). The order the protocol requires (create the token, begin, report, end) is the
helper's, not each caller's: nothing goes out for a token the client did not create, no end
without a begin, and nothing at all once the client is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from lsprotocol import types

if TYPE_CHECKING:
    from nearline.lsp.server import NearlineServer

log = logging.getLogger(__name__)

# A client that never answers the token request must not hold up the work.
CREATE_TIMEOUT_S = 5.0


class Progress:
    """What the work reports while it runs; silent unless the client showed a begin."""

    def __init__(self, ls: NearlineServer, token: str) -> None:
        self._ls = ls
        self.token = token
        self.begun = False
        self.end_message: str | None = None
        self._loop = asyncio.get_running_loop()

    def report(self, message: str, percentage: int | None = None) -> None:
        if not self.begun or not self._ls.connected:
            return
        with contextlib.suppress(Exception):
            self._ls.work_done_progress.report(
                self.token, types.WorkDoneProgressReport(message=message, percentage=percentage)
            )

    def report_threadsafe(self, message: str, percentage: int | None = None) -> None:
        """``report`` from a worker thread: it goes out on the event loop's thread, if the loop
        still runs (a scan thread may outlive it by a moment at exit)."""
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self.report, message, percentage)

    async def _begin(self, begin: types.WorkDoneProgressBegin) -> None:
        ls = self._ls
        caps = ls.client_capabilities.window
        if caps is None or not caps.work_done_progress or not ls.connected:
            return
        try:
            await asyncio.wait_for(ls.work_done_progress.create_async(self.token), CREATE_TIMEOUT_S)
            ls.work_done_progress.begin(self.token, begin)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("no progress shown for %r: %s", begin.title, exc)
            return
        self.begun = True

    def _end(self) -> None:
        if self.begun and self._ls.connected:
            with contextlib.suppress(Exception):
                self._ls.work_done_progress.end(
                    self.token, types.WorkDoneProgressEnd(message=self.end_message)
                )


@contextlib.asynccontextmanager
async def work_done(
    ls: NearlineServer, name: str, title: str, *, percentage: int | None = None
) -> AsyncIterator[Progress]:
    """Show ``title`` as the client's progress for the work inside the ``async with``; the token
    is ``nearline-<name>-<n>``.

    Where the client cannot show progress, refuses the token or does not answer in time, the
    work runs all the same and reports nothing. The end (with ``progress.end_message``) goes out
    however the work finishes, failure and cancellation included, but only after a begin."""
    progress = Progress(ls, f"nearline-{name}-{time.monotonic_ns()}")
    await progress._begin(
        types.WorkDoneProgressBegin(title=title, percentage=percentage, cancellable=False)
    )
    try:
        yield progress
    finally:
        progress._end()
