"""The model in a child process, so that a crash in llama.cpp cannot take the language server down.

llama.cpp is native code: a segfault, an abort or the kernel's OOM killer ends whatever process
it runs in. ``ProcessEngine`` implements ``engine.Engine`` by running the real engine in a child
process (``engine.isolation: process``, the default) and forwarding every call to it over a
pipe, *by method name*, with arguments and results pickled whole. So a field added to
``GenerationRequest``/``GenerationResult`` or a method added to ``LlamaEngine`` crosses the
boundary with no change here (``engine.some_new_method(...)`` is forwarded too).

Start: the "spawn" method, never fork (the server has threads; a forked child would inherit
locks another thread held). The child is built from a picklable zero-argument *builder* (in the
server: ``factory.build_llama_engine`` bound to the model's options), so the server process never
imports llama.cpp; model load errors raised by the builder reach the caller as the same
exceptions (``ModelError`` with the same message).

Cancellation: every ``threading.Event`` argument is replaced by one flag in shared memory that
the child's engine polls exactly as it polls the Event (``is_set()`` between prompt batches and
between tokens). While a call runs, the calling thread blocks on the pipe and on the child's
exit, and a forwarder thread blocked in ``Event.wait()`` copies the Event into the flag the
moment it is set, so a cancel still stops the engine within one batch / one token. The flag is a plain shared byte rather than a
``multiprocessing.Event``: the latter takes a lock, and a child killed while holding it would
leave the server blocked forever on its next ``set()``.

The child never writes to the server's stdout (which carries LSP): its fd 1 is pointed at fd 2
before anything else runs. It dies with the server (``PR_SET_PDEATHSIG`` on Linux; EOF on the
pipe elsewhere). Note that Linux sends that signal when the *thread* that started the child
ends, so start and restart it from a long-lived thread (the service's model thread is one).

When the child dies during a call, the call raises ``WorkerCrashed`` at once (nothing hangs),
and the next call (or ``restart()``) starts a new child and reloads the model, after a backoff
if crashes come quickly; after ``max_crashes`` within ``crash_window_s`` it gives up with
``WorkerFailed`` (a ``ModelError``) until a new engine is created.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from nearline.engine.base import GenerationResult
from nearline.weights.catalog import PromptFormat
from nearline.weights.download import ModelError

log = logging.getLogger(__name__)

WATCH_S = 0.05
"""How often the cancel forwarder notices that its call has ended (a cancel itself is forwarded
the moment it is set)."""
STUCK_CHECK_S = 1.0
MAX_CRASHES = 3
CRASH_WINDOW_S = 60.0
BACKOFF_S = 1.0
"""Wait before the 2nd restart within the window; doubles for each further one."""
BACKOFF_MAX_S = 30.0
CLOSE_TIMEOUT_S = 5.0
STUCK_S = 120.0
"""A call still running this long after its cancel is stuck in native code: the process is
killed and restarted like a crashed one. A healthy engine honours a cancel within one prompt
batch (`model.batchSize` tokens: under a second by default, a minute at the largest size)."""
OOM_SCORE_ADJ = 500
"""Make the model process, not the server, the one the kernel's OOM killer picks."""

_PR_SET_PDEATHSIG = 1


class WorkerCrashed(RuntimeError):
    """The model process died during this call; its work is lost. The engine starts a new
    process on the next call or on ``restart()``. Raised once per death."""


class WorkerFailed(ModelError):
    """The model process could not be (re)started: it kept crashing, or the model no longer
    loads. The engine stays unusable; create a new one."""


class SharedFlag:
    """The child's side of a cancel Event: the subset of ``threading.Event`` engines use, on a
    byte of shared memory, without a lock."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def is_set(self) -> bool:
        return bool(self._raw.value)

    def set(self) -> None:
        self._raw.value = 1

    def clear(self) -> None:
        self._raw.value = 0

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True


class _CancelForwarder:
    """Copies the running call's cancel Event into the child's flag the moment it is set.

    One daemon thread per engine blocks in ``Event.wait()``, which wakes at once on ``set()``:
    no polling by the calling thread, and no wake-ups while the child computes that would take
    a CPU from llama.cpp's threads. A generation number under a lock keeps a late ``set()`` of
    a finished call from cancelling the next one.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._gen = 0
        self._events: list[threading.Event] = []
        self._flag: SharedFlag | None = None
        self._thread: threading.Thread | None = None

    def watch(self, events: list[threading.Event], flag: SharedFlag) -> None:
        with self._cond:
            self._gen += 1
            flag.clear()
            if any(e.is_set() for e in events):
                flag.set()
            elif events:
                self._events, self._flag = events, flag
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="nearline-cancel-forwarder", daemon=True
                    )
                    self._thread.start()
                self._cond.notify()

    def unwatch(self) -> None:
        with self._cond:
            self._gen += 1
            self._events, self._flag = [], None

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._events:
                    self._cond.wait()
                gen, events, flag = self._gen, self._events, self._flag
            first, rest = events[0], events[1:]
            while True:
                fired = first.wait(WATCH_S) or any(e.is_set() for e in rest)
                with self._cond:
                    if self._gen != gen:
                        break
                    if fired and flag is not None:
                        flag.set()
                        self._events = []
                        break


