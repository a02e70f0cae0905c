"""Syntax awareness: when to complete, what to cut from a suggestion, what to reject.

Three steps around the model, none of which knows about models:

* gating (``should_complete`` / ``gate_reason``): no model run in the middle of a word, or
  when the rest of the line is more than closing brackets, quotes, ``:``/``,``/``;`` and
  whitespace; completions in comments and strings can be switched off;
* cleaning (``clean``): cut at the end of the line, drop what repeats the text after the cursor,
  drop trailing whitespace, reject empty, punctuation-only and repeated-line suggestions;
* checking (``SyntaxDocs.check`` / ``parses_in_window``): parse the enclosing statement's window
  with the suggestion applied, with tree-sitter, and reject it if it adds ERROR or MISSING
  nodes, closes a bracket it has no opener for, or ends the line leaving brackets it opened.

Python is first-class; JavaScript, TypeScript, Go, Rust, Java, C and C++ get gating, cleaning
and the check; every other language gets cleaning only. Each open document keeps its tree,
edited incrementally as LSP changes arrive (``SyntaxDocs``) and reparsed only when a request
needs it. Everything here runs on the caller's thread; a ``SyntaxDocs`` belongs to one thread.
"""

from __future__ import annotations

import functools
import importlib
import logging
import re
import string
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nearline.workspace.snapshot import Snapshot, snapshot

log = logging.getLogger(__name__)

OPEN = {"(": ")", "[": "]", "{": "}"}
CLOSE = {v: k for k, v in OPEN.items()}
# Placeholder that makes a window whose line ends mid-expression parse (``obj.``, ``f(a,``).
_HOLE = "_x0"
_OPERATORS = set("+-*/%=&|^<>!~?.@")
# Windows reach back at most this many lines for the bracket that opens the statement.
MAX_WINDOW_LINES = 80
# Larger documents get no tree (a full parse would hold up the event loop), and no work per
# keystroke: their size is checked before anything walks or encodes them.
MAX_TREE_BYTES = 2_000_000


class UnsupportedLanguage(ValueError):
    pass


@dataclass(frozen=True)
class LanguageSpec:
    """What gating, cleaning and the check need to know about one language."""

    name: str
    grammar: tuple[str, str] | None
    """(module, function) giving the tree-sitter language; None: cleaning only."""
    closers: str = ")]}\"':,;"
    """Besides whitespace, what may follow the cursor on its line for a model run."""
    quotes: str = "\"'"
    line_comment: tuple[str, ...] = ("//",)
    block_comment: tuple[str, str] | None = ("/*", "*/")
    word_extra: str = ""
    """Characters that continue an identifier besides letters, digits and ``_``."""
    newline_ends_statement: bool = False
    """A line ending in an operator outside brackets is broken (Python), not continued."""
    multiline_quotes: str = ""
    """Quotes whose strings may span lines (JS template literals, Go raw strings)."""
    trailing_comma: bool = True
    """``f(a,)`` parses; where it does not (C, C++, Java) a window ending in ``,`` gets a hole."""

    @property
    def checked(self) -> bool:
        return self.grammar is not None


