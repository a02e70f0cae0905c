"""The JSON-RPC side of the server: fixes to how pygls reads, answers and writes messages.

Cancels that overtake their request, requests with malformed params, notification futures
that pygls never forgets, and writes after the connection closed.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInternalError
from pygls.protocol import LanguageServerProtocol

log = logging.getLogger(__name__)


class _Unreadable:
    """A message whose params did not match its method (already answered with an error)."""

    jsonrpc = "2.0"


class _ClosingWriter:
    """The transport to the client, closed once for good (on ``exit``, or when a write fails):
    what is sent after that is dropped. pygls would report the failed write to the client, over
    the same closed transport, failing again and reporting that, recursively."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.closed = False

    def close(self) -> Any:
        self.closed = True
        return self.inner.close()

    def write(self, data: bytes) -> Any:
        if self.closed:
            return None
        try:
            return self.inner.write(data)
        except (OSError, ValueError) as exc:  # a broken pipe, a closed stdout
            self.closed = True
            log.info("connection to the client closed: %s", exc)
            return None


class NearlineProtocol(LanguageServerProtocol):
    """pygls drops a ``$/cancelRequest`` whose request it has not started yet (the two can
    overtake each other while the loop is busy). Remember such ids briefly and cancel the
    request when it shows up, so a cancel is never lost.

    pygls also never answers a request whose params have the wrong shape (the client waits
    forever) and logs a traceback for it: answer with InvalidParams instead, in one log line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.early_cancels: OrderedDict[Any, None] = OrderedDict()

    def set_writer(self, writer: Any, include_headers: bool = True) -> None:
        super().set_writer(_ClosingWriter(writer), include_headers)

    @property
    def closed(self) -> bool:
        return isinstance(self.writer, _ClosingWriter) and self.writer.closed

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
