"""Cleaning one raw model line: cut at the end of the line, drop what repeats the text after
the cursor, drop trailing whitespace; reject empty, punctuation-only and repeated-line
suggestions. Knows no grammar: every language gets it."""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from nearline.completion.syntax.lexer import CLOSE, OPEN


def _min_depth(text: str) -> int:
    depth = lowest = 0
    for c in text:
        if c in OPEN:
            depth += 1
        elif c in CLOSE:
            depth -= 1
            lowest = min(lowest, depth)
    return lowest


def _net_depth(text: str) -> int:
    return sum(c in OPEN for c in text) - sum(c in CLOSE for c in text)


def _drop_restarted_line(text: str, before: str) -> str:
    """A FIM model given a prefix that ends mid-line sometimes writes the whole line again,
    indentation included (``    ret`` → ``    return plan``). Keep what continues the typed
    text; drop a restart that does not match it."""
    typed = before.lstrip()
    indent = before[: len(before) - len(typed)]
    lead = text[: len(text) - len(text.lstrip())]
    # A restart repeats the line's own indentation; a single space after a word does not.
    if not typed or not indent or lead != indent or before[-1:].isspace():
        return text
    again = text.lstrip()
    if again.startswith(typed):
        return again[len(typed) :]
    return ""


def _drop_overlap(text: str, before: str, after: str) -> str:
    """Drop the end of ``text`` that repeats what already follows the cursor (``foo(a|)`` must
    not end in ``))``; ``d = {'|'}`` must not close the quote twice)."""
    after_s = after.strip()
    if not after_s:
        return text
    base = _min_depth(before + after)

    def fits(cand: str) -> bool:
        if _min_depth(before + cand + after) < base:
            return False
        # A string the suggestion closes with the quote that already follows the cursor.
        q = after_s[0]
        return not (q in "'\"`" and cand.endswith(q) and (before + cand).count(q) % 2 == 0)

    candidates = [text]
    if text.endswith(after_s):
        stripped = text[: len(text) - len(after_s)].rstrip()
        # `args) {` before `) {`: the model wrote the rest of the line again. Dropping the
        # repeat must leave the suggestion's own brackets balanced (`foo()` before `)` stays).
        if _min_depth(stripped) == 0 and _net_depth(stripped) == 0:
            candidates.insert(0, stripped)
        else:
            candidates.append(stripped)
    run = len(text) - len(text.rstrip(")]}'\"`;,:"))
    candidates += [text[: len(text) - k] for k in range(1, run + 1)]
    return next((c for c in candidates if fits(c)), candidates[-1])


def is_punctuation(text: str) -> bool:
    """Only punctuation and ASCII symbols (``)``, ``});``, ``...``), nothing to read."""
    return all(
        c.isspace() or c in string.punctuation or unicodedata.category(c).startswith("P")
        for c in text
    )


@dataclass(frozen=True)
class Cleaned:
    text: str
    """The suggestion to show; empty when rejected."""
    reason: str | None = None
    """Why it was rejected: ``empty``, ``punctuation``, ``repeats-line-above``/``-below``."""


def clean(
    raw: str,
    before: str,
    after: str,
    *,
    above: str | None = None,
    below: str | None = None,
) -> Cleaned:
    """Clean one raw model line, in this order: cut at the end of the line (and drop a restart
    of the typed line), drop the part that duplicates the text after the cursor, drop trailing
    whitespace; then reject it if empty, only punctuation, or making the line a copy of the
    nearest non-blank line ``above`` or ``below``."""
    text = raw.split("\n", 1)[0].split("\r", 1)[0]
    text = _drop_restarted_line(text, before)
    text = _drop_overlap(text, before, after)
    text = text.rstrip()
    if not text.strip():
        return Cleaned("", "empty")
    if is_punctuation(text):
        return Cleaned("", "punctuation")
    line = (before + text + after).strip()
    if above is not None and line == above.strip():
        return Cleaned("", "repeats-line-above")
    if below is not None and line == below.strip():
        return Cleaned("", "repeats-line-below")
    return Cleaned(text)


def clean_suggestion(
    raw: str, before: str, after: str, *, above: str | None = None, below: str | None = None
) -> str:
    """``clean``'s text only: the suggestion to show, or "" when rejected."""
    return clean(raw, before, after, above=above, below=below).text


def neighbours(lines: Sequence[str], line: int) -> tuple[str | None, str | None]:
    """The nearest non-blank lines above and below ``line``."""
    above = next((lines[i] for i in range(line - 1, -1, -1) if lines[i].strip()), None)
    below = next((lines[i] for i in range(line + 1, len(lines)) if lines[i].strip()), None)
    return above, below


def neighbours_at(text: str, offset: int) -> tuple[str | None, str | None]:
    """``neighbours`` of the line holding ``offset`` in ``text`` (lines split at ``"\n"``),
    found by walking out from it: a 20 MB document costs the lines walked, not a split."""
    above = below = None
    end = text.rfind("\n", 0, offset)  # the "\n" ending the line above, -1 when none
    while end >= 0:
        start = text.rfind("\n", 0, end) + 1
        if text[start:end].strip():
            above = text[start:end]
            break
        end = start - 1
    start = text.find("\n", offset)  # the "\n" ending the cursor's line
    while start >= 0:
        end = text.find("\n", start + 1)
        line = text[start + 1 : len(text) if end < 0 else end]
        if line.strip():
            below = line
            break
        start = end
    return above, below