# `>` closes generics and templates (and C's #include <...>).
_C_LIKE = ")]}>\"':,;"
LANGUAGES: dict[str, LanguageSpec] = {
    "python": LanguageSpec(
        "python",
        ("tree_sitter_python", "language"),
        line_comment=("#",),
        block_comment=None,
        newline_ends_statement=True,
    ),
    "javascript": LanguageSpec(
        "javascript",
        ("tree_sitter_javascript", "language"),
        closers=")]}\"'`:,;",
        quotes="\"'`",
        word_extra="$",
        multiline_quotes="`",
    ),
    "typescript": LanguageSpec(
        "typescript",
        ("tree_sitter_typescript", "language_typescript"),
        closers=")]}>\"'`:,;",
        quotes="\"'`",
        word_extra="$",
        multiline_quotes="`",
    ),
    "go": LanguageSpec(
        "go",
        ("tree_sitter_go", "language"),
        closers=")]}\"'`:,;",
        quotes="\"'`",
        multiline_quotes="`",
    ),
    # Rust's ' starts lifetimes as well as characters: only " delimits strings on a line.
    "rust": LanguageSpec("rust", ("tree_sitter_rust", "language"), quotes='"', closers=_C_LIKE),
    "java": LanguageSpec(
        "java", ("tree_sitter_java", "language"), closers=_C_LIKE, trailing_comma=False
    ),
    "c": LanguageSpec("c", ("tree_sitter_c", "language"), closers=_C_LIKE, trailing_comma=False),
    "cpp": LanguageSpec(
        "cpp", ("tree_sitter_cpp", "language"), closers=_C_LIKE, trailing_comma=False
    ),
}
LANGUAGES["javascriptreact"] = LANGUAGES["javascript"]
LANGUAGES["typescriptreact"] = LanguageSpec(
    "typescriptreact",
    ("tree_sitter_typescript", "language_tsx"),
    closers=")]}>\"'`:,;",
    quotes="\"'`",
    word_extra="$",
    multiline_quotes="`",
)

# Node types (across the grammars above) whose inside is a comment or a string, and the
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


def spec_for(language: str | None) -> LanguageSpec | None:
    """The gating/checking spec of a language id; None: cleaning only."""
    return LANGUAGES.get(language or "")


_languages: dict[str, Any] = {}
_failed: set[str] = set()
_lock = threading.Lock()


def ts_language(language: str | None) -> Any | None:
    """The tree-sitter ``Language`` of a language id, or None when it has no grammar here (or
    its grammar package failed to load, which is logged once)."""
    spec = spec_for(language)
    if spec is None or spec.grammar is None or spec.name in _failed:
        return None
    lang = _languages.get(spec.name)
    if lang is not None:
        return lang
    with _lock:
        try:
            import tree_sitter

            module, func = spec.grammar
            capsule = getattr(importlib.import_module(module), func)()
            lang = tree_sitter.Language(capsule)
        except Exception as exc:
            _failed.add(spec.name)
            log.warning("no syntax checks for %s: grammar unavailable (%s)", spec.name, exc)
            return None
        _languages[spec.name] = lang
        return lang


def has_grammar(language: str | None) -> bool:
    return ts_language(language) is not None


_local = threading.local()


def _grammar(language: str) -> Any:
    lang = ts_language(language)
    if lang is None:
        raise UnsupportedLanguage(f"no syntax check for {language!r}")
    return lang


def _parser(language: str) -> Any:
    """One parser per language and thread (tree-sitter parsers are not thread-safe)."""
    import tree_sitter

    parsers: dict[str, Any] = _local.__dict__.setdefault("parsers", {})
    p = parsers.get(language)
    if p is None:
        p = parsers[language] = tree_sitter.Parser(_grammar(language))
    return p


def _error_query(language: str) -> Any:
    import tree_sitter

    queries: dict[str, Any] = _local.__dict__.setdefault("queries", {})
    q = queries.get(language)
    if q is None:
        query = tree_sitter.Query(_grammar(language), "(ERROR) @e (MISSING) @m")
        q = queries[language] = tree_sitter.QueryCursor(query)
    return q


# -- gating -------------------------------------------------------------------------------


def is_word_char(c: str, spec: LanguageSpec | None = None) -> bool:
    return c.isalnum() or c == "_" or (spec is not None and c in spec.word_extra)


def line_scope(spec: LanguageSpec, before: str) -> str | None:
    """``"comment"``/``"string"`` when the end of ``before`` (one line) is inside a comment or a
    string begun on that line, by a small lexer; None for code."""
    return _scan(spec, before).scope


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
    spec = spec_for(language)
    if spec is None:
        return None
    if (
        before[-1:]
        and after[:1]
        and is_word_char(before[-1], spec)
        and is_word_char(after[0], spec)
    ):
        return "mid-identifier"
    if any(not c.isspace() and c not in spec.closers for c in after):
        return "text-after-cursor"
    if scope is None:
        scope = line_scope(spec, before)
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


