"""path-distance for JavaScript/TypeScript: relative imports resolved as TypeScript and Node do
(``./y.js`` → ``y.ts``, index files, ``.mjs``/``.mts``), the names taken from each, barrels
followed to the module that declares a name, and a tree-sitter stub of those names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nearline.completion import composers as c


@dataclass(frozen=True)
class F:
    rel: str
    language: str = "typescript"

    @property
    def path(self) -> Path:
        return Path("/ws") / self.rel


class Source:
    def __init__(self, texts: dict[str, str]) -> None:
        self.texts = texts
        langs = {".ts": "typescript", ".tsx": "typescriptreact", ".mts": "typescript",
                 ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript"}  # fmt: skip
        self.by = {r: F(r, langs[Path(r).suffix]) for r in texts}

    def files(self, language: str | None = None) -> list[F]:
        return [f for f in self.by.values() if language is None or f.language == language]

    def text(self, path: Path) -> str | None:
        return self.texts.get(path.relative_to("/ws").as_posix())

    def tokens_for(self, path: Path) -> int:
        return count(self.text(path) or "")


def count(text: str) -> int:
    return max(1, len(text) // 4) if text else 0


def test_relative_imports_resolve_as_typescript_does() -> None:
    rels = ["src/a/y.ts", "src/a/comp.tsx", "src/b/index.ts", "src/m.mts", "src/c.js",
            "src/d/index.js", "src/a/here.ts"]  # fmt: skip
    by = {r: F(r) for r in rels}

    def one(spec: str) -> str | None:
        f = c.resolve_js_import(spec, "src/a/here.ts", by)  # type: ignore[arg-type]
        return f.rel if f else None

    assert one("./y") == "src/a/y.ts"
    assert one("./y.js") == "src/a/y.ts"  # the compiled name of a TypeScript source
    assert one("./comp.js") == "src/a/comp.tsx"
    assert one("../m.mjs") == "src/m.mts"
    assert one("../b") == "src/b/index.ts"  # a directory: its index file
    assert one("../b/index.js") == "src/b/index.ts"
    assert one("../c.js") == "src/c.js"
    assert one("../c") == "src/c.js"
    assert one("../d") == "src/d/index.js"
    assert one("./nope") is None
    assert one("../../../outside") is None


def test_names_taken_from_each_import() -> None:
    text = (
        'import { a, b as c, type T } from "./x.js";\n'
        'import Def, { e } from "./def";\n'
        'import * as util from "./util.js";\n'
        'import Whole from "./whole";\n'
        'export { helper } from "../h";\n'
        'export * from "./all";\n'
        'const { r1, r2: alias } = require("./req");\n'
        'const mod = require("./mod");\n'
        'import "./side";\n'
        "util.joinValues(1); Def.make(); mod.run(); new Whole();\n"
    )
    names = c.js_import_names(text)
    assert names["./x.js"] == {"a", "b", "T"}
    assert names["./def"] == {"e", "make"}  # a default import: the members it is used by
    assert names["./util.js"] == {"joinValues"}  # not "js" from the path
    assert names["./whole"] is None  # used without a member: the module whole
    assert names["../h"] == {"helper"}
    assert names["./all"] is None
    assert names["./req"] == {"r1", "r2"}
    assert names["./mod"] == {"run"}
    assert "./side" not in names  # a bare import: whole (resolve_js_imports)
    src = Source(
        {"x.ts": "", "def.ts": "", "util.ts": "", "side.ts": "", "mod.js": "", "main.ts": ""}
    )
    got = c.resolve_js_imports(text, "main.ts", src.files())
    assert [(f.rel, set(n)) for f, n in got] == [
        ("x.ts", {"a", "b", "T"}), ("def.ts", {"e", "make"}), ("util.ts", {"joinValues"}),
        ("mod.js", {"run"}), ("side.ts", set()),
    ]  # fmt: skip


def test_a_path_with_a_dot_is_not_a_python_module() -> None:
    # Before: "./y.js" that did not resolve fell through to Python's ``from m import name``
    # and added the name "js" to "./y".
    files = [F("web/y.ts"), F("web/app.ts")]
    got = c.resolve_imports(("./y.js", "./z.js"), "web/app.ts", files)  # type: ignore[arg-type]
    assert [(f.rel, set(n)) for f, n in got] == [("web/y.ts", set())]


UTIL = """\
import { other } from "./other";

/** Sums. */
export function computeTotal(items: number[], start = 0): number {
  return items.reduce((a, b) => a + b, start);
}

export class Widget<T> extends Base {
  private secret = 1;
  size: number;
  constructor(size: number) {
    super();
    this.size = size;
  }
  resize(factor: number): Widget<T> {
    return new Widget(this.size * factor);
  }
  _internal() {}
}

