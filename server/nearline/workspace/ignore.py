"""What the workspace index may read: ignore rules and binary detection.

(What it must never read or pass on, secret paths and secret content, is
:mod:`nearline.workspace.secrets`.)

**Ignore rules** (:class:`IgnoreRules`): ``.gitignore`` files at every level
(each relative to its own directory, negations included), ``.git/info/exclude``
and the user's ``index.exclude`` globs, all matched with gitwildmatch semantics
through :mod:`pathspec` (:class:`GitPatterns`).

Precedence, highest first (this mirrors git, plus the user's setting on top):

1. the user's ``index.exclude`` globs.  A match excludes; a negated user glob
   (``!build/gen/``) force-includes a path git ignores;
2. the deepest ``.gitignore`` with a matching pattern (last match in a file
   wins), then its parents' ``.gitignore`` files, including those *above* the
   workspace folder up to the top of its git work tree;
3. ``.git/info/exclude`` of the enclosing repository;
4. only when the workspace folder is **not** inside a git work tree:
   :data:`DEFAULT_HEAVY_DIRS` (``node_modules/``, ``.venv/``, ...).  Inside a
   repository the ``.gitignore`` files are authoritative: a project that
   commits ``node_modules`` gets it indexed, one that ignores it does not.

VCS metadata directories (``.git``, ``.hg``, ``.svn``) are always skipped.
A nested repository (a directory holding its own ``.git``) starts a fresh
stack of ``.gitignore`` files, as git does.  Git's global excludes file
(``core.excludesFile``) is not read.

As in git, a file inside an excluded directory cannot be re-included by a
negation in a ``.gitignore`` (the directory is never walked); only the user's
negated ``index.exclude`` globs can do that, and only for the directory itself.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pathspec import GitIgnoreSpec

__all__ = [
    "DEFAULT_HEAVY_DIRS",
    "VCS_DIRS",
    "GitPatterns",
    "IgnoreRules",
    "decode_text",
    "find_git_toplevel",
    "ignore_file_scope",
    "is_ignore_file",
    "iter_parents",
    "looks_binary",
]

VCS_DIRS: frozenset[str] = frozenset({".git", ".hg", ".svn", ".bzr", "_darcs"})

DEFAULT_HEAVY_DIRS: tuple[str, ...] = (
    "node_modules/",
    "bower_components/",
    "__pycache__/",
    ".venv/",
    "venv/",
    ".tox/",
    ".nox/",
    ".mypy_cache/",
    ".pytest_cache/",
    ".ruff_cache/",
    ".next/",
    ".nuxt/",
    ".gradle/",
    ".terraform/",
    ".cache/",
)

BINARY_SNIFF_BYTES = 8192


# --------------------------------------------------------------------------- #
# Binary / text detection
# --------------------------------------------------------------------------- #


def looks_binary(head: bytes) -> bool:
    """True when the first 8 KiB contain a NUL byte."""
    return b"\0" in head[:BINARY_SNIFF_BYTES]


def decode_text(data: bytes) -> str | None:
    """Decode ``data`` as UTF-8 (a leading BOM is dropped), or ``None`` if it is
    binary: a NUL in the first 8 KiB or not valid UTF-8."""
    if looks_binary(data):
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if text.startswith("\ufeff"):
        text = text[1:]
    return text


# --------------------------------------------------------------------------- #
# Compiled gitignore patterns
# --------------------------------------------------------------------------- #

_NAMED_GROUP = re.compile(r"\(\?P<[A-Za-z_][A-Za-z0-9_]*>")


class GitPatterns:
    """The patterns of one ignore file (or one list of globs), compiled twice:
    as a :class:`pathspec.GitIgnoreSpec` (``exact``) and as one union regex of
    all of them.  Most paths match no pattern at all; the union answers those in
    a single C-level search, and only paths that hit some pattern go through
    pathspec's exact (last-match-wins, negation-aware) evaluation."""

    __slots__ = ("_any", "exact")

    def __init__(self, exact: GitIgnoreSpec) -> None:
        self.exact = exact
        self._any: re.Pattern[str] | None = None
        parts: list[str] = []
        try:
            for pat in exact.patterns:
                if pat.include is None:
                    continue
                rx = getattr(pat, "regex", None)
                if (
                    rx is None
                    or not isinstance(rx.pattern, str)
                    or "(?P=" in rx.pattern
                    or rx.flags & ~re.UNICODE
                ):
                    return  # unknown shape: always use the exact path
                parts.append("(?:" + _NAMED_GROUP.sub("(?:", rx.pattern) + ")")
            self._any = re.compile("|".join(parts) if parts else "(?!)")
        except (re.error, AttributeError, TypeError):
            self._any = None

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> GitPatterns:
        """Compile gitignore lines; a line git would reject is skipped rather
        than failing the whole file."""
        lines = list(lines)
        try:
            return cls(GitIgnoreSpec.from_lines(lines))
        except (ValueError, TypeError):
            good = []
            for line in lines:
                try:
                    GitIgnoreSpec.from_lines([line])
                except (ValueError, TypeError):
                    continue
                good.append(line)
            return cls(GitIgnoreSpec.from_lines(good))

    def __len__(self) -> int:
        return len(self.exact)

    def check(self, path: str) -> bool | None:
        """True = excluded, False = re-included by a negation, None = no
        pattern matched."""
        if self._any is not None and self._any.search(path) is None:
            return None
        return self.exact.check_file(path).include