# -- cleaning -----------------------------------------------------------------------------


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


# -- a small lexer: brackets outside strings and comments ----------------------------------


@dataclass
class _Scan:
    brackets: list[tuple[int, str]] = field(default_factory=list)
    scope: str | None = None
    """Where the text ends: inside a ``comment``, a ``string``, or code (None)."""
    last_code: int = -1
    """Index of the last character of code (outside strings and comments), -1 if none."""
    closer: str = ""
    """What ends the comment or string the text ends in (a newline for a line comment)."""
    multiline: bool = False
    """The string the text ends in may go on to the next line (a docstring, a template)."""


_PY_HEADER = re.compile(
    r"[ \t]*(if|elif|else|for|while|def|class|with|try|except|finally|async[ \t]+(def|for|with))\b"
)
_KEYWORD_OPERATOR_END = re.compile(r"\b(and|or|not|in|is|if|else)[ \t]*$")
# `match` and `case` are soft keywords: a header only when followed by a subject and a colon.
_PY_SOFT_HEADER = re.compile(r"[ \t]*(match|case)[ \t]+[^\s=.,)\]}:]")
_PY_STAR_IMPORT = re.compile(r"\bimport[ \t]*$")
_RUST_CHAR = re.compile(r"'(?:\\.[^']{0,8}|[^\\'\n])'")


def _scan(spec: LanguageSpec, text: str) -> _Scan:
    out = _Scan()
    i, n = 0, len(text)
    triple = spec.name == "python"
    while i < n:
        c = text[i]
        if c == "\n":
            i += 1
            continue
        if any(text.startswith(m, i) for m in spec.line_comment):
            j = text.find("\n", i)
            if j < 0:
                out.scope, out.closer = "comment", "\n"
                return out
            i = j
            continue
        bc = spec.block_comment
        if bc is not None and text.startswith(bc[0], i):
            j = text.find(bc[1], i + len(bc[0]))
            if j < 0:
                out.scope, out.closer = "comment", bc[1]
                return out
            i = j + len(bc[1])
            continue
        if spec.name == "rust" and c == "'":
            m = _RUST_CHAR.match(text, i)
            if m:
                out.last_code = m.end() - 1
                i = m.end()
                continue
        if c in spec.quotes:
            q = c * 3 if triple and text.startswith(c * 3, i) else c
            j = i + len(q)
            spans_lines = len(q) == 3 or c in spec.multiline_quotes
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


# -- the syntax check ---------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    ok: bool
    reason: str | None = None
    """Why not: ``new-errors`` (more ERROR/MISSING nodes in the window than without it),
    ``unmatched-bracket`` (it closes a bracket never opened, or the wrong one), ``unbalanced``
    (the line ends looking finished with a bracket or a one-line string it opened still open,
    or, in Python, after an operator), ``missing-colon`` (a Python block header without ``:``)."""


def _last_char(spec: LanguageSpec, text: str, i: int) -> str:
    """The character of code at ``i`` ("" for none). Python's ``...`` is a value (Ellipsis, the
    body of a stub or an overload) and ``import *`` a name, not operators waiting for their
    right side: they stand as ``…``, which no rule takes for an operator."""
    if i < 0:
        return ""
    if spec.newline_ends_statement and (
        (i >= 2 and text.startswith("...", i - 2))
        or (text[i] == "*" and _PY_STAR_IMPORT.search(text, max(0, i - 16), i) is not None)
    ):
        return "…"
    return text[i]


def _count_errors(language: str, text: str) -> int:
    tree = _parser(language).parse(text.encode("utf-8", "surrogatepass"))
    if not tree.root_node.has_error:
        return 0
    caps = _error_query(language).captures(tree.root_node)
    return sum(len(v) for v in caps.values())


