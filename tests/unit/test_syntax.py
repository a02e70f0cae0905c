"""Gating, cleaning and the syntax check (completion/syntax/) with the real tree-sitter grammars.

Tables use ``‸`` for the cursor. Each row is a real-looking line (or document) of its language,
multi-byte text included.
"""

from __future__ import annotations

import pytest

from nearline import languages
from nearline.completion import syntax
from nearline.completion.syntax import (
    SyntaxDocs,
    UnsupportedLanguage,
    clean,
    gate_reason,
    parses_in_window,
    should_complete,
    trees,
)

CURSOR = "‸"


def split(line: str) -> tuple[str, str]:
    i = line.index(CURSOR)
    return line[:i], line[i + 1 :]


def locate(doc: str) -> tuple[str, int, int]:
    """The document without the cursor mark, and the cursor's (line, column)."""
    i = doc.index(CURSOR)
    before = doc[:i]
    return doc.replace(CURSOR, ""), before.count("\n"), i - (before.rfind("\n") + 1)


# -- gating -------------------------------------------------------------------------------
GATE = [
    # Python
    ("python", "x = foo‸", None),
    ("python", "x = fo‸o", "mid-identifier"),
    ("python", "result = compute‸(a)", "text-after-cursor"),
    ("python", "print(‸)", None),
    ("python", "print(‸)   ", None),
    ("python", "d = {'a': ‸}", None),
    ("python", "foo(a, ‸b)", "text-after-cursor"),
    ("python", "x = ‸ + 1", "text-after-cursor"),
    ("python", "if x:‸", None),
    ("python", "return [x for x in xs‸]", None),
    ("python", "f(x)‸.strip()", "text-after-cursor"),
    ("python", "f(‸);", None),
    ("python", "‸", None),
    ("python", "    ‸", None),
    ("python", "x = f'{na‸}'", None),
    ("python", 'x = f"{name‸}"', None),
    ("python", "# a comment about ‸", None),
    ("python", "s = 'héllo wörld‸'", None),
    ("python", "s = 'ab‸c'", "mid-identifier"),
    ("python", "name = 'naïve‸'", None),
    ("python", "x = '😀' + fo‸o", "mid-identifier"),
    ("python", "msg = '😀‸'", None),
    ("python", "名前 = 値‸", None),
    ("python", "名‸前 = 1", "mid-identifier"),
    ("python", "café‸ = 1", "text-after-cursor"),
    ("python", "def area(width‸):", None),
    ("python", "for i in range(‸):", None),
    ("python", "class Point(‸):", None),
    ("python", "values[‸]", None),
    ("python", "x = ‸  # note", "text-after-cursor"),
    # JavaScript / TypeScript
    ("javascript", "const x = foo(‸);", None),
    ("javascript", "const $el = $‸", None),
    ("javascript", "const el = $‸el", "mid-identifier"),
    ("javascript", "foo‸$bar()", "mid-identifier"),
    ("javascript", "const s = `hello ${na‸}`", None),
    ("javascript", "if (x) {‸}", None),
    ("javascript", "x = y ‸|| z", "text-after-cursor"),
    ("javascript", "// todo ‸", None),
    ("javascript", "items.map((x) => ‸)", None),
    ("javascript", "const t = 'ünïcödé ‸';", None),
    ("javascriptreact", "return <div>‸</div>", "text-after-cursor"),
    ("typescript", "let xs: Array<‸>", None),
    ("typescript", "function f(a: string‸): number {", "text-after-cursor"),
    ("typescript", "const m = new Map<string, number‸>();", "text-after-cursor"),
    ("typescript", "const m: Map<string, number‸>", None),
    ("typescriptreact", "const el = use‸", None),
    # Go
    ("go", "fmt.Println(‸)", None),
    ("go", "s := `raw ‸`", None),
    ("go", "x := m[‸]", None),
    ("go", "if err != nil {‸", None),
    ("go", "fmt.Printf(‸, x)", "text-after-cursor"),
    ("go", "v := cönfig.Va‸lue", "mid-identifier"),
    # Rust
    ("rust", "let v: Vec<‸>", None),
    ("rust", "let v: Vec<‸> = Vec::new();", "text-after-cursor"),
    ("rust", 'println!("{}", x‸);', None),
    ("rust", "fn f<'a>(x: &'a str‸)", None),
    ("rust", 'let s = "grüße ‸";', None),
    ("rust", "match valu‸e {", "mid-identifier"),
    # Java
    ("java", "System.out.println(‸);", None),
    ("java", "List<String‸> xs = new ArrayList<>();", "text-after-cursor"),
    ("java", "Map<String, List<Integer‸>>", None),
    ("java", 'String s = "€ ‸";', None),
    ("java", "public void ru‸n() {", "mid-identifier"),
    # C / C++
    ("c", "#include <stdio‸>", None),
    ("c", 'printf("%d\\n", x‸);', None),
    ("c", "int a[‸];", None),
    ("c", "for (int i = 0; i < n; i++‸) {", "text-after-cursor"),
    ("cpp", "std::vector<int‸> v;", "text-after-cursor"),
    ("cpp", "auto it = m.find(‸);", None),
    ("cpp", "std::cout << ‸;", None),
    # Everything else: cleaning only, no gating.
    ("markdown", "some te‸xt here", None),
    ("yaml", "key: va‸lue", None),
    ("text", "hello wor‸ld", None),
    (None, "a‸b", None),
]