# --------------------------------------------------------------------------- #
# Ignore rules
# --------------------------------------------------------------------------- #


def find_git_toplevel(path: Path) -> Path | None:
    """The closest directory at or above ``path`` that holds a ``.git`` entry."""
    p = path
    while True:
        if os.path.lexists(os.path.join(p, ".git")):
            return p
        if p.parent == p:
            return None
        p = p.parent


def _git_dirs(work_tree: str) -> list[str]:
    """Candidate git directories for a work tree (``.git`` may be a file:
    worktrees and submodules), including a worktree's common dir."""
    dot_git = os.path.join(work_tree, ".git")
    if os.path.isdir(dot_git):
        return [dot_git]
    try:
        with open(dot_git, encoding="utf-8") as f:
            first = f.readline().strip()
    except OSError:
        return []
    if not first.startswith("gitdir:"):
        return []
    gitdir = first[len("gitdir:") :].strip()
    gitdir = os.path.normpath(os.path.join(work_tree, gitdir))
    dirs = [gitdir]
    try:
        with open(os.path.join(gitdir, "commondir"), encoding="utf-8") as f:
            dirs.append(os.path.normpath(os.path.join(gitdir, f.readline().strip())))
    except OSError:
        pass
    return dirs


def _read_patterns(path: str) -> GitPatterns | None:
    try:
        with open(path, "rb") as f:
            data = f.read(1_000_000)
    except OSError:
        return None
    lines = data.decode("utf-8", "replace").splitlines()
    patterns = GitPatterns.from_lines(lines)
    return patterns if len(patterns) else None


def _parent(rel: str) -> str:
    i = rel.rfind("/")
    return rel[:i] if i >= 0 else ""


@dataclass(frozen=True, slots=True)
class _Layer:
    prefix: str  # rel path of the layer's base dir, relative to the workspace root
    up: str  # for layers above the root: root relative to the layer's dir
    patterns: GitPatterns

    def check(self, rel: str, is_dir: bool) -> bool | None:
        if self.up:
            sub = f"{self.up}/{rel}"
        elif self.prefix:
            sub = rel[len(self.prefix) + 1 :]
        else:
            sub = rel
        if is_dir:
            sub += "/"
        return self.patterns.check(sub)