def _complete_window(
    spec: LanguageSpec,
    text: str,
    span: tuple[int, int],
    line: tuple[int, int],
    line_ends: bool,
) -> tuple[str, str | None]:
    """Close what the window leaves open so the parser judges only what is there: a hole after a
    dangling operator, the closing brackets, a body after a Python header. ``span`` is the
    suggestion, ``line`` the cursor's line (start, end) in ``text``. Returns the completed text,
    or why the suggestion is wrong on its own: a closer without its opener, or a line that ends
    (``line_ends``) looking finished but leaves open a bracket it opened."""
    lo, hi = span
    line_start, line_end = line
    on_line = _scan(spec, text[:line_end])
    sc = _scan(spec, text) if line_end < len(text) else on_line
    stack: list[tuple[int, str]] = []
    at_eol: list[tuple[int, str]] | None = None
    depth_at_start: int | None = None
    for pos, c in sc.brackets:
        if depth_at_start is None and pos >= line_start:
            depth_at_start = len(stack)
        if at_eol is None and pos >= line_end:
            at_eol = list(stack)
        if c in OPEN:
            stack.append((pos, c))
            continue
        if stack and stack[-1][1] == CLOSE[c]:
            stack.pop()
        elif lo <= pos < hi:
            return text, "unmatched-bracket"
        elif stack:
            stack.pop()  # the context was already off before the suggestion; judge the rest
    if at_eol is None:
        at_eol = list(stack)
    if depth_at_start is None:
        depth_at_start = len(stack)
    last = _last_char(spec, text, on_line.last_code)
    ends = line_ends and hi > lo
    if ends and on_line.scope == "string" and not on_line.multiline:
        return text, "unbalanced"  # a one-line string left open
    continues = (
        on_line.multiline
        or last in OPEN
        or last in _OPERATORS
        or last in ",\\"
        or (last == ":" and bool(at_eol))
        # Inside brackets a line may end on a keyword operator: `if (a and` goes on below.
        or (bool(at_eol) and _KEYWORD_OPERATOR_END.search(text, line_start, line_end) is not None)
    )
    # A line that looks finished must close the brackets it opened itself.
    if ends and not continues and any(pos >= line_start for pos, _ in at_eol):
        return text, "unbalanced"
    if (
        ends
        and spec.newline_ends_statement
        and not at_eol
        and not depth_at_start
        and on_line.scope is None
        and last not in ":\\"
        and _PY_HEADER.match(text, line_start)
        and ":" not in text[line_start:line_end]
    ):
        return text, "missing-colon"
    if (
        ends
        and spec.newline_ends_statement
        and not at_eol
        and last in _OPERATORS
        and on_line.scope is None
    ):
        return text, "unbalanced"  # `x = a +` then a newline: broken in Python
    out = text + sc.closer  # a docstring begun on the line ends here
    last = sc.closer[-1:] if sc.scope == "string" else _last_char(spec, text, sc.last_code)
    dangling = (
        last in _OPERATORS
        or last in "(["
        or (last == "," and not spec.trailing_comma)
        or (last == ":" and bool(stack))
    )
    if not dangling and spec.name == "python" and sc.scope is None:
        # `a and` / `x if` / `y in`: a keyword operator waiting for its right side.
        dangling = _KEYWORD_OPERATOR_END.search(text, max(0, sc.last_code - 8)) is not None
        if dangling:
            out += " "
    if dangling:
        out += (" " if last in _OPERATORS and last != "." else "") + _HOLE
    out += "".join(OPEN[c] for _, c in reversed(stack))
    if spec.name == "python":
        tail = out.rsplit("\n", 1)[-1]
        indent = tail[: len(tail) - len(tail.lstrip())]
        # A block header whose brackets go on to later lines (`with open(`, `if (`): closed
        # here, it still needs its colon and a body.
        head_at = text.rfind("\n", 0, stack[0][0]) + 1 if stack else -1
        if last == ":" and not stack:
            out += "\n" + indent + "    pass"
        elif tail.lstrip().startswith("@"):
            out += "\n" + indent + "def _x0(): pass"
        elif head_at >= 0 and (
            _PY_HEADER.match(text, head_at) or _PY_SOFT_HEADER.match(text, head_at)
        ):
            head = text[head_at : stack[0][0]]
            out += ":\n" + head[: len(head) - len(head.lstrip())] + "    pass"
    return out, None


