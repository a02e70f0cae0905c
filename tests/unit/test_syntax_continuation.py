"""The syntax check on continuation lines: a line that goes on a statement begun above it.

Black and most formatters break long calls, lists and dicts over lines; the line the model
completes then closes (or goes on inside) a bracket opened on a line above. The check used to
call such a right line unbalanced when the tree left the opener in a broken node it did not
look into (issue 13, bug 5). Each row is a document with ``‸`` for the cursor, what the model
suggested there, and the check's expected reason (None: accepted). Most documents go on after
the cursor's line, as real files do.
"""

from __future__ import annotations

import pytest

from nearline.completion.syntax import SyntaxDocs, parses_in_window

CURSOR = "‸"

# After the cursor's line: more code, as in a real file.
PY_TAIL = "\n\ndef later():\n    return 1\n"
JS_TAIL = "\n}\n\nfunction later() {\n  return 1;\n}\n"

ACCEPT = [
    # The line from the issue (sqlparse, black-formatted): closes a call opened above.
    (
        "python",
        "def f(tlist, token):\n    if token:\n        tlist.insert_after(\n            ‸" + PY_TAIL,
        "token, sql.Token(T.Whitespace, ' '))",
    ),
    # The same with the cursor after the first argument.
    (
        "python",
        "def f(tlist, token):\n    tlist.insert_after(\n        token, ‸" + PY_TAIL,
        "sql.Token(T.Whitespace, ' '))",
    ),
    # At module level, nothing after it.
    ("python", "tlist.insert_after(\n    ‸", "token, sql.Token(T.Whitespace, ' '))"),
    # Closing a list and a dict opened above.
    ("python", "def f():\n    xs = [\n        1, 2,\n        ‸" + PY_TAIL, "3, 4]"),
    ("python", "def f():\n    d = {\n        'a': 1,\n        ‸" + PY_TAIL, "'b': 2}"),
    ("python", "def f():\n    return {\n        ‸" + PY_TAIL, "'a': [1, 2]}"),
    # Arguments that go on to the next line.
    ("python", "def f():\n    result = compute(\n        ‸" + PY_TAIL, "a, b,"),
    ("python", "def f():\n    result = compute(\n        ‸" + PY_TAIL, "a, key=value,"),
    ("python", "def f():\n    if (a and\n            ‸" + PY_TAIL, "b or"),
    # Nested brackets closed partly: the inner one here, the outer one later.
    ("python", "def f():\n    foo(bar(\n        ‸" + PY_TAIL, "a), b,"),
    ("python", "def f():\n    x = foo(a, [\n        ‸" + PY_TAIL, "1, 2],"),
    ("python", "def f():\n    x = foo(a, [\n        1,\n        ‸" + PY_TAIL, "2])"),
    # Both open brackets closed at once.
    ("python", "def f():\n    x = foo(a, {\n        ‸" + PY_TAIL, "'k': 1})"),
    # A backslash continuation.
    ("python", "def f():\n    total = first + \\\n        ‸" + PY_TAIL, "second"),
    ("python", "def f():\n    with open(a) as x, \\\n            ‸" + PY_TAIL, "open(b) as y:"),
    # A call whose opener line is a block header: the colon comes on the closing line.
    ("python", "def f():\n    if isinstance(\n        ‸" + PY_TAIL, "x, int):"),
    # A signature whose parameters close on a later line, which opens the return type's `[`.
    ("python", "def f(\n    a: int,\n‸" + PY_TAIL, ") -> Sequence["),
    ("python", "class A:\n    def f(\n        self,\n    ‸" + PY_TAIL, ") -> dict[str, int]:"),
    # A match statement's header (its body is case clauses).
    ("python", "def f(t):\n    ‸" + PY_TAIL, "match t.status:"),
    # A decorator with a comment; a triple-quoted string that goes on after a backslash.
    ("python", "class A:\n    ‸" + PY_TAIL, "@cache  # type: ignore"),
    ("python", "‸" + PY_TAIL, '_SOURCE_BASH = """\\'),
    # JavaScript, TypeScript, Go, C: the same shapes.
    (
        "javascript",
        "function f() {\n  tlist.insertAfter(\n    ‸" + JS_TAIL,
        "token, new Token(' '));",
    ),
    ("javascript", "function f() {\n  const xs = [\n    1,\n    ‸" + JS_TAIL, "2];"),
    ("javascript", "function f() {\n  foo(bar(\n    ‸" + JS_TAIL, "a), b,"),
    ("typescript", "function f(): void {\n  const o = {\n    a: 1,\n    ‸" + JS_TAIL, "b: 2 };"),
    ("typescript", "function f(): void {\n  call(\n    ‸" + JS_TAIL, "a, b);"),
    ("go", "package main\n\nfunc main() {\n\tfmt.Println(\n\t\t‸\n}\n", 'a, "b")'),
    ("c", 'int main(void) {\n    printf("%d",\n           ‸\n}\n', "x);"),
]