class IgnoreRules:
    """Ignore decisions for one workspace folder.  Thread-safe; ``.gitignore``
    files are read lazily and cached until :meth:`reset`."""

    def __init__(self, root: Path, exclude: Sequence[str] = ()) -> None:
        self.root = root
        self._root_s = os.fspath(root)
        self._lock = threading.RLock()
        self._user = GitPatterns.from_lines(exclude) if exclude else None
        if self._user is not None and not len(self._user):
            self._user = None
        self._heavy = GitPatterns.from_lines(DEFAULT_HEAVY_DIRS)
        self._init_repo()

    # -- setup ---------------------------------------------------------------

    def _init_repo(self) -> None:
        self.git_toplevel = find_git_toplevel(self.root)
        self.in_git = self.git_toplevel is not None
        self._own: dict[str, tuple[GitPatterns | None, bool, GitPatterns | None]] = {}
        self._layers: dict[str, tuple[_Layer, ...]] = {}
        self._dir_excluded: dict[str, bool] = {}
        # layers from above the workspace folder (root inside a repo)
        above: list[_Layer] = []
        top = self.git_toplevel
        if top is not None and top != self.root:
            up_parts = self.root.relative_to(top).parts
            # deepest first: root's parent, ..., top
            for i in range(len(up_parts) - 1, -1, -1):
                d = top.joinpath(*up_parts[:i])
                up = "/".join(up_parts[i:])
                patterns = _read_patterns(os.path.join(d, ".gitignore"))
                if patterns is not None:
                    above.append(_Layer("", up, patterns))
            for gd in _git_dirs(os.fspath(top)):
                patterns = _read_patterns(os.path.join(gd, "info", "exclude"))
                if patterns is not None:
                    above.append(_Layer("", "/".join(up_parts), patterns))
                    break
        self._above = tuple(above)

    def reset(self) -> None:
        """Forget every cached ``.gitignore``/``info/exclude`` (call after one
        of them changed)."""
        with self._lock:
            self._init_repo()

    # -- per-directory data --------------------------------------------------

    def _own_info(self, d: str) -> tuple[GitPatterns | None, bool, GitPatterns | None]:
        info = self._own.get(d)
        if info is None:
            abs_d = os.path.join(self._root_s, d) if d else self._root_s
            gi = _read_patterns(os.path.join(abs_d, ".gitignore"))
            is_repo = os.path.lexists(os.path.join(abs_d, ".git"))
            excl = None
            if is_repo:
                for gd in _git_dirs(abs_d):
                    excl = _read_patterns(os.path.join(gd, "info", "exclude"))
                    if excl is not None:
                        break
            info = (gi, is_repo, excl)
            self._own[d] = info
        return info

    def _layers_for(self, d: str) -> tuple[_Layer, ...]:
        """Layers that apply to entries of directory ``d``, highest precedence
        first."""
        layers = self._layers.get(d)
        if layers is not None:
            return layers
        gi, is_repo, excl = self._own_info(d)
        own: list[_Layer] = []
        if gi is not None:
            own.append(_Layer(d, "", gi))
        if is_repo:
            # A repository boundary: parents' .gitignore files stop here, and
            # this repo's info/exclude sits below all of its .gitignore files.
            # (The deeper .gitignore files of this repo come first, being
            # layers of descendants.)
            result = tuple(own) + ((_Layer(d, "", excl),) if excl is not None else ())
        else:
            parent = self._layers_for(_parent(d)) if d else self._above
            result = tuple(own) + parent
        self._layers[d] = result
        return result

    # -- queries ---------------------------------------------------------------

    def is_ignored(self, rel: str, is_dir: bool) -> bool:
        """Does a rule exclude this entry, assuming its parent directory is
        *not* excluded?  (What a tree walk asks.)"""
        name = rel.rsplit("/", 1)[-1]
        if name in VCS_DIRS:
            return True
        with self._lock:
            if self._user is not None:
                r = self._user.check(rel + "/" if is_dir else rel)
                if r is not None:
                    return r
            for layer in self._layers_for(_parent(rel)):
                r = layer.check(rel, is_dir)
                if r is not None:
                    return r
            if not self.in_git:
                return bool(self._heavy.check(rel + "/" if is_dir else rel))
            return False

    def dir_excluded(self, rel_dir: str) -> bool:
        """Is this directory, or any directory above it, excluded?"""
        if not rel_dir:
            return False
        with self._lock:
            cached = self._dir_excluded.get(rel_dir)
            if cached is not None:
                return cached
            result = self.dir_excluded(_parent(rel_dir)) or self.is_ignored(rel_dir, True)
            self._dir_excluded[rel_dir] = result
            return result

    def is_excluded(self, rel: str, is_dir: bool = False) -> bool:
        """Full check for a single path (refresh): its directories, then itself."""
        return self.dir_excluded(_parent(rel)) or self.is_ignored(rel, is_dir)


def is_ignore_file(rel: str) -> bool:
    """Does a change to this path change ignore rules?"""
    if rel == ".gitignore" or rel.endswith("/.gitignore"):
        return True
    return rel == ".git/info/exclude" or rel.endswith("/.git/info/exclude")


def ignore_file_scope(rel: str) -> str:
    """The directory (rel) whose subtree an ignore file governs."""
    if rel.rsplit("/", 1)[-1] == ".gitignore":
        return _parent(rel)
    # <scope>/.git/info/exclude
    i = ("/" + rel).rfind("/.git/")
    return rel[: max(i - 1, 0)] if i > 0 else ""


def iter_parents(rel: str) -> Iterable[str]:
    """``a/b/c`` -> ``a/b``, ``a`` (not the root)."""
    while "/" in rel:
        rel = rel.rsplit("/", 1)[0]
        yield rel