@pytest.mark.parametrize(("language", "line", "expected"), GATE)
def test_gate(language: str | None, line: str, expected: str | None) -> None:
    before, after = split(line)
    assert gate_reason(language, before, after) == expected
    assert should_complete(language, before, after) is (expected is None)


SCOPE_SWITCHES = [
    # The line's own lexing: comments and strings begun on the cursor's line.
    ("python", "x = 1  # the answer ‸", "in-comment", None),
    ("python", "s = 'héllo ‸", None, "in-string"),
    ("python", 's = """Doc ‸', None, "in-string"),
    ("python", "s = 'done' + ‸", None, None),
    ("python", "x = '#' + ‸", None, None),
    ("javascript", "const a = 1; // note ‸", "in-comment", None),
    ("javascript", "/* block ‸", "in-comment", None),
    ("javascript", "const t = `tmpl ‸", None, "in-string"),
    ("go", "x := 1 // ‸", "in-comment", None),
    ("rust", "fn f<'a>(x: &'a ‸", None, None),
    ("rust", "let c = '(';  let s = \"ab ‸", None, "in-string"),
    ("java", 'String s = "a" + ‸', None, None),
    ("c", "/* done */ x = ‸", None, None),
    ("cpp", 'auto s = "x // y" + ‸', None, None),
]


@pytest.mark.parametrize(("language", "line", "no_comments", "no_strings"), SCOPE_SWITCHES)
def test_gate_in_comments_and_strings_can_be_switched_off(
    language: str, line: str, no_comments: str | None, no_strings: str | None
) -> None:
    before, after = split(line)
    assert gate_reason(language, before, after) is None  # allowed by default
    assert gate_reason(language, before, after, in_comments=False) == no_comments
    assert gate_reason(language, before, after, in_strings=False) == no_strings


TREE_SCOPES = [
    ("python", 'def f():\n    """Docs\n    more ‸\n    """\n', "string"),
    ("python", "x = 1  # note‸\n", "comment"),
    ("python", "x = 'abc'‸\n", "code"),
    ("python", "x = f'{na‸}'\n", "code"),
    ("python", "x = f'na‸'\n", "string"),
    ("javascript", "/*\n * about ‸\n */\nconst x = 1;\n", "comment"),
    ("javascript", "const s = `a ${x‸}`;\n", "code"),
    ("javascript", "const s = `line one\nline ‸ two`;\n", "string"),
    ("go", "package m\n\nvar s = `raw\nmore ‸`\n", "string"),
    ("rust", "/// Doc comment ‸\nfn f() {}\n", "comment"),
    ("rust", "fn f<'a>(x: &'a ‸str) {}\n", "code"),
    ("java", "class A {\n  /** Doc\n   * ‸\n   */\n  int x;\n}\n", "comment"),
    ("c", "/* done */‸\n", "code"),
    ("cpp", 'auto s = R"(raw ‸)";\n', "string"),
]


@pytest.mark.parametrize(("language", "doc", "expected"), TREE_SCOPES)
def test_scope_from_the_document_tree(language: str, doc: str, expected: str) -> None:
    text, line, col = locate(doc)
    assert SyntaxDocs().scope("file:///a", language, text, line, col) == expected