def _window_lines(spec: LanguageSpec, lines: list[str]) -> tuple[str, list[str], list[int]]:
    """(prefix, lines, characters cut from each line): Python windows are dedented by their
    first line's indentation, and a clause that needs its header (``else:``, ``except:``) gets
    a dummy one."""
    if spec.name != "python":
        return "", lines, [0] * len(lines)
    first = lines[0]
    ind = first[: len(first) - len(first.lstrip(" \t"))]
    cut = [len(ind) if ind and ln.startswith(ind) else 0 for ln in lines]
    body = [ln[k:] for ln, k in zip(lines, cut, strict=True)]
    head = body[0]
    if re.match(r"(elif|else)\b", head):
        return "if _x0:\n    pass\n", body, cut
    if re.match(r"(except|finally)\b", head):
        return "try:\n    pass\n", body, cut
    if _PY_SOFT_HEADER.match(head) and head.startswith("case"):
        # A case clause needs its match; kept at its own indentation, under a dummy one.
        return "match _x0:\n", lines, [0] * len(lines)
    return "", body, cut


def check_window(
    language: str,
    pre: str,
    before: str,
    suggestion: str,
    after: str,
    post: str = "",
    *,
    line_ends: bool = True,
) -> Check:
    """Check ``suggestion`` in a window: ``pre`` (the statement's earlier lines, each ending with
    a newline), the cursor's line as ``before`` + suggestion + ``after``, then ``post`` (the
    statement's later lines, each starting with a newline). ``line_ends``: the model ended the
    line there (it was not cut by a token or time limit). Compares the window's ERROR/MISSING
    nodes with and without the suggestion."""
    spec = spec_for(language)
    if spec is None or ts_language(language) is None:
        raise UnsupportedLanguage(f"no syntax check for {language!r}")
    k = pre.count("\n")

    def build(s: str, ends: bool) -> tuple[str, str | None]:
        prefix, lines, cut = _window_lines(spec, (pre + before + s + after + post).split("\n"))
        start = len(prefix) + sum(len(ln) + 1 for ln in lines[:k])
        lo = start + max(0, len(before) - cut[k])
        text = prefix + "\n".join(lines)
        return _complete_window(spec, text, (lo, lo + len(s)), (start, start + len(lines[k])), ends)

    with_s, problem = build(suggestion, line_ends)
    if problem:
        return Check(False, problem)
    # Without the suggestion, a line cut after an operator (`x = `, `f(`) gets a hole, so that
    # only what the suggestion adds is counted against it.
    sc = _scan(spec, before)
    last = _last_char(spec, before, sc.last_code) if sc.scope is None else ""
    without, _ = build(_HOLE if last in _OPERATORS or last in "([" else "", False)
    if _count_errors(language, with_s) > _count_errors(language, without):
        return Check(False, "new-errors")
    return Check(True)


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


@dataclass
class _Doc:
    language: str
    data: bytes
    tree: Any = None
    dirty: bool = True


