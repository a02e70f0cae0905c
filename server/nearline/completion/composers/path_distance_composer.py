"""The ``path-distance`` composer (the default): the files the current file imports nearest to
it, as stubs of the names taken from them or whole, then the other files by path distance.

Two layouts (``context.layout``). ``per-file``: the other files farthest first, the file cut
to fit first of all (its end kept), so the block starts with whatever the budget reached last
and two files of one directory share almost no prompt. ``shared``: the same files nearest the
directory first, the last one cut keeping its start, then the imported stubs: every file of
a directory lays its block out in the same order, so a sibling's prompt starts with the tokens
a file opened before it already read (the engine starts from the longest saved prefix) up to
the first place where one of the two files would stand in the other's block."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from nearline.completion.composers.base import (
    ComposeRequest,
    CountTokens,
    FileLike,
    RepoSource,
    _candidates,
    _fill,
    frame_cost,
    path_distance,
    tail_lines_within,
)
from nearline.completion.composers.imports import JS_LANGUAGES, _past_imports, import_specs
from nearline.completion.composers.imports_js import (
    follow_js_reexports,
    js_outline,
    resolve_js_imports,
)
from nearline.completion.composers.imports_py import (
    follow_reexports,
    python_outline,
    resolve_imports,
)
from nearline.completion.prompt import RepoFile


def outline(text: str, names: frozenset[str], language: str, level: int = 0) -> str | None:
    """The stub of a module in its language (Python or JS/TS); None for other languages."""
    if language == "python":
        return python_outline(text, names, level=level)
    if language in JS_LANGUAGES:
        return js_outline(text, names, level=level, language=language)
    return None


def compose_path_distance(
    req: ComposeRequest, source: RepoSource, count: CountTokens
) -> list[RepoFile]:
    """The files the current file imports nearest to it, then the other files by path
    distance, farthest first and nearest last. An imported file goes in as a stub of the names
    imported from it (``from m import a, b``: their signatures; shorter when it does not fit),
    or whole (``import m``; its stub when it does not fit). The stubs come first (nearest),
    and within each group the file whose names were used last before the cursor."""
    if req.budget <= 0:
        return []
    candidates = _candidates(req, source)
    if req.language in JS_LANGUAGES:
        imported = resolve_js_imports(req.query, req.current_rel, candidates, req.language)
        imported = follow_js_reexports(imported, source, candidates)
    else:
        imported = resolve_imports(
            import_specs(req.query, req.language), req.current_rel, candidates
        )
    if req.language == "python":
        imported = follow_reexports(imported, source, candidates)
    chosen: list[RepoFile] = []
    left = req.budget
    # The stubs of imported names first (small, and what the code at hand calls), then the
    # modules imported whole; each group by where its names were last used before the cursor.
    body_start = _past_imports(req.query)

    def last_use(fn: tuple[FileLike, frozenset[str]]) -> int:
        f, names = fn
        words_ = names or {PurePosixPath(f.rel).stem}
        pat = re.compile(r"\b(?:" + "|".join(map(re.escape, sorted(words_))) + r")\b")
        last = -1
        for m in pat.finditer(req.query, body_start):
            last = m.start()
        return last

    imported.sort(key=lambda fn: (not fn[1], -last_use(fn)))
    for f, names in imported:
        framing = frame_cost(f.rel, count)
        text = source.text(f.path)
        if left <= framing or not text:
            continue
        tokens = source.tokens_for(f.path)
        short = None
        if names or tokens + framing > left:
            short = outline(text, names, f.language)
            if short is None and tokens + framing > left:
                continue
        if short is not None:
            n = count(short)
            # Signatures without docstrings and methods but ``__init__``; first lines only.
            for level in (1, 2):
                if n + framing <= left:
                    break
                short = outline(text, names, f.language, level) or short
                n = count(short)
            text, tokens = short, n
            if n + framing > left:
                text, tokens = tail_lines_within(short, left - framing, count)
            if not text.strip():
                continue
        chosen.append(RepoFile(f.rel, text, tokens, truncated=short is not None))
        left -= tokens + framing
    seen = {f.rel for f, _ in imported}
    rest = [f for f in candidates if f.rel not in seen]
    # Nearest first for filling; ties broken by path so the result is deterministic. The
    # distance from a file depends only on its directory: every sibling sorts the same way.
    rest.sort(key=lambda f: (path_distance(req.current_rel, f.rel), f.rel))
    if req.layout == "shared":
        return _fill(rest, source, count, left, keep_start=True) + chosen[::-1]
    # Farthest first: the imported files (filled first) sit nearest the current file.
    # Nearest first in ``rest``: the prompt wants them farthest first.
    return _fill(rest, source, count, left)[::-1] + chosen[::-1]