# -- cleaning -----------------------------------------------------------------------------
CLEAN = [
    # (language tag for reading only, raw, line with cursor, above, below, expected)
    ("python", "a, b)", "foo(‸)", None, None, "a, b"),
    ("python", "a, b))", "foo(bar(‸))", None, None, "a, b"),
    ("python", "x + 1   ", "y = ‸", None, None, "x + 1"),
    ("python", "bar\nbaz", "foo = ‸", None, None, "bar"),
    ("python", "foo()\r\n", "x = ‸", None, None, "foo()"),
    ("python", ")", "foo(a‸", None, None, ""),
    ("python", "):", "if f(x‸", None, None, ""),
    ("python", "...", "x = ‸", None, None, ""),
    ("python", "   ", "x = ‸", None, None, ""),
    ("python", "", "f(‸)", None, None, ""),
    ("python", "'😀'", "s = ‸", None, None, "'😀'"),
    ("python", "key': 1}", "d = {'‸'}", None, None, "key': 1"),
    ("python", "value)", "f(‸)", None, None, "value"),
    ("python", "a)", "f(‸):", None, None, "a"),
    ("python", "foo()", "print(‸)", None, None, "foo()"),
    ("python", "ñame)", "print(‸)", None, None, "ñame"),
    ("python", "名前)", "f(‸)", None, None, "名前"),
    ("python", "x += 1", "    ‸", "    x += 1", None, ""),
    ("python", "return total", "    ‸", None, "    return total", ""),
    ("python", " += 1", "    x‸", "    x += 1", None, ""),
    ("python", "1", "x = ‸", "x = 1", None, ""),
    ("python", "2", "x = ‸", "x = 1", "x = 3", "2"),
    ("python", "    return plan", "    ret‸", None, None, "urn plan"),
    ("python", "    low = warehouse.low_stock()", "    pla‸", None, None, ""),
    ("python", " in warehouse.items:", "    for item‸", None, None, " in warehouse.items:"),
    ("python", "  # note", "x = 1‸", None, None, "  # note"),
    ("python", "x)", "‸", None, None, "x)"),
    ("python", "größe * 2", "fläche = ‸", None, None, "größe * 2"),
    ("javascript", "a, b);", "foo(‸);", None, None, "a, b"),
    ("javascript", "x => x * 2)", "xs.map(‸)", None, None, "x => x * 2"),
    ("javascript", "`${name}`", "const s = ‸", None, None, "`${name}`"),
    ("javascript", "}", "  ‸", None, None, ""),
    ("javascript", "});", "  ‸", None, None, ""),
    ("javascript", "name}`;", "const s = `hi ${‸}`;", None, None, "name"),
    ("go", "err != nil {", "if ‸", None, None, "err != nil {"),
    ("go", '"fmt"', "import ‸", None, None, '"fmt"'),
    ("go", "x)", "fmt.Println(‸)", None, None, "x"),
    ("rust", "x);", 'println!("{}", ‸);', None, None, "x"),
    ("rust", "i32>", "let v: Vec<‸>", None, None, "i32"),
    ("java", "args) {", "public static void main(String[] ‸) {", None, None, "args"),
    ("java", '"ünï");', "System.out.println(‸);", None, None, '"ünï"'),
    ("c", "i++) {", "for (int i = 0; i < n; ‸) {", None, None, "i++"),
    ("cpp", "1, 2, 3}", "std::vector<int> v = {‸};", None, None, "1, 2, 3"),
]


@pytest.mark.parametrize(("language", "raw", "line", "above", "below", "expected"), CLEAN)
def test_clean(
    language: str, raw: str, line: str, above: str | None, below: str | None, expected: str
) -> None:
    before, after = split(line)
    got = clean(raw, before, after, above=above, below=below)
    assert got.text == expected
    assert (got.reason is None) == bool(expected)


def test_clean_reasons() -> None:
    assert clean("  ", "x = ", "").reason == "empty"
    assert clean("):", "if f(x", "").reason == "punctuation"
    assert clean("x += 1", "    ", "", above="    x += 1").reason == "repeats-line-above"
    assert clean("pass", "    ", "", below="    pass").reason == "repeats-line-below"


