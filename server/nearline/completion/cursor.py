"""Where a request stands in its document: the query, the cursor as offsets, and the windows
of text around it that a prompt may use (bounded, so a 20 MB document costs what a small one
does), with the secrets near the cursor found in their own context."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from nearline.completion.composers import PREFIX_CUT_STEP, CountTokens
from nearline.workspace.secrets import PRIVATE_KEY_BLOCK, redact_slice, secret_spans


@dataclass(frozen=True)
class Query:
    """A completion request, already converted out of LSP units."""

    uri: str
    text: str
    line: int
    col: int  # code points into the line
    path: Path | None = None
    rel: str | None = None
    language: str | None = None
    root: Path | None = None
    offset: int | None = None
    """The cursor as an offset into ``text`` when the caller knows it (saves a line walk)."""


class OutOfRange(ValueError):
    pass


# The prompt builder looks at no more than (budget tokens x this) characters before the cursor
# (a quarter of that after it): no tokenizer yields fewer characters per token on real text,
# and a 20 MB file then costs what a small one does on every keystroke.
CHARS_PER_TOKEN_BOUND = 16
# Characters of context searched for secrets beyond each edge of that window, so that a secret
# the window cuts (or an assignment whose value starts a line below its name) is still found.
SECRET_MARGIN = 4096
# Bracket matching and typing-through look at this much of the cursor's line on each side.
LINE_CONTEXT = 4096
_KEY_BEGIN = "-----BEGIN"
KEY_LOOKBACK = 65536


@dataclass(frozen=True)
class Cursor:
    """A cursor in a text, as offsets (no copies: the text may be 20 MB)."""

    text: str
    line: int
    offset: int
    line_start: int
    line_end: int  # end of the line's text, its "\r\n" / "\n" excluded

    @property
    def before(self) -> str:
        return self.text[self.line_start : self.offset]

    @property
    def after(self) -> str:
        return self.text[self.offset : self.line_end]


def locate(text: str, line: int, col: int, offset: int | None = None) -> Cursor:
    """The cursor at (line, col) — lines split at "\n", col in code points — or at a known
    ``offset`` (then line and col are not re-checked). Raises OutOfRange."""
    if offset is None:
        if line < 0:
            raise OutOfRange(f"line {line + 1} is outside the document")
        start = 0
        for i in range(line):
            nl = text.find("\n", start)
            if nl < 0:
                raise OutOfRange(f"line {line + 1} is outside the document ({i + 1} lines)")
            start = nl + 1
    else:
        if not 0 <= offset <= len(text):
            raise OutOfRange(f"offset {offset} is outside the document")
        start = text.rfind("\n", 0, offset) + 1
    end = text.find("\n", start)
    end = len(text) if end < 0 else end
    bare_end = end - 1 if end > start and text[end - 1] == "\r" else end
    if offset is None:
        if col < 0 or col > bare_end - start:
            raise OutOfRange(
                f"column {col + 1} is outside line {line + 1} ({bare_end - start} characters)"
            )
        offset = start + col
    elif offset > bare_end:
        raise OutOfRange("the cursor is inside a line ending")
    return Cursor(text, line, offset, start, bare_end)


def after_enter(q: Query, accepted: str) -> Query:
    """``q`` as if the cursor's line were ``accepted`` and Enter pressed at its end."""
    cur = locate(q.text, q.line, q.col, q.offset)
    text = q.text
    cr = "\r" if text[cur.line_end : cur.line_end + 1] == "\r" else ""
    head = text[: cur.line_start] + accepted + cr + "\n"
    nl = text.find("\n", cur.line_end)
    tail = cr + ("\n" + text[nl + 1 :] if nl >= 0 else "")
    return replace(q, text=head + tail, line=q.line + 1, col=0, offset=len(head))


def redacted_head(q: Query, accepted: str) -> str:
    """``accepted`` (the cursor line's text before the cursor, then a suggestion) with the
    secrets of that text redacted where they stand in the document. Once the suggestion is glued
    on, the patterns no longer see them: an unquoted value must end its line, and a token must
    not run on into more letters."""
    cur = locate(q.text, q.line, q.col, q.offset)
    # Where ``accepted`` starts in the document: as complete() cut ``before``.
    head_start = max(cur.line_start, cur.offset - LINE_CONTEXT)
    lo = max(0, cur.line_start - SECRET_MARGIN)
    hi = min(len(q.text), cur.line_end + SECRET_MARGIN)
    spans = [(a + lo, b + lo) for a, b in secret_spans(q.text[lo:hi])]
    if not any(a < cur.offset and b > head_start for a, b in spans):
        return accepted
    head = redact_slice(q.text, spans, head_start, cur.offset)
    return head + accepted[cur.offset - head_start :]


def split_at_cursor(text: str, line: int, col: int) -> tuple[str, str, str, str]:
    """(prefix, line_before_cursor, line_after_cursor, rest_after_line)."""
    c = locate(text, line, col)
    nl = text.find("\n", c.line_end)
    rest = text[nl + 1 :] if nl >= 0 else ""
    return text[: c.offset], c.before, c.after, rest


def window_start(text: str, cur: Cursor, chars: int) -> int:
    """Where the prefix window starts: ``chars`` before the cursor, moved to a line whose
    number is a multiple of PREFIX_CUT_STEP (so cut_prefix's steps, counted from the window,
    match the file's own), or left mid-line in a line longer than the window. Rounded to a
    coarse grid first, so the start (and the KV cache) stays put while typing."""
    if cur.offset <= chars:
        return 0
    grid = max(1024, chars // 8)
    start = (cur.offset - chars) // grid * grid
    first_line = cur.line - text.count("\n", start, cur.offset)
    steps = -(-(first_line + 1) // PREFIX_CUT_STEP) * PREFIX_CUT_STEP - first_line
    pos = start
    for _ in range(steps):
        nl = text.find("\n", pos, cur.offset)
        if nl < 0:
            return start
        pos = nl + 1
    return pos


def key_block_around(text: str, at: int) -> int | None:
    """Where the private-key block that ``at`` falls inside begins, or None. (A key's body
    alone is just base64: it is recognised from its BEGIN line, which may lie further back
    than any margin. No key block is longer than the lookback.)"""
    begin = text.rfind(_KEY_BEGIN, max(0, at - KEY_LOOKBACK), at)
    if begin < 0:
        return None
    m = PRIVATE_KEY_BLOCK.match(text[begin : at + 1])
    return begin if m is not None and begin + m.end() > at else None


def head_within(text: str, budget: int, count: CountTokens) -> tuple[str, int]:
    """The longest start of ``text`` that fits ``budget`` tokens, ending at a line break when
    it is cut: a FIM model given a suffix that stops mid-line continues that line instead of
    filling the middle (the quality benchmark measured Edit Similarity halved)."""
    tokens = count(text) if text else 0
    if tokens <= budget:
        return text, tokens
    first_line = text.find("\n") + 1
    while tokens > budget and text:
        text = text[: int(len(text) * budget / tokens * 0.9)]
        nl = text.rfind("\n")
        # The cursor line's own rest (before the first break) is kept even when alone.
        if nl + 1 >= first_line > 0:
            text = text[: nl + 1]
        tokens = count(text) if text else 0
    return text, tokens