class SyntaxDocs:
    """Per-document tree-sitter trees, kept in step with the editor: LSP changes are applied as
    ``tree.edit`` calls (cheap), and the tree is reparsed incrementally when a request needs it.
    A document whose text disagrees with what a request sees is brought up to date by a diff."""

    def __init__(self, max_docs: int = 32) -> None:
        self.max_docs = max_docs
        self._docs: OrderedDict[str, _Doc] = OrderedDict()
        self.stats = {"full_parses": 0, "incremental_parses": 0, "edits": 0, "resyncs": 0}

    def open(self, uri: str, language: str | None, text: str) -> None:
        # A character is at least one byte: a text longer than the limit is not encoded.
        if language is None or len(text) > MAX_TREE_BYTES or ts_language(language) is None:
            self._docs.pop(uri, None)
            return
        data = snapshot(text).data
        if len(data) > MAX_TREE_BYTES:
            self._docs.pop(uri, None)
            return
        self._docs[uri] = _Doc(language, data)
        self._docs.move_to_end(uri)
        while len(self._docs) > self.max_docs:
            self._docs.popitem(last=False)

    def forget(self, uri: str) -> None:
        self._docs.pop(uri, None)

    def __contains__(self, uri: str) -> bool:
        return uri in self._docs

    def change(
        self,
        uri: str,
        changes: Sequence[tuple[tuple[int, int], tuple[int, int], str] | str],
        text: str,
        encoding: str = "utf-16",
    ) -> None:
        """Apply LSP content changes: ((line, char), (line, char), new text) with characters in
        the client's ``encoding``, or a whole new text. ``text`` is the editor's result, used to
        resynchronise if an edit cannot be applied. Edits that apply but do not reproduce it (a
        stale position) are caught by ``tree``, which compares the document with the text a
        request sees: comparing here would encode the whole text on every keystroke."""
        doc = self._docs.get(uri)
        if doc is None:
            return
        for ch in changes:
            if isinstance(ch, str):
                if len(ch) > MAX_TREE_BYTES:
                    self._docs.pop(uri, None)
                    return
                self._replace(doc, 0, len(doc.data), ch.encode("utf-8", "surrogatepass"))
                continue
            (l0, c0), (l1, c1), new = ch
            start = _byte_offset(doc.data, l0, c0, encoding)
            end = _byte_offset(doc.data, l1, c1, encoding)
            if start is None or end is None or end < start:
                self.sync(uri, text)
                return
            self._replace(doc, start, end, new.encode("utf-8", "surrogatepass"))
        if len(doc.data) > MAX_TREE_BYTES:
            self._docs.pop(uri, None)  # grown too large for a tree: no more work per keystroke

    def _replace(self, doc: _Doc, start: int, end: int, new: bytes) -> None:
        data = doc.data
        if doc.tree is not None:
            doc.tree.edit(
                start_byte=start,
                old_end_byte=end,
                new_end_byte=start + len(new),
                start_point=_point(data, start),
                old_end_point=_point(data, end),
                new_end_point=_point_after(data, start, new),
            )
            self.stats["edits"] += 1
        doc.data = data[:start] + new + data[end:]
        doc.dirty = True

    def sync(self, uri: str, text: str) -> None:
        """Bring the document to ``text`` with one edit over the part that differs."""
        doc = self._docs.get(uri)
        if doc is None:
            return
        if len(text) > MAX_TREE_BYTES:
            self._docs.pop(uri, None)
            return
        new = snapshot(text).data
        if len(new) > MAX_TREE_BYTES:
            self._docs.pop(uri, None)
            return
        old = doc.data
        if old == new:
            return
        self.stats["resyncs"] += 1
        p = _common_prefix(old, new)
        s = _common_suffix(old, new, p)
        self._replace(doc, p, len(old) - s, new[p : len(new) - s])

    def tree(self, uri: str, language: str | None, text: str) -> Any | None:
        """The tree of ``text`` (the document at ``uri``), reparsed incrementally if needed;
        None for languages without a grammar and for very large documents."""
        if language is None or ts_language(language) is None:
            return None
        if len(text) > MAX_TREE_BYTES or len(snapshot(text).data) > MAX_TREE_BYTES:
            self._docs.pop(uri, None)
            return None
        doc = self._docs.get(uri)
        if doc is None or doc.language != language:
            self.open(uri, language, text)
            doc = self._docs.get(uri)
            if doc is None:
                return None
        else:
            self.sync(uri, text)
            self._docs.move_to_end(uri)
        if doc.dirty or doc.tree is None:
            parser = _parser(language)
            if doc.tree is None:
                doc.tree = parser.parse(doc.data)
                self.stats["full_parses"] += 1
            else:
                doc.tree = parser.parse(doc.data, doc.tree)
                self.stats["incremental_parses"] += 1
            doc.dirty = False
        return doc.tree

    def scope(self, uri: str, language: str | None, text: str, line: int, col: int) -> str | None:
        """``"comment"``, ``"string"`` or ``"code"`` at the cursor: the tree decides, unless
        the cursor is in a broken region, where the line's own lexing does (it catches a string
        still being typed); None for languages without gating."""
        spec = spec_for(language)
        if spec is None or len(text) > MAX_TREE_BYTES:
            # Too large for a tree: None leaves it to the caller's lexing of the cursor's line,
            # which is what this would do, without a walk over the whole text.
            return None
        snap = snapshot(text)
        before = snap.line(line)[:col] if line < snap.line_count else ""
        tree = self.tree(uri, language, text)
        if tree is not None:
            found = scope_at(tree, _cursor_byte(snap, line, col))
            if found is not None:
                return found[0]
        return line_scope(spec, before) or "code"

    def check(
        self,
        uri: str,
        language: str | None,
        text: str,
        line: int,
        col: int,
        suggestion: str,
        *,
        line_ends: bool = True,
    ) -> Check | None:
        """Check ``suggestion`` inserted at (line, col) of ``text``; None when there is nothing to
        check (no grammar, or the cursor is in a string or comment begun on an earlier line)."""
        tree = self.tree(uri, language, text)
        if tree is None or language is None:
            return None
        return _check_in_tree(language, tree, text, line, col, suggestion, line_ends)