def test_neighbours_skip_blank_lines() -> None:
    lines = ["a = 1", "", "  ", "x", "", "b = 2"]
    assert syntax.neighbours(lines, 3) == ("a = 1", "b = 2")
    assert syntax.neighbours(lines, 0) == (None, "x")


# -- the syntax check ---------------------------------------------------------------------
CHECK = [
    # Python
    ("python", "x = ‸\n", "compute(a, b)", None),
    ("python", "x = ‸\n", "compute(a, b", "unbalanced"),
    ("python", "x = ‸\n", "compute(a, b))", "unmatched-bracket"),
    ("python", "x = [‸]\n", "1, 2)", "unmatched-bracket"),
    ("python", "def f(x):\n    return ‸\n", "x + 1", None),
    ("python", "def f(x):\n    return ‸\n", "x +", "unbalanced"),
    ("python", "def f(x):\n    return ‸\n", "x + * 2", "new-errors"),
    ("python", "if x ‸\n    pass\n", "> 0:", None),
    ("python", "if x ‸\n    pass\n", "> 0", "missing-colon"),
    ("python", "for item in ‸\n", "items:", None),
    ("python", "foo(a, ‸)\n", "b", None),
    ("python", "foo(a, ‸)\n", "b)", "new-errors"),
    ("python", "result = compute(\n    a,\n    ‸\n)\n", "b", None),
    ("python", "result = compute(\n    a,\n    ‸\n)\n", "b)", "new-errors"),
    ("python", "result = compute(\n    a,\n    ‸\n", "b)", None),
    ("python", "x = {'a': 1, ‸}\n", "'b': 2", None),
    ("python", "x = {'a': 1, ‸}\n", "'b' 2", "new-errors"),
    ("python", "x = f'{‸}'\n", "name", None),
    ("python", "s = 'héllo ‸'\n", "wörld", None),
    ("python", "s = 'héllo' + ‸\n", "'wörld'", None),
    ("python", "s = 'héllo' + ‸\n", "'wörld", "unbalanced"),
    ("python", "def f():\n    ‸\n", '"""Docstring that goes on', None),
    ("python", "if a:\n    x = 1\nel‸\n", "if b:", None),
    ("python", "try:\n    x = 1\nex‸\n", "cept ValueError:", None),
    ("python", "@‸\ndef f():\n    pass\n", "functools.cache", None),
    ("python", "class A:\n    def f(self):\n        return self.‸\n", "name", None),
    ("python", "xs = [\n    1,\n    ‸\n]\n", "2,", None),
    ("python", "total = (a +\n         ‸\n", "b)", None),
    ("python", "x = 1\n‸\ny = 2\n", "z = x * 2  # double", None),
    ("python", "x = 1\n‸\ny = 2\n", "z = = 2", "new-errors"),
    ("python", "x = 1\n‸\ny = 2\n", "def", "missing-colon"),
    ("python", "名前 = ‸\n", "'値'", None),
    # Found by the quality benchmark: right lines the check used to reject.
    (
        "python",
        "def f(t):\n    match t.status:\n        case A:\n            pass\n        ‸\n",
        "case B.FAILED:",
        None,
    ),
    (
        "python",
        "def f(t):\n    match t.status:\n        case A:\n            pass\n        ‸\n",
        "case B.FAILED: = 1",
        "new-errors",
    ),
    ("python", "def f():\n    ‸\n", "with backend().cancel_scope(", None),
    ("python", "def f():\n    ‸\n", "if (a and", None),
    ("python", "def f():\n    ‸\n", "with backend().cancel_scope())", "unmatched-bracket"),
    ("python", "def f():\n    ‸\n", "if (a and b", "unbalanced"),
    # JavaScript / TypeScript
    ("javascript", "const x = ‸;\n", "foo(1, 2)", None),
    ("javascript", "const x = ‸;\n", "foo(1, 2))", "unmatched-bracket"),
    ("javascript", "function f() {\n  return ‸\n}\n", "a + b;", None),
    ("javascript", "function f() {\n  ‸\n}\n", "if (x) {", None),
    ("javascript", "function f() {\n  ‸\n}\n", "if (x) { return 1;", "unbalanced"),
    ("javascript", "function f() {\n  ‸\n}\n", "return 1; }", "new-errors"),
    ("javascript", "const s = `a ${‸}`;\n", "name", None),
    ("javascript", "items.map((x) => ‸);\n", "x * 2", None),
    ("javascript", "items.map((x) => ‸);\n", "x * * 2", "new-errors"),
    ("typescript", "let xs: number[] = ‸;\n", "[1, 2, 3]", None),
    ("typescript", "function f(a: number): ‸ {\n}\n", "string", None),
    ("typescript", "function f(a: number): ‸ {\n}\n", "string]", "unmatched-bracket"),
    ("typescriptreact", "const el = ‸;\n", "<div>{name}</div>", None),
    # Go
    ("go", "package main\n\nfunc main() {\n\t‸\n}\n", 'fmt.Println("hi")', None),
    ("go", "package main\n\nfunc main() {\n\t‸\n}\n", 'fmt.Println("hi"))', "unmatched-bracket"),
    ("go", "package main\n\nfunc main() {\n\t‸\n}\n", "if err != nil {", None),
    ("go", "package main\n\nfunc main() {\n\tx := ‸\n}\n", "map[string]int{}", None),
    # Rust
    ("rust", "fn main() {\n    let v: Vec<i32> = ‸;\n}\n", "vec![1, 2, 3]", None),
    ("rust", "fn f<'a>(x: &'a str) -> &'a str {\n    ‸\n}\n", "&x[1..]", None),
    ("rust", "fn main() {\n    let s = ‸;\n}\n", '"grüße".to_string()', None),
    ("rust", "fn main() {\n    let s = ‸;\n}\n", '"grüße".to_string(', "unbalanced"),
    # Java
    ("java", "class A {\n  void f() {\n    int x = ‸;\n  }\n}\n", "Math.max(1, 2)", None),
    ("java", "class A {\n  void f() {\n    int x = ‸;\n  }\n}\n", "Math.max(1, 2", "unbalanced"),
    ("java", "class A {\n  void f() {\n    ‸\n  }\n}\n", "for (int i = 0; i < n; i++) {", None),
    # C / C++
    ("c", "int main(void) {\n    ‸\n}\n", 'printf("%d\\n", 1);', None),
    ("c", "int main(void) {\n    ‸\n}\n", 'printf("%d\\n", 1;', "unbalanced"),
    ("c", "int main(void) {\n    f(a,\n      ‸\n}\n", "b);", None),
    ("cpp", "std::vector<int> v = ‸;\n", "{1, 2, 3}", None),
    ("cpp", "int main() {\n  for (auto& x : ‸) {\n  }\n}\n", "xs", None),
]


