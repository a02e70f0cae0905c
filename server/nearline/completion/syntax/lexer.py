"""A small lexer for one language: the brackets outside strings and comments, and where a text
ends (in code, a comment or a string). Gating reads the cursor's line with it; the check reads
its window with it, and asks it whether a broken document ends inside a docstring."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from nearline.languages import Language

OPEN = {"(": ")", "[": "]", "{": "}"}
CLOSE = {v: k for k, v in OPEN.items()}
_RUST_CHAR = re.compile(r"'(?:\\.[^']{0,8}|[^\\'\n])'")


@dataclass
class Scan:
    brackets: list[tuple[int, str]] = field(default_factory=list)
    scope: str | None = None
    """Where the text ends: inside a ``comment``, a ``string``, or code (None)."""
    last_code: int = -1
    """Index of the last character of code (outside strings and comments), -1 if none."""
    closer: str = ""
    """What ends the comment or string the text ends in (a newline for a line comment)."""
    multiline: bool = False
    """The string the text ends in may go on to the next line (a docstring, a template)."""


def scan(info: Language, text: str) -> Scan:
    out = Scan()
    i, n = 0, len(text)
    triple = info.name == "python"
    while i < n:
        c = text[i]
        if c == "\n":
            i += 1
            continue
        if any(text.startswith(m, i) for m in info.line_comment):
            j = text.find("\n", i)
            if j < 0:
                out.scope, out.closer = "comment", "\n"
                return out
            i = j
            continue
        bc = info.block_comment
        if bc is not None and text.startswith(bc[0], i):
            j = text.find(bc[1], i + len(bc[0]))
            if j < 0:
                out.scope, out.closer = "comment", bc[1]
                return out
            i = j + len(bc[1])
            continue
        if info.name == "rust" and c == "'":
            m = _RUST_CHAR.match(text, i)
            if m:
                out.last_code = m.end() - 1
                i = m.end()
                continue
        if c in info.quotes:
            q = c * 3 if triple and text.startswith(c * 3, i) else c
            j = i + len(q)
            spans_lines = len(q) == 3 or c in info.multiline_quotes
            while j < n:
                if text[j] == "\\":
                    j += 2
                    continue
                if text.startswith(q, j):
                    break
                if text[j] == "\n" and not spans_lines:
                    break
                j += 1
            if j >= n or not text.startswith(q, j):
                if j >= n:
                    out.scope, out.closer, out.multiline = "string", q, spans_lines
                    return out
                i = j  # an unterminated one-line string ends with its line
                continue
            out.last_code = j + len(q) - 1
            i = j + len(q)
            continue
        if c in OPEN or c in CLOSE:
            out.brackets.append((i, c))
        if not c.isspace():
            out.last_code = i
        i += 1
    return out
