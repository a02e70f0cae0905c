"""The model in its own process, seen from an editor: the real server over stdio (pytest-lsp),
SmolLM2 in the model process, which the test kills with SIGKILL in the middle of a request."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from ..conftest import SMALL_ID
from .conftest import client_fixture, inline, open_doc, status, wait_ready

pytestmark = pytest.mark.model


def maps_llama(pid: int) -> bool:
    """Whether llama.cpp's shared library is loaded in process ``pid``."""
    with open(f"/proc/{pid}/maps") as f:
        return "libllama" in f.read()


def oom_score_adj(pid: int) -> int:
    with open(f"/proc/{pid}/oom_score_adj") as f:
        return int(f.read())


crash_client = client_fixture(
    {
        "model": {"id": SMALL_ID, "contextLength": 4096, "threads": 1},
        "context": {"budgetTokens": 4000, "composer": "file-level"},
        # No warm-up: the request itself must be the one reading the long prompt when killed.
        "completion": {"debounceMs": 0, "timeoutMs": 120000, "warmUp": False},
    }
)


async def test_sigkill_of_the_model_process_is_survived(
    crash_client: LanguageClient, small_model: Path, tmp_path: Path
) -> None:
    client = crash_client
    st = await wait_ready(client)
    assert st["state"] == "ready", st
    server_pid, worker_pid = st["pid"], st["worker_pid"]
    assert worker_pid is not None and worker_pid != server_pid
    assert st["engine"]["isolation"] == "process"
    # The server process never loads llama.cpp; the model process does.
    assert not maps_llama(server_pid)
    assert maps_llama(worker_pid)
    # Out of memory, the kernel kills the model process rather than the server.
    assert oom_score_adj(worker_pid) > oom_score_adj(server_pid)

    # A long cold prompt: reading it takes tens of seconds, so the kill lands mid-request.
    body = "".join(f"def function_{i}(x):\n    return x * {i} + {i % 7}\n\n" for i in range(300))
    text = body + "value = function_"
    lines = text.split("\n")
    uri = open_doc(client, tmp_path / "long.py", text)
    pending = asyncio.ensure_future(inline(client, uri, len(lines) - 1, len(lines[-1])))
    for _ in range(400):
        if (await status(client))["inflight"] >= 1:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    assert not pending.done()
    shown_before = len(client.messages)
    os.kill(worker_pid, signal.SIGKILL)

    # The pending request ends (empty), it does not hang.
    assert await asyncio.wait_for(pending, 30) == []

    # The next request gets a real suggestion from a restarted model process.
    small = open_doc(client, tmp_path / "add.py", "def add(a, b):\n    return a")
    items = await asyncio.wait_for(inline(client, small, 1, 12), 120)
    assert items and items[0].insert_text.strip()

    st = await status(client)
    assert st["pid"] == server_pid  # the same server process all along
    assert st["worker_pid"] not in (None, worker_pid)
    assert st["state"] == "ready"
    assert st["stats"]["crashes"] == 1
    assert st["engine"]["worker_restarts"] == 1
    # Told once, as a warning that names what happened.
    shown = client.messages[shown_before:]
    assert len(shown) == 1, [m.message for m in shown]
    assert shown[0].type == types.MessageType.Warning
    assert "SIGKILL" in shown[0].message and "restarting" in shown[0].message


thread_client = client_fixture(
    {
        "model": {"id": SMALL_ID, "threads": 1},
        "context": {"composer": "file-level"},
        "engine": {"isolation": "thread"},
        "completion": {"debounceMs": 0, "timeoutMs": 60000},
    }
)


async def test_thread_isolation_runs_the_model_in_the_server(
    thread_client: LanguageClient, small_model: Path, tmp_path: Path
) -> None:
    st = await wait_ready(thread_client)
    assert st["state"] == "ready", st
    assert st["worker_pid"] is None
    assert st["settings"]["engine"]["isolation"] == "thread"
    assert maps_llama(st["pid"])
    uri = open_doc(thread_client, tmp_path / "add.py", "def add(a, b):\n    return a")
    items = await inline(thread_client, uri, 1, 12)
    assert items and items[0].insert_text.strip()
