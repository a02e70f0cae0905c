"""Generation on a serving engine over an OpenAI-compatible ``/v1/completions`` API.

Everything that makes a suggestion good stays local — context composition, budgets, cleaning,
typing-through — and only the finished prompt string goes to the server (llama.cpp's
``llama-server``, llama-cpp-python's ``llama_cpp.server``, vLLM, Ollama). The server tokenizes
that string with special-token parsing, so file text is defused first (``sanitize``): a
file that contains ``<|file_sep|>`` must not be able to forge prompt structure there either.

Responses are streamed (SSE) so that the end of the line, the request's time limit and a cancel
(``$/cancelRequest``, a newer keystroke) close the connection at once, which tells the server to
stop generating. The engine, like the local one, is used from the service's single model worker
thread; it runs its own asyncio loop there so that a cancel can interrupt a read that is still
waiting for the server's first byte.

A server that is down or misbehaves never breaks the language server: the failure becomes one
clear message (carried to the service in ``GenerationResult.extra["notice"]``), answers are
empty, and later requests retry with exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import socket
import threading
import time
from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import httpx

from nearline.config import EngineSettings
from nearline.engine.base import GenerationRequest, GenerationResult, StopReason
from nearline.engine.tokens import GGUFTokenizer, TokenCounter
from nearline.weights.catalog import PromptFormat
from nearline.weights.download import ModelError

log = logging.getLogger(__name__)

# How often a request in flight looks at the cancel flag: a cancel is acted on within this.
POLL_S = 0.01
BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 30.0
# A response body larger than this is not a completion: stop reading it.
MAX_RESPONSE_CHARS = 4_000_000
# llama.cpp-server fields beyond the OpenAI API: reuse the KV cache across requests (the
# default in current llama-server, not in older ones); no repetition penalty, which
# llama-cpp-python's server applies by default (1.1) and which would make "temperature 0"
# differ from the local engine's pure greedy decoding; and timings in every chunk, so that a
# stream closed early (end of line, time limit, cancel) still tells how much of the prompt
# came from the cache. vLLM accepts and ignores unknown fields (with a warning per request, so
# they are not sent to it), Ollama ignores them, and a strict server that rejects them with a
# 400 naming one gets the request again without them.
LLAMA_EXTRAS: dict[str, Any] = {
    "cache_prompt": True,
    "repeat_penalty": 1.0,
    "timings_per_token": True,
}


class RemoteError(Exception):
    """A failure of the remote server, phrased for the user (without the URL)."""

    def __init__(
        self, message: str, retry_after_s: float | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.status = status


@dataclass(frozen=True)
class RemoteOptions:
    base_url: str
    """Ends with ``/v1``."""
    model: str | None
    api_key: str | None = field(repr=False)
    api_key_env: str | None
    timeout_s: float
    connect_timeout_s: float


def normalize_url(url: str) -> str:
    """``http://host:8080``, ``http://host:8080/`` and ``http://host:8080/v1`` all mean the
    server whose completions live at ``…/v1/completions``."""
    base = url.strip().rstrip("/")
    for tail in ("/completions", "/models"):
        base = base.removesuffix(tail)
    return base if base.endswith("/v1") else base + "/v1"


def remote_options(cfg: EngineSettings) -> RemoteOptions:
    """Resolve the engine settings; raises ``ModelError`` (shown once) when the key's variable is
    named but not set."""
    key: str | None = None
    if cfg.api_key_env:
        key = os.environ.get(cfg.api_key_env) or None
        if key is None:
            raise ModelError(
                f"engine.apiKeyEnv names {cfg.api_key_env}, but that environment variable is not "
                "set (or empty) where the Nearline server runs; set it there and restart the "
                "server, or clear engine.apiKeyEnv"
            )
    return RemoteOptions(
        base_url=normalize_url(cfg.url),
        model=cfg.model,
        api_key=key,
        api_key_env=cfg.api_key_env,
        timeout_s=cfg.timeout_ms / 1000,
        connect_timeout_s=cfg.connect_timeout_ms / 1000,
    )


@dataclass
class _Progress:
    """What a stream has delivered so far (read after the stream task is cancelled, too)."""

    parts: list[str] = field(default_factory=list)
    text: str = ""
    chunks: int = 0
    first_byte_at: float | None = None
    first_token_at: float | None = None
    finish_reason: str | None = None
    stop: StopReason | None = None
    usage: dict[str, Any] | None = None
    timings: dict[str, Any] | None = None
    received: int = 0

    def reset(self) -> None:
        self.__dict__.update(_Progress().__dict__)


@dataclass(frozen=True)
class _Call:
    """One completion call to the server: the prompt string and how to end it."""

    prompt: str
    max_tokens: int
    single_line: bool


def _error_detail(raw: bytes) -> str:
    """The server's own error message, short: OpenAI-style ``{"error": {"message": …}}``,
    FastAPI's ``{"detail": …}``, or the start of the body."""
    text = raw.decode("utf-8", errors="replace").strip()
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
    msg: Any = None
    if isinstance(obj, dict):
        err = obj.get("error")
        if isinstance(err, dict):
            msg = err.get("message")
        elif isinstance(err, str):
            msg = err
        if msg is None and "detail" in obj:
            msg = obj["detail"]
        if msg is None and isinstance(obj.get("message"), str):
            msg = obj["message"]
    if msg is None:
        msg = text
    if not isinstance(msg, str):
        msg = json.dumps(msg, ensure_ascii=False)
    msg = " ".join(msg.split())
    return msg[:300] + ("…" if len(msg) > 300 else "")


