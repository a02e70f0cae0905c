"""The ``ring-buffer`` composer: llama.vim's extra context, a ring of chunks from the recently
used documents."""

from __future__ import annotations

import re

from nearline.completion.composers.base import (
    ComposeRequest,
    CountTokens,
    RepoSource,
    _candidates,
    frame_cost,
    tail_lines_within,
)
from nearline.completion.prompt import RepoFile

RING_CHUNKS = 16
RING_CHUNK_LINES = 64  # llama.vim's ring_chunk_size
RING_PIECE = RING_CHUNK_LINES // 2 + 1
_WORD_SPLIT = re.compile(r"\W+")


def chunk_sim(c0: str, c1: str) -> float:
    """llama.vim's ``s:chunk_sim``: 2 x (words of ``c1`` also in ``c0``) / (words of both),
    words split at ``\\W+``; 1.0 for two empty chunks."""
    t0 = [t for t in _WORD_SPLIT.split(c0) if t]
    t1 = [t for t in _WORD_SPLIT.split(c1) if t]
    if not t0 and not t1:
        return 1.0
    s0 = set(t0)
    common = sum(1 for t in t1 if t in s0)
    return 2.0 * common / (len(t0) + len(t1))


def compose_ring_buffer(
    req: ComposeRequest, source: RepoSource, count: CountTokens
) -> list[RepoFile]:
    """llama.vim's extra context: a ring of chunks from recently used files, the most recent
    nearest the current file."""
    if req.budget <= 0 or not req.recent:
        return []
    by_rel = {f.rel: f for f in _candidates(req, source)}
    ring: list[tuple[str, str, bool]] = []  # (rel, chunk, a piece of the file), oldest first
    for rel in list(dict.fromkeys(reversed(req.recent)))[::-1]:  # a path's last use counts
        f = by_rel.get(rel)
        if f is None:
            continue
        text = source.text(f.path)
        lines = text.splitlines(keepends=True) if text else []
        if len(lines) < 3:  # llama.vim: "don't pick very small chunks"
            continue
        # llama.vim's s:pick_chunk: a text shorter than the chunk size whole, else a piece of
        # chunk_size/2 + 1 lines (a Vim slice includes its end) of the window around the
        # cursor; its piece starts at random, this one at the top of the file.
        piece = len(lines) + 1 >= RING_CHUNK_LINES
        chunk = "".join(lines[:RING_PIECE] if piece else lines)
        if any(c == chunk for _, c, _ in ring):
            continue
        # Evict older chunks very similar to the new one (llama.vim: > 0.9).
        ring = [e for e in ring if chunk_sim(e[1], chunk) <= 0.9]
        ring.append((rel, chunk, piece))
        del ring[:-RING_CHUNKS]
    if req.query:
        # Evict chunks very similar to the text around the cursor (llama.vim: > 0.5): they
        # make the model repeat what is already there.
        here = "".join(req.query.splitlines(keepends=True)[-RING_PIECE:])
        ring = [e for e in ring if chunk_sim(e[1], here) <= 0.5]
    chosen: list[RepoFile] = []
    left = req.budget
    for rel, chunk, piece in reversed(ring):
        framing = frame_cost(rel, count)
        if left <= framing:
            break
        n = count(chunk)
        if n + framing <= left:
            chosen.append(RepoFile(rel, chunk, n, truncated=piece))
            left -= n + framing
            continue
        tail, n = tail_lines_within(chunk, left - framing, count)
        if tail.strip():
            chosen.append(RepoFile(rel, tail, n, truncated=True))
        break
    chosen.reverse()
    return chosen
