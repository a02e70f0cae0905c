"""Offline and local by default: a full completion works with the network unavailable (in a
network namespace with no interfaces but a down loopback, where ``unshare -n`` is allowed;
and everywhere with every non-loopback connection and name lookup refused inside the server
process, which must not even try one), and ``--tcp`` listens on 127.0.0.1 unless told
otherwise, warning when it is told otherwise."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lsprotocol import types
from pygls.lsp.client import LanguageClient as PyglsClient
from pytest_lsp import LanguageClient

from ..conftest import ROOT, SERVER_CMD, SMALL_ID, server_env
from .conftest import (
    capabilities,
    client_fixture,
    inline,
    open_doc,
    status,
    wait_indexed,
    wait_ready,
)

pytestmark = pytest.mark.model

OPTIONS = {"model": {"id": SMALL_ID}, "completion": {"debounceMs": 0, "timeoutMs": 60000}}
GUARD = Path(__file__).parent / "netguard"
GUARD_LOG = Path(os.environ.get("TMPDIR", "/tmp")) / f"nearline-netguard-{os.getpid()}.log"


def _unshare_works() -> bool:
    if sys.platform != "linux" or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


UNSHARE = _unshare_works()

unshared_client = client_fixture(OPTIONS, command=["unshare", "-n", *SERVER_CMD])
guarded_client = client_fixture(
    OPTIONS,
    env={
        "NEARLINE_TEST_NO_NETWORK": str(GUARD_LOG),
        "PYTHONPATH": os.pathsep.join([str(GUARD), os.environ.get("PYTHONPATH", "")]),
    },
)


async def _full_completion(client: LanguageClient, tmp_path: Path) -> dict[str, object]:
    st = await wait_ready(client)
    assert st["state"] == "ready", st
    # Indexing, warm-up, the model and a suggestion: everything a completion involves.
    idx = await wait_indexed(client)
    assert idx["count"] > 0
    uri = open_doc(client, tmp_path / "add.py", "def add(a, b):\n    return a")
    items = await inline(client, uri, 1, 12)
    assert items and str(items[0].insert_text).strip(), "no suggestion offline"
    return await status(client)


@pytest.mark.skipif(not UNSHARE, reason="unshare -n is not permitted here (the guarded test runs)")
async def test_completion_in_a_namespace_without_network(
    unshared_client: LanguageClient, small_model: Path, tmp_path: Path
) -> None:
    st = await _full_completion(unshared_client, tmp_path)
    pid = st["process"]["pid"]  # type: ignore[index]
    # The server really ran without a network: its namespace has no interface but loopback.
    devices = Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]
    assert [d.split(":")[0].strip() for d in devices] == ["lo"]


async def test_completion_with_connections_refused(
    guarded_client: LanguageClient, small_model: Path, tmp_path: Path
) -> None:
    st = await _full_completion(guarded_client, tmp_path)
    pid = st["process"]["pid"]  # type: ignore[index]
    log = [line for line in GUARD_LOG.read_text().splitlines() if line.startswith(f"{pid} ")]
    assert f"{pid} armed" in log, "the network guard did not run in the server"
    # Not one attempt to reach the network, refused or not.
    assert log == [f"{pid} armed"], log


# -- --tcp --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on ``port`` (from /proc/net/tcp{,6})."""
    found: set[str] = set()
    for name in ("tcp", "tcp6"):
        path = Path(f"/proc/net/{name}")
        if not path.exists():
            continue
        for row in path.read_text().splitlines()[1:]:
            cols = row.split()
            addr, hexport = cols[1].rsplit(":", 1)
            if int(hexport, 16) == port and cols[3] == "0A":
                if len(addr) == 8:
                    found.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(addr)[::-1]))
                else:
                    raw = b"".join(bytes.fromhex(addr[i : i + 8])[::-1] for i in range(0, 32, 8))
                    found.add(socket.inet_ntop(socket.AF_INET6, raw))
    return found


def _serve_tcp(arg: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*SERVER_CMD, "--tcp", arg],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        env=server_env(),
        cwd=ROOT,
    )


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> set[str]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if addrs := _listening(port):
            return addrs
        time.sleep(0.1)
    return set()


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/net/tcp")
async def test_tcp_listens_on_loopback_by_default(small_model: Path, tmp_path: Path) -> None:
    port = _free_port()
    log = tmp_path / "stderr.txt"
    proc = _serve_tcp(str(port), log)
    try:
        assert _wait_listening(port, proc) == {"127.0.0.1"}
        # And it is a working language server there.
        client = PyglsClient("tcp-test", "0")
        await client.start_tcp("127.0.0.1", port)
        result = await client.initialize_async(
            types.InitializeParams(capabilities=capabilities(), initialization_options=OPTIONS)
        )
        assert result.capabilities.inline_completion_provider is not None
        st = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="nearline.status", arguments=[])
        )
        assert st["process"]["pid"] == proc.pid
        await client.shutdown_async(None)
        client.exit(None)
        await client.stop()
    finally:
        proc.terminate()
        proc.wait(30)
    assert "reachable from other machines" not in log.read_text()


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/net/tcp")
@pytest.mark.parametrize(
    ("host", "warns"),
    [("0.0.0.0", True), ("localhost", False), ("127.0.0.2", False), ("[::1]", False)],
)
def test_tcp_warns_when_not_loopback(host: str, warns: bool, tmp_path: Path) -> None:
    port = _free_port()
    log = tmp_path / "stderr.txt"
    proc = _serve_tcp(f"{host}:{port}", log)
    try:
        addrs = _wait_listening(port, proc)
        assert addrs, log.read_text()
        assert (
            all(a in ("0.0.0.0", "::") for a in addrs)
            if warns
            else all(a.startswith("127.") or a == "::1" for a in addrs)
        ), addrs
    finally:
        proc.terminate()
        proc.wait(30)
    err = log.read_text()
    assert ("reachable from other machines; Nearline has no auth" in err) is warns, err


def test_tcp_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = subprocess.run(
            [*SERVER_CMD, "--tcp", str(port)],
            capture_output=True,
            text=True,
            env=server_env(),
            timeout=60,
        )
    assert res.returncode == 2
    assert res.stdout == ""
    assert res.stderr.startswith(f"nearline: cannot listen on 127.0.0.1:{port}"), res.stderr
    assert "Traceback" not in res.stderr