def _connect_cause(exc: BaseException) -> str:
    """The socket error under httpx's "All connection attempts failed", in words."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, socket.gaierror):
            return "unknown host"
        if isinstance(seen, OSError) and seen.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return "no route to the host"
        seen = seen.__cause__ or seen.__context__
    return str(exc) or type(exc).__name__


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


class RemoteEngine:
    """The ``engine.Engine`` protocol over an OpenAI-compatible completions server."""

    def __init__(
        self,
        opts: RemoteOptions,
        fmt: PromptFormat,
        catalog_id: str,
        counter: TokenCounter | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.opts = opts
        self.format = fmt
        self.catalog_id = catalog_id
        self._counter = counter
        self._transport = transport
        controls = counter.control_tokens() if isinstance(counter, GGUFTokenizer) else []
        # Every control string the server would parse out of the prompt: the format's and, when
        # the model's vocabulary is here, all of its control tokens.
        self._defuse = tuple(dict.fromkeys([*fmt.specials, *controls]))
        self._stops = tuple(s for s in fmt.stop if s)
        self._loop = asyncio.new_event_loop()
        self._client: httpx.AsyncClient | None = None
        self._probed = False
        self._served_model: str | None = opts.model
        self._server_kind: str | None = None
        self._extras = True
        # Failure state: consecutive failures, when to try again, and the message not yet shown.
        self.failures = 0
        self._retry_at = 0.0
        self.last_error: str | None = None
        self._pending_notice: str | None = None
        self.requests = 0

    # -- prompt -----------------------------------------------------------------------------
    def prompt_text(self, segments: Sequence[tuple[str, bool]]) -> str:
        """The prompt as one string: control runs verbatim, file text defused."""
        return "".join(
            text if special else sanitize(text, self.format, self._defuse)
            for text, special in segments
        )

    def tokenize(self, segments: Sequence[tuple[str, bool]]) -> list[int]:
        """Token ids with the local copy of the model's vocabulary when there is one (the server
        adds BOS itself); placeholder ids of an estimated count otherwise."""
        counter = self._counter
        if counter is None:
            return []
        out: list[int] = []
        for text, special in segments:
            tid = counter.token_id(text) if special and isinstance(counter, GGUFTokenizer) else None
            out.extend([tid] if tid is not None else counter.encode(text))
        return out

    def _count(self, segments: Sequence[tuple[str, bool]]) -> int:
        try:
            return len(self.tokenize(segments))
        except Exception:  # counting is only for reporting
            return 0

    # -- HTTP ---------------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        h: dict[str, str] = {}
        if self.opts.api_key:
            h["Authorization"] = f"Bearer {self.opts.api_key}"
        return h

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            t = self.opts.timeout_s
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(t, connect=self.opts.connect_timeout_s),
                transport=self._transport,
                headers={"User-Agent": "nearline"},
            )
        return self._client

    def _scrub(self, text: str) -> str:
        key = self.opts.api_key
        return text.replace(key, "***") if key else text

    def _transport_error(self, exc: Exception) -> RemoteError:
        if isinstance(exc, httpx.ConnectTimeout):
            return RemoteError(
                f"did not accept a connection within {self.opts.connect_timeout_s:g} s "
                "(engine.connectTimeoutMs)"
            )
        if isinstance(exc, httpx.ConnectError):
            return RemoteError(f"cannot be reached ({_connect_cause(exc)}); is it running?")
        if isinstance(exc, httpx.TimeoutException):
            return RemoteError(
                f"did not answer within {self.opts.timeout_s:g} s (engine.timeoutMs)"
            )
        return RemoteError(f"broke the connection ({type(exc).__name__}: {exc})")

    def _status_error(self, status: int, raw: bytes, retry_after: float | None) -> RemoteError:
        detail = _error_detail(raw)
        msg = f"answered HTTP {status}" + (f": {detail}" if detail else "")
        if status in (401, 403):
            if self.opts.api_key_env:
                msg += f" (check the key in ${self.opts.api_key_env}, engine.apiKeyEnv)"
            else:
                msg += " (it wants an API key: name its environment variable in engine.apiKeyEnv)"
        elif status == 404:
            msg += (
                " (engine.url must be the server's base URL, e.g. http://host:8080, and "
                "engine.model a model it serves)"
            )
        return RemoteError(msg, retry_after, status)

    async def _probe(self) -> None:
        """Once per engine: learn the served model (when ``engine.model`` is not set) and what
        kind of server this is. Only an unreachable server is an error here; a server without
        a usable model list is still tried for completions."""
        if self._probed:
            return
        try:
            resp = await self._http().get(self.opts.base_url + "/models", headers=self._headers())
        except httpx.HTTPError as exc:
            if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
                raise self._transport_error(exc) from None
            self._probed = True
            return
        self._probed = True
        if resp.status_code >= 400:
            return
        try:
            data = resp.json().get("data")
            first = data[0] if isinstance(data, list) and data else {}
        except (ValueError, AttributeError):
            return
        if not isinstance(first, dict):
            return
        if self._served_model is None and isinstance(first.get("id"), str):
            self._served_model = first["id"]
        owned = first.get("owned_by")
        self._server_kind = owned if isinstance(owned, str) else None
        if self._server_kind == "vllm":
            self._extras = False
        log.info(
            "remote completion server %s: model %s (owned_by %s)",
            self.opts.base_url, self._served_model, self._server_kind,
        )  # fmt: skip

    def _body(self, prompt: str, max_tokens: int, single_line: bool) -> dict[str, Any]:
        stop = (["\n"] if single_line else []) + list(self._stops)
        body: dict[str, Any] = {
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "stream": True,
            "stream_options": {"include_usage": True},
            "stop": stop,
        }
        if self._served_model:
            body["model"] = self._served_model
        if self._extras:
            body.update(LLAMA_EXTRAS)
        return body

    def _apply(self, obj: Any, prog: _Progress, single_line: bool) -> bool:
        """Fold one streamed JSON object into ``prog``; True when generation is over for us."""
        if not isinstance(obj, dict):
            raise RemoteError("sent a stream item that is not a JSON object")
        if obj.get("error") is not None:
            raise RemoteError(f"reported an error: {_error_detail(json.dumps(obj).encode())}")
        choices = obj.get("choices")
        if not isinstance(choices, list):
            raise RemoteError(
                "sent something that is not an OpenAI completions response (no choices)"
            )
        if isinstance(obj.get("usage"), dict):
            prog.usage = obj["usage"]
        if isinstance(obj.get("timings"), dict):
            prog.timings = obj["timings"]
        if not choices:
            return False
        choice = choices[0]
        piece = choice.get("text") if isinstance(choice, dict) else None
        if not isinstance(piece, str):
            raise RemoteError(
                "sent a choice without text (is engine.url a chat-only endpoint?); "
                "Nearline needs /v1/completions"
            )
        prog.chunks += 1
        if isinstance(choice.get("finish_reason"), str):
            prog.finish_reason = choice["finish_reason"]
        if not piece:
            return False
        if prog.first_token_at is None:
            prog.first_token_at = time.monotonic()
        prog.parts.append(piece)
        text = prog.text + piece
        # A server that renders a control token as text: the local engine stops there too.
        cut = min((i for s in self._stops if (i := text.find(s)) >= 0), default=-1)
        if cut >= 0:
            prog.text, prog.stop = text[:cut], "stop"
            return True
        if single_line and "\n" in text:
            prog.text, prog.stop = text.split("\n", 1)[0], "eol"
            return True
        prog.text = text
        return False

    async def _stream(self, call: _Call, prog: _Progress) -> None:
        url = self.opts.base_url + "/completions"
        single_line = call.single_line
        try:
            await self._probe()
            body = self._body(call.prompt, call.max_tokens, single_line)
            headers = {**self._headers(), "Accept": "text/event-stream"}
            async with self._http().stream("POST", url, json=body, headers=headers) as resp:
                prog.first_byte_at = time.monotonic()
                if resp.status_code >= 400:
                    raw = b""
                    async for chunk in resp.aiter_bytes():
                        raw += chunk
                        if len(raw) > 8192:
                            break
                    raise self._status_error(resp.status_code, raw, _retry_after(resp))
                ctype = resp.headers.get("content-type", "")
                if "event-stream" not in ctype:
                    await self._read_whole(resp, prog, single_line)
                    return
                # Closed explicitly: leaving early must not strand the generator on the loop.
                # (httpx types it as an iterator; it is an async generator.)
                lines = cast(AsyncGenerator[str, None], resp.aiter_lines())
                async with contextlib.aclosing(lines) as stream_lines:
                    async for line in stream_lines:
                        prog.received += len(line)
                        if prog.received > MAX_RESPONSE_CHARS:
                            raise RemoteError("sent an endless response")
                        line = line.strip()
                        if not line or line.startswith(":"):
                            continue  # keep-alive comments and event separators
                        if not line.startswith("data:"):
                            if line.split(":", 1)[0] in ("event", "id", "retry"):
                                continue
                            raise RemoteError(f"sent a malformed event stream ({line[:80]!r})")
                        data = line[5:].strip()
                        if data == "[DONE]":
                            break
                        try:
                            obj = json.loads(data)
                        except ValueError:
                            raise RemoteError(
                                f"sent data that is not JSON ({data[:80]!r})"
                            ) from None
                        if self._apply(obj, prog, single_line):
                            return  # leaving the block closes the connection: the server stops
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        if prog.chunks == 0:
            raise RemoteError("sent an empty completion stream")

    async def _read_whole(self, resp: httpx.Response, prog: _Progress, single_line: bool) -> None:
        """A server that ignored ``stream`` and sent one JSON completion."""
        raw = b""
        async for chunk in resp.aiter_bytes():
            raw += chunk
            if len(raw) > MAX_RESPONSE_CHARS:
                raise RemoteError("sent an endless response")
        try:
            obj = json.loads(raw)
        except ValueError:
            snippet = raw[:80].decode("utf-8", errors="replace")
            raise RemoteError(f"sent a response that is not JSON ({snippet!r})") from None
        self._apply(obj, prog, single_line)
        if prog.chunks == 0:
            raise RemoteError("sent a completion without choices")

    async def _run(
        self,
        call: _Call,
        prog: _Progress,
        gen_timeout_s: float | None,
        cancel: threading.Event,
        t0: float,
    ) -> StopReason | None:
        """Stream one completion, watching the cancel flag and both time limits. Returns why it
        was cut short (None when the stream ended by itself); raises ``RemoteError``."""
        deadline = t0 + self.opts.timeout_s
        while True:
            if cancel.is_set():
                return "cancelled"
            task = asyncio.ensure_future(self._stream(call, prog))
            reason: StopReason | None = None
            while reason is None:
                done, _ = await asyncio.wait({task}, timeout=POLL_S)
                if done:
                    break
                now = time.monotonic()
                if cancel.is_set():
                    reason = "cancelled"
                elif (
                    gen_timeout_s is not None
                    and prog.first_token_at is not None
                    and now > prog.first_token_at + gen_timeout_s
                ) or now > deadline:
                    reason = "timeout"
            if reason is not None:
                # Cancelling the task leaves the stream's `async with`, which closes the
                # connection: that is how a server learns to stop generating.
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
                if reason == "timeout" and not prog.text:
                    raise RemoteError(
                        f"did not answer within {self.opts.timeout_s:g} s (engine.timeoutMs)"
                    )
                return reason
            try:
                task.result()
                return None
            except RemoteError as exc:
                # A strict server that rejects the llama.cpp fields by name: once more without.
                named = any(k in str(exc) for k in LLAMA_EXTRAS)
                if exc.status != 400 or not named or not self._extras:
                    raise
                log.info("the completion server rejects %s; not sending them", list(LLAMA_EXTRAS))
                self._extras = False
                prog.reset()

    # -- failure bookkeeping ----------------------------------------------------------------
    def _failed(self, exc: RemoteError) -> str | None:
        """Count a failure, schedule the next attempt; returns the message to show, once per
        outage."""
        msg = self._scrub(str(exc))
        self.failures += 1
        delay = min(BACKOFF_MAX_S, BACKOFF_START_S * 2 ** (self.failures - 1))
        if exc.retry_after_s is not None:
            delay = min(BACKOFF_MAX_S, max(delay, exc.retry_after_s))
        self._retry_at = time.monotonic() + delay
        self.last_error = msg
        # Info, not warning: the first failure of an outage reaches the user as a message.
        log.info(
            "completion server %s %s (failure %d, next try in %.1fs)",
            self.opts.base_url, msg, self.failures, delay,
        )  # fmt: skip
        if self.failures == 1:
            end = "" if msg.endswith((".", "?", "!")) else "."
            return (
                f"Nearline: the completion server at {self.opts.base_url} {msg}{end} "
                "Suggestions stay empty until it answers; Nearline keeps retrying."
            )
        return None

    def _succeeded(self) -> None:
        if self.failures:
            log.info(
                "completion server %s answers again after %d failed attempts",
                self.opts.base_url, self.failures,
            )  # fmt: skip
        self.failures = 0
        self._retry_at = 0.0
        self.last_error = None

    def _take_notice(self, new: str | None = None) -> dict[str, Any]:
        notice, self._pending_notice = new or self._pending_notice, None
        return {"notice": notice} if notice else {}

    # -- Engine protocol --------------------------------------------------------------------
    def generate(self, req: GenerationRequest, cancel: threading.Event) -> GenerationResult:
        t0 = time.monotonic()
        if cancel.is_set():
            return GenerationResult(text="", stop_reason="cancelled")
        if t0 < self._retry_at:
            # Backing off: answer empty without bothering the server.
            return GenerationResult(
                text="",
                stop_reason="error",
                extra={"error": self.last_error, "backoff": True, **self._take_notice()},
            )
        call = _Call(self.prompt_text(req.segments), req.max_tokens, req.single_line)
        prog = _Progress()
        self.requests += 1
        try:
            cut = self._loop.run_until_complete(self._run(call, prog, req.timeout_s, cancel, t0))
        except RemoteError as exc:
            notice = self._failed(exc)
            return GenerationResult(
                text="",
                stop_reason="error",
                total_s=time.monotonic() - t0,
                extra={
                    "error": self.last_error,
                    "server": self.opts.base_url,
                    **self._take_notice(notice),
                },
            )
        if cut != "cancelled":
            self._succeeded()
        return self._result(req, prog, cut, t0)

    def _result(
        self, req: GenerationRequest, prog: _Progress, cut: StopReason | None, t0: float
    ) -> GenerationResult:
        reason: StopReason
        if cut is not None:
            reason = cut
        elif prog.stop is not None:
            reason = prog.stop
        elif prog.finish_reason == "length":
            reason = "max_tokens"
        else:
            reason = "eol" if req.single_line else "stop"
        usage = prog.usage or {}
        timings = prog.timings or {}
        # Without the server's timings, how much of the prompt it read is unknown: count all.
        prompt_tokens = _int(usage.get("prompt_tokens"))
        cached = _int(timings.get("cache_n"))
        evaluated = _int(timings.get("prompt_n"))
        if prompt_tokens is None:
            # Not every server reports usage while streaming: count here.
            if evaluated is not None:
                prompt_tokens = (cached or 0) + evaluated
            else:
                prompt_tokens = self._count(req.segments)
        generated = _int(usage.get("completion_tokens"))
        if generated is None:
            generated = _int(timings.get("predicted_n"))
        end = time.monotonic()
        return GenerationResult(
            text=prog.text,
            stop_reason=reason,
            prompt_tokens=prompt_tokens,
            reused_tokens=cached or 0,
            evaluated_tokens=evaluated if evaluated is not None else prompt_tokens,
            generated_tokens=generated if generated is not None else prog.chunks,
            prompt_s=(prog.first_byte_at - t0) if prog.first_byte_at else 0.0,
            first_token_s=(prog.first_token_at - t0) if prog.first_token_at else 0.0,
            total_s=end - t0,
            extra={"backend": "openai", **_server_ms(timings), **self._take_notice()},
        )

    def warm(
        self, segments: Sequence[tuple[str, bool]], cancel: threading.Event, doc: str = ""
    ) -> int:
        """Have the server read the prompt into its prefix cache (one generated token, the least
        every server accepts); returns the prompt tokens it evaluated. A failure counts towards
        the backoff and its message is shown with the next suggestion request."""
        if cancel.is_set() or time.monotonic() < self._retry_at:
            return 0
        t0 = time.monotonic()
        call = _Call(self.prompt_text(segments), 1, True)
        prog = _Progress()
        try:
            cut = self._loop.run_until_complete(self._run(call, prog, None, cancel, t0))
        except RemoteError as exc:
            self._pending_notice = self._failed(exc) or self._pending_notice
            return 0
        if cut == "cancelled":
            return 0
        self._succeeded()
        evaluated = _int((prog.timings or {}).get("prompt_n"))
        if evaluated is not None:
            return evaluated
        return _int((prog.usage or {}).get("prompt_tokens")) or self._count(segments)

    def cached_prefix(
        self, segments: Sequence[tuple[str, bool]], doc: str = ""
    ) -> tuple[int, int] | None:
        """Unknown: the server's prefix cache cannot be asked, so the full prompt is always
        sent (a short first prompt would only help a server as slow as a laptop)."""
        return None

    def info(self) -> dict[str, Any]:
        # Called from the LSP thread: plain reads only. Never the key, only its variable's name.
        return {
            "backend": "openai",
            "url": self.opts.base_url,
            "model": self._served_model or self.catalog_id,
            "catalog_model": self.catalog_id,
            "server": self._server_kind,
            "api_key_env": self.opts.api_key_env,
            "api_key_set": self.opts.api_key is not None,
            "exact_tokens": isinstance(self._counter, GGUFTokenizer),
            "requests": self.requests,
            "failures": self.failures,
            "last_error": self.last_error,
        }

    def close(self) -> None:
        if self._loop.is_closed():
            return
        with contextlib.suppress(Exception):
            if self._client is not None:
                self._loop.run_until_complete(self._client.aclose())
            # Streams left early still hold async generators: finish them before the loop goes.
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()


def _server_ms(timings: dict[str, Any]) -> dict[str, float]:
    """The server's own time for the request (llama-server), to tell it from the network's."""
    ms = [v for k in ("prompt_ms", "predicted_ms") if isinstance(v := timings.get(k), int | float)]
    return {"server_ms": round(sum(ms), 1)} if ms else {}


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def sanitize(text: str, fmt: PromptFormat, extra: Iterable[str] = ()) -> str:
    """Defuse control strings inside file text for backends that tokenize the whole prompt with
    special-token parsing (remote engines): a zero-width break keeps them from matching.
    ``extra``: more control strings, e.g. every control token of the model's vocabulary."""
    for s in (*fmt.specials, *extra):
        if len(s) > 1 and s in text:
            text = text.replace(s, s[0] + "\u200b" + s[1:])
    return text