@functools.lru_cache(maxsize=4)
def _ends_in_open_block(language: str, text: str) -> bool:
    """Whether ``text`` ends inside a string that may span lines or a block comment. A scan of
    the whole text (about 0.3 ms per KB), so it is remembered: the service checks each
    candidate of one answer against the same document."""
    spec = spec_for(language)
    if spec is None:
        return False
    sc = _scan(spec, text)
    return (sc.scope == "comment" and sc.closer != "\n") or (sc.scope == "string" and sc.multiline)


def _check_in_tree(
    language: str, tree: Any, text: str, line: int, col: int, suggestion: str, line_ends: bool
) -> Check | None:
    snap = snapshot(text)
    line_start_c = snap.line_starts[line]
    offset = _cursor_byte(snap, line, col)
    line_start_b = snap.byte_offset(line_start_c)
    scope = scope_at(tree, offset)
    if scope is not None and scope[0] != "code" and scope[1] < line_start_b:
        return None  # inside a docstring or block comment begun earlier: no code to break
    spec = spec_for(language)
    # A broken tree (a triple-quoted string not closed yet, as while it is written) may call the
    # cursor's spot code; the characters can tell.
    if (scope is None or tree.root_node.has_error) and _ends_in_open_block(
        language, text[:line_start_c]
    ):
        return None
    data = snap.data
    first = line
    # The window: from the line of the outermost bracket still open at the cursor's line to the
    # line of its closer; brackets opened further up stand for themselves (their line up to the
    # bracket) so the window still parses as code.
    far: list[str] = []
    closer: int | None = None
    for b, end in open_brackets(tree, line_start_b):
        opener_line = data.count(b"\n", 0, b)
        if line - opener_line <= MAX_WINDOW_LINES:
            first, closer = min(first, opener_line), end
            break
        begin = data.rfind(b"\n", 0, b) + 1
        far.append(data[begin : b + 1].decode("utf-8", errors="replace") + "\n")
    last = line
    if closer is not None:
        close_line = data.count(b"\n", 0, closer)
        if close_line - line <= MAX_WINDOW_LINES:
            last = max(line, close_line)
    if spec is not None and spec.newline_ends_statement:
        while first > 0 and snap.line(first - 1).rstrip("\r").endswith("\\"):
            first -= 1
    pre = "".join(far) + "".join(ln.rstrip("\r") + "\n" for ln in snap.lines(first, line))
    post = "".join("\n" + ln.rstrip("\r") for ln in snap.lines(line + 1, last + 1))
    cur = snap.line(line).rstrip("\r")
    return check_window(language, pre, cur[:col], suggestion, cur[col:], post, line_ends=line_ends)


