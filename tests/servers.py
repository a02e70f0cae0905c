"""Real OpenAI-compatible completion servers on 127.0.0.1 for the remote-engine tests:
llama-cpp-python's ``llama_cpp.server`` and, when it has been built
(``bash scripts/build-llama-server.sh``), llama.cpp's own C++ ``llama-server`` — both serving
the small test model. Plus ``Front``: an HTTP server that relays to one of them, or breaks in the
ways a real deployment does (HTTP 500, a body that is not JSON) on the test's command."""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

LLAMA_VERSION = "0.3.36"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def llama_server_binary() -> Path | None:
    """The C++ server built by scripts/build-llama-server.sh (or $NEARLINE_LLAMA_SERVER)."""
    env = os.environ.get("NEARLINE_LLAMA_SERVER")
    if env:
        return Path(env) if Path(env).is_file() else None
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = cache / "nearline" / "llama-server" / LLAMA_VERSION / "bin" / "llama-server"
    return path if path.is_file() and os.access(path, os.X_OK) else None


@dataclass
class Served:
    """A completion server process the test started."""

    kind: str  # "llama_cpp.server" | "llama-server"
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    _log: Any = field(repr=False, default=None)

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def metric(self, name: str) -> float:
        """A Prometheus counter of llama-server's ``/metrics`` (started with ``--metrics``)."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as resp:
            text = resp.read().decode()
        m = re.search(rf"^llamacpp:{name}\s+(\S+)$", text, re.M)
        if m is None:
            raise AssertionError(f"no metric {name} in {text[:500]}")
        return float(m.group(1))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._log is not None:
            self._log.close()


def _wait_up(served: Served, timeout: float = 180) -> Served:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if served.proc.poll() is not None:
            raise RuntimeError(
                f"{served.kind} exited with {served.proc.returncode}:\n{served.log_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(served.url + "/v1/models", timeout=5) as resp:
                if resp.status == 200:
                    return served
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.2)
    served.stop()
    raise RuntimeError(f"{served.kind} did not come up in {timeout}s:\n{served.log_text()[-3000:]}")


def start_llama_cpp_python(model: Path, log_path: Path, n_ctx: int = 2048) -> Served:
    port = free_port()
    log = log_path.open("wb")
    cmd = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model),
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx),
        "--n_threads", "2", "--verbose", "False",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return _wait_up(Served("llama_cpp.server", f"http://127.0.0.1:{port}", proc, log_path, log))


def start_llama_server(binary: Path, model: Path, log_path: Path, n_ctx: int = 2048) -> Served:
    port = free_port()
    log = log_path.open("wb")
    cmd = [
        str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
        "-c", str(n_ctx), "-t", "2", "-np", "1", "--metrics",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return _wait_up(Served("llama-server", f"http://127.0.0.1:{port}", proc, log_path, log))


@dataclass
class Relayed:
    """One request ``Front`` relayed: its JSON body, how many stream events it passed on, and
    how it ended."""

    path: str
    body: dict[str, Any]
    events: int = 0
    upstream_done: bool = False
    client_gone: bool = False


class Front:
    """An HTTP server on 127.0.0.1 in front of a real completion server. ``mode``: ``proxy``
    relays every request (streaming), ``500`` answers an OpenAI-style error with HTTP 500,
    ``garbage`` answers 200 with an event stream whose data is not JSON."""

    def __init__(self, upstream: str, port: int | None = None) -> None:
        self.upstream = upstream
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.mode = "proxy"
        self.hits: dict[str, int] = {}
        self.streams: list[Relayed] = []
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Front:
        front = self

        class Handler(http.server.BaseHTTPRequestHandler):
            # HTTP/1.0: one request per connection, the body ends when the connection does.
            protocol_version = "HTTP/1.0"

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                self._handle(b"")

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                self._handle(self.rfile.read(n))

            def _handle(self, body: bytes) -> None:
                mode = front.mode
                front.hits[mode] = front.hits.get(mode, 0) + 1
                if mode == "500":
                    data = json.dumps({"error": {"message": "the model crashed", "code": 500}})
                    self._reply(500, "application/json", data.encode())
                elif mode == "garbage":
                    self._reply(200, "text/event-stream", b"data: <html>Bad Gateway</html>\n\n")
                else:
                    self._relay(body)

            def _reply(self, status: int, ctype: str, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _relay(self, body: bytes) -> None:
                host, port = front.upstream.removeprefix("http://").split(":")
                conn = http.client.HTTPConnection(host, int(port), timeout=300)
                log = Relayed(self.path, json.loads(body) if body else {})
                front.streams.append(log)
                try:
                    headers = {"Content-Type": self.headers.get("Content-Type", "")}
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    resp = conn.getresponse()
                    self.send_response(resp.status)
                    self.send_header("Content-Type", resp.getheader("Content-Type") or "")
                    self.end_headers()
                    while chunk := resp.read1(65536):
                        self.wfile.write(chunk)
                        self.wfile.flush()
                        log.events += chunk.count(b"data: {")
                    log.upstream_done = True
                except OSError:
                    # The client went away: closing upstream tells the server to stop.
                    log.client_gone = True
                finally:
                    conn.close()

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@contextlib.contextmanager
def front(upstream: str, port: int | None = None) -> Any:
    f = Front(upstream, port).start()
    try:
        yield f
    finally:
        f.stop()


def start_served(kind: str, log: Path) -> Served:
    from .conftest import SMALL_ID, model_path

    model = model_path(SMALL_ID)
    if kind == "llama-server":
        binary = llama_server_binary()
        if binary is None:
            pytest.skip(
                "llama.cpp's C++ llama-server is not built here: run "
                "`bash scripts/build-llama-server.sh` (or set NEARLINE_LLAMA_SERVER)"
            )
        return start_llama_server(binary, model, log)
    return start_llama_cpp_python(model, log)


class ServedPool:
    """One running server per kind, started when first asked for."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: dict[str, Served] = {}

    def get(self, kind: str) -> Served:
        s = self.running.get(kind)
        if s is None or s.proc.poll() is not None:
            s = self.running[kind] = start_served(kind, self.logs / f"{kind}.log")
        return s

    def stop(self) -> None:
        for s in self.running.values():
            s.stop()
