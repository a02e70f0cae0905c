"""ProcessEngine: the real llama.cpp engine (SmolLM2) in a child process — same answers as in
process, cancellation across the boundary, crashes during load and generation, restart and
give-up, nothing on stdout, death with the parent.

Every ProcessEngine here starts a real model process (about a second each on these machines),
so the tests share one where they can.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nearline.config import Settings, parse_settings
from nearline.engine.base import GenerationRequest
from nearline.engine.factory import create_local_engine, create_process_engine, engine_builder
from nearline.engine.llama import LlamaEngine
from nearline.engine.worker import ProcessEngine, WorkerCrashed, WorkerFailed
from nearline.weights.catalog import PromptFormat
from nearline.weights.download import ModelError

from ..conftest import ROOT, SMALL_ID
from . import worker_builders as wb

pytestmark = pytest.mark.model

THREADS = 1  # see test_engine.py: one thread is the fast, stable choice on small shared machines
EOL_PROMPT = "x = 1\ny = 2\nz = "


def settings(**model: object) -> Settings:
    s, problems = parse_settings({"model": {"id": SMALL_ID, "threads": THREADS, **model}})
    assert not problems
    return s


def long_prompt(tag: str, lines: int = 120) -> str:
    """~1750 SmolLM2 tokens: several seconds of prompt evaluation."""
    return "".join(f"item_{i}_{tag} = compute({i}, '{tag}')\n" for i in range(lines))


def load_fmt(s: Settings) -> PromptFormat:
    return engine_builder(s)[1]


def req(text: str, max_tokens: int = 16) -> GenerationRequest:
    return GenerationRequest([(text, False)], max_tokens)


def is_running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()
    except FileNotFoundError:
        return False


@pytest.fixture(scope="module")
def proc_engine(small_model: Path) -> Iterator[ProcessEngine]:
    eng = create_process_engine(settings())
    assert isinstance(eng, ProcessEngine)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def local_engine(small_model: Path) -> Iterator[LlamaEngine]:
    eng = create_local_engine(settings())
    assert isinstance(eng, LlamaEngine)
    yield eng
    eng.close()


# -- the same engine, one process away ------------------------------------------------------------
def test_answers_like_the_in_process_engine(
    proc_engine: ProcessEngine, local_engine: LlamaEngine
) -> None:
    proc_engine.reset()
    local_engine.reset()
    body = "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n\n\nresult"
    for text in (EOL_PROMPT, body, body + " ="):
        a = proc_engine.generate(req(text), threading.Event())
        b = local_engine.generate(req(text), threading.Event())
        assert (a.text, a.stop_reason, a.generated_tokens) == (
            b.text,
            b.stop_reason,
            b.generated_tokens,
        )
        assert (a.prompt_tokens, a.reused_tokens, a.evaluated_tokens) == (
            b.prompt_tokens, b.reused_tokens, b.evaluated_tokens,
        )  # fmt: skip
    # The KV cache lives on in the child between calls: the extension reused the prefix.
    assert a.reused_tokens > 0
    assert proc_engine.tokenize([(body, False)]) == local_engine.tokenize([(body, False)])
    # Forwarded by name: a method and a property the worker has no code for.
    assert proc_engine.cached_tokens == local_engine.cached_tokens > 0
    # Per-document KV states (a field and an argument added after worker.py was written):
    # the same saves and restores happen in the child, and its info() is current.
    for eng in (proc_engine, local_engine):
        for doc in ("a.py", "b.py", "a.py"):
            r = dataclasses.replace(req(long_prompt(doc, 5) + body, 4), doc=doc)
            eng.generate(r, threading.Event())
        eng.warm([(long_prompt("c.py", 5), False)], threading.Event(), "c.py")
    local_cache = local_engine.info()["state_cache"]
    assert proc_engine.info()["state_cache"] == local_cache
    assert local_cache["documents"] >= 2
    info = proc_engine.info()
    assert info["isolation"] == "process" and info["model"] == SMALL_ID
    assert info["worker_pid"] == proc_engine.pid != os.getpid()
    assert info["worker_state"] == "running"


def test_new_fields_and_methods_cross_without_worker_changes(small_model: Path) -> None:
    s = settings()
    eng = ProcessEngine(functools.partial(wb.keyed_engine, s), load_fmt(s), SMALL_ID)
    try:
        r = wb.KeyedRequest(segments=[(EOL_PROMPT, False)], max_tokens=8, doc_key="a.py")
        res = eng.generate(r, threading.Event())
        assert res.text.strip() == "3"
        assert res.extra == {"doc_key": "a.py"}
        eng.generate(dataclasses.replace(r, doc_key="b.py"), threading.Event())
        assert eng.seen_keys() == ["a.py", "b.py"]
        assert eng.seen_keys(last=1) == ["b.py"]  # keyword arguments cross too
        with pytest.raises(AttributeError):
            _ = eng.no_such_attribute
    finally:
        eng.close()


# -- cancellation across the boundary --------------------------------------------------------------
def test_cancel_during_a_long_prompt_returns_within_a_batch(proc_engine: ProcessEngine) -> None:
    proc_engine.reset()
    cancel = threading.Event()
    t0 = time.monotonic()
    timer = threading.Timer(1.5, cancel.set)
    timer.start()
    res = proc_engine.generate(req(long_prompt("pcancel"), 8), cancel)
    returned = time.monotonic()
    timer.join()
    assert res.stop_reason == "cancelled" and res.text == ""
    assert 0 < res.evaluated_tokens < res.prompt_tokens
    # Prompt tokens per second as measured in this very call: the flag is checked between
    # 64-token batches, so the call returns within about one batch of the cancel.
    rate = res.evaluated_tokens / (returned - t0)
    batch_s = proc_engine.info()["batch_size"] / rate
    latency = returned - (t0 + 1.5)
    assert latency < max(2.0, 2 * batch_s), f"{latency:.2f}s after cancel, one batch {batch_s:.2f}s"
    # What was evaluated stays in the child's KV cache.
    assert proc_engine.cached_tokens == res.evaluated_tokens


def test_cancel_already_set_evaluates_nothing(proc_engine: ProcessEngine) -> None:
    proc_engine.reset()
    cancel = threading.Event()
    cancel.set()
    res = proc_engine.generate(req(EOL_PROMPT), cancel)
    assert res.stop_reason == "cancelled"
    assert res.evaluated_tokens == 0
    # The flag is per call: the next call is not cancelled...
    done = threading.Event()
    assert proc_engine.generate(req(EOL_PROMPT), done).text.strip() == "3"
    # ...nor is the one after a finished call's Event is set late.
    done.set()
    assert proc_engine.generate(req(EOL_PROMPT), threading.Event()).stop_reason == "eol"


def test_warm_up_is_preempted(proc_engine: ProcessEngine) -> None:
    proc_engine.reset()
    cancel = threading.Event()
    prompt = [(long_prompt("pwarm"), False)]
    total = len(proc_engine.tokenize(prompt))
    timer = threading.Timer(1.0, cancel.set)
    timer.start()
    t0 = time.monotonic()
    evaluated = proc_engine.warm(prompt, cancel)
    elapsed = time.monotonic() - t0
    timer.join()
    assert 0 < evaluated < total
    assert elapsed < 1.0 + max(2.0, 2 * 64 * elapsed / evaluated)


# -- crashes -------------------------------------------------------------------------------------
def test_crash_during_load_is_a_clear_model_error(small_model: Path) -> None:
    fmt = load_fmt(settings())
    with pytest.raises(ModelError) as info:
        ProcessEngine(wb.segfault_builder, fmt, "crashy.gguf")
    msg = str(info.value)
    assert "died while loading crashy.gguf" in msg and "SIGSEGV" in msg
    with pytest.raises(ModelError, match="SIGABRT"):
        ProcessEngine(wb.abort_builder, fmt, "aborts.gguf")


def test_load_errors_are_the_same_as_in_process(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 4096)
    s = settings(path=str(bad))
    messages = []
    for create in (create_local_engine, create_process_engine):
        with pytest.raises(ModelError) as info:
            create(s)
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    assert "llama.cpp could not load" in messages[1] and "broken.gguf" in messages[1]


def test_killed_mid_generation_ends_the_call_and_restarts(proc_engine: ProcessEngine) -> None:
    eng = proc_engine
    restarts, crashes = eng.restarts, eng.crashes
    pid = eng.pid
    assert pid is not None
    threading.Timer(1.0, os.kill, (pid, signal.SIGKILL)).start()
    t0 = time.monotonic()
    with pytest.raises(WorkerCrashed, match="SIGKILL while writing a suggestion"):
        eng.generate(req(long_prompt("kill")), threading.Event())
    assert time.monotonic() - t0 < 10
    assert eng.info()["worker_state"] == "restarting"
    assert eng.info()["worker_pid"] is None
    eng.restart()
    assert eng.pid not in (None, pid)
    assert eng.generate(req(EOL_PROMPT), threading.Event()).text.strip() == "3"
    assert (eng.restarts, eng.crashes) == (restarts + 1, crashes + 1)
    # A death between calls is reported by the next call, once; the one after restarts.
    pid2 = eng.pid
    assert pid2 is not None
    os.kill(pid2, signal.SIGKILL)
    time.sleep(0.5)
    with pytest.raises(WorkerCrashed, match="between requests"):
        eng.generate(req(EOL_PROMPT), threading.Event())
    assert eng.generate(req(EOL_PROMPT), threading.Event()).text.strip() == "3"
    assert eng.info()["worker_state"] == "running"


def test_keeps_crashing_then_gives_up(small_model: Path, tmp_path: Path) -> None:
    marker = tmp_path / "crash-on-load"
    builder, fmt, label = engine_builder(settings())
    eng = ProcessEngine(
        functools.partial(wb.crash_if_exists, str(marker), builder),
        fmt,
        label,
        max_crashes=3,
        crash_window_s=60,
        backoff_s=0.05,
    )
    try:
        marker.touch()
        pid = eng.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(WorkerCrashed):
            eng.generate(req(EOL_PROMPT), threading.Event())
        # Every restart now crashes while loading: after three crashes in the window it stops.
        with pytest.raises(WorkerFailed) as info:
            eng.restart()
        msg = str(info.value)
        assert "crashed 3 times" in msg and "SIGSEGV" in msg and "settings" in msg
        assert isinstance(info.value, ModelError)
        assert eng.crashes == 3 and eng.restarts == 0
        # It stays given up: no new process per request.
        with pytest.raises(WorkerFailed):
            eng.generate(req(EOL_PROMPT), threading.Event())
        assert eng.info()["worker_state"] == "failed"
    finally:
        eng.close()


def test_a_call_stuck_past_its_cancel_is_killed(small_model: Path) -> None:
    builder, fmt, label = engine_builder(settings())
    eng = ProcessEngine(functools.partial(wb.deaf, builder), fmt, label, stuck_s=1.0)
    try:
        pid = eng.pid
        cancel = threading.Event()
        threading.Timer(0.5, cancel.set).start()
        t0 = time.monotonic()
        with pytest.raises(WorkerCrashed, match="did not stop within 1 s of a cancel"):
            eng.generate(req(EOL_PROMPT), cancel)
        assert time.monotonic() - t0 < 10
        assert pid is not None and not is_running(pid)
        # Counted as a crash: the next call (or restart()) starts a new process.
        assert eng.crashes == 1
        assert eng.tokenize([("x", False)])
        assert eng.pid not in (None, pid)
    finally:
        eng.close()


# -- the process itself ------------------------------------------------------------------------------
SCRIPT = """
import functools, sys, threading
from nearline.config import parse_settings
from nearline.engine.base import GenerationRequest
from nearline.engine.factory import engine_builder
from nearline.engine.worker import ProcessEngine
from tests.model import worker_builders as wb

