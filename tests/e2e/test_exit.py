"""The server ends when told to, even in the middle of background work (issue 13, bug 6).

Driven over a raw pipe rather than pytest-lsp: the test is about the process itself (how long
it takes to end and what it leaves on stderr), which a client library hides."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any

from pygls.uris import from_fs_path

from ..conftest import SERVER_CMD, SMALL_ID, server_env


class RawClient:
    """A minimal LSP client: frames messages, answers the server's requests with null, except
    ``workspace/configuration``, which it leaves unanswered (so the model load, which waits for
    the settings, stays out of the way: a load under way at exit is waited for)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self._lock = threading.Lock()
        assert proc.stdout is not None
        threading.Thread(target=self._read, args=(proc.stdout,), daemon=True).start()

    def send(self, msg: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **msg}).encode()
        assert self.proc.stdin is not None
        with self._lock:
            self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
            self.proc.stdin.flush()

    def _read(self, out: IO[bytes]) -> None:
        while True:
            length = 0
            while (line := out.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if not line:
                return
            msg = json.loads(out.read(length))
            if "id" in msg and msg.get("method") not in (None, "workspace/configuration"):
                self.send({"id": msg["id"], "result": None})
            self.messages.put(msg)

    def wait_for(self, pred: Any, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            msg = self.messages.get(timeout=max(0.01, deadline - time.monotonic()))
            if pred(msg):
                return msg


def test_exit_during_a_large_scan_ends_at_once_and_quietly(tmp_path: Path) -> None:
    root = tmp_path / "big"
    for d in range(100):
        sub = root / f"pkg{d}"
        sub.mkdir(parents=True)
        for f in range(100):
            (sub / f"m{f}.py").write_text(f"def f{f}():\n    return {d * 100 + f}\n")
    proc = subprocess.Popen(
        SERVER_CMD,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=server_env(),
    )
    try:
        client = RawClient(proc)
        uri = from_fs_path(str(root))
        client.send(
            {
                "id": 1,
                "method": "initialize",
                "params": {
                    "processId": None,
                    "rootUri": uri,
                    "workspaceFolders": [{"uri": uri, "name": "big"}],
                    "capabilities": {
                        "window": {"workDoneProgress": True},
                        "workspace": {"configuration": True},
                    },
                    "initializationOptions": {"model": {"id": SMALL_ID}},
                },
            }
        )
        client.wait_for(lambda m: m.get("id") == 1, 60)
        client.send({"method": "initialized", "params": {}})
        # The scan is under way once it reports a count.
        client.wait_for(
            lambda m: (
                m.get("method") == "$/progress" and m["params"]["value"].get("kind") == "report"
            ),
            60,
        )
        client.send(
            {
                "id": 2,
                "method": "workspace/executeCommand",
                "params": {"command": "nearline.index", "arguments": [{"limit": 0}]},
            }
        )
        reply = client.wait_for(lambda m: m.get("id") == 2, 10)
        assert (reply.get("result") or {}).get("state") == "scanning", reply
        client.send({"id": 3, "method": "shutdown"})
        client.wait_for(lambda m: m.get("id") == 3, 10)
        client.send({"method": "exit"})
        t0 = time.monotonic()
        try:
            rc = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            rc = None
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stderr is not None
    stderr = proc.stderr.read().decode(errors="replace")
    assert rc == 0 and took < 2, (rc, took, stderr[-3000:])
    assert len(stderr.splitlines()) <= 1, stderr[-3000:]
