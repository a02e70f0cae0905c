"""Gating: whether the model should run at a cursor at all. Not in the middle of a word, not
when the rest of the line is more than closing brackets, quotes, ``:``/``,``/``;`` and
whitespace; and, when switched off, not in comments or strings."""

from __future__ import annotations

from nearline.completion.syntax.lexer import scan
from nearline.languages import Language, language_info


def is_word_char(c: str, info: Language | None = None) -> bool:
    return c.isalnum() or c == "_" or (info is not None and c in info.word_extra)


def line_scope(info: Language, before: str) -> str | None:
    """``"comment"``/``"string"`` when the end of ``before`` (one line) is inside a comment or a
    string begun on that line, by a small lexer; None for code."""
    return scan(info, before).scope


def gate_reason(
    language: str | None,
    before: str,
    after: str,
    *,
    scope: str | None = None,
    in_comments: bool = True,
    in_strings: bool = True,
) -> str | None:
    """Why the model should not run at this cursor, or None when it should. ``before``/``after``
    are the cursor's line split at the cursor; ``scope`` is what the document's tree says about
    the cursor (``"comment"``, ``"string"`` or ``"code"``); None: the line's own lexing decides."""
    info = language_info(language)
    if info is None:
        return None
    if (
        before[-1:]
        and after[:1]
        and is_word_char(before[-1], info)
        and is_word_char(after[0], info)
    ):
        return "mid-identifier"
    if any(not c.isspace() and c not in info.closers for c in after):
        return "text-after-cursor"
    if scope is None:
        scope = line_scope(info, before)
    if scope == "comment" and not in_comments:
        return "in-comment"
    if scope == "string" and not in_strings:
        return "in-string"
    return None


def should_complete(
    language: str | None,
    before: str,
    after: str,
    *,
    scope: str | None = None,
    in_comments: bool = True,
    in_strings: bool = True,
) -> bool:
    """True when the model should run at this cursor; see ``gate_reason``."""
    return (
        gate_reason(
            language, before, after, scope=scope, in_comments=in_comments, in_strings=in_strings
        )
        is None
    )