def parses_in_window(
    language: str, text_before: str, suggestion: str, text_after: str, *, line_ends: bool = True
) -> bool:
    """Whether ``suggestion``, inserted between ``text_before`` (the document up to the cursor)
    and ``text_after`` (from the cursor on), parses in its statement's window: the same test the
    server applies with ``completion.syntaxCheck`` (for benchmarks: the parse-valid rate of
    shown suggestions). A cursor inside a docstring or block comment begun on an earlier line
    counts as parsing. Raises ``UnsupportedLanguage`` for languages without a grammar."""
    if ts_language(language) is None:
        raise UnsupportedLanguage(f"no syntax check for {language!r}")
    text = text_before + text_after
    line = text_before.count("\n")
    col = len(text_before) - (text_before.rfind("\n") + 1)
    tree = _parser(language).parse(snapshot(text).data)
    result = _check_in_tree(language, tree, text, line, col, suggestion, line_ends)
    return result is None or result.ok


# -- byte/point arithmetic ----------------------------------------------------------------


def _cursor_byte(snap: Snapshot, line: int, col: int) -> int:
    start, end = snap.line_span(line)
    return snap.byte_offset(min(start + col, end))


def _units_to_chars(s: str, units: int, encoding: str) -> int:
    if encoding == "utf-32":
        return units
    width: Callable[[str], int]
    if encoding == "utf-8":
        width = lambda c: len(c.encode("utf-8", "surrogatepass"))  # noqa: E731
    else:
        width = lambda c: 2 if ord(c) > 0xFFFF else 1  # noqa: E731
    n = 0
    for i, c in enumerate(s):
        if n >= units:
            return i
        n += width(c)
    return len(s)


def _byte_offset(data: bytes, line: int, units: int, encoding: str) -> int | None:
    """Byte offset of an LSP position (``units`` in the client's encoding) in ``data``; a
    position past the end of a line clamps to it, past the last line to the end."""
    start = 0
    for _ in range(line):
        i = data.find(b"\n", start)
        if i < 0:
            return len(data)
        start = i + 1
    end = data.find(b"\n", start)
    end = len(data) if end < 0 else end
    if encoding == "utf-8":
        return min(start + units, end)
    text = data[start:end].decode("utf-8", errors="replace")
    return start + len(
        text[: _units_to_chars(text, units, encoding)].encode("utf-8", "surrogatepass")
    )


def _point(data: bytes, offset: int) -> tuple[int, int]:
    row = data.count(b"\n", 0, offset)
    return row, offset - (data.rfind(b"\n", 0, offset) + 1)


def _point_after(data: bytes, start: int, new: bytes) -> tuple[int, int]:
    row, col = _point(data, start)
    nl = new.count(b"\n")
    if nl == 0:
        return row, col + len(new)
    return row + nl, len(new) - (new.rfind(b"\n") + 1)


def _common_prefix(a: bytes, b: bytes) -> int:
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:  # binary search with C-speed slice comparisons
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _common_suffix(a: bytes, b: bytes, prefix: int) -> int:
    lo, hi = 0, min(len(a), len(b)) - prefix
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[len(a) - mid :] == b[len(b) - mid :]:
            lo = mid
        else:
            hi = mid - 1
    return lo