def main():
    s, _ = parse_settings({"model": {"id": %(model)r, "threads": 1}})
    builder, fmt, label = engine_builder(s)
    eng = ProcessEngine(%(wrap)s, fmt, label)
    %(body)s

if __name__ == "__main__":
    main()
"""


def run_script(wrap: str, body: str, **kw: object) -> subprocess.Popen[bytes]:
    code = SCRIPT % {"model": SMALL_ID, "wrap": wrap, "body": textwrap.indent(body, "    ").strip()}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "server"), str(ROOT)])}
    return subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw,  # type: ignore[call-overload]
    )  # fmt: skip


def test_the_model_process_never_writes_to_stdout(small_model: Path) -> None:
    body = (
        "res = eng.generate(GenerationRequest([('x = 1\\ny = 2\\nz = ', False)], 8), "
        "threading.Event())\n"
        "sys.stderr.write('RESULT ' + res.text + '\\n')\n"
        "eng.close()\n"
    )
    proc = run_script(
        "functools.partial(wb.print_on_generate, functools.partial(wb.noisy, builder))", body
    )
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    # Python prints, writes to fd 1 and C stdio all went to stderr; stdout (LSP's) is clean.
    assert out == b""
    for marker in (b"NOISY-PRINT", b"NOISY-FD1", b"NOISY-C-STDIO", b"NOISY-GENERATE", b"RESULT 3"):
        assert marker in err, err.decode()


def test_the_model_process_dies_with_the_server(small_model: Path) -> None:
    body = (
        "sys.stderr.write(f'WORKER {eng.pid}\\n'); sys.stderr.flush()\nthreading.Event().wait()\n"
    )
    proc = run_script("builder", body)
    assert proc.stderr is not None
    worker = None
    deadline = time.monotonic() + 120
    while worker is None and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        if line.startswith(b"WORKER "):
            worker = int(line.split()[1])
    assert worker is not None and is_running(worker)
    proc.kill()  # no cleanup runs in the parent: only the kernel can tell the child
    proc.wait(10)
    deadline = time.monotonic() + 10
    while is_running(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not is_running(worker)


def test_bench_worker_runs(small_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "worker.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "server")}
    cmd = [sys.executable, "-m", "nearline", "bench", "worker", "--model", SMALL_ID,
           "--requests", "3", "--threads", "1", "--json", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "overhead = wall - engine time" in proc.stdout
    report = json.loads(out.read_text())
    assert report["requests"] == 3 and report["different_answers"] == 0
    for side in ("thread", "process"):
        assert report["overhead_ms"][side]["n"] == 3
        assert report["request_ms"][side]["p50_ms"] >= report["engine_ms"][side]["p50_ms"] > 0