class _CancelArg:
    """Stands in, on the wire, for a ``threading.Event`` argument."""


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling (``ModelError``, ``ValueError``…), else a RuntimeError
    that keeps its type name and message."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _send(conn: Connection, msg: tuple[Any, ...]) -> None:
    try:
        data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        data = pickle.dumps(("raise", RuntimeError(f"unpicklable reply: {exc}"), ""))
    conn.send_bytes(data)


def _prefer_oom_kill() -> None:
    # Raising one's own score needs no privilege; a failure changes nothing else.
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as f:
        f.write(str(OOM_SCORE_ADJ))


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # The server may have gone before prctl took effect.
    if os.getppid() != parent_pid:
        os._exit(0)


def _child_main(conn: Connection, flag_raw: Any, builder_bytes: bytes, parent_pid: int) -> None:
    """The model process: build the engine, then answer calls until EOF or "close"."""
    # fd 1 is the server's stdout, i.e. the LSP stream: anything written there (a print, a C
    # library's printf) would corrupt it. Point it at stderr before anything else runs.
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    _die_with_parent(parent_pid)
    _prefer_oom_kill()
    # The server decides when this process ends (a terminal's Ctrl-C reaches the whole group).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        builder: Callable[[], Any] = pickle.loads(builder_bytes)
        engine = builder()
    except BaseException as exc:
        _send(conn, ("error", _portable(exc), traceback.format_exc()))
        return
    flag = SharedFlag(flag_raw)
    # Methods are told apart from plain attributes without reading properties.
    cls = type(engine)
    methods = sorted(
        {n for n in dir(cls) if not n.startswith("_") and callable(getattr(cls, n, None))}
        | {
            n
            for n, v in getattr(engine, "__dict__", {}).items()
            if not n.startswith("_") and callable(v)
        }
    )
    try:
        info = dict(engine.info())
    except Exception:
        info = {}
    _send(conn, ("ready", info, methods))
    while True:
        try:
            msg = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            break  # the server is gone
        kind = msg[0]
        if kind == "close":
            break
        try:
            if kind == "call":
                _, name, args, kwargs = msg
                args = tuple(flag if isinstance(a, _CancelArg) else a for a in args)
                kwargs = {k: flag if isinstance(v, _CancelArg) else v for k, v in kwargs.items()}
                reply: tuple[Any, ...] = ("ok", getattr(engine, name)(*args, **kwargs))
            elif kind == "getattr":
                reply = ("ok", getattr(engine, msg[1]))
            else:
                reply = ("raise", RuntimeError(f"unknown request {kind!r}"), "")
        except Exception as exc:
            reply = ("raise", _portable(exc), traceback.format_exc())
        # The engine's info() rides along, so the server can show it without asking.
        try:
            reply = (*reply, dict(engine.info()))
        except Exception:
            reply = (*reply, None)
        try:
            _send(conn, reply)
        except OSError:
            break
    with contextlib.suppress(Exception):
        engine.close()


def describe_exit(code: int | None) -> str:
    """How a process ended, as the end of "the model process …"."""
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            return f"was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


# What the model process was doing, for messages ("… while writing a suggestion").
_DOING = {
    "generate": "while writing a suggestion",
    "warm": "while reading a file ahead",
    "load": "while loading the model",
}


