"""The model: load a GGUF with llama.cpp, keep its KV cache warm, generate one line.

One ``LlamaEngine`` owns one llama.cpp context and must only be used from one thread (the
service's model worker). The LSP never blocks on it: the service awaits the worker, and a
``threading.Event`` set on cancel is checked between prompt batches and between tokens, so a
cancelled request stops within one batch / one token.

Prompt processing is the cost on a CPU (several times the tokens a second of generation, but
there are hundreds of prompt tokens to a few generated ones), so
every request reuses the longest common token prefix with what is already in the KV cache and
evaluates only the rest. We drive llama.cpp's low-level API ourselves instead of
``Llama.generate``: that gives cancellation inside a long prompt, greedy sampling without the
sampler chain's overhead, and exact accounting of evaluated tokens.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nearline.engine.base import (
    Cancelled,
    GenerationRequest,
    GenerationResult,
    StopReason,
)
from nearline.engine.diskcache import DiskStateCache, default_dir, file_identity
from nearline.engine.kernels import running_kernels
from nearline.engine.options import (
    DRAFT_MODEL_TOKENS,
    LoadOptions,
    draft_options,
)
from nearline.weights.catalog import PromptFormat

log = logging.getLogger(__name__)

SAVE_MIN_TOKENS = 256
"""A state goes to disk once this many prompt tokens were read that no stored state holds
(a warm-up, a cold prompt, a long stretch of typing); below that, a restart re-reads little."""
STATE_MIN_GAIN = 16
"""A saved state in memory is restored when it holds this many more leading prompt tokens than
the KV cache does (a copy costs milliseconds, reading the tokens more)."""
RESTORE_MIN_GAIN = 64
"""A state on disk is restored when it holds at least this many (one default batch) more
leading prompt tokens than the KV cache does."""

DRAFT_P_MIN = 0.75
"""A draft model stops drafting at a token it gives less than this probability (llama.cpp's
own default for its draft models): an unlikely token is likely rejected, and every token
after a rejected one is wasted work for both models."""
DRAFT_CATCHUP_S = 0.25
"""Time one request may spend bringing a draft model that is far behind (a prompt restored from
disk, a file not warmed up) up to the prompt; what it reads stays in its cache for the next
request, and until it has caught up the main model decodes alone."""


ABORT_POLL_S = 0.02
"""How often the abort watcher notices that its call has ended (a cancel itself is seen the
moment it is set, where the cancel flag can be waited on)."""


def _flag_reader() -> Any:
    """A native function that reads a flag without Python: ``strlen`` over a two-byte buffer
    ``[flag, 0]`` returns 1 while the flag is set, 0 otherwise, which as the C ``bool`` an
    abort callback returns is exactly the flag. A Python callback would need the GIL at every
    node of the graph (hundreds per batch) and would stall llama.cpp's thread whenever another
    Python thread computes. None where no C library is found (no mid-batch abort then)."""
    import ctypes.util

    try:
        if os.name == "nt":
            libc: Any = ctypes.cdll.msvcrt
        else:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        return ctypes.cast(libc.strlen, ctypes.c_void_p).value
    except (OSError, AttributeError):
        return None


class _Abort:
    """Stops a llama_decode in the middle of its batch when the call's cancel is set.

    A cancel is otherwise honoured only between batches: a request that preempts a background
    read (a warm-up, a speculation reading a cold prompt) would wait for the whole batch in
    flight, up to ``model.batchSize`` tokens of prompt processing. llama.cpp's abort callback is
    checked between the graph's nodes; an aborted decode drops the batch's positions from the
    KV cache (one ubatch per batch here), so the cache holds what it held before. One daemon
    thread per engine copies the armed cancel into the native flag the moment it is set."""

    def __init__(self, lib: Any, ctx: Any) -> None:
        self.flag = (ctypes.c_char * 2)()
        self._cond = threading.Condition()
        self._gen = 0
        self._cancel: Any = None
        self._thread: threading.Thread | None = None
        self.enabled = False
        reader = _flag_reader()
        if reader is None:
            return
        # Kept on self: C holds the pointer for the context's lifetime.
        self._callback = lib.ggml_abort_callback(reader)
        lib.llama_set_abort_callback(ctx, self._callback, ctypes.cast(self.flag, ctypes.c_void_p))
        self.enabled = True

    @property
    def fired(self) -> bool:
        return self.flag[0] != b"\x00"

    @contextlib.contextmanager
    def armed(self, cancel: Any) -> Any:
        """Abort decodes once ``cancel`` is set, until the block ends."""
        if not self.enabled:
            yield
            return
        with self._cond:
            self._gen += 1
            self.flag[0] = b"\x01" if cancel.is_set() else b"\x00"
            self._cancel = cancel
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="nearline-abort", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                self._gen += 1
                self._cancel = None
                self.flag[0] = b"\x00"

    def _watch(self) -> None:
        while True:
            with self._cond:
                while self._cancel is None:
                    self._cond.wait()
                gen, cancel = self._gen, self._cancel
            wait = getattr(cancel, "wait", None)
            while True:
                if wait is not None:
                    fired = bool(wait(ABORT_POLL_S))
                else:
                    fired = bool(cancel.is_set())
                    if not fired:
                        time.sleep(ABORT_POLL_S / 4)
                with self._cond:
                    if gen != self._gen:
                        break
                    if fired:
                        self.flag[0] = b"\x01"
                        # Wait for the call to end (disarm) before watching the next.
                        while gen == self._gen:
                            self._cond.wait()
                        break


class _Until:
    """A cancel flag that also fires at a deadline (``is_set`` is all prefill asks of it)."""

    def __init__(self, cancel: threading.Event, seconds: float) -> None:
        self.cancel, self.end = cancel, time.monotonic() + seconds

    def is_set(self) -> bool:
        return self.cancel.is_set() or time.monotonic() > self.end


_QUIET_CB: Any = None


def _silence_llama_logs() -> None:
    """llama.cpp logs to stderr through a C callback; keep it off the terminal unless asked.
    The callback object lives for the whole process: C keeps calling the pointer we give it."""
    global _QUIET_CB
    import llama_cpp

    if os.environ.get("NEARLINE_LLAMA_LOG"):
        return
    with contextlib.suppress(Exception):
        import llama_cpp._logger as llog

        llog.logger.setLevel(logging.CRITICAL)
    if _QUIET_CB is None:

        @llama_cpp.llama_log_callback
        def _quiet(level: int, text: bytes, user_data: Any) -> None:
            return None

        _QUIET_CB = _quiet
    llama_cpp.llama_log_set(_QUIET_CB, None)


def open_llama(**kwargs: Any) -> Any:
    """``llama_cpp.Llama(...)`` that never touches file descriptors 1 and 2.

    With ``verbose=False`` llama-cpp-python silences loading by ``dup2``-ing /dev/null over
    stdout and stderr for the whole process. In a language server that runs the load in a
    worker thread, every LSP message the event loop writes meanwhile vanishes and the client
    hangs. So construct with ``verbose=True`` (no redirection), keep its Python-level prints
    off the terminal by swapping ``sys.stderr`` for the duration, and silence llama.cpp's own
    C-level log with a callback instead.
    """
    import io
    import sys

    import llama_cpp

    _silence_llama_logs()
    saved = sys.stderr
    if not os.environ.get("NEARLINE_LLAMA_LOG"):
        sys.stderr = io.StringIO()
    try:
        llm = llama_cpp.Llama(verbose=True, **kwargs)
    finally:
        sys.stderr = saved
    llm.verbose = False
    # Llama() re-installs its logger level; our C callback stays in place.
    _silence_llama_logs()
    return llm


class Utf8Accumulator:
    """Turns a stream of token byte pieces into text without splitting multi-byte characters."""

    def __init__(self) -> None:
        self._buf = b""
        self.text = ""

    def push(self, piece: bytes) -> str:
        self._buf += piece
        out: list[str] = []
        buf = self._buf
        while buf:
            try:
                out.append(buf.decode("utf-8"))
                buf = b""
            except UnicodeDecodeError as exc:
                out.append(buf[: exc.start].decode("utf-8"))
                if exc.reason == "unexpected end of data":
                    # A character split across tokens: keep its first bytes for the next piece.
                    buf = buf[exc.start :]
                    break
                # A genuinely invalid byte: replace it and keep decoding what follows.
                out.append("\ufffd")
                buf = buf[exc.end :]
        self._buf = buf
        new = "".join(out)
        self.text += new
        return new

    def flush(self) -> str:
        """Whatever incomplete character is left at the end of generation, replaced."""
        new = self._buf.decode("utf-8", errors="replace")
        self._buf = b""
        self.text += new
        return new


@dataclass
class _SavedState:
    tokens: list[int]
    data: Any  # ctypes uint8 array holding llama_state_seq_get_data's bytes
    size: int


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def lookup_draft(history: Sequence[int], max_draft: int, ngram: int = 3) -> list[int]:
    """Prompt-lookup drafting: find the latest earlier occurrence of the last ``ngram`` tokens
    (then shorter n-grams, down to 2) and propose the tokens that followed it. Code completions
    often copy text already in the prompt (names, argument lists, the line above)."""
    n_hist = len(history)
    for n in range(ngram, 1, -1):
        if n_hist <= n:
            continue
        tail = list(history[n_hist - n :])
        # Scan backwards: the nearest occurrence is the most relevant continuation.
        for i in range(n_hist - n - 1, -1, -1):
            if history[i] == tail[0] and list(history[i : i + n]) == tail:
                out = list(history[i + n : i + n + max_draft])
                if out:
                    return out
                break
    return []


class LlamaEngine:
    """llama.cpp in-process via llama-cpp-python."""

    def __init__(self, opts: LoadOptions, fmt: PromptFormat, model_id: str) -> None:
        import llama_cpp

        _silence_llama_logs()
        self.opts = opts
        self.format = fmt
        self.model_id = model_id
        scaling_types = {
            "none": llama_cpp.LLAMA_ROPE_SCALING_TYPE_NONE,
            "linear": llama_cpp.LLAMA_ROPE_SCALING_TYPE_LINEAR,
            "yarn": llama_cpp.LLAMA_ROPE_SCALING_TYPE_YARN,
        }
        t0 = time.perf_counter()
        self.llm = open_llama(
            model_path=str(opts.path),
            n_ctx=opts.n_ctx,
            n_batch=opts.n_batch,
            n_ubatch=opts.n_batch,
            n_threads=opts.n_threads,
            n_threads_batch=opts.n_threads_batch or opts.n_threads,
            n_gpu_layers=opts.n_gpu_layers,
            rope_scaling_type=scaling_types[opts.rope_scaling],
            rope_freq_base=opts.rope_freq_base,
            rope_freq_scale=(1.0 / opts.rope_scaling_factor)
            if opts.rope_scaling != "none"
            else 0.0,
            yarn_orig_ctx=opts.yarn_orig_ctx if opts.rope_scaling == "yarn" else 0,
            logits_all=False,
        )
        self.load_s = time.perf_counter() - t0
        self._lib = llama_cpp
        self._abort = _Abort(llama_cpp, self.llm.ctx)
        self._vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self._n_vocab = self.llm.n_vocab()
        self._add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))
        self._bos = self.llm.token_bos()
        # Tokens already in the KV cache, position by position.
        self._cached: list[int] = []
        self._stop_ids = self._special_ids(fmt.stop)
        self._piece_cache: dict[int, bytes] = {}
        self._seg_cache: dict[tuple[str, bool], list[int]] = {}
        self.last_prefill = (0, 0)  # (reused, evaluated so far) of the latest prefill
        # KV states of recently used documents, least recently used first (see _switch_to).
        self._doc = ""
        self._states: OrderedDict[str, _SavedState] = OrderedDict()
        self.state_stats = {
            "saved": 0, "restored": 0, "evicted": 0, "failed": 0, "unchanged": 0, "aborted": 0,
        }  # fmt: skip
        # KV states on disk: survive a restart (see diskcache.py). Prompt tokens read since
        # the disk last held what the cache holds; past SAVE_MIN_TOKENS a save is considered.
        self._disk: DiskStateCache | None = None
        self._unsaved = 0
        self.disk_stats = {"restored_tokens": 0, "save_capture_ms": 0.0, "load_ms": 0.0}
        if opts.disk_cache_mb > 0:
            try:
                self._disk = DiskStateCache(
                    default_dir(), opts.disk_cache_mb * 1024 * 1024, self._disk_key()
                )
            except Exception as exc:
                log.warning("KV states on disk are off: %s", exc)
        self.spec_stats: dict[str, Any] = {"drafted": 0, "accepted": 0, "batches": 0}
        self._draft: LlamaEngine | None = None
        self._draft_caught_up = False
        self.draft_error: str | None = None
        if opts.draft_path is not None:
            self._load_draft(opts.draft_path)
        log.info(
            "model %s loaded in %.2fs (n_ctx=%d, threads=%d, gpu_layers=%d, rope base=%g %s x%g)",
            model_id, self.load_s, opts.n_ctx, opts.n_threads, opts.n_gpu_layers,
            opts.rope_freq_base, opts.rope_scaling, opts.rope_scaling_factor,
        )  # fmt: skip

    def _disk_key(self) -> dict[str, Any]:
        """Everything that makes a saved state valid for this context: the model file, the
        llama.cpp build (version and library file: a rebuild may change kernels and layout),
        and the settings that change what the KV cache holds."""
        lib_path = getattr(getattr(self._lib.llama_cpp, "_lib", None), "_name", "") or ""
        try:
            st = os.stat(lib_path)
            build = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            build = ""
        cp = self.llm.context_params
        opts = self.opts
        return {
            "model": opts.model_sha256 or file_identity(opts.path),
            "llama_cpp": getattr(self._lib, "__version__", ""),
            "build": build,
            "n_ctx": opts.n_ctx,
            "n_batch": opts.n_batch,
            "n_ubatch": int(getattr(cp, "n_ubatch", 0)),
            "rope": [
                opts.rope_freq_base,
                opts.rope_scaling,
                opts.rope_scaling_factor,
                opts.yarn_orig_ctx if opts.rope_scaling == "yarn" else 0,
            ],
            "type_k": int(getattr(cp, "type_k", -1)),
            "type_v": int(getattr(cp, "type_v", -1)),
            "flash_attn": int(getattr(cp, "flash_attn_type", -1)),
            "gpu_layers": opts.n_gpu_layers,
            "offload_kqv": bool(getattr(cp, "offload_kqv", False)),
        }

    # -- tokens ---------------------------------------------------------------------------
    def _special_ids(self, pieces: Sequence[str]) -> set[int]:
        ids: set[int] = set()
        for p in pieces:
            toks = self.llm.tokenize(p.encode(), add_bos=False, special=True)
            if len(toks) == 1:
                ids.add(toks[0])
        return ids

    def tokenize(self, segments: Sequence[tuple[str, bool]]) -> list[int]:
        out: list[int] = [self._bos] if self._add_bos and self._bos >= 0 else []
        for text, special in segments:
            key = (text, special)
            toks = self._seg_cache.get(key)
            if toks is None:
                toks = self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)
                # Repository context is long and repeats across keystrokes: cache its runs.
                if len(text) > 2048:
                    if len(self._seg_cache) > 64:
                        self._seg_cache.clear()
                    self._seg_cache[key] = toks
            out.extend(toks)
        return out

    def _piece(self, tok: int) -> bytes:
        b = self._piece_cache.get(tok)
        if b is None:
            b = self.llm.detokenize([tok], special=False)
            self._piece_cache[tok] = b
        return b

    # -- evaluation -----------------------------------------------------------------------
    def _truncate_to(self, keep: int) -> None:
        if keep < len(self._cached):
            self.llm._ctx.kv_cache_seq_rm(-1, keep, -1)
            del self._cached[keep:]
        self.llm.n_tokens = len(self._cached)

    def _eval(self, tokens: Sequence[int], cancel: threading.Event) -> None:
        step = self.opts.n_batch
        for i in range(0, len(tokens), step):
            if cancel.is_set():
                raise Cancelled
            batch = list(tokens[i : i + step])
            try:
                self.llm.eval(batch)
            except Exception:
                self._decode_failed()
                raise
            self._cached.extend(batch)
            self.last_prefill = (self.last_prefill[0], self.last_prefill[1] + len(batch))

    def _decode_failed(self) -> None:
        """After llama_decode failed: a cancel that aborted it mid-batch raises Cancelled (the
        batch's positions are gone from the cache, which holds what ``_cached`` says); any other
        failure leaves the cache in an unknown state, so start clean next time."""
        if self._abort.fired:
            self._truncate_to(len(self._cached))
            self.llm._ctx.kv_cache_seq_rm(-1, len(self._cached), -1)
            self.state_stats["aborted"] += 1
            raise Cancelled
        self.reset()

    def _argmax(self, i: int = -1) -> int:
        import numpy as np

        ptr = self._lib.llama_get_logits_ith(self.llm.ctx, i)
        return int(np.argmax(np.ctypeslib.as_array(ptr, shape=(self._n_vocab,))))

    def _eval_all_logits(self, tokens: Sequence[int]) -> None:
        """Decode ``tokens`` (at most one batch) keeping the logits of every position, to verify
        a speculative draft in one llama_decode."""
        llm = self.llm
        n_past = len(self._cached)
        llm._batch.set_batch(batch=list(tokens), n_past=n_past, logits_all=True)
        try:
            llm._ctx.decode(llm._batch)
        except Exception:
            self._decode_failed()
            raise
        llm.input_ids[n_past : n_past + len(tokens)] = tokens
        self._cached.extend(tokens)
        llm.n_tokens = len(self._cached)

    # -- per-document KV states -----------------------------------------------------------
    def _state_budget(self) -> int:
        return max(0, self.opts.state_cache_mb) * 1024 * 1024

    def _save_state(self, doc: str) -> None:
        lib, ctx = self._lib, self.llm.ctx
        size = int(lib.llama_state_seq_get_size(ctx, 0))
        if size <= 0 or size > self._state_budget():
            return
        buf = (ctypes.c_uint8 * size)()
        n = int(lib.llama_state_seq_get_data(ctx, buf, size, 0))
        if n <= 0:
            self.state_stats["failed"] += 1
            return
        self._states.pop(doc, None)
        self._states[doc] = _SavedState(list(self._cached), buf, n)
        self.state_stats["saved"] += 1
        total = sum(st.size for st in self._states.values())
        while total > self._state_budget() and self._states:
            _, old = self._states.popitem(last=False)
            total -= old.size
            self.state_stats["evicted"] += 1

    def _restore_state(self, doc: str) -> bool:
        """Bring the saved state ``doc`` into the KV cache. It stays saved: its own document
        left again unchanged then saves nothing (see _switch_to), and another document that
        started from it (a sibling) leaves it for its owner and for a third sibling."""
        st = self._states[doc]
        self._states.move_to_end(doc)  # just used: the last to be evicted
        self.llm._ctx.kv_cache_seq_rm(-1, 0, -1)
        if int(self._lib.llama_state_seq_set_data(self.llm.ctx, st.data, st.size, 0)) == 0:
            self._states.pop(doc, None)
            self.state_stats["failed"] += 1
            self.reset()
            return False
        self._cached = list(st.tokens)
        self.llm.n_tokens = len(self._cached)
        self.llm.input_ids[: len(self._cached)] = self._cached
        self.state_stats["restored"] += 1
        return True

    def _switch_to(self, doc: str, tokens: Sequence[int]) -> bool:
        """Before serving ``doc``: keep the state of the document we leave, and bring back the
        saved state (any document's) that shares the longest prefix with ``tokens`` when it
        beats what the cache holds now: a file's own, or a sibling's whose prompt starts the
        same way (``context.layout`` ``shared``). Copying a state costs milliseconds;
        re-reading a 2K-token prompt costs tens of seconds on a laptop CPU. Returns whether a
        state was restored."""
        if self._state_budget() == 0:
            self._doc = doc or self._doc
            return False
        if doc and doc != self._doc:
            if self._doc and len(self._cached) >= 64:
                kept = self._states.get(self._doc)
                if kept is not None and kept.tokens[: len(self._cached)] == self._cached:
                    # Nothing read since it was restored (at most cut back to a shorter common
                    # prefix): the kept state holds all of it, and copying 2K tokens of KV out
                    # of llama.cpp is what makes alternating between two documents slow.
                    self.state_stats["unchanged"] += 1
                else:
                    self._save_state(self._doc)
            self._doc = doc
        best, best_common = "", common_prefix(self._cached, tokens)
        # Also within one document: after a short cold prompt the cache holds that, and the
        # full prompt's read should start from a sibling's state, not from nothing.
        if best_common + STATE_MIN_GAIN < len(tokens):
            for key, st in self._states.items():
                c = common_prefix(st.tokens, tokens)
                if c > best_common + STATE_MIN_GAIN:
                    best, best_common = key, c
        return bool(best) and self._restore_state(best)

    # -- KV states on disk -----------------------------------------------------------------
    def _restore_from_disk(self, tokens: Sequence[int]) -> int:
        """On a cold prompt (after a restart, or a file whose state left memory): restore the
        stored state sharing the longest prefix with ``tokens`` when it beats the cache by at
        least RESTORE_MIN_GAIN tokens. Returns the prompt tokens it holds (0: none used). A bad
        file is logged and dropped by the disk cache; this request then reads cold."""
        dc = self._disk
        if dc is None:
            return 0
        have = common_prefix(self._cached, tokens)
        if len(tokens) - have < RESTORE_MIN_GAIN:
            return 0
        t0 = time.perf_counter()
        try:
            found = dc.find(tokens)
        except Exception as exc:
            log.warning("looking up KV states on disk failed: %s", exc)
            return 0
        if found is None or found[1] < have + RESTORE_MIN_GAIN:
            return 0
        stored, common = found
        if stored.n_tokens >= self.opts.n_ctx:
            dc.discard(stored, "more tokens than the context holds")
            return 0
        payload = dc.load(stored)
        if payload is None:
            return 0
        buf = (ctypes.c_uint8 * len(payload)).from_buffer(payload)
        self.llm._ctx.kv_cache_seq_rm(-1, 0, -1)
        if int(self._lib.llama_state_seq_set_data(self.llm.ctx, buf, len(payload), 0)) == 0:
            self.reset()
            dc.discard(stored, "llama.cpp refused its data")
            return 0
        self._cached = stored.token_list()
        self.llm.n_tokens = len(self._cached)
        self.llm.input_ids[: len(self._cached)] = self._cached
        self._unsaved = 0
        self.disk_stats["restored_tokens"] += common
        self.disk_stats["load_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        log.info(
            "restored %d of %d prompt tokens from %s in %.0f ms",
            common, len(tokens), stored.path.name, self.disk_stats["load_ms"],
        )  # fmt: skip
        return common

    def _save_to_disk(self, wait: bool = False) -> bool:
        """Capture the KV cache for the disk when it holds SAVE_MIN_TOKENS or more that no
        stored state does. Only the copy out of llama.cpp (milliseconds) happens here; the
        checksum and the write are the writer thread's, unless ``wait``. Returns whether a
        state was captured."""
        dc = self._disk
        if dc is None or self._unsaved < SAVE_MIN_TOKENS or len(self._cached) < SAVE_MIN_TOKENS:
            return False
        if wait:
            dc.flush()
        if dc.covered(self._cached) + SAVE_MIN_TOKENS > len(self._cached):
            self._unsaved = 0
            return False
        t0 = time.perf_counter()
        lib, ctx = self._lib, self.llm.ctx
        size = int(lib.llama_state_seq_get_size(ctx, 0))
        if size <= 0 or size > dc.cap:
            return False
        data = bytearray(size)
        n = int(
            lib.llama_state_seq_get_data(ctx, (ctypes.c_uint8 * size).from_buffer(data), size, 0)
        )
        if n <= 0:
            return False
        self.disk_stats["save_capture_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        payload = memoryview(data)[:n]
        if wait:
            dc.save(self._cached, payload)
        else:
            dc.save_async(list(self._cached), payload)
        self._unsaved = 0
        return True

    def prefill(self, tokens: Sequence[int], cancel: threading.Event) -> tuple[int, int]:
        """Bring the KV cache to ``tokens`` (re-evaluating at least the last one so its logits are
        fresh). Returns (reused, evaluated). No deadline: every evaluated token stays in the KV
        cache and is reused by the next keystroke, so a cold prompt is finished, not abandoned;
        only a cancel (e.g. a newer request) stops it."""
        common = common_prefix(self._cached, tokens)
        keep = min(common, len(tokens) - 1)
        self._truncate_to(keep)
        todo = tokens[keep:]
        self.last_prefill = (keep, 0)
        try:
            self._eval(todo, cancel)
        finally:
            self._unsaved += self.last_prefill[1]
        return keep, len(todo)

    def _prepare(self, segments: Sequence[tuple[str, bool]], reserve: int) -> list[int]:
        tokens = self.tokenize(segments)
        n_ctx = self.opts.n_ctx
        if len(tokens) + 1 >= n_ctx:
            # The composer budgets below n_ctx; this only guards a misconfiguration.
            tokens = tokens[-(n_ctx - reserve - 1) :]
        return tokens

    def generate(self, req: GenerationRequest, cancel: threading.Event) -> GenerationResult:
        with self._abort.armed(cancel):
            return self._generate(req, cancel)

    def _generate(self, req: GenerationRequest, cancel: threading.Event) -> GenerationResult:
        t0 = time.monotonic()
        tokens = self._prepare(req.segments, req.max_tokens)
        res = GenerationResult(text="", stop_reason="eol", prompt_tokens=len(tokens))
        restored = self._switch_to(req.doc, tokens)
        if (switch_ms := (time.monotonic() - t0) * 1000) >= 1:
            # Saving the state of the document left and restoring this one's (bench latency).
            res.extra["switch_ms"] = round(switch_ms, 1)
        if restored:
            res.extra["restored_ms"] = round(switch_ms, 1)
        if self._draft is not None:
            # The draft model reads the prompt when it first drafts (a line the model ends at
            # once never needs it; see _draft_ready); its state follows the document like ours.
            self._draft._switch_to(req.doc, tokens)
            draft_ms = self.spec_stats["draft_ms"]
            self._draft_caught_up = False
        if disk := self._restore_from_disk(tokens):
            res.extra["disk_restored"] = disk
            res.extra["disk_ms"] = self.disk_stats["load_ms"]
        try:
            res.reused_tokens, res.evaluated_tokens = self.prefill(tokens, cancel)
        except Cancelled:
            res.stop_reason = "cancelled"
            res.reused_tokens, res.evaluated_tokens = self.last_prefill
            res.total_s = time.monotonic() - t0
            return res
        res.prompt_s = time.monotonic() - t0
        # The time limit bounds generation, which is only useful for this request.
        deadline = time.monotonic() + req.timeout_s if req.timeout_s else None
        acc = Utf8Accumulator()
        reason: StopReason = "max_tokens"
        n_ctx = self.opts.n_ctx
        drafted = accepted = 0
        top = self._top_logprobs(2 * req.candidates) if req.candidates > 1 else []
        # Tokens decided but not yet shown; the last one is not in the KV cache yet (`fed`).
        queue: list[int] = [self._argmax()]
        fed = [False]
        res.first_token_s = time.monotonic() - t0
        while True:
            if cancel.is_set():
                reason = "cancelled"
                break
            tok, in_cache = queue.pop(0), fed.pop(0)
            if tok in self._stop_ids or self._lib.llama_vocab_is_eog(self._vocab, tok):
                reason = "eog"
                break
            if self._lib.llama_vocab_is_control(self._vocab, tok):
                reason = "stop"
                break
            acc.push(self._piece(tok))
            res.generated_tokens += 1
            if req.single_line and "\n" in acc.text:
                acc.text = acc.text.split("\n", 1)[0]
                reason = "eol"
                break
            if res.generated_tokens >= req.max_tokens:
                reason = "max_tokens"
                break
            if len(self._cached) + 1 >= n_ctx:
                reason = "context_full"
                break
            if deadline is not None and time.monotonic() > deadline:
                reason = "timeout"
                break
            if queue or in_cache:
                continue  # accepted draft tokens are in the cache; their successor is queued
            try:
                # Feeding the token back keeps it in the cache: if the user types what we
                # suggested, the next prompt's common prefix covers it for free.
                n_d, n_a = self._advance(tok, queue, fed, cancel, n_ctx)
            except Cancelled:
                reason = "cancelled"
                break
            drafted += n_d
            accepted += n_a
        if reason != "eol":
            acc.flush()
            acc.text = acc.text.split("\n", 1)[0] if req.single_line else acc.text
        res.text = acc.text
        res.stop_reason = reason
        res.total_s = time.monotonic() - t0
        if drafted:
            res.extra["drafted"], res.extra["accepted"] = drafted, accepted
        if self._draft is not None:
            res.extra["draft_ms"] = round(self.spec_stats["draft_ms"] - draft_ms, 1)
        if top and reason not in ("cancelled", "context_full"):
            res.alternatives = self._alternatives(req, tokens, top, res.text, cancel, deadline)
            res.total_s = time.monotonic() - t0
        # After the line is decided: a cancel means a newer request waits, so not then.
        if reason != "cancelled" and self._save_to_disk():
            res.extra["disk_saved"] = True
        return res

    # -- alternatives ---------------------------------------------------------------------
    def _logits(self) -> Any:
        import numpy as np

        ptr = self._lib.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self._n_vocab,)).astype(np.float64)

    def _top_logprobs(self, k: int) -> list[tuple[int, float]]:
        """The ``k`` most probable next tokens with their log-probabilities, best first."""
        import numpy as np

        logits = self._logits()
        m = float(logits.max())
        lse = m + float(np.log(np.exp(logits - m).sum()))
        k = min(k, len(logits))
        idx = np.argpartition(-logits, k - 1)[:k]
        idx = idx[np.argsort(-logits[idx])]
        return [(int(i), float(logits[i]) - lse) for i in idx]

    def _alternatives(
        self,
        req: GenerationRequest,
        tokens: Sequence[int],
        top: list[tuple[int, float]],
        greedy: str,
        cancel: threading.Event,
        deadline: float | None,
    ) -> list[tuple[str, float]]:
        """Greedy lines that start with the runner-up first tokens, each decoded from the end of
        the prompt (the KV cache is cut back to it), ranked by log-probability. Afterwards the
        cache holds the greedy line again, so typing through the first suggestion stays free.
        Shares the request's time limit; a cancel stops it."""
        base = len(tokens)
        if self._cached[:base] != list(tokens):
            return []
        greedy_fed = self._cached[base:]
        want = req.candidates - 1
        seen = {greedy.strip()}
        found: list[tuple[str, float]] = []
        try:
            for tok, logprob in top[1:]:
                if len(found) >= want or cancel.is_set():
                    break
                if deadline is not None and time.monotonic() > deadline:
                    break
                if tok in self._stop_ids or self._lib.llama_vocab_is_eog(self._vocab, tok):
                    continue
                if self._lib.llama_vocab_is_control(self._vocab, tok):
                    continue
                line = self._decode_line(base, tok, logprob, req, cancel, deadline)
                if line is not None and line[0].strip() and line[0].strip() not in seen:
                    seen.add(line[0].strip())
                    found.append(line)
            # Back to the greedy path: one batch of at most max_tokens tokens.
            self._truncate_to(base)
            self._eval(greedy_fed, cancel)
        except Cancelled:
            pass
        found.sort(key=lambda t: -t[1])
        return found

    def _decode_line(
        self,
        base: int,
        first: int,
        logprob: float,
        req: GenerationRequest,
        cancel: threading.Event,
        deadline: float | None,
    ) -> tuple[str, float] | None:
        """Greedy decoding of one line after the prompt (``base`` tokens), forced to start with
        ``first``; None when a limit cut it before the model ended the line."""
        import numpy as np

        self._truncate_to(base)
        acc = Utf8Accumulator()
        tok, n = first, 0
        while True:
            acc.push(self._piece(tok))
            n += 1
            if "\n" in acc.text:
                return acc.text.split("\n", 1)[0], logprob
            if n >= req.max_tokens or len(self._cached) + 2 >= self.opts.n_ctx:
                return None
            if deadline is not None and time.monotonic() > deadline:
                return None
            self._eval([tok], cancel)
            logits = self._logits()
            tok = int(np.argmax(logits))
            if tok in self._stop_ids or self._lib.llama_vocab_is_eog(self._vocab, tok):
                acc.flush()
                return acc.text, logprob
            if self._lib.llama_vocab_is_control(self._vocab, tok):
                acc.flush()
                return acc.text, logprob
            m = float(logits[tok])
            logprob += m - (m + float(np.log(np.exp(logits - m).sum())))

    # -- draft model ----------------------------------------------------------------------
    def _load_draft(self, path: Path) -> None:
        """Load the draft model; one whose vocabulary differs from ours cannot draft (its token
        ids would mean other text), so it is dropped with a warning and drafting stays off."""
        draft = LlamaEngine(draft_options(self.opts, path), self.format, path.name)
        problem = self._vocab_mismatch(draft)
        if problem:
            draft.close()
            self.draft_error = f"{path.name} cannot draft for {self.model_id}: {problem}"
            log.warning("%s; speculative decoding by a draft model is off", self.draft_error)
            return
        self._draft = draft
        self.spec_stats.update(draft_ms=0.0, draft_prompt_tokens=0, draft_behind=0)

    def _vocab_mismatch(self, other: LlamaEngine) -> str:
        if other._n_vocab != self._n_vocab:
            return f"{other._n_vocab} tokens in its vocabulary against {self._n_vocab}"
        # A sample across the whole vocabulary, special tokens at the end included.
        step = max(1, self._n_vocab // 2000)
        lib = self._lib
        for tok in [*range(0, self._n_vocab, step), self._n_vocab - 1]:
            mine = lib.llama_vocab_get_text(self._vocab, tok)
            theirs = lib.llama_vocab_get_text(other._vocab, tok)
            if bytes(mine) != bytes(theirs):
                return f"token {tok} differs"
        return ""

    def _draft_sync(self, tokens: Sequence[int], cancel: threading.Event) -> None:
        """Bring the draft model's KV cache to ``tokens`` (its own prefix reuse)."""
        d = self._draft
        assert d is not None
        t0 = time.perf_counter()
        try:
            self.spec_stats["draft_prompt_tokens"] += d.prefill(tokens, cancel)[1]
        finally:
            self.spec_stats["draft_ms"] += (time.perf_counter() - t0) * 1000

    def _draft_ready(self, cancel: threading.Event) -> bool:
        """Whether the draft model's cache is within one batch of ours. Far behind, it reads
        for at most DRAFT_CATCHUP_S once per request: a cold read by the draft model would
        delay this line more than its drafts can save."""
        d = self._draft
        assert d is not None
        if len(self._cached) - common_prefix(d._cached, self._cached) <= self.opts.n_batch:
            return True
        if self._draft_caught_up:
            return False
        self._draft_caught_up = True
        try:
            self._draft_sync(self._cached, _Until(cancel, DRAFT_CATCHUP_S))  # type: ignore[arg-type]
        except Cancelled:
            if cancel.is_set():
                raise
            self.spec_stats["draft_behind"] += 1
            return False
        return True

    def _model_draft(self, tok: int, k: int, cancel: threading.Event) -> list[int]:
        """Up to ``k`` tokens the draft model writes greedily after our cache and ``tok``; it
        stops at a newline (kept: a draft only pays on this line), before a token that would
        end the generation, and at a token it is unsure of (DRAFT_P_MIN)."""
        import numpy as np

        d = self._draft
        assert d is not None
        self._draft_sync([*self._cached, tok], cancel)
        t0 = time.perf_counter()
        out: list[int] = []
        try:
            while len(out) < k:
                logits = np.ctypeslib.as_array(
                    d._lib.llama_get_logits_ith(d.llm.ctx, -1), shape=(d._n_vocab,)
                )
                nxt = int(np.argmax(logits))
                m = float(logits[nxt])
                if 1.0 / float(np.exp(logits - m).sum()) < DRAFT_P_MIN:
                    break
                if nxt in self._stop_ids or self._lib.llama_vocab_is_eog(self._vocab, nxt):
                    break
                if self._lib.llama_vocab_is_control(self._vocab, nxt):
                    break
                out.append(nxt)
                if b"\n" in self._piece(nxt) or len(out) >= k:
                    break
                d._eval([nxt], cancel)
        finally:
            self.spec_stats["draft_ms"] += (time.perf_counter() - t0) * 1000
        return out

    def _advance(
        self,
        tok: int,
        queue: list[int],
        fed: list[bool],
        cancel: threading.Event,
        n_ctx: int,
    ) -> tuple[int, int]:
        """Feed ``tok`` and decide what follows it: with drafting (prompt lookup, or a draft
        model), a batch ``[tok, d1..dk]`` verifies k drafted tokens at once and every one equal
        to our greedy choice is accepted, so the text is exactly ours; otherwise one token.
        Returns (drafted, accepted)."""
        room = n_ctx - len(self._cached) - 2
        if self._draft is not None:
            k = min(self.opts.draft_tokens or DRAFT_MODEL_TOKENS, self.opts.n_batch - 1, room)
            ready = k > 0 and self._draft_ready(cancel)
            draft = self._model_draft(tok, k, cancel) if ready else []
        else:
            k = min(self.opts.draft_tokens, self.opts.n_batch - 1, room)
            draft = lookup_draft([*self._cached, tok], k) if k > 0 else []
        # A draft only pays while it stays on this line; cut it after the first newline.
        for j, d in enumerate(draft):
            if b"\n" in self._piece(d):
                draft = draft[: j + 1]
                break
        if not draft:
            self._eval([tok], cancel)
            queue.append(self._argmax())
            fed.append(False)
            return 0, 0
        if cancel.is_set():
            raise Cancelled
        base = len(self._cached)
        self._eval_all_logits([tok, *draft])
        self.spec_stats["batches"] += 1
        n_ok = 0
        nxt = -1
        for j, d in enumerate(draft):
            nxt = self._argmax(j)
            if nxt != d:
                break
            n_ok += 1
        else:
            nxt = self._argmax(len(draft))
        # Drop the rejected part of the draft from the cache.
        self._truncate_to(base + 1 + n_ok)
        queue.extend(draft[:n_ok])
        fed.extend([True] * n_ok)
        queue.append(nxt)
        fed.append(False)
        self.spec_stats["drafted"] += len(draft)
        self.spec_stats["accepted"] += n_ok
        return len(draft), n_ok

    def warm(
        self, segments: Sequence[tuple[str, bool]], cancel: threading.Event, doc: str = ""
    ) -> int:
        """Evaluate a prompt into the KV cache without generating (warm-up); returns the tokens
        evaluated. A cancel stops it between batches, keeping what was done."""
        tokens = self.tokenize(segments)
        if len(tokens) + 1 >= self.opts.n_ctx:
            tokens = tokens[: self.opts.n_ctx - 2]
        self._switch_to(doc, tokens)
        self._restore_from_disk(tokens)
        try:
            with self._abort.armed(cancel):
                evaluated = self.prefill(tokens, cancel)[1]
        except Cancelled:
            return self.last_prefill[1]
        self._save_to_disk()
        if self._draft is not None:
            # Both caches warm: the first keystroke's drafts then cost only the draft's tokens.
            self._draft._switch_to(doc, tokens)
            with contextlib.suppress(Cancelled):
                self._draft_sync(tokens, cancel)
        return evaluated

    def reset(self) -> None:
        if self._draft is not None:
            self._draft.reset()
        with contextlib.suppress(Exception):
            self.llm._ctx.kv_cache_seq_rm(-1, 0, -1)
        self._cached.clear()
        self.llm.n_tokens = 0
        self._unsaved = 0

    @property
    def cached_tokens(self) -> int:
        return len(self._cached)

    def cached_prefix(self, segments: Sequence[tuple[str, bool]], doc: str = "") -> tuple[int, int]:
        """(tokens of this prompt a request could start from without reading them, the
        prompt's tokens): the longest prefix held by the KV cache, a saved document state or a
        state on disk (only headers are compared, nothing is loaded). Lets the service decide
        whether the first answer should come from a short prompt."""
        tokens = self._prepare(segments, 0)
        best = common_prefix(self._cached, tokens)
        if self._state_budget() > 0:
            for st in self._states.values():
                best = max(best, common_prefix(st.tokens, tokens))
        if self._disk is not None and len(tokens) - best >= RESTORE_MIN_GAIN:
            try:
                found = self._disk.find(tokens)
            except Exception as exc:
                log.warning("looking up KV states on disk failed: %s", exc)
                found = None
            if found is not None and found[0].n_tokens < self.opts.n_ctx:
                best = max(best, found[1])
        return best, len(tokens)

    def info(self) -> dict[str, Any]:
        return {
            "backend": "local",
            "model": self.model_id,
            "path": str(self.opts.path),
            "n_ctx": self.opts.n_ctx,
            "threads": self.opts.n_threads,
            "threads_batch": self.opts.n_threads_batch or self.opts.n_threads,
            "batch_size": self.opts.n_batch,
            "gpu_layers": self.opts.n_gpu_layers,
            "gpu_offload_supported": bool(self._lib.llama_supports_gpu_offload()),
            # Which CPU kernels this build runs (scripts/install.sh picks the faster build).
            "kernels": running_kernels(),
            "rope_freq_base": self.opts.rope_freq_base,
            "rope_scaling": self.opts.rope_scaling,
            "rope_scaling_factor": self.opts.rope_scaling_factor,
            "load_s": round(self.load_s, 3),
            "state_cache": {
                "documents": len(self._states),
                "mb": round(sum(st.size for st in self._states.values()) / 2**20, 1),
                "budget_mb": self.opts.state_cache_mb,
                **self.state_stats,
            },
            "draft_tokens": self.opts.draft_tokens,
            # The ``auto`` settings: what the calibration decided and what it measured.
            "tuning": self.opts.tuning,
            "speculative": dict(self.spec_stats),
            "draft_model": self._draft_info(),
            "disk_cache": (
                {**self._disk.info(), **self.disk_stats} if self._disk is not None else None
            ),
        }

    def _draft_info(self) -> dict[str, Any] | None:
        d = self._draft
        if d is None:
            return {"error": self.draft_error} if self.draft_error else None
        drafted = self.spec_stats["drafted"]
        return {
            "model": d.model_id,
            "path": str(d.opts.path),
            "tokens": self.opts.draft_tokens or DRAFT_MODEL_TOKENS,
            "load_s": round(d.load_s, 3),
            "cached_tokens": d.cached_tokens,
            "acceptance": round(self.spec_stats["accepted"] / drafted, 3) if drafted else None,
        }

    def close(self) -> None:
        if self._draft is not None:
            self._draft.close()
        # What was read since the last save would otherwise be lost with the process.
        if self._disk is not None:
            try:
                self._save_to_disk(wait=True)
                self._disk.flush()
            except Exception as exc:
                log.warning("saving the KV state on close failed: %s", exc)
        with contextlib.suppress(Exception):
            self.llm.close()
