"""The syntax check: parse the statement's window around the cursor, with the suggestion and
without it, and reject the suggestion if it adds ERROR or MISSING nodes, closes a bracket it
has no opener for, or ends the line leaving brackets it opened. ``parses_in_window`` is the same
test as a pure function, for benchmarks."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from nearline.completion.syntax.lexer import CLOSE, OPEN, scan
from nearline.completion.syntax.trees import (
    UnsupportedLanguage,
    error_query,
    open_brackets,
    parser_for,
    scope_at,
    ts_language,
)
from nearline.languages import Language, language_info
from nearline.workspace.snapshot import Snapshot, snapshot

# Placeholder that makes a window whose line ends mid-expression parse (``obj.``, ``f(a,``).
_HOLE = "_x0"
_OPERATORS = set("+-*/%=&|^<>!~?.@")
# Windows reach back at most this many lines for the bracket that opens the statement.
MAX_WINDOW_LINES = 80
_PY_HEADER = re.compile(
    r"[ \t]*(if|elif|else|for|while|def|class|with|try|except|finally|async[ \t]+(def|for|with))\b"
)
_KEYWORD_OPERATOR_END = re.compile(r"\b(and|or|not|in|is|if|else)[ \t]*$")
# `match` and `case` are soft keywords: a header only when followed by a subject and a colon.
_PY_SOFT_HEADER = re.compile(r"[ \t]*(match|case)[ \t]+[^\s=.,)\]}:]")
_PY_STAR_IMPORT = re.compile(r"\bimport[ \t]*$")


@dataclass(frozen=True)
class Check:
    ok: bool
    reason: str | None = None
    """Why not: ``new-errors`` (more ERROR/MISSING nodes in the window than without it),
    ``unmatched-bracket`` (it closes a bracket never opened, or the wrong one), ``unbalanced``
    (the line ends looking finished with a bracket or a one-line string it opened still open,
    or, in Python, after an operator), ``missing-colon`` (a Python block header without ``:``)."""


def _last_char(info: Language, text: str, i: int) -> str:
    """The character of code at ``i`` ("" for none). Python's ``...`` is a value (Ellipsis, the
    body of a stub or an overload) and ``import *`` a name, not operators waiting for their
    right side: they stand as ``…``, which no rule takes for an operator."""
    if i < 0:
        return ""
    if info.newline_ends_statement and (
        (i >= 2 and text.startswith("...", i - 2))
        or (text[i] == "*" and _PY_STAR_IMPORT.search(text, max(0, i - 16), i) is not None)
    ):
        return "…"
    return text[i]


def _count_errors(language: str, text: str) -> int:
    tree = parser_for(language).parse(text.encode("utf-8", "surrogatepass"))
    if not tree.root_node.has_error:
        return 0
    caps = error_query(language).captures(tree.root_node)
    return sum(len(v) for v in caps.values())


def _complete_window(
    info: Language,
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
    on_line = scan(info, text[:line_end])
    sc = scan(info, text) if line_end < len(text) else on_line
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
    last = _last_char(info, text, on_line.last_code)
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
        and info.newline_ends_statement
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
        and info.newline_ends_statement
        and not at_eol
        and last in _OPERATORS
        and on_line.scope is None
    ):
        return text, "unbalanced"  # `x = a +` then a newline: broken in Python
    out = text + sc.closer  # a docstring begun on the line ends here
    if sc.scope == "string" and text.endswith("\\"):
        out = text + "\\" + sc.closer  # `"""\` goes on below: the closer must not be escaped
    last = sc.closer[-1:] if sc.scope == "string" else _last_char(info, text, sc.last_code)
    dangling = (
        last in _OPERATORS
        or last in "(["
        or (last == "," and not info.trailing_comma)
        or (last == ":" and bool(stack))
    )
    if not dangling and info.name == "python" and sc.scope is None:
        # `a and` / `x if` / `y in`: a keyword operator waiting for its right side.
        dangling = _KEYWORD_OPERATOR_END.search(text, max(0, sc.last_code - 8)) is not None
        if dangling:
            out += " "
    if dangling:
        out += (" " if last in _OPERATORS and last != "." else "") + _HOLE
    out += "".join(OPEN[c] for _, c in reversed(stack))
    if info.name == "python":
        tail = text.rsplit("\n", 1)[-1]  # the window's last line (``out``'s may be a comment's end)
        indent = tail[: len(tail) - len(tail.lstrip())]
        # A block header whose brackets go on to later lines (`with open(`, `if (`, or a `def`
        # whose parameters close on a later line that opens `-> X[`): closed here, it still
        # needs its colon and a body. The header is the line of the outermost bracket still
        # open, or the statement's first line.
        heads = (
            [text.rfind("\n", 0, b) + 1 for b in (stack[0][0], sc.brackets[0][0])] if stack else []
        )
        head_at = next((h for h in heads if _is_header(text, h)), -1)
        if last == ":" and not stack:
            if _PY_SOFT_HEADER.match(tail) and tail.lstrip().startswith("match"):
                out += "\n" + indent + "    case _x0:"  # a match's body is its cases
                indent += "    "
            out += "\n" + indent + "    pass"
        elif tail.lstrip().startswith("@"):
            out += "\n" + indent + "def _x0(): pass"
        elif head_at >= 0:
            head = text[head_at : text.find("\n", head_at) % (len(text) + 1)]
            out += ":\n" + head[: len(head) - len(head.lstrip())] + "    pass"
    return out, None


def _is_header(text: str, at: int) -> bool:
    return bool(_PY_HEADER.match(text, at) or _PY_SOFT_HEADER.match(text, at))


def _window_lines(info: Language, lines: list[str]) -> tuple[str, list[str], list[int]]:
    """(prefix, lines, characters cut from each line): Python windows are dedented by their
    first line's indentation, and a clause that needs its header (``else:``, ``except:``) gets
    a dummy one."""
    if info.name != "python":
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
    info = language_info(language)
    if info is None or ts_language(language) is None:
        raise UnsupportedLanguage(f"no syntax check for {language!r}")
    k = pre.count("\n")

    def build(s: str, ends: bool) -> tuple[str, str | None]:
        prefix, lines, cut = _window_lines(info, (pre + before + s + after + post).split("\n"))
        start = len(prefix) + sum(len(ln) + 1 for ln in lines[:k])
        lo = start + max(0, len(before) - cut[k])
        text = prefix + "\n".join(lines)
        return _complete_window(info, text, (lo, lo + len(s)), (start, start + len(lines[k])), ends)

    with_s, problem = build(suggestion, line_ends)
    if problem:
        return Check(False, problem)
    # Without the suggestion, a line cut after an operator (`x = `, `f(`) gets a hole, so that
    # only what the suggestion adds is counted against it.
    sc = scan(info, before)
    last = _last_char(info, before, sc.last_code) if sc.scope is None else ""
    without, _ = build(_HOLE if last in _OPERATORS or last in "([" else "", False)
    if _count_errors(language, with_s) > _count_errors(language, without):
        return Check(False, "new-errors")
    return Check(True)


@functools.lru_cache(maxsize=4)
def _ends_in_open_block(language: str, text: str) -> bool:
    """Whether ``text`` ends inside a string that may span lines or a block comment. A scan of
    the whole text (linear in its size), so it is remembered: the service checks each
    candidate of one answer against the same document."""
    info = language_info(language)
    if info is None:
        return False
    sc = scan(info, text)
    return (sc.scope == "comment" and sc.closer != "\n") or (sc.scope == "string" and sc.multiline)


def check_in_tree(
    language: str, tree: Any, text: str, line: int, col: int, suggestion: str, line_ends: bool
) -> Check | None:
    snap = snapshot(text)
    line_start_c = snap.line_starts[line]
    offset = cursor_byte(snap, line, col)
    line_start_b = snap.byte_offset(line_start_c)
    scope = scope_at(tree, offset)
    if scope is not None and scope[0] != "code" and scope[1] < line_start_b:
        return None  # inside a docstring or block comment begun earlier: no code to break
    info = language_info(language)
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
    if info is not None and info.newline_ends_statement:
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
    tree = parser_for(language).parse(snapshot(text).data)
    result = check_in_tree(language, tree, text, line, col, suggestion, line_ends)
    return result is None or result.ok


def cursor_byte(snap: Snapshot, line: int, col: int) -> int:
    start, end = snap.line_span(line)
    return snap.byte_offset(min(start + col, end))