class ProcessEngine:
    """An ``Engine`` whose model lives in a child process (see the module docstring).

    Like any engine, call it from one thread at a time (calls are serialised by a lock);
    ``info()`` alone may be called from any thread and never waits for the child.
    """

    def __init__(
        self,
        builder: Callable[[], Any],
        fmt: PromptFormat,
        label: str,
        *,
        max_crashes: int = MAX_CRASHES,
        crash_window_s: float = CRASH_WINDOW_S,
        backoff_s: float = BACKOFF_S,
        stuck_s: float = STUCK_S,
    ) -> None:
        self.format = fmt
        self.label = label
        self.max_crashes = max_crashes
        self.crash_window_s = crash_window_s
        self.backoff_s = backoff_s
        self.stuck_s = stuck_s
        # Pickled here so that a builder the child could not rebuild fails now, in the caller.
        self._builder_bytes = pickle.dumps(builder, protocol=pickle.HIGHEST_PROTOCOL)
        self._ctx = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._proc: Any = None
        self._conn: Connection | None = None
        self._flag: SharedFlag | None = None
        self._info: dict[str, Any] = {}
        self._methods: frozenset[str] = frozenset()
        self._crashes: deque[float] = deque()
        self._forwarder = _CancelForwarder()
        self._failed: WorkerFailed | None = None
        self._closed = False
        self.restarts = 0
        self.crashes = 0
        self.last_crash: str | None = None
        self.spawn_s = 0.0
        with self._lock:
            try:
                self._spawn()
            except WorkerCrashed:
                raise ModelError(
                    f"the model process died while loading {label} ({self.last_crash}): the "
                    "file may be corrupt or unsupported, or the machine out of memory"
                ) from None

    # -- the Engine protocol ----------------------------------------------------------------
    # Arguments pass through as given, so the engine's signatures can change without this file.
    def tokenize(self, *args: Any, **kwargs: Any) -> list[int]:
        result: list[int] = self.call("tokenize", *args, **kwargs)
        return result

    def generate(self, *args: Any, **kwargs: Any) -> GenerationResult:
        result: GenerationResult = self.call("generate", *args, **kwargs)
        return result

    def warm(self, *args: Any, **kwargs: Any) -> int:
        result: int = self.call("warm", *args, **kwargs)
        return result

    def cached_prefix(self, *args: Any, **kwargs: Any) -> tuple[int, int] | None:
        result: tuple[int, int] | None = self.call("cached_prefix", *args, **kwargs)
        return result

    def info(self) -> dict[str, Any]:
        """The child engine's ``info()`` as of the end of the last call, plus the worker's state.
        Never talks to the child: the status command calls this from the event loop while a
        call may be running."""
        proc = self._proc
        state = (
            "closed" if self._closed
            else "failed" if self._failed is not None
            else "running" if proc is not None
            else "restarting"
        )  # fmt: skip
        return {
            **self._info,
            "isolation": "process",
            "worker_pid": proc.pid if proc is not None else None,
            "worker_state": state,
            "worker_restarts": self.restarts,
            "worker_crashes": self.crashes,
            "worker_last_crash": self.last_crash,
            "worker_start_s": round(self.spawn_s, 3),
        }

    def close(self) -> None:
        got = self._lock.acquire(timeout=CLOSE_TIMEOUT_S)
        try:
            self._closed = True
            self._stop_child()
        finally:
            if got:
                self._lock.release()

    # -- beyond the protocol ----------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None else None

    def restart(self) -> None:
        """Make sure a child is running (after a crash: start one, with backoff). Raises
        ``WorkerFailed`` when it gives up."""
        with self._lock:
            self._ensure_child()

    def call(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """Call ``name`` on the child's engine. ``threading.Event`` arguments become its cancel
        flag; everything else is pickled as it is."""
        with self._lock:
            self._ensure_child()
            return self._roundtrip(("call", name), args, kwargs)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names this class does not define: forward to the child's engine,
        # as a method when the engine's class has one by that name, else as an attribute.
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self.__dict__.get("_methods", ()):
            return functools.partial(self.call, name)
        with self._lock:
            self._ensure_child()
            return self._roundtrip(("getattr", name), (), {})

    # -- the child --------------------------------------------------------------------------
    def _spawn(self) -> None:
        """Start a child and wait until its engine is built. Raises what the builder raised,
        or ``WorkerCrashed`` when the child died first."""
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        raw = self._ctx.RawValue(ctypes.c_ubyte, 0)
        proc = self._ctx.Process(
            target=_child_main,
            args=(child_conn, raw, self._builder_bytes, os.getpid()),
            name=f"nearline-model {self.label}",
            daemon=True,
        )
        t0 = time.perf_counter()
        proc.start()
        # Only the child holds its end now: when the child dies, this side reads EOF.
        child_conn.close()
        self._proc, self._conn, self._flag = proc, parent_conn, SharedFlag(raw)
        msg = self._wait_reply(_DOING["load"])
        if msg[0] == "error":
            self._stop_child()
            exc = msg[1]
            if isinstance(exc, ModelError | ValueError | OSError):
                raise exc
            raise ModelError(f"could not load {self.label} in the model process: {exc}")
        _, self._info, methods = msg
        self._methods = frozenset(methods)
        self.spawn_s = time.perf_counter() - t0
        log.info("model process %d ready in %.2fs (%s)", proc.pid, self.spawn_s, self.label)

    def _ensure_child(self) -> None:
        if self._closed:
            raise WorkerFailed("the model process was shut down")
        if self._failed is not None:
            raise self._failed
        proc = self._proc
        if proc is not None:
            if proc.exitcode is None:
                return
            # Died between calls (e.g. the OOM killer): this call is the one that reports it.
            raise self._crashed("between requests")
        while True:
            now = time.monotonic()
            while self._crashes and now - self._crashes[0] > self.crash_window_s:
                self._crashes.popleft()
            n = len(self._crashes)
            if n >= self.max_crashes:
                self._failed = WorkerFailed(
                    f"the model process crashed {n} times within {self.crash_window_s:.0f} s "
                    f"(last: {self.last_crash}); completions are off until the settings "
                    "change or the server restarts"
                )
                raise self._failed
            if n >= 2:
                time.sleep(min(BACKOFF_MAX_S, self.backoff_s * 2 ** (n - 2)))
            try:
                self._spawn()
            except WorkerCrashed:
                continue  # counted: the loop decides between backing off and giving up
            except Exception as exc:
                self._failed = WorkerFailed(f"could not restart the model process: {exc}")
                raise self._failed from None
            self.restarts += 1
            return

    def _roundtrip(self, head: tuple[str, str], args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        conn, flag = self._conn, self._flag
        assert conn is not None and flag is not None
        events = [a for a in (*args, *kwargs.values()) if isinstance(a, threading.Event)]
        wire_args = tuple(_CancelArg() if isinstance(a, threading.Event) else a for a in args)
        wire_kwargs = {
            k: _CancelArg() if isinstance(v, threading.Event) else v for k, v in kwargs.items()
        }
        # Pickling errors surface here, before anything is written: the pipe stays in step.
        data = pickle.dumps((*head, wire_args, wire_kwargs), protocol=pickle.HIGHEST_PROTOCOL)
        doing = _DOING.get(head[1], f"during {head[1]}")
        self._forwarder.watch(events, flag)
        try:
            try:
                conn.send_bytes(data)
            except OSError:
                raise self._crashed(doing) from None
            msg = self._wait_reply(doing)
        finally:
            self._forwarder.unwatch()
        if isinstance(msg[-1], dict):
            self._info = msg[-1]
        if msg[0] == "ok":
            return msg[1]
        exc, tb = msg[1], msg[2]
        if tb and isinstance(exc, BaseException):
            exc.add_note(f"in the model process:\n{tb}")
        raise exc

    def _wait_reply(self, what: str) -> tuple[Any, ...]:
        conn, proc, flag = self._conn, self._proc, self._flag
        assert conn is not None and proc is not None and flag is not None
        cancelled_at: float | None = None
        while True:
            try:
                # Woken by the reply or the child's death; once a second to see whether a
                # cancelled call is taking too long.
                ready = wait([conn, proc.sentinel], STUCK_CHECK_S)
            except (OSError, ValueError):
                break  # closed under us by close() from another thread
            if conn in ready or (ready and conn.poll(0)):
                # Read the reply even when the child has just exited after writing it.
                try:
                    msg: tuple[Any, ...] = pickle.loads(conn.recv_bytes())
                    return msg
                except (EOFError, OSError):
                    break
            if proc.sentinel in ready:
                break
            if cancelled_at is None:
                if flag.is_set():
                    cancelled_at = time.monotonic()
            elif time.monotonic() >= cancelled_at + self.stuck_s:
                proc.kill()
                raise self._crashed(
                    what, f"did not stop within {self.stuck_s:.0f} s of a cancel and was killed"
                )
        raise self._crashed(what)

    def _crashed(self, when: str, how: str | None = None) -> WorkerCrashed:
        if self._closed:
            return WorkerCrashed("the model process was shut down")
        proc = self._proc
        pid = proc.pid if proc is not None else None
        if proc is not None:
            proc.join(1.0)
        how = how or describe_exit(proc.exitcode if proc is not None else None)
        self._stop_child()
        self.crashes += 1
        self.last_crash = how.removeprefix("was ")
        self._crashes.append(time.monotonic())
        log.error("model process %s %s %s", pid, how, when)
        return WorkerCrashed(f"the model process {how} {when}")

    def _stop_child(self) -> None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = self._flag = None
        if proc is not None and proc.exitcode is None and conn is not None:
            with contextlib.suppress(OSError):
                conn.send_bytes(pickle.dumps(("close",)))
            proc.join(CLOSE_TIMEOUT_S)
        if proc is not None and proc.exitcode is None:
            proc.kill()
            proc.join(CLOSE_TIMEOUT_S)
        if conn is not None:
            conn.close()
        if proc is not None:
            with contextlib.suppress(ValueError):
                proc.close()