@pytest.mark.parametrize(("language", "doc", "suggestion", "expected"), CHECK)
def test_syntax_check(language: str, doc: str, suggestion: str, expected: str | None) -> None:
    text, line, col = locate(doc)
    got = SyntaxDocs().check("file:///a", language, text, line, col, suggestion)
    assert got is not None
    assert got.reason == expected
    assert got.ok is (expected is None)
    # The benchmark's pure function says the same.
    cut = len("\n".join(text.split("\n")[:line])) + (1 if line else 0) + col
    assert parses_in_window(language, text[:cut], suggestion, text[cut:]) is (expected is None)


def test_a_line_cut_by_a_limit_may_leave_brackets_open() -> None:
    text, line, col = locate("x = ‸\n")
    docs = SyntaxDocs()
    check = docs.check("file:///a", "python", text, line, col, "compute(a, b")
    assert check is not None and check.reason == "unbalanced"
    check = docs.check("file:///a", "python", text, line, col, "compute(a, b", line_ends=False)
    assert check is not None and check.ok


def test_nothing_to_check_inside_a_triple_quoted_string_not_closed_yet() -> None:
    # While such a string is written the tree is broken and may call the cursor's spot code.
    text = 'x = dedent(\n    f"""\\\n    {a}\n    '
    assert SyntaxDocs().check("file:///a", "python", text, 3, 4, "{b} with {c!r}") is None
    assert parses_in_window("python", text, "{b} with {c!r}", "")


