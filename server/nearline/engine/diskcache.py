"""KV states on disk, so that an editor restart does not mean reading every prompt again.

A state is an opaque payload (llama.cpp's ``llama_state_seq_get_data`` bytes; this module never
looks inside) plus the tokens it holds, stored under a *key*: a digest of everything that makes
a payload valid for a context (the model file, the llama.cpp build, the settings that change
what the KV cache holds). Files of other keys are never read; they age out by LRU.

One file per state, in one directory shared by every server of the user (two editors open at
once is normal), so each write is a temporary file renamed into place and every read tolerates
a file that vanished or changed meanwhile. The file::

    b"NLKV" | format u32 | header length u32 | header crc32 u32 | header (JSON)
    | tokens (u32 little-endian each) | payload

The header holds the key (digest and fields), the token count and the crc32 of the tokens and
of the payload. A file that is truncated, corrupt or from another format is logged, deleted and
treated as absent: a bad file costs a cold read, never a wrong suggestion (the payload's
checksum is verified before a byte of it reaches llama.cpp).

Least recently used files go first when the directory is over its cap: a restore touches the
file's mtime, and the mtime orders eviction. Files and the directory are the user's alone
(0600 / 0700): a KV state is a function of the user's code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import struct
import sys
import threading
import time
import zlib
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAGIC = b"NLKV"
FORMAT = 1
_HEAD = struct.Struct("<4sIII")  # magic, format, header length, header crc32
_MAX_HEADER = 1 << 20
SUFFIX = ".kv"
_STALE_TMP_S = 3600.0
"""A temporary file this old belongs to a writer that died (a crash, a kill): removed."""


def default_dir() -> Path:
    env = os.environ.get("NEARLINE_KV_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("nearline")) / "kv"


def key_digest(fields: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def file_identity(path: Path) -> str:
    """A cheap stable identity for a model file that has no pinned hash: size, mtime and a
    digest of its first and last MiB (hashing a multi-GB file on every start would cost more
    than the cold read it saves)."""
    st = path.stat()
    h = hashlib.sha256()
    with path.open("rb") as f:
        h.update(f.read(1 << 20))
        if st.st_size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read(1 << 20))
    return f"file:{st.st_size}:{st.st_mtime_ns}:{h.hexdigest()[:32]}"


def _token_bytes(tokens: Sequence[int]) -> bytes:
    a = array("I", tokens)
    if sys.byteorder != "little":  # pragma: no cover - big-endian hosts
        a.byteswap()
    return a.tobytes()


def _tokens_of(raw: bytes) -> list[int]:
    a = array("I")
    a.frombytes(raw)
    if sys.byteorder != "little":  # pragma: no cover
        a.byteswap()
    return a.tolist()


def common_prefix_bytes(a: bytes, b: bytes, unit: int = 4) -> int:
    """Length, in ``unit``-byte items, of the common prefix of ``a`` and ``b``: a binary search
    over slice comparisons (memcmp in C), so comparing a prompt with every stored state stays
    well under a millisecond each."""
    lo, hi = 0, min(len(a), len(b)) // unit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[: mid * unit] == b[: mid * unit]:
            lo = mid
        else:
            hi = mid - 1
    return lo


class BadStateFile(Exception):
    pass


@dataclass
class StoredState:
    path: Path
    key: str
    tokens: bytes  # u32 little-endian each
    payload_offset: int
    payload_size: int
    payload_crc: int
    size: int
    mtime_ns: int

    @property
    def n_tokens(self) -> int:
        return len(self.tokens) // 4

    def token_list(self) -> list[int]:
        return _tokens_of(self.tokens)


def read_header(path: Path) -> StoredState:
    """Parse and check everything but the payload. Raises ``BadStateFile`` (or ``OSError``)."""
    with path.open("rb") as f:
        st = os.fstat(f.fileno())
        head = f.read(_HEAD.size)
        if len(head) < _HEAD.size:
            raise BadStateFile("truncated header")
        magic, fmt, hlen, hcrc = _HEAD.unpack(head)
        if magic != MAGIC:
            raise BadStateFile("not a state file (bad magic)")
        if fmt != FORMAT:
            raise BadStateFile(f"format {fmt}, expected {FORMAT}")
        if hlen > _MAX_HEADER:
            raise BadStateFile("header too long")
        raw = f.read(hlen)
        if len(raw) < hlen or zlib.crc32(raw) != hcrc:
            raise BadStateFile("header checksum mismatch")
        try:
            h = json.loads(raw)
            n_tokens, tcrc = int(h["n_tokens"]), int(h["tokens_crc"])
            psize, pcrc, key = int(h["payload_size"]), int(h["payload_crc"]), str(h["key"])
        except (ValueError, KeyError, TypeError) as exc:
            raise BadStateFile(f"bad header ({exc})") from None
        tokens = f.read(4 * n_tokens)
        if len(tokens) < 4 * n_tokens or zlib.crc32(tokens) != tcrc:
            raise BadStateFile("token block truncated or corrupt")
        offset = _HEAD.size + hlen + 4 * n_tokens
        if st.st_size != offset + psize:
            raise BadStateFile(f"size {st.st_size}, expected {offset + psize} (truncated?)")
    return StoredState(path, key, tokens, offset, psize, pcrc, st.st_size, st.st_mtime_ns)


def write_state(
    path: Path, key: str, fields: Mapping[str, Any], tokens: Sequence[int], payload: Any
) -> int:
    """Write one state file atomically (a private temporary file renamed over ``path``).
    Returns its size."""
    tok = _token_bytes(tokens)
    pay = memoryview(payload).cast("B")
    header = json.dumps(
        {
            "key": key,
            "fields": dict(fields),
            "n_tokens": len(tokens),
            "tokens_crc": zlib.crc32(tok),
            "payload_size": pay.nbytes,
            "payload_crc": zlib.crc32(pay),
            "created": time.time(),
        },
        sort_keys=True,
    ).encode()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(_HEAD.pack(MAGIC, FORMAT, len(header), zlib.crc32(header)))
            f.write(header)
            f.write(tok)
            f.write(pay)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return _HEAD.size + len(header) + len(tok) + pay.nbytes


class DiskStateCache:
    """The states of one key in ``directory``, within ``cap_bytes`` for the whole directory.

    ``find``/``load`` run on the model thread (a cold request waits for them: reading a file is
    far cheaper than the prompt it replaces); ``save_async`` hands a captured payload to one
    writer thread, so checksumming and writing never delay a suggestion. Only the newest
    pending state waits: a newer capture replaces one not yet written.
    """

    def __init__(self, directory: Path, cap_bytes: int, fields: Mapping[str, Any]) -> None:
        self.dir = directory
        self.cap = cap_bytes
        self.fields = dict(fields)
        self.key = key_digest(self.fields)
        self._prefix = self.key[:16] + "-"
        self._headers: dict[str, StoredState] = {}  # by file name, for this key only
        self._lock = threading.Lock()  # guards _pending and _writing
        self._dir_lock = threading.RLock()  # the model thread reads while the writer writes
        self._cond = threading.Condition(self._lock)
        self._pending: tuple[bytes, Any] | None = None
        self._writing: bytes | None = None
        self._thread: threading.Thread | None = None
        self.stats = {"saved": 0, "restored": 0, "rejected": 0, "evicted": 0, "failed": 0}
        self.total_bytes = 0
        self.files = 0
        self._ensure_dir()

    def _ensure_dir(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(OSError):
            os.chmod(self.dir, 0o700)

    # -- reading --------------------------------------------------------------------------------
    def _scan(self) -> list[StoredState]:
        """This key's readable states (headers cached by name, size and mtime). Bad files are
        logged and removed; files of other keys are left alone."""
        with self._dir_lock:
            return self._scan_locked()

    def _scan_locked(self) -> list[StoredState]:
        out: list[StoredState] = []
        seen: set[str] = set()
        total = files = 0
        try:
            it = list(os.scandir(self.dir))
        except OSError as exc:
            log.warning("KV state directory %s unreadable: %s", self.dir, exc)
            return out
        now = time.time()
        for de in it:
            name = de.name
            try:
                st = de.stat()
            except OSError:
                continue
            if name.endswith(".tmp"):
                if now - st.st_mtime > _STALE_TMP_S:
                    with contextlib.suppress(OSError):
                        os.unlink(de.path)
                continue
            if not name.endswith(SUFFIX):
                continue
            total += st.st_size
            files += 1
            if not name.startswith(self._prefix):
                continue
            seen.add(name)
            cached = self._headers.get(name)
            if cached is not None and (cached.size, cached.mtime_ns) == (
                st.st_size,
                st.st_mtime_ns,
            ):
                out.append(cached)
                continue
            try:
                s = read_header(Path(de.path))
            except FileNotFoundError:
                continue
            except (BadStateFile, OSError) as exc:
                self._reject(Path(de.path), str(exc))
                continue
            if s.key != self.key:
                self._reject(Path(de.path), "its key does not match its name")
                continue
            self._headers[name] = s
            out.append(s)
        for name in list(self._headers):
            if name not in seen:
                del self._headers[name]
        self.total_bytes, self.files = total, files
        return out

    def _reject(self, path: Path, why: str) -> None:
        log.warning("ignoring KV state file %s: %s", path, why)
        with self._dir_lock:
            self.stats["rejected"] += 1
            self._headers.pop(path.name, None)
            with contextlib.suppress(OSError):
                path.unlink()

    def find(self, tokens: Sequence[int]) -> tuple[StoredState, int] | None:
        """The stored state sharing the longest token prefix with ``tokens``, and that length."""
        want = _token_bytes(tokens)
        best: tuple[StoredState, int] | None = None
        for s in self._scan():
            c = common_prefix_bytes(s.tokens, want)
            if c > 0 and (best is None or c > best[1]):
                best = (s, c)
        return best

    def covered(self, tokens: Sequence[int]) -> int:
        """How many leading ``tokens`` a stored (or pending) state already holds."""
        want = _token_bytes(tokens)
        with self._lock:
            queued = [t for t in (self._writing, self._pending and self._pending[0]) if t]
        best = max((common_prefix_bytes(t, want) for t in queued), default=0)
        for s in self._scan():
            best = max(best, common_prefix_bytes(s.tokens, want))
        return best

    def load(self, s: StoredState) -> bytearray | None:
        """The payload of ``s``, checked against its checksum; None (logged, file removed) if
        it is not intact. A success marks the file as recently used."""
        try:
            with s.path.open("rb") as f:
                if os.fstat(f.fileno()).st_size != s.size:
                    raise BadStateFile("changed since its header was read")
                f.seek(s.payload_offset)
                buf = bytearray(s.payload_size)
                if f.readinto(buf) != s.payload_size:
                    raise BadStateFile("truncated payload")
        except FileNotFoundError:
            return None  # evicted by another server meanwhile
        except (BadStateFile, OSError) as exc:
            self._reject(s.path, str(exc))
            return None
        if zlib.crc32(buf) != s.payload_crc:
            self._reject(s.path, "payload checksum mismatch")
            return None
        with contextlib.suppress(OSError):
            os.utime(s.path)
        self.stats["restored"] += 1
        return buf

    def discard(self, s: StoredState, why: str) -> None:
        """Drop a state the engine could not use (llama.cpp refused its payload)."""
        self._reject(s.path, why)

    # -- writing --------------------------------------------------------------------------------
    def save(self, tokens: Sequence[int], payload: Any) -> Path | None:
        """Write a state now (on the calling thread), then enforce the cap. None when it
        cannot be kept (larger than the cap, or the write failed: logged)."""
        tok = _token_bytes(tokens)
        size = memoryview(payload).nbytes + len(tok)
        if size > self.cap:
            return None
        name = f"{self._prefix}{hashlib.sha256(tok).hexdigest()[:16]}{SUFFIX}"
        path = self.dir / name
        try:
            self._ensure_dir()
            write_state(path, self.key, self.fields, tokens, payload)
        except OSError as exc:
            log.warning("could not write KV state %s: %s", path, exc)
            self.stats["failed"] += 1
            return None
        with self._dir_lock:
            self.stats["saved"] += 1
            self._drop_covered(name, tok)
            self._evict()
        return path

    def _drop_covered(self, name: str, tok: bytes) -> None:
        """A state whose tokens the new one holds (all but less than a batch) is redundant:
        restoring the new one and cutting it back serves every prompt the old one served."""
        for s in self._scan():
            if s.path.name != name and common_prefix_bytes(s.tokens, tok) + 64 >= s.n_tokens:
                with contextlib.suppress(OSError):
                    s.path.unlink()
                self._headers.pop(s.path.name, None)

    def _evict(self) -> None:
        """Least recently used files (of any key) go until the directory fits its cap."""
        entries = []
        try:
            for de in os.scandir(self.dir):
                if de.name.endswith(SUFFIX):
                    with contextlib.suppress(OSError):
                        st = de.stat()
                        entries.append((st.st_mtime_ns, st.st_size, Path(de.path)))
        except OSError:
            return
        entries.sort()
        total, files = sum(e[1] for e in entries), len(entries)
        for _, size, path in entries:
            if total <= self.cap:
                break
            with contextlib.suppress(OSError):
                path.unlink()
                self.stats["evicted"] += 1
            self._headers.pop(path.name, None)
            total -= size
            files -= 1
        self.total_bytes, self.files = total, files

    def save_async(self, tokens: Sequence[int], payload: Any) -> None:
        with self._cond:
            self._pending = (_token_bytes(tokens), payload)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._writer, name="nearline-kv-writer", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def _writer(self) -> None:
        while True:
            with self._cond:
                while self._pending is None:
                    self._cond.wait()
                tok, payload = self._pending
                self._pending = None
                self._writing = tok
            try:
                self.save(_tokens_of(tok), payload)
            except Exception:  # never let a disk problem end the writer
                log.exception("writing a KV state failed")
            finally:
                with self._cond:
                    self._writing = None
                    self._cond.notify_all()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until queued states are written. Returns whether they were."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending is not None or self._writing is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def info(self) -> dict[str, Any]:
        return {
            "dir": str(self.dir),
            "mb": round(self.total_bytes / 2**20, 1),
            "files": self.files,
            "cap_mb": round(self.cap / 2**20),
            **self.stats,
        }
