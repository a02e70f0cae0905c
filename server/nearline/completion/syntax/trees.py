"""Tree-sitter: the grammars (loaded on first use), one parser per language and thread, and
what a tree says at a byte offset: comment, string or code (``scope_at``), and which brackets
are still open there (``open_brackets``)."""

from __future__ import annotations

import importlib
import logging
import threading
from typing import Any

from nearline.completion.syntax.lexer import CLOSE, OPEN
from nearline.languages import language_info

log = logging.getLogger(__name__)


class UnsupportedLanguage(ValueError):
    pass


# Node types (across the grammars of nearline.languages) whose inside is a comment or a string, and the
# code islands inside strings (f-string and template-literal substitutions).
COMMENT_TYPES = frozenset({"comment", "line_comment", "block_comment"})
STRING_TYPES = frozenset(
    {
        "string",
        "template_string",
        "string_literal",
        "raw_string_literal",
        "interpreted_string_literal",
        "char_literal",
        "character_literal",
        "rune_literal",
        "system_lib_string",
    }
)
CODE_IN_STRING = frozenset({"interpolation", "template_substitution"})


_languages: dict[str, Any] = {}
_failed: set[str] = set()
_lock = threading.Lock()


def ts_language(language: str | None) -> Any | None:
    """The tree-sitter ``Language`` of a language id, or None when it has no grammar here (or
    its grammar package failed to load, which is logged once)."""
    info = language_info(language)
    if info is None or info.grammar is None or info.name in _failed:
        return None
    lang = _languages.get(info.name)
    if lang is not None:
        return lang
    with _lock:
        try:
            import tree_sitter

            module, func = info.grammar
            capsule = getattr(importlib.import_module(module), func)()
            lang = tree_sitter.Language(capsule)
        except Exception as exc:
            _failed.add(info.name)
            log.warning("no syntax checks for %s: grammar unavailable (%s)", info.name, exc)
            return None
        _languages[info.name] = lang
        return lang


def has_grammar(language: str | None) -> bool:
    return ts_language(language) is not None


_local = threading.local()


def _grammar(language: str) -> Any:
    lang = ts_language(language)
    if lang is None:
        raise UnsupportedLanguage(f"no syntax check for {language!r}")
    return lang


def parser_for(language: str) -> Any:
    """One parser per language and thread (tree-sitter parsers are not thread-safe)."""
    import tree_sitter

    parsers: dict[str, Any] = _local.__dict__.setdefault("parsers", {})
    p = parsers.get(language)
    if p is None:
        p = parsers[language] = tree_sitter.Parser(_grammar(language))
    return p


def error_query(language: str) -> Any:
    import tree_sitter

    queries: dict[str, Any] = _local.__dict__.setdefault("queries", {})
    q = queries.get(language)
    if q is None:
        query = tree_sitter.Query(_grammar(language), "(ERROR) @e (MISSING) @m")
        q = queries[language] = tree_sitter.QueryCursor(query)
    return q


def scope_at(tree: Any, offset: int) -> tuple[str, int] | None:
    """What the tree says byte ``offset`` is in: (``"comment"``, start byte of the comment),
    (``"string"``, start byte) or (``"code"``, 0) — an f-string's or template's substitution is
    code. None when the cursor is in a broken region (an ERROR node), where the tree cannot
    tell (a string still being typed, say)."""
    node = tree.root_node.descendant_for_byte_range(max(0, offset - 1), offset)
    while node is not None:
        t = node.type
        s, e = node.start_byte, node.end_byte
        if t == "ERROR" or node.is_missing:
            return None
        if t in CODE_IN_STRING and s < offset < e:
            return "code", 0
        if (
            t in COMMENT_TYPES
            and s < offset
            and (offset < e or (offset == e and not (node.text or b"").endswith(b"*/")))
        ):
            return "comment", s
        if t in STRING_TYPES and s < offset < e:
            return "string", s
        node = node.parent
    return "code", 0


def open_brackets(tree: Any, offset: int) -> list[tuple[int, int | None]]:
    """The brackets still open at byte ``offset`` (outermost first), from the tree: along the
    path from the root, each node's own bracket tokens before ``offset``. Each comes with the
    end of its closing bracket in the tree, None when it has none."""
    node = tree.root_node
    opened: list[tuple[int, int | None]] = []
    while True:
        level: list[tuple[int, str]] = []
        inside = None
        children = node.children
        for i, c in enumerate(children):
            if c.start_byte >= offset:
                inside = None
                rest = children[i:]
                break
            if c.end_byte > offset:
                inside = c
                rest = children[i + 1 :]
                break
            if not c.is_named and not c.is_missing:
                if c.type in OPEN:
                    level.append((c.start_byte, c.type))
                elif c.type in CLOSE and level:
                    level.pop()
            elif c.has_error:
                # A broken statement before the cursor may leave brackets open (its closers
                # missing, or in an ERROR node among its children).
                level.extend(_unclosed_tail(c))
        else:
            rest = []
        # Match this level's open brackets with the closers that follow among its siblings.
        ends: list[int | None] = [None] * len(level)
        j = len(level) - 1
        for c in rest:
            if j < 0:
                break
            if not c.is_named and c.type in CLOSE and not c.is_missing:
                if CLOSE[c.type] == level[j][1]:
                    ends[j] = c.end_byte
                j -= 1
        opened.extend((b, e) for (b, _), e in zip(level, ends, strict=True))
        if inside is None:
            return opened
        node = inside


def _unclosed_tail(node: Any) -> list[tuple[int, str]]:
    """Brackets left open by a broken node: its bracket tokens, in document order, whose closer
    is not there (or is one tree-sitter made up). Every broken descendant is looked into, not
    only the last child: an ERROR node holding ``f(`` may come before an empty body (Python's
    ``def f():`` then ``    tlist.insert_after(`` on the line above the cursor). A named node
    without errors has its brackets paired inside, so it is passed over."""
    out: list[tuple[int, str]] = []
    todo = [iter(node.children)]
    while todo:
        c = next(todo[-1], None)
        if c is None:
            todo.pop()
        elif c.is_missing:
            continue
        elif c.is_named or c.child_count:
            if c.has_error:
                todo.append(iter(c.children))
        elif c.type in OPEN:
            out.append((c.start_byte, c.type))
        elif c.type in CLOSE and out:
            out.pop()
    return out