def test_nothing_to_check_inside_a_docstring_or_without_a_grammar() -> None:
    text, line, col = locate('def f():\n    """Docs\n    more ‸\n    """\n')
    docs = SyntaxDocs()
    assert docs.check("file:///a", "python", text, line, col, "text ) with ( brackets") is None
    assert docs.check("file:///b.md", "markdown", "# T\n", 0, 3, "itle))") is None
    with pytest.raises(UnsupportedLanguage):
        parses_in_window("markdown", "# T", "itle", "\n")


def test_far_openers_stand_for_themselves() -> None:
    """A dict literal hundreds of lines long: the window is the entry, under its opener."""
    entries = "".join(f"    'key_{i}': {i},\n" for i in range(300))
    text = "TABLE = {\n" + entries + "    'last': ‸\n}\n"
    doc, line, col = locate(text)
    docs = SyntaxDocs()
    ok = docs.check("file:///t.py", "python", doc, line, col, "301,")
    bad = docs.check("file:///t.py", "python", doc, line, col, "301 302,")
    assert ok is not None and ok.ok
    assert bad is not None and bad.reason == "new-errors"


# -- per-document trees -------------------------------------------------------------------
def _sexp(language: str, text: str) -> str:
    return str(trees.parser_for(language).parse(text.encode("utf-8")).root_node)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8", "utf-32"])
def test_tree_follows_incremental_edits(encoding: str) -> None:
    docs = SyntaxDocs()
    uri = "file:///w/a.py"
    text = "s = '😀'\ndef f(x):\n    return x\n"
    docs.open(uri, "python", text)
    assert docs.tree(uri, "python", text) is not None
    assert docs.stats["full_parses"] == 1

    def unit(s: str) -> int:
        return {
            "utf-16": len(s.encode("utf-16-le")) // 2,
            "utf-8": len(s.encode()),
            "utf-32": len(s),
        }[encoding]

    # Type after the emoji on line 0, then replace `x` in `return x` with `x * 2`, then add a line.
    col = unit("s = '😀")
    text1 = "s = '😀 ñ'\ndef f(x):\n    return x\n"
    docs.change(uri, [((0, col), (0, col), " ñ")], text1, encoding)
    text2 = "s = '😀 ñ'\ndef f(x):\n    return x * 2\n"
    docs.change(uri, [((2, 11), (2, 12), "x * 2")], text2, encoding)
    text3 = text2 + "y = f(3)\n"
    docs.change(uri, [((3, 0), (3, 0), "y = f(3)\n")], text3, encoding)
    tree = docs.tree(uri, "python", text3)
    assert str(tree.root_node) == _sexp("python", text3)
    assert docs.stats["edits"] == 3 and docs.stats["resyncs"] == 0
    assert docs.stats["incremental_parses"] == 1 and docs.stats["full_parses"] == 1


def test_tree_resynchronises_when_edits_and_text_disagree() -> None:
    docs = SyntaxDocs()
    uri = "file:///w/b.js"
    docs.open(uri, "javascript", "const a = 1;\n")
    docs.tree(uri, "javascript", "const a = 1;\n")
    # A change we were never told about: the text a request sees wins.
    text = "const a = 1;\nconst b = a + 2;\n"
    tree = docs.tree(uri, "javascript", text)
    assert str(tree.root_node) == _sexp("javascript", text)
    assert docs.stats["resyncs"] == 1
    # Edits that do not reproduce the editor's text (a stale position) resynchronise too.
    text2 = "const a = 10;\nconst b = a + 2;\n"
    docs.change(uri, [((5, 0), (5, 0), "zzz")], text2)
    assert str(docs.tree(uri, "javascript", text2).root_node) == _sexp("javascript", text2)
    # A whole-document change.
    docs.change(uri, ["let c = 3;\n"], "let c = 3;\n")
    assert str(docs.tree(uri, "javascript", "let c = 3;\n").root_node) == _sexp(
        "javascript", "let c = 3;\n"
    )


def test_documents_without_a_grammar_get_no_tree() -> None:
    docs = SyntaxDocs()
    docs.open("file:///r.md", "markdown", "# hi\n")
    assert "file:///r.md" not in docs
    assert docs.tree("file:///r.md", "markdown", "# hi\n") is None
    assert docs.scope("file:///r.md", "markdown", "# hi\n", 0, 2) is None


def test_every_listed_language_has_its_grammar() -> None:
    for language, info in languages.CHECKED.items():
        assert info.checked
        assert syntax.has_grammar(language), language