REJECT = [
    # A bracket closed that was never opened anywhere above.
    ("python", "def f():\n    x = 1\n    ‸" + PY_TAIL, "foo(a))", "unmatched-bracket"),
    ("python", "def f():\n    x = 1\n    ‸" + PY_TAIL, "a, b)", "unmatched-bracket"),
    # One closer too many for what is open above.
    ("python", "def f():\n    foo(\n        ‸" + PY_TAIL, "a))", "unmatched-bracket"),
    ("python", "def f():\n    foo(bar(\n        ‸" + PY_TAIL, "a)))", "unmatched-bracket"),
    # The wrong kind of closer for the bracket open above.
    ("python", "def f():\n    foo(\n        ‸" + PY_TAIL, "a]", "unmatched-bracket"),
    ("python", "def f():\n    xs = [\n        ‸" + PY_TAIL, "1, 2)", "unmatched-bracket"),
    # A new bracket left open at a line end where the statement cannot go on.
    ("python", "def f():\n    x = 1\n    ‸" + PY_TAIL, "y = foo(a, b", "unbalanced"),
    ("python", "def f():\n    foo(\n        ‸" + PY_TAIL, "a), bar(b", "unbalanced"),
    # A Python line ending in an operator outside brackets.
    ("python", "def f():\n    x = 1\n    ‸" + PY_TAIL, "y = x +", "unbalanced"),
    ("python", "def f(\n    a: int,\n‸" + PY_TAIL, ") -> Sequence[int", "unbalanced"),
    ("python", "def f(t):\n    ‸" + PY_TAIL, "match t.status", "new-errors"),
    # Broken inside the continuation.
    ("python", "def f():\n    foo(\n        ‸" + PY_TAIL, "a b)", "new-errors"),
    ("python", "def f():\n    d = {\n        ‸" + PY_TAIL, "'a' 1}", "new-errors"),
    ("javascript", "function f() {\n  foo(\n    ‸" + JS_TAIL, "a));", "unmatched-bracket"),
    ("javascript", "function f() {\n  const x = 1;\n  ‸" + JS_TAIL, "a, b);", "unmatched-bracket"),
    (
        "javascript",
        "function f() {\n  const xs = [\n    ‸" + JS_TAIL,
        "1, 2);",
        "unmatched-bracket",
    ),
    ("typescript", "function f(): void {\n  call(\n    ‸" + JS_TAIL, "a b);", "new-errors"),
]


def _locate(doc: str) -> tuple[str, int, int, int]:
    i = doc.index(CURSOR)
    before = doc[:i]
    return doc.replace(CURSOR, ""), before.count("\n"), i - (before.rfind("\n") + 1), i


def _both(language: str, doc: str, suggestion: str) -> tuple[str | None, bool]:
    """(reason of the server's check, the benchmark function's verdict) for one row."""
    text, line, col, cut = _locate(doc)
    got = SyntaxDocs().check("file:///a", language, text, line, col, suggestion)
    assert got is not None
    assert got.ok is (got.reason is None)
    return got.reason, parses_in_window(language, text[:cut], suggestion, text[cut:])


@pytest.mark.parametrize(("language", "doc", "suggestion"), ACCEPT)
def test_right_continuation_lines_pass(language: str, doc: str, suggestion: str) -> None:
    assert _both(language, doc, suggestion) == (None, True)


@pytest.mark.parametrize(("language", "doc", "suggestion", "reason"), REJECT)
def test_wrong_continuation_lines_are_rejected(
    language: str, doc: str, suggestion: str, reason: str
) -> None:
    assert _both(language, doc, suggestion) == (reason, False)


def test_the_tree_kept_in_step_with_typing_agrees() -> None:
    """The server's path: the document's tree follows the keystrokes of the opener line, and
    the check on the next line sees the bracket opened there."""
    docs = SyntaxDocs()
    uri = "file:///w/a.py"
    text = "def f(tlist, token):\n    tlist.insert_after(\n" + PY_TAIL
    docs.open(uri, "python", text)
    docs.tree(uri, "python", text)
    new = text.replace("insert_after(\n", "insert_after(\n        ")
    docs.change(uri, [((2, 0), (2, 0), "        ")], new)
    got = docs.check(uri, "python", new, 2, 8, "token, sql.Token(T.Whitespace, ' '))")
    assert got is not None and got.ok


@pytest.mark.parametrize(
    ("doc", "suggestion", "reason"),
    [
        ("@overload\n‸" + PY_TAIL, "def get(key: Literal['a']) -> int: ...", None),
        ("class P(Protocol):\n    ‸" + PY_TAIL, "def run(self) -> None: ...", None),
        ("def f():\n    ‸" + PY_TAIL, "x = ...", None),
        ("def f():\n    ‸" + PY_TAIL, "x = y.", "unbalanced"),
        ("‸" + PY_TAIL, "from .api import *", None),
        ("‸" + PY_TAIL, "x = y *", "unbalanced"),
    ],
)
def test_a_python_ellipsis_or_star_import_ends_a_line(
    doc: str, suggestion: str, reason: str | None
) -> None:
    """``...`` is a value (a stub's body), ``import *`` a name: no operator waits there."""
    assert _both("python", doc, suggestion) == (reason, reason is None)
