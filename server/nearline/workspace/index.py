"""Workspace index: which files exist, what they hold (secret-redacted), and
when that changed.

The index knows files, not models or LSP.  The LSP layer feeds it open
documents (:meth:`WorkspaceIndex.set_overlay`), the watcher
(:mod:`nearline.workspace.watcher`) feeds it disk changes (:meth:`WorkspaceIndex.refresh`)
and the context composer reads it (:meth:`~WorkspaceIndex.files`,
:meth:`~WorkspaceIndex.text`, :attr:`~WorkspaceIndex.version`).

What gets indexed (see :mod:`nearline.workspace.ignore` and
:mod:`nearline.workspace.secrets` for the rule details):

* every workspace folder is walked; a folder nested in another is walked only
  as itself;
* ``.gitignore`` (all levels), ``.git/info/exclude`` and ``index.exclude``
  exclude paths; VCS directories are always skipped;
* secret paths are never opened; binaries (NUL in the first 8 KiB or not
  UTF-8) and files over ``max_file_bytes`` are skipped;
* symlinked *files* are indexed under the link's path when their target is
  inside the workspace; symlinked *directories* are not followed (like git):
  anything inside the workspace is reached through its real path anyway, so
  nothing is lost, no file is indexed twice through an alias and loops cannot
  happen;
* the stored text is secret-redacted and ``sha256`` is the hash of that text;
  a file that is mostly secret (a key file) is dropped.

Text storage: texts are kept in an LRU bounded by ``text_cache_bytes``; a miss
re-reads the file and re-checks the hash (if the file changed under us the
entry is updated, so ``text()`` and the entry always agree).

Threading: :meth:`scan` and :meth:`refresh` (worker / watcher threads) are
serialised by a writer lock and do their I/O outside the data lock; readers
(asyncio loop thread) only ever take the data lock, for dictionary work.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat as statmod
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from nearline.config import IndexSettings
from nearline.languages import language_for
from nearline.workspace.ignore import (
    VCS_DIRS,
    IgnoreRules,
    decode_text,
    ignore_file_scope,
    is_ignore_file,
    iter_parents,
)
from nearline.workspace.secrets import is_secret_path, redact
from nearline.workspace.snapshot import snapshot

__all__ = [
    "TEXT_CACHE_BYTES",
    "FileEntry",
    "WorkspaceIndex",
    "language_for",
]

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- #
# Public data
# --------------------------------------------------------------------------- #


@dataclass(frozen=True, slots=True)
class FileEntry:
    path: Path  # absolute
    root: Path  # workspace folder it belongs to
    rel: str  # posix path relative to root
    language: str
    size: int  # bytes on disk (of the overlay's UTF-8 when an overlay is open)
    mtime: float
    sha256: str  # of the (redacted) text, UTF-8
    tokens: int | None  # None until counted (see WorkspaceIndex.tokens_for)


#: budget for texts kept in memory (characters, about bytes for code)
TEXT_CACHE_BYTES = 64 * 1024 * 1024


# --------------------------------------------------------------------------- #
# Internals
# --------------------------------------------------------------------------- #

_RACY_NS = 2_000_000_000  # a file modified this close to our read is re-read on rescan
_PUBLISH_EVERY = 512  # scan publishes entries in batches of this many...
_PUBLISH_SECONDS = 0.25  # ...or this often


@dataclass(slots=True)
class _Stamp:
    size: int
    mtime_ns: int
    ino: int
    read_ns: int

    def still_valid(self, st: os.stat_result) -> bool:
        return (
            st.st_size == self.size
            and st.st_mtime_ns == self.mtime_ns
            and st.st_ino == self.ino
            and self.mtime_ns < self.read_ns - _RACY_NS
        )


@dataclass(slots=True)
class _Read:
    entry: FileEntry
    text: str
    stamp: _Stamp
    link_target: str | None


@dataclass(slots=True)
class _Overlay:
    text: str | None  # redacted; None when the document is a secret
    sha256: str
    entry: FileEntry | None  # what files()/get() show; None if not indexable
    raw: str | None = None  # the text as given (to skip identical updates)


@dataclass(frozen=True, slots=True)
class _Root:
    path: Path  # real path
    s: str  # str(path)
    sep: str  # s + os.sep
    given: str  # abspath as given (may go through symlinks)
    rules: IgnoreRules


_O_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


# Files whose text is a container of code, not code: a notebook is JSON around its cells (the
# editor sends the cells themselves, see completion/notebook.py). Never indexed.
CONTAINERS = frozenset({"jupyter"})


def _read_capped(path: str, expected: int, limit: int) -> bytes:
    """Read up to ``limit + 1`` bytes (so callers can tell "too big"), sized by
    the stat we already have instead of allocating ``limit`` every time."""
    fd = os.open(path, _O_FLAGS)
    try:
        data = os.read(fd, min(expected, limit) + 1)
        if len(data) == expected <= limit:  # the usual case: exactly what stat said
            return data
        # Shrank or grew since stat: read on until EOF or past the cap.
        chunks = [data]
        total = len(data)
        while total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _approx_tokens(text: str) -> int:
    return (len(text) + 3) // 4


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _differs(a: FileEntry | None, b: FileEntry | None) -> bool:
    if a is None or b is None:
        return a is not b
    return a.sha256 != b.sha256 or a.rel != b.rel or a.language != b.language


# --------------------------------------------------------------------------- #
# The index
# --------------------------------------------------------------------------- #


class WorkspaceIndex:
    def __init__(
        self,
        roots: Sequence[Path],
        settings: IndexSettings | None = None,
        count_tokens: Callable[[str], int] | None = None,
        *,
        text_cache_bytes: int = TEXT_CACHE_BYTES,
    ) -> None:
        self.settings = settings or IndexSettings()
        self._text_cache_bytes = text_cache_bytes
        self._count_tokens = count_tokens or _approx_tokens
        built: dict[str, _Root] = {}
        for r in roots:
            given = os.path.abspath(os.fspath(r))
            real = os.path.realpath(given)
            if real in built:
                continue
            built[real] = _Root(
                Path(real),
                real,
                real.rstrip(os.sep) + os.sep,
                given,
                IgnoreRules(Path(real), self.settings.exclude),
            )
        self._roots: tuple[_Root, ...] = tuple(built.values())
        self._by_depth = tuple(sorted(self._roots, key=lambda r: len(r.s), reverse=True))

        self._lock = threading.Lock()  # data; short critical sections only
        self._write_lock = threading.RLock()  # serialises scan / refresh
        self._entries: dict[Path, FileEntry] = {}
        self._stamps: dict[Path, _Stamp] = {}
        self._links: dict[Path, str] = {}  # symlinked file -> real target
        # files read and found non-indexable (binary, key file, ...): not re-read
        # on rescans while their stat is unchanged.  Writer-lock only.
        self._skip: dict[Path, tuple[_Stamp, str]] = {}
        self._overlays: dict[Path, _Overlay] = {}
        self._texts: OrderedDict[Path, tuple[str, str]] = OrderedDict()  # path -> (sha, text)
        self._texts_size = 0
        self._token_cache: dict[str, int] = {}
        self._sorted: list[Path] | None = None
        self._version = 0
        self._current: Path | None = None
        self._current_dirty = False
        # The current document's newest text, not yet redacted into its overlay (set_overlay).
        self._pending: dict[Path, str] = {}
        self._overlay_lock = threading.Lock()  # serialises overlay updates
        self.last_scan: dict[str, float | int] = {}

    # ------------------------------------------------------------------ paths

    @property
    def roots(self) -> list[Path]:
        return [r.path for r in self._roots]

    def _locate(self, path: Path | str) -> tuple[_Root, str, str] | None:
        """(root, rel, absolute real-rooted path string) or None if outside."""
        s = os.path.abspath(os.fspath(path))
        for r in self._by_depth:
            if s == r.s:
                return r, "", s
            if s.startswith(r.sep):
                return r, s[len(r.sep) :].replace(os.sep, "/"), s
        for r in self._by_depth:
            if r.given != r.s and (s == r.given or s.startswith(r.given + os.sep)):
                s2 = r.s + s[len(r.given) :]
                return r, s2[len(r.sep) :].replace(os.sep, "/") if s2 != r.s else "", s2
        return None

    def _key(self, path: Path | str) -> Path:
        loc = self._locate(path)
        return Path(loc[2]) if loc is not None else Path(os.path.abspath(os.fspath(path)))

    def _inside(self, real: str) -> bool:
        return any(real == r.s or real.startswith(r.sep) for r in self._roots)

    def _nested_roots(self, root: _Root) -> set[str]:
        return {r.s for r in self._roots if r is not root and r.s.startswith(root.sep)}

    # ------------------------------------------------------------- reading

    def _load(
        self,
        root: _Root,
        abs_s: str,
        rel: str,
        st: os.stat_result,
        link_target: str | None,
        p: Path | None = None,
    ) -> _Read | str:
        """Read and redact one file already known to be a candidate; return
        the result or the reason it is skipped."""
        limit = self.settings.max_file_bytes
        if st.st_size > limit:
            return "oversize"
        if language_for(rel) in CONTAINERS:
            return "container"
        read_ns = time.time_ns()
        try:
            data = _read_capped(abs_s, st.st_size, limit)
        except OSError:
            return "error"
        if len(data) > limit:
            return "oversize"
        text = decode_text(data)
        if text is None:
            return "binary"
        red = redact(text)
        if red.mostly_secret:
            return "secret_content"
        if red.count == 0 and not data.startswith(b"\xef\xbb\xbf"):
            sha = _sha(data)
        else:
            text = red.text
            sha = _sha(text.encode("utf-8"))
        entry = FileEntry(
            path=p if p is not None else Path(abs_s),
            root=root.path,
            rel=rel,
            language=language_for(rel),
            size=len(data),
            mtime=st.st_mtime,
            sha256=sha,
            tokens=self._token_cache.get(sha),
        )
        return _Read(
            entry, text, _Stamp(st.st_size, st.st_mtime_ns, st.st_ino, read_ns), link_target
        )

    def _load_if_changed(
        self,
        root: _Root,
        abs_s: str,
        rel: str,
        st: os.stat_result,
        link_target: str | None,
        p: Path,
    ) -> _Read | str | None:
        """Like :meth:`_load`, but None if the entry's stat says it is
        unchanged, and ``"=reason"`` for a file already known to be skipped
        (binary, key file, ...) that is unchanged since."""
        stamp = self._stamps.get(p)
        if stamp is not None and stamp.still_valid(st) and p in self._entries:
            return None
        known = self._skip.get(p)
        if known is not None and known[0].still_valid(st):
            return "=" + known[1]
        res = self._load(root, abs_s, rel, st, link_target, p)
        if isinstance(res, str):
            if len(self._skip) < 100_000:
                self._skip[p] = (_Stamp(st.st_size, st.st_mtime_ns, st.st_ino, time.time_ns()), res)
        else:
            self._skip.pop(p, None)
        return res

    def _probe(self, root: _Root, abs_s: str, rel: str) -> tuple[os.stat_result, str | None] | str:
        """Check a single path (not walked to): exclusion, secrets, symlinks,
        type.  Returns (stat, link_target) or the skip reason; "gone" if it
        does not exist."""
        try:
            lst = os.lstat(abs_s)
        except FileNotFoundError:
            return "gone"
        except OSError:
            return "error"
        target = None
        st = lst
        if statmod.S_ISLNK(lst.st_mode):
            target = os.path.realpath(abs_s)
            if not self._inside(target):
                return "symlink_outside"
            try:
                st = os.stat(abs_s)
            except OSError:
                return "broken_symlink"
            if statmod.S_ISDIR(st.st_mode):
                return "symlink_dir"
        if statmod.S_ISDIR(st.st_mode):
            return "dir"
        if not statmod.S_ISREG(st.st_mode):
            return "special"
        if root.rules.is_excluded(rel, False):
            return "ignored"
        if is_secret_path(rel):
            return "secret_path"
        return st, target

    def _walk(
        self,
        root: _Root,
        start_rel: str,
        out: list[tuple[_Root, str, str, os.stat_result, str | None]],
        skipped: Counter[str],
        cancel: threading.Event | None = None,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> bool:
        """Collect candidate files below ``start_rel`` (which must itself be a
        walkable directory).  Returns False if cancelled."""
        rules = root.rules
        nested = self._nested_roots(root)
        limit = self.settings.max_file_bytes
        start = root.s if not start_rel else root.sep + start_rel.replace("/", os.sep)
        stack: list[tuple[str, str]] = [(start, start_rel)]
        last_report = time.monotonic()
        while stack:
            if cancel is not None and cancel.is_set():
                return False
            d_abs, d_rel = stack.pop()
            try:
                with os.scandir(d_abs) as it:
                    ents = sorted(it, key=lambda e: e.name)
            except OSError:
                skipped["error"] += 1
                continue
            subdirs: list[tuple[str, str]] = []
            for e in ents:
                name = e.name
                if name in VCS_DIRS:
                    continue
                rel = f"{d_rel}/{name}" if d_rel else name
                try:
                    if e.is_dir(follow_symlinks=False):
                        if e.path in nested:
                            continue
                        if rules.is_ignored(rel, True):
                            skipped["ignored"] += 1
                        elif is_secret_path(rel + "/"):
                            skipped["secret_path"] += 1
                        else:
                            subdirs.append((e.path, rel))
                        continue
                    target = None
                    if e.is_symlink():
                        target = os.path.realpath(e.path)
                        if not self._inside(target):
                            skipped["symlink_outside"] += 1
                            continue
                        st = os.stat(e.path)
                        if statmod.S_ISDIR(st.st_mode):
                            skipped["symlink_dir"] += 1
                            continue
                    else:
                        st = e.stat(follow_symlinks=False)
                    if not statmod.S_ISREG(st.st_mode):
                        skipped["special"] += 1
                        continue
                    if rules.is_ignored(rel, False):
                        skipped["ignored"] += 1
                        continue
                    if is_secret_path(rel):
                        skipped["secret_path"] += 1
                        continue
                    if st.st_size > limit:
                        skipped["oversize"] += 1
                        continue
                    out.append((root, e.path, rel, st, target))
                except OSError:
                    skipped["error"] += 1
            stack.extend(reversed(subdirs))
            if progress is not None and time.monotonic() - last_report > 0.2:
                last_report = time.monotonic()
                progress(len(out), None)
        return True

    # ------------------------------------------------------------- applying

    def _eff(self, p: Path) -> FileEntry | None:
        ov = self._overlays.get(p)
        return ov.entry if ov is not None else self._entries.get(p)

    def _cache_put(self, p: Path, sha: str, text: str) -> None:
        n = len(text)
        budget = self._text_cache_bytes
        old = self._texts.pop(p, None)
        if old is not None:
            self._texts_size -= len(old[1])
        if n > budget // 4:
            return
        self._texts[p] = (sha, text)
        self._texts_size += n
        while self._texts_size > budget and self._texts:
            _, (_, t) = self._texts.popitem(last=False)
            self._texts_size -= len(t)

    def _cache_drop(self, p: Path) -> None:
        old = self._texts.pop(p, None)
        if old is not None:
            self._texts_size -= len(old[1])

    def _apply(self, updates: dict[Path, _Read | None]) -> set[Path]:
        """Publish entry updates (None = remove); return effective changes."""
        changed: set[Path] = set()
        if not updates:
            return changed
        with self._lock:
            keys_dirty = False
            for p, res in updates.items():
                old = self._eff(p)
                if res is None:
                    if self._entries.pop(p, None) is not None:
                        keys_dirty = True
                    self._stamps.pop(p, None)
                    self._links.pop(p, None)
                    self._cache_drop(p)
                else:
                    prev = self._entries.get(p)
                    if prev is None:
                        keys_dirty = True
                    elif (
                        prev.tokens is not None
                        and res.entry.tokens is None
                        and (prev.sha256 == res.entry.sha256)
                    ):
                        res.entry = replace(res.entry, tokens=prev.tokens)
                    self._entries[p] = res.entry
                    self._stamps[p] = res.stamp
                    if res.link_target is not None:
                        self._links[p] = res.link_target
                    else:
                        self._links.pop(p, None)
                    self._cache_put(p, res.entry.sha256, res.text)
                if _differs(old, self._eff(p)):
                    changed.add(p)
            if keys_dirty:
                self._sorted = None
            if changed:
                self._version += 1
        return changed

    # ------------------------------------------------------------------ scan

    def scan(
        self,
        progress: Callable[[int, int | None], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        """(Re)index every workspace folder.  Blocking; run it in a worker
        thread.  ``progress(done, total)`` is called while walking
        (``total=None``) and while reading.  Entries are published in batches
        as they are read, so readers see a growing index during the first
        scan.  A rescan re-reads only files whose stat changed.  If ``cancel``
        is set the scan stops; what was published stays, and files that
        disappeared are not yet removed."""
        t0 = time.perf_counter()
        with self._write_lock:
            skipped: Counter[str] = Counter()
            candidates: list[tuple[_Root, str, str, os.stat_result, str | None]] = []
            for root in self._roots:
                root.rules.reset()
                if not os.path.isdir(root.s):
                    skipped["missing_root"] += 1
                    continue
                if not self._walk(root, "", candidates, skipped, cancel, progress):
                    return
            total = len(candidates)
            if progress is not None:
                progress(0, total)
            seen: set[Path] = set()
            batch: dict[Path, _Read | None] = {}
            last = time.monotonic()
            reread = 0
            for i, (root, abs_s, rel, st, target) in enumerate(candidates):
                if cancel is not None and cancel.is_set():
                    self._apply(batch)
                    return
                p = Path(abs_s)
                res = self._load_if_changed(root, abs_s, rel, st, target, p)
                if res is None:
                    seen.add(p)
                    continue
                if isinstance(res, str) and res.startswith("="):
                    skipped[res[1:]] += 1  # known non-indexable, unchanged
                    continue
                reread += 1
                if isinstance(res, str):
                    skipped[res] += 1
                    batch[p] = None
                else:
                    seen.add(p)
                    batch[p] = res
                if len(batch) >= _PUBLISH_EVERY or time.monotonic() - last > _PUBLISH_SECONDS:
                    self._apply(batch)
                    batch = {}
                    last = time.monotonic()
                    if progress is not None:
                        progress(i + 1, total)
            self._apply(batch)
            with self._lock:
                gone = [p for p in self._entries if p not in seen]
            self._apply(dict.fromkeys(gone))
            if progress is not None:
                progress(total, total)
            self.last_scan = {
                "seconds": time.perf_counter() - t0,
                "candidates": total,
                "read": reread,
                "indexed": len(seen),
                **{f"skipped_{k}": v for k, v in sorted(skipped.items())},
            }

    # --------------------------------------------------------------- refresh

    def refresh(self, paths: Iterable[Path | str]) -> set[Path]:
        """Re-read these paths (created / modified / deleted / moved files or
        directories, ``.gitignore`` files) and return the paths whose entry
        changed (appeared, disappeared, or new content: an mtime-only touch
        is not a change).  Explicitly named files are always re-read; a
        directory is rescanned (reusing entries whose stat is unchanged); a
        changed ``.gitignore``/``info/exclude`` rescans the subtree it governs."""
        with self._write_lock:
            return self._refresh_locked(paths)

    def _refresh_locked(self, paths: Iterable[Path | str]) -> set[Path]:
        files: dict[str, tuple[_Root, str]] = {}
        subtrees: dict[tuple[_Root, str], None] = {}
        reset_roots: set[_Root] = set()
        for raw in paths:
            loc = self._locate(raw)
            if loc is None:
                continue
            root, rel, abs_s = loc
            if not rel:
                subtrees[(root, "")] = None
                continue
            if is_ignore_file(rel):
                reset_roots.add(root)
                subtrees[(root, ignore_file_scope(rel))] = None
                if "/.git/" in "/" + rel:
                    continue
            files[abs_s] = (root, rel)
        for root in reset_roots:
            root.rules.reset()
        # symlinked files follow their targets
        if self._links and files:
            with self._lock:
                links = list(self._links.items())
            for link, link_target in links:
                if link_target in files and str(link) not in files:
                    loc = self._locate(link)
                    if loc is not None:
                        files[loc[2]] = (loc[0], loc[1])

        updates: dict[Path, _Read | None] = {}
        gone_dirs: dict[_Root, set[str]] = {}
        for abs_s, (root, rel) in files.items():
            probe = self._probe(root, abs_s, rel)
            if probe == "dir":
                subtrees[(root, rel)] = None
            elif isinstance(probe, str):
                p = Path(abs_s)
                if p not in self._entries:
                    # might have been a directory (deleted / moved away / replaced)
                    gone_dirs.setdefault(root, set()).add(rel)
                updates[p] = None
            else:
                p = Path(abs_s)
                res = self._load(root, abs_s, rel, probe[0], probe[1], p)
                updates[p] = None if isinstance(res, str) else res

        for root, rels in self._collapse(subtrees).items():
            self._rescan_subtrees(root, rels, updates)
        if gone_dirs:
            self._sweep_gone_dirs(gone_dirs, updates)
        return self._apply(updates)

    @staticmethod
    def _collapse(subtrees: Iterable[tuple[_Root, str]]) -> dict[_Root, set[str]]:
        """Per root, the subtree dirs to rescan with nested ones dropped."""
        by_root: dict[_Root, list[str]] = {}
        for root, rel in subtrees:
            by_root.setdefault(root, []).append(rel)
        out: dict[_Root, set[str]] = {}
        for root, rels in by_root.items():
            kept: set[str] = set()
            for rel in sorted(set(rels), key=lambda r: (r.count("/"), r)):
                if "" in kept or any(d in kept for d in iter_parents(rel)):
                    continue
                kept.add(rel)
            out[root] = kept
        return out

    def _rescan_subtrees(
        self, root: _Root, dirs: set[str], updates: dict[Path, _Read | None]
    ) -> None:
        """Walk these directories (reusing unchanged entries) and schedule the
        removal of entries below them that the walk no longer yields."""
        skipped: Counter[str] = Counter()
        cands: list[tuple[_Root, str, str, os.stat_result, str | None]] = []
        for d in sorted(dirs):
            d_abs = root.s if not d else root.sep + d.replace("/", os.sep)
            if d and (
                not os.path.isdir(d_abs)
                or os.path.islink(d_abs)
                or root.rules.dir_excluded(d)
                or is_secret_path(d + "/")
            ):
                continue  # gone, a link, or now excluded: everything below goes
            self._walk(root, d, cands, skipped)
        found: set[Path] = set()
        for _, abs_s, rel, st, target in cands:
            p = Path(abs_s)
            found.add(p)
            if p in updates:
                continue
            res = self._load_if_changed(root, abs_s, rel, st, target, p)
            if res is not None:
                updates[p] = None if isinstance(res, str) else res
        with self._lock:
            mine = [(p, e.rel) for p, e in self._entries.items() if e.root is root.path]
        everything = "" in dirs
        for p, rel in mine:
            if p in found or p in updates:
                continue
            if everything or any(d in dirs for d in iter_parents(rel)):
                updates[p] = None

    def _sweep_gone_dirs(
        self, gone: dict[_Root, set[str]], updates: dict[Path, _Read | None]
    ) -> None:
        """Remove entries below paths that vanished (deleted / moved-away dirs)."""
        dirs_by_root = {id(r.path): dirs for r, dirs in gone.items()}
        with self._lock:
            entries = [(p, e.rel, id(e.root)) for p, e in self._entries.items()]
        for p, rel, rid in entries:
            dirs = dirs_by_root.get(rid)
            if dirs is None or p in updates:
                continue
            if any(d in dirs for d in iter_parents(rel)):
                updates[p] = None

    # --------------------------------------------------------------- readers

    def _sorted_keys(self) -> list[Path]:
        # caller holds self._lock
        if self._sorted is None:
            keys = set(self._entries)
            keys.update(p for p, ov in self._overlays.items() if ov.entry is not None)
            pairs = []
            for p in keys:
                e = self._eff(p) or self._entries.get(p)
                if e is not None:
                    pairs.append(((e.rel, str(e.root)), p))
            pairs.sort()
            self._sorted = [p for _, p in pairs]
        return self._sorted

    def files(self, language: str | None = None) -> list[FileEntry]:
        """Indexed files (open documents' overlays applied), sorted by
        ``(rel, root)``."""
        self._settle()
        with self._lock:
            out = []
            for p in self._sorted_keys():
                e = self._eff(p)
                if e is not None and (language is None or e.language == language):
                    out.append(e)
            return out

    def count(self) -> int:
        """Number of indexed files (what ``len(files())`` would give)."""
        self._settle()
        with self._lock:
            return sum(1 for p in self._sorted_keys() if self._eff(p) is not None)

    def get(self, path: Path | str) -> FileEntry | None:
        self._settle()
        p = self._key(path)
        with self._lock:
            return self._eff(p)

    def read(self, path: Path | str) -> tuple[FileEntry | None, str] | None:
        """``(entry, text)`` consistent with each other; the entry is None for
        an open document that is not indexable (ignored, too big, outside the
        workspace).  None when there is no text to give."""
        self._settle()
        p = self._key(path)
        with self._lock:
            ov = self._overlays.get(p)
            if ov is not None:
                return (ov.entry, ov.text) if ov.text is not None else None
            e = self._entries.get(p)
            if e is None:
                return None
            hit = self._texts.get(p)
            if hit is not None and hit[0] == e.sha256:
                self._texts.move_to_end(p)
                return e, hit[1]
        loc = self._locate(p)
        if loc is None:
            return None
        root, rel, abs_s = loc
        probe = self._probe(root, abs_s, rel)
        if isinstance(probe, str):
            return None
        res = self._load(root, abs_s, rel, probe[0], probe[1])
        if isinstance(res, str):
            return None  # no longer indexable; the watcher / next refresh drops it
        with self._lock:
            cur = self._entries.get(p)
            if cur is e and res.entry.sha256 != e.sha256:
                # changed on disk without us hearing about it: adopt it
                self._entries[p] = res.entry
                self._stamps[p] = res.stamp
                if p not in self._overlays:
                    self._version += 1
                cur = res.entry
            if cur is not None and cur.sha256 == res.entry.sha256:
                self._cache_put(p, cur.sha256, res.text)
                return cur, res.text
            return res.entry, res.text

    def text(self, path: Path | str) -> str | None:
        """Redacted text; an open document's overlay wins over disk."""
        r = self.read(path)
        return None if r is None else r[1]

    def tokens_for(self, path: Path | str) -> int:
        """Token count of the current text (0 if none), computed lazily with
        ``count_tokens`` and cached by sha256."""
        r = self.read(path)
        if r is None:
            return 0
        entry, text = r
        sha = entry.sha256 if entry is not None else _sha(text.encode("utf-8"))
        n = self._token_cache.get(sha)
        if n is None:
            n = int(self._count_tokens(text))
            with self._lock:
                if len(self._token_cache) > 262_144:
                    for k in list(self._token_cache)[:131_072]:
                        del self._token_cache[k]
                self._token_cache[sha] = n
        if entry is not None and entry.tokens != n:
            p = entry.path
            with self._lock:
                if self._entries.get(p) is entry:
                    self._entries[p] = replace(entry, tokens=n)
                ov = self._overlays.get(p)
                if ov is not None and ov.entry is entry:
                    ov.entry = replace(entry, tokens=n)
        return n

    @property
    def version(self) -> int:
        """Bumps whenever an entry's content/existence changes, or an overlay
        of a file other than the current one (:meth:`set_current`) does.
        Edits to the current document are folded into one bump when another
        document becomes current."""
        return self._version

    @property
    def current(self) -> Path | None:
        return self._current

    # -------------------------------------------------------------- overlays

    def set_current(self, path: Path | str | None) -> None:
        """The document being edited: its overlay edits don't bump
        :attr:`version` (the composer reads it directly)."""
        p = None if path is None else self._key(path)
        if p != self._current:
            self._settle()
        with self._lock:
            if p != self._current:
                if self._current_dirty:
                    self._version += 1
                self._current_dirty = False
                self._current = p

    def set_overlay(self, path: Path | str, text: str) -> None:
        """An open document's (unsaved) text; wins over disk until dropped.
        Costs one redaction pass over ``text`` (skipped if it is unchanged).
        For the current document (:meth:`set_current`) the pass waits until
        something reads the index or another document becomes current: the
        composers never read the current document from here, so typing in it
        costs no redaction per keystroke. Until then readers see its previous
        version, redacted like every other."""
        p = self._key(path)
        with self._lock:
            if p == self._current and p in self._overlays:
                self._pending[p] = text
                return
        with self._overlay_lock:
            with self._lock:
                self._pending.pop(p, None)
            self._apply_overlay(path, text)

    def _settle(self) -> None:
        """Take the current document's pending text into its overlay."""
        if not self._pending:
            return
        with self._overlay_lock:
            with self._lock:
                pending, self._pending = self._pending, {}
            for p, text in pending.items():
                self._apply_overlay(p, text)

    def _apply_overlay(self, path: Path | str, text: str) -> None:
        loc = self._locate(path)
        abs_s = loc[2] if loc is not None else os.path.abspath(os.fspath(path))
        p = Path(abs_s)
        prev = self._overlays.get(p)
        if prev is not None and prev.raw is not None and prev.raw == text:
            return
        rel = loc[1] if loc is not None else abs_s.replace(os.sep, "/").lstrip("/")
        if is_secret_path(rel) or (loc is not None and not rel):
            ov = _Overlay(None, "", None)
        elif len(text) > self.settings.max_file_bytes:
            # Too big to index, and to redact on every keystroke: hidden (its disk copy too).
            ov = _Overlay(None, "", None)
        else:
            # A client may send lone surrogates; they cannot be encoded or tokenized. One
            # U+FFFD each keeps the text's length.
            clean = snapshot(text).clean
            red = redact(clean)
            if red.mostly_secret:
                ov = _Overlay(None, "", None)
            else:
                data = red.text.encode("utf-8")
                sha = _sha(data)
                entry = None
                if loc is not None:
                    with self._lock:
                        disk = self._entries.get(p)
                    if disk is not None or (
                        len(data) <= self.settings.max_file_bytes
                        and not loc[0].rules.is_excluded(rel, False)
                    ):
                        entry = FileEntry(
                            path=p,
                            root=loc[0].path,
                            rel=rel,
                            language=language_for(rel),
                            size=len(data),
                            mtime=time.time(),
                            sha256=sha,
                            tokens=self._token_cache.get(sha),
                        )
                ov = _Overlay(red.text, sha, entry, text)
        self._put_overlay(p, ov)

    def drop_overlay(self, path: Path | str) -> None:
        p = self._key(path)
        with self._overlay_lock:
            with self._lock:
                self._pending.pop(p, None)
            self._put_overlay(p, None)

    def _put_overlay(self, p: Path, ov: _Overlay | None) -> None:
        with self._lock:
            old = self._eff(p)
            old_ov = self._overlays.get(p)
            if ov is None:
                if old_ov is None:
                    return
                del self._overlays[p]
            else:
                self._overlays[p] = ov
            if (old_ov is not None and old_ov.entry is not None) != (
                ov is not None and ov.entry is not None
            ):
                self._sorted = None
            if _differs(old, self._eff(p)):
                if p == self._current:
                    self._current_dirty = True
                else:
                    self._version += 1

    # ----------------------------------------------------------------- stats

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "files": len(self._entries),
                "overlays": len(self._overlays),
                "cached_texts": len(self._texts),
                "cached_text_chars": self._texts_size,
                "token_cache": len(self._token_cache),
                "version": self._version,
            }
