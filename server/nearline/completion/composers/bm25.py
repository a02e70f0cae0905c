"""The ``bm25`` composer: CrossCodeEval's retrieval setting, sliding windows of the
repository's files ranked by Okapi BM25 against the lines before the cursor."""

from __future__ import annotations

import math
import re
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from nearline.completion.composers.base import (
    ComposeRequest,
    CountTokens,
    RepoSource,
    _candidates,
    frame_cost,
    path_distance,
    tail_lines_within,
)
from nearline.completion.prompt import RepoFile

BM25_WINDOW = 20
BM25_STRIDE = 10
BM25_TOP = 5
BM25_MAX_TOKENS = 512
BM25_QUERY_LINES = 24
BM25_K1 = 1.5
BM25_B = 0.75
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+")


def code_tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


@dataclass(frozen=True)
class Snippet:
    rel: str
    start: int  # first line, 0-based
    end: int  # one past the last line
    text: str
    tf: Counter[str]
    length: int


_snippet_cache: OrderedDict[tuple[str, str], list[Snippet]] = OrderedDict()
_SNIPPET_CACHE_CHARS = 32 << 20
_snippet_chars = 0
# BM25 looks at no more files than this, the nearest by path distance (one ranking per line).
BM25_MAX_FILES = 2000


def snippets_of(rel: str, text: str) -> list[Snippet]:
    """Windows of ``BM25_WINDOW`` lines every ``BM25_STRIDE`` lines (the last one reaching the
    file's end), each with its term counts; cached per (path, text), 32 MB of texts at most."""
    key = (rel, text)
    hit = _snippet_cache.get(key)
    if hit is not None:
        _snippet_cache.move_to_end(key)
        return hit
    lines = text.splitlines(keepends=True)
    out: list[Snippet] = []
    starts = list(range(0, max(1, len(lines) - BM25_WINDOW + BM25_STRIDE), BM25_STRIDE))
    for s in starts:
        e = min(len(lines), s + BM25_WINDOW)
        body = "".join(lines[s:e])
        if not body.strip():
            continue
        toks = code_tokens(body)
        out.append(Snippet(rel, s, e, body, Counter(toks), len(toks)))
        if e == len(lines):
            break
    global _snippet_chars
    _snippet_cache[key] = out
    _snippet_chars += len(text)
    while _snippet_chars > _SNIPPET_CACHE_CHARS and len(_snippet_cache) > 1:
        (_, old), _ = _snippet_cache.popitem(last=False)
        _snippet_chars -= len(old)
    return out


def bm25_scores(query: Sequence[str], docs: Sequence[Snippet]) -> list[float]:
    """Okapi BM25 of each document for the query terms (IDF with the +1 that keeps it positive)."""
    if not docs:
        return []
    n = len(docs)
    avg = sum(d.length for d in docs) / n or 1.0
    terms = Counter(query)
    df = {t: sum(1 for d in docs if t in d.tf) for t in terms}
    idf = {t: math.log((n - df[t] + 0.5) / (df[t] + 0.5) + 1.0) for t in terms}
    scores = []
    for d in docs:
        norm = BM25_K1 * (1 - BM25_B + BM25_B * d.length / avg)
        s = 0.0
        for t, qn in terms.items():
            f = d.tf.get(t, 0)
            if f:
                s += qn * idf[t] * f * (BM25_K1 + 1) / (f + norm)
        scores.append(s)
    return scores


def compose_bm25(req: ComposeRequest, source: RepoSource, count: CountTokens) -> list[RepoFile]:
    """CrossCodeEval's retrieval setting: the repository's snippets (sliding windows) ranked by
    BM25 against the last lines before the cursor; the top five, at most 512 tokens, the best
    nearest the current file."""
    budget = min(req.budget, BM25_MAX_TOKENS)
    query = code_tokens("".join(req.query.splitlines(keepends=True)[-BM25_QUERY_LINES:]))
    if budget <= 0 or not query:
        return []
    docs: list[Snippet] = []
    files = sorted(_candidates(req, source), key=lambda f: path_distance(req.current_rel, f.rel))
    for f in files[:BM25_MAX_FILES]:
        text = source.text(f.path)
        if text:
            docs.extend(snippets_of(f.rel, text))
    scores = bm25_scores(query, docs)
    ranked = sorted(
        (i for i in range(len(docs)) if scores[i] > 0),
        key=lambda i: (-scores[i], docs[i].rel, docs[i].start),
    )
    picked: list[tuple[float, RepoFile]] = []
    taken: dict[str, list[tuple[int, int]]] = {}
    left = budget
    for i in ranked:
        if len(picked) >= BM25_TOP:
            break
        d = docs[i]
        if any(d.start < e and s < d.end for s, e in taken.get(d.rel, [])):
            continue  # overlaps a better window of the same file
        framing = frame_cost(d.rel, count)
        if left <= framing:
            break
        n = count(d.text)
        if n + framing > left:
            # The context is cut at the cap (as CrossCodeEval truncates it): this one's end.
            tail, n = tail_lines_within(d.text, left - framing, count)
            if tail.strip():
                picked.append((scores[i], RepoFile(d.rel, tail, n, truncated=True)))
            break
        picked.append((scores[i], RepoFile(d.rel, d.text, n, truncated=True)))
        taken.setdefault(d.rel, []).append((d.start, d.end))
        left -= n + framing
    picked.sort(key=lambda p: p[0])  # lowest score first: the best sits nearest the file
    return [f for _, f in picked]