export interface Options {
  verbose: boolean;
}

export type Shape = { w: number };

export const DEFAULT_SIZE = 10;

export const double = (x: number): number => {
  return x * 2;
};

function unexported(): void {
  other();
}
"""


def test_outline_of_names() -> None:
    stub = c.js_outline(UTIL, frozenset({"computeTotal", "Widget", "Options"}))
    assert stub == (
        "export function computeTotal(items: number[], start = 0): number;\n"
        "export class Widget<T> extends Base {\n"
        "  size: number;\n"
        "  constructor(size: number);\n"
        "  resize(factor: number): Widget<T>;\n"
        "}\n"
        "export interface Options {\n"
        "  verbose: boolean;\n"
        "}\n"
    )
    every = c.js_outline(UTIL)
    assert every is not None
    assert "export const double = (x: number): number => ...\n" in every
    assert "export const DEFAULT_SIZE = 10;\n" in every
    assert "function unexported(): void;\n" in every
    assert "import" not in every and "return" not in every
    assert c.js_outline(UTIL, frozenset({"Widget"}), level=1) == (
        "export class Widget<T> extends Base {\n  constructor(size: number);\n}\n"
    )
    assert c.js_outline(UTIL, frozenset({"computeTotal", "double"}), level=2) == (
        "export function computeTotal(items: number[], start = 0): number {\n"
        "export const double = (x: number): number => {\n"
    )
    # Unknown names: the whole stub, as python_outline does.
    assert c.js_outline(UTIL, frozenset({"nothing"})) == every
    js = "const x = require('./x');\nmodule.exports = { f };\nfunction f(a, b) {\n  return a;\n}\n"
    assert c.js_outline(js, language="javascript") == "function f(a, b);\n"


def test_outline_cuts_non_ascii_lines_by_characters() -> None:
    text = 'export function grüße(a = "ä"): string {\n  return a;\n}\n'
    assert c.js_outline(text) == 'export function grüße(a = "ä"): string;\n'


def test_barrels_are_followed_to_the_declaring_module() -> None:
    src = Source({
        "src/index.ts": 'export * from "./core/widget";\nexport { die } from "./utils/errors.js";\n',
        "src/core/widget.ts": "export class Widget {}\nexport function make(): Widget {}\n",
        "src/utils/errors.ts": "export function die(code: number): never {\n  throw 1;\n}\n",
        "src/utils/other.ts": "export function unrelated() {}\n",
        "src/app.ts": "",
    })  # fmt: skip
    imported = c.resolve_js_imports(
        'import { Widget, die } from "./index.js";\n', "src/app.ts", src.files()
    )
    assert [(f.rel, set(n)) for f, n in imported] == [("src/index.ts", {"Widget", "die"})]
    got = c.follow_js_reexports(imported, src, src.files())
    assert sorted((f.rel, set(n)) for f, n in got) == [
        ("src/core/widget.ts", {"Widget"}),
        ("src/utils/errors.ts", {"die"}),
    ]
    # A module that declares none of the names and re-exports nothing keeps them.
    plain = c.resolve_js_imports('import { Ghost } from "./utils/other";\n', "src/app.ts",
                                 src.files())  # fmt: skip
    assert [(f.rel, set(n)) for f, n in c.follow_js_reexports(plain, src, src.files())] == [
        ("src/utils/other.ts", {"Ghost"})
    ]


def test_path_distance_puts_the_stub_of_imported_names_nearest() -> None:
    big_tail = "".join(f"export function filler{i}(x: number): number {{\n  return x;\n}}\n"
                       for i in range(200))  # fmt: skip
    src = Source({
        "src/util.ts": UTIL + big_tail,
        "src/index.ts": 'export * from "./util";\n',
        "src/far/away.ts": "export const far = 1;\n",
        "src/app.ts": "",
    })  # fmt: skip
    query = 'import { computeTotal } from "./index.js";\n\nconst t = computeTotal([1]);\n'
    req = c.ComposeRequest("src/app.ts", Path("/ws/src/app.ts"), "typescript", 200, query=query)
    got = c.compose_path_distance(req, src, count)
    assert got[-1].path == "src/util.ts" and got[-1].truncated
    assert got[-1].text.startswith("export function computeTotal(items: number[], start = 0)")
    assert "filler" not in got[-1].text


def test_a_class_on_one_line_is_its_own_stub() -> None:
    from nearline.completion.composers import js_outline

    out = js_outline("export class K { m() {} }\n", frozenset({"K"}))
    assert out == "export class K { m() {} }\n"
