"""Python runs this at start-up when this directory is on PYTHONPATH (only tests put it there).

With ``NEARLINE_TEST_NO_NETWORK=<file>`` set, the process cannot reach the network: a socket
connection (or datagram) to anything but a loopback address, or a name lookup of anything but
``localhost``, fails with ENETUNREACH and is written to ``<file>``, and so is one line saying
the guard is armed (so a test can tell the guard really ran in the process it checks). For
machines where ``unshare -n`` is not allowed; it does not see native code's own sockets.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket

_LOG = os.environ.get("NEARLINE_TEST_NO_NETWORK")


def _note(line: str) -> None:
    if _LOG:
        with open(_LOG, "a", encoding="utf-8") as f:
            f.write(f"{os.getpid()} {line}\n")


def _local_host(host: object) -> bool:
    if not isinstance(host, str) or host.lower() in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _blocked(sock: socket.socket, address: object) -> bool:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    host = address[0] if isinstance(address, tuple) and address else address
    return not _local_host(host)


if _LOG:
    _connect = socket.socket.connect
    _connect_ex = socket.socket.connect_ex
    _sendto = socket.socket.sendto
    _getaddrinfo = socket.getaddrinfo

    def _refuse(what: str, address: object) -> OSError:
        _note(f"blocked {what} {address!r}")
        return OSError(errno.ENETUNREACH, f"network blocked by the test ({what} {address!r})")

    def connect(self: socket.socket, address: object) -> None:
        if _blocked(self, address):
            raise _refuse("connect", address)
        _connect(self, address)  # type: ignore[arg-type]

    def connect_ex(self: socket.socket, address: object) -> int:
        if _blocked(self, address):
            _refuse("connect", address)
            return errno.ENETUNREACH
        return _connect_ex(self, address)  # type: ignore[arg-type]

    def sendto(self: socket.socket, data: bytes, *args: object) -> int:
        address = args[-1] if args else None
        if _blocked(self, address):
            raise _refuse("sendto", address)
        return _sendto(self, data, *args)  # type: ignore[arg-type]

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> list:  # type: ignore[type-arg]
        if not _local_host(host if not isinstance(host, bytes) else host.decode()):
            _note(f"blocked lookup {host!r}")
            raise socket.gaierror(socket.EAI_NONAME, f"name lookups blocked by the test ({host!r})")
        return _getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.socket.sendto = sendto  # type: ignore[assignment]
    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    _note("armed")
