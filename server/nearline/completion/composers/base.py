"""What every composer shares: the request, what it reads of the workspace, and how text is
fitted into a token budget (the current file's prefix cut from the top at a line boundary, a
repository file cut keeping its end, files taken nearest-first while they fit)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from nearline.completion.prompt import RepoFile

CountTokens = Callable[[str], int]

# The prefix cut moves in steps of this many lines, so that while typing the start of the
# prompt stays put and the KV cache stays valid (a moving cut would invalidate everything after it).
PREFIX_CUT_STEP = 16


class FileLike(Protocol):
    @property
    def path(self) -> Path: ...
    @property
    def rel(self) -> str: ...
    @property
    def language(self) -> str: ...


class RepoSource(Protocol):
    """What a composer needs from the workspace index."""

    def files(self, language: str | None = None) -> Sequence[FileLike]: ...
    def text(self, path: Path) -> str | None: ...
    def tokens_for(self, path: Path) -> int: ...


def path_distance(a: str, b: str) -> int:
    """Steps through the directory tree from file ``a`` to file ``b``:
    (parts(a) − common − 1) + (parts(b) − common − 1), ``common`` = shared leading components."""
    pa, pb = PurePosixPath(a).parts, PurePosixPath(b).parts
    common = 0
    for x, y in zip(pa[:-1], pb[:-1], strict=False):
        if x != y:
            break
        common += 1
    return (len(pa) - common - 1) + (len(pb) - common - 1)


def tail_lines_within(
    text: str, budget: int, count: CountTokens, total: int | None = None
) -> tuple[str, int]:
    """The longest tail of ``text`` starting at a line boundary whose token count fits
    (``total``: the text's count, when known)."""
    if budget <= 0 or not text:
        return "", 0
    total = count(text) if total is None else total
    if total <= budget:
        return text, total
    lines = text.splitlines(keepends=True)
    # Walk lines from the end using per-line counts (cheap), then confirm with an exact count;
    # BPE merges rarely cross a newline, so the estimate is almost always exact.
    acc, start = 0, len(lines)
    while start > 0:
        c = count(lines[start - 1])
        if acc + c > budget:
            break
        acc += c
        start -= 1
    tail = "".join(lines[start:])
    exact = count(tail)
    while exact > budget and start < len(lines):
        start += 1
        tail = "".join(lines[start:])
        exact = count(tail)
    return tail, exact


def head_lines_within(text: str, budget: int, count: CountTokens) -> tuple[str, int]:
    """The longest start of ``text`` ending at a line boundary whose token count fits."""
    if budget <= 0 or not text:
        return "", 0
    lines = text.splitlines(keepends=True)
    acc, end = 0, 0
    while end < len(lines):
        c = count(lines[end])
        if acc + c > budget:
            break
        acc += c
        end += 1
    head = "".join(lines[:end])
    exact = count(head) if head else 0
    while exact > budget and end > 0:
        end -= 1
        head = "".join(lines[:end])
        exact = count(head) if head else 0
    return head, exact


def cut_prefix(
    prefix: str, budget: int, count: CountTokens, total: int | None = None
) -> tuple[str, int, int]:
    """Cut the file prefix from the top at a line boundary so it fits ``budget``
    (``total``: the prefix's count, when known).

    Returns (text, tokens, first_line_kept). The cut line is rounded up to a multiple of
    ``PREFIX_CUT_STEP`` so it stays still for many keystrokes.
    """
    total = count(prefix) if total is None else total
    if total <= budget:
        return prefix, total, 0
    lines = prefix.splitlines(keepends=True)
    tail, _ = tail_lines_within(prefix, budget, count, total)
    first = len(lines) - len(tail.splitlines(keepends=True))
    # Never cut into the cursor's own line.
    first = min(len(lines) - 1, -(-first // PREFIX_CUT_STEP) * PREFIX_CUT_STEP)
    text = "".join(lines[first:])
    tokens = count(text)
    while tokens > budget and first < len(lines) - 1:
        first += 1
        text = "".join(lines[first:])
        tokens = count(text)
    if tokens > budget:
        # A single cursor line longer than the whole budget: keep its end, shrunk until it fits
        # (a character may be several tokens: CJK, emoji). Whatever is over the budget the
        # engine would cut from the prompt's start, taking the repository and the FIM tokens.
        text = text[-budget * 2 :]
        tokens = count(text)
        while tokens > budget and text:
            text = text[len(text) - int(len(text) * budget / tokens * 0.9) :]
            tokens = count(text) if text else 0
    return text, tokens, first


@dataclass(frozen=True)
class ComposeRequest:
    current_rel: str
    current_path: Path
    language: str
    budget: int
    """Tokens available for repository files (already net of prefix, suffix and framing)."""
    same_language: bool = True
    query: str = ""
    """The current file's text before the cursor (the service passes the prefix window up to
    the start of the cursor's line, so it changes once per line, not per keystroke)."""
    recent: tuple[str, ...] = ()
    """Workspace-relative paths of recently opened/used documents, most recent last."""
    layout: str = "per-file"
    """``context.layout`` (path-distance only)."""


def frame_cost(path: str, count: CountTokens) -> int:
    """Tokens of one file's framing (separator + path line): the separator is one token."""
    return 1 + count(path + "\n")


def _candidates(req: ComposeRequest, source: RepoSource) -> list[FileLike]:
    """Repository files a composer may use: not the current file, same language if asked."""
    return [
        f
        for f in source.files(req.language if req.same_language else None)
        if f.path != req.current_path and f.rel != req.current_rel
    ]


def _fill(
    ordered: Sequence[FileLike],
    source: RepoSource,
    count: CountTokens,
    budget: int,
    keep_start: bool = False,
) -> list[RepoFile]:
    """Whole files in the given order while they fit; the first that does not is cut at a line
    boundary, keeping its end (the part nearest what follows it in the prompt), or with
    ``keep_start`` its start, so that a smaller budget gives a start of what a larger one gives
    (the shared layout: siblings whose budgets differ still share the block up to the smaller
    one's end). Returned in the given order."""
    chosen: list[RepoFile] = []
    left = budget
    for f in ordered:
        framing = frame_cost(f.rel, count)
        if left <= framing:
            break
        text = source.text(f.path)
        if not text:
            continue
        tokens = source.tokens_for(f.path)
        if tokens + framing <= left:
            chosen.append(RepoFile(f.rel, text, tokens))
            left -= tokens + framing
            continue
        part, n = "", 0
        if keep_start:
            part, n = head_lines_within(text, left - framing, count)
        if not part.strip():
            # Without keep_start, or a first line longer than the room (a long docstring):
            # the end then; it is the block's last file either way.
            part, n = tail_lines_within(text, left - framing, count, tokens)
        if part.strip():
            chosen.append(RepoFile(f.rel, part, n, truncated=True))
        break
    return chosen


Composer = Callable[[ComposeRequest, RepoSource, CountTokens], list[RepoFile]]
