"""The quality benchmark's TypeScript/JavaScript dataset (``--language typescript``), model-free.

Projects are npm package tarballs that ship their sources (``npm pack NAME@VERSION``, cached
beside the Python sdists), each limited to its source folder (``src/`` or ``lib/``: the built
copies in ``dist/`` would hand the model the very line). Files and lines are chosen as for
Python (``quality_tasks``), with tree-sitter in place of ``ast``:

* a *completion file* is a ``.ts``/``.tsx``/``.js``/``.mjs``/``.cjs`` file (no ``.d.ts``, no
  ``.min.js``) of 80–1,500 lines that parses without errors;
* **inproject** — the line references a function, class, method, interface, type, enum or
  top-level ``const`` declared in another file of the project and not in this one; **infile**
  — one declared earlier in this file;
* references are identifiers and type names that are not variables of the file (parameters,
  local ``const``/``let``/``var``, catch and loop bindings), and the names of methods called
  (``x.name(...)``); names imported from packages (``import x from 'pkg'``,
  ``require('pkg')``), JavaScript's globals and built-in methods (``Object``, ``Promise``,
  ``push``, ``then``) and the common-API list do not count;
* skipped: imports and re-exports, ``require`` lines, comments, decorators, the headers of
  functions, classes, methods and interfaces (up to the line their body starts on), the first
  line of a type alias, and lines shorter than 6 characters.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from nearline.completion.composers import (
    _js_stub,
    is_require,
    js_declarations,
    js_header,
    parse_js,
)

from .quality_tasks import (
    DatasetError,
    LineInfo,
    Project,
    ProjectFiles,
    _countable,
    bench_cache_dir,
    cross_names,
    extract_sdist,
    project_files,
    read_project,
    run_download,
    task_lines,
)

# The packages and pins of the default TypeScript/JavaScript dataset, with the folder of each
# tarball that holds its sources: six TypeScript, one ES-module and one CommonJS JavaScript.
DEFAULT_TS_PROJECTS: tuple[str, ...] = (
    "zod@4.6.7:src",
    "immer@11.2.14:src",
    "rxjs@7.8.2:src",
    "ajv@8.20.0:lib",
    "@tanstack/query-core@5.108.4:src",
    "mobx@7.1.3:src",
    "axios@1.21.1:lib",
    "commander@15.1.0:lib",
)
SOURCE_DIRS = ("src", "lib", "source")
EXTENSIONS = (".ts", ".tsx", ".mts", ".cts", ".js", ".jsx", ".mjs", ".cjs")
_SKIP_DIRS = {"node_modules", "dist", "build", "coverage", "esm", "cjs", "umd", "types"}

_LANGUAGE_BY_EXT = {
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript", ".tsx": "typescriptreact",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascriptreact",
}  # fmt: skip


# JavaScript's and TypeScript's globals, test scaffolding and the methods of built-in types:
# common names, like Python's builtins.
def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


JS_GLOBALS: frozenset[str] = _words(
    """Object Array String Number Boolean Symbol BigInt Map Set WeakMap WeakSet WeakRef Promise
    Error TypeError RangeError SyntaxError ReferenceError AggregateError JSON Math Date RegExp
    Reflect Proxy Intl console globalThis window document navigator process require module
    exports undefined NaN Infinity isNaN isFinite parseInt parseFloat setTimeout clearTimeout
    setInterval clearInterval setImmediate queueMicrotask structuredClone encodeURIComponent
    decodeURIComponent encodeURI decodeURI Buffer URL URLSearchParams fetch Headers Request
    Response FormData Blob File AbortController AbortSignal TextEncoder TextDecoder ArrayBuffer
    SharedArrayBuffer DataView Uint8Array Int8Array Uint16Array Int16Array Uint32Array
    Int32Array Float32Array Float64Array BigInt64Array BigUint64Array Function arguments
    Record Partial Required Readonly Pick Omit Exclude Extract NonNullable ReturnType Parameters
    InstanceType Awaited PromiseLike ArrayLike Iterable Iterator IterableIterator AsyncIterable
    AsyncIterator AsyncIterableIterator Generator AsyncGenerator ReadonlyArray ReadonlyMap
    ReadonlySet PropertyKey ThisType Uppercase Lowercase Capitalize Uncapitalize
    ConstructorParameters ThisParameterType OmitThisParameter PropertyDescriptor
    describe it test expect beforeEach afterEach beforeAll afterAll vi jest
    push pop shift unshift slice splice concat indexOf lastIndexOf includes find findIndex
    findLast findLastIndex filter map reduce reduceRight forEach some every sort reverse flat
    flatMap fill at entries keys values join toString toLocaleString valueOf hasOwnProperty
    isPrototypeOf propertyIsEnumerable call apply bind then catch finally startsWith endsWith
    trim trimStart trimEnd padStart padEnd charAt charCodeAt codePointAt substring substr
    toLowerCase toUpperCase match matchAll replace replaceAll search split repeat normalize
    localeCompare has get set delete clear add size next return throw exec assign freeze
    isFrozen seal create defineProperty defineProperties getOwnPropertyNames
    getOwnPropertySymbols getOwnPropertyDescriptor getPrototypeOf setPrototypeOf is isArray
    from of stringify parse log warn error info debug trace resolve reject all allSettled race
    any now floor ceil round max min abs pow sqrt random toFixed isInteger isSafeInteger
    fromEntries hasOwn emit on off once addEventListener removeEventListener dispatchEvent
    length constructor prototype"""
)
# Reserved words are names of methods in some projects (ajv's ``gen.if(...)``), but a prompt
# cannot tell the definition of one from a statement (``if (x) {``): they do not count.
JS_KEYWORDS: frozenset[str] = _words(
    """if else for while do switch case default break continue return throw try catch finally
    new delete typeof instanceof in of void yield await async function class const let var
    import export extends super this static enum implements interface package private
    protected public with debugger"""
)

_DECLS = (
    "function_declaration", "generator_function_declaration", "class_declaration",
    "abstract_class_declaration", "interface_declaration", "type_alias_declaration",
    "enum_declaration", "function_signature",
)  # fmt: skip
_METHODS = ("method_definition", "method_signature", "abstract_method_signature")
# Declarations whose lines up to the start of their body are a header (no task).
_HEADERS = (*_DECLS, *_METHODS)


def language_of(rel: str) -> str:
    """The language id of a JS/TS file (as the workspace index names it)."""
    return _LANGUAGE_BY_EXT.get(os.path.splitext(rel)[1], "typescript")


def countable(name: str) -> bool:
    return _countable(name) and name not in JS_GLOBALS and name not in JS_KEYWORDS


# --------------------------------------------------------------------------- projects


def parse_npm_specs(text: str) -> list[tuple[str, str, str | None]]:
    """``"zod@4.6.7:src,@tanstack/query-core@5.108.4"`` → [(name, version, folder), ...]."""
    out: list[tuple[str, str, str | None]] = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        m = re.fullmatch(
            r"((?:@[a-z0-9][\w.-]*/)?[a-z0-9][\w.-]*)@([0-9][\w.+-]*)(?::([\w./-]+))?", item
        )
        if m is None or (m.group(3) and ".." in m.group(3).split("/")):
            raise DatasetError(f"--projects wants NAME@VERSION[:FOLDER] items, got {item!r}")
        out.append((m.group(1), m.group(2), m.group(3)))
    if not out:
        raise DatasetError("--projects is empty")
    return out


def tarball_name(name: str, version: str) -> str:
    """The file ``npm pack`` writes: ``@scope/name`` → ``scope-name-VERSION.tgz``."""
    return f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"


def download_tarball(name: str, version: str, folder: Path) -> Path:
    """The tarball of ``name@version`` in ``folder``, fetched with ``npm pack`` when not there."""
    path = folder / tarball_name(name, version)
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    return run_download(
        ["npm", "pack", f"{name}@{version}", "--pack-destination", str(folder), "--silent"],
        lambda: path if path.is_file() else None,
        tool="npm pack",
        spec=f"{name}@{version}",
        thing="npm tarball",
        is_error=lambda ln: "ERR" in ln,
        hint="is npm installed? ",
    )


def source_root(package: Path, folder: str | None) -> Path:
    """The part of an unpacked package that holds its sources: ``folder`` when given, else the
    first of ``src``, ``lib``, ``source`` there, else the package."""
    if folder:
        root = (package / folder).resolve()
        if not root.is_dir() or not root.is_relative_to(package.resolve()):
            raise DatasetError(f"{package.name}: no folder {folder!r} in the tarball")
        return root
    return next((package / d for d in SOURCE_DIRS if (package / d).is_dir()), package)


def fetch_npm_projects(
    specs: Sequence[tuple[str, str, str | None]],
    cache: Path | None = None,
    note: Callable[[str], None] = lambda s: None,
) -> list[Project]:
    cache = cache or bench_cache_dir()
    tarballs, extracted = cache / "npm", cache / "projects"
    extracted.mkdir(parents=True, exist_ok=True)
    out = []
    for name, version, folder in specs:
        if not (tarballs / tarball_name(name, version)).is_file():
            note(f"downloading the npm tarball of {name}@{version} ...")
        archive = download_tarball(name, version, tarballs)
        package = extract_sdist(archive, extracted / f"npm-{tarball_name(name, version)[:-4]}")
        out.append(Project(name, version, source_root(package, folder)))
    return out


# --------------------------------------------------------------------------- files


def ts_files(root: Path) -> list[str]:
    """Workspace-relative paths of the project's JS/TS sources (no declarations, no minified
    bundles), sorted."""
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in _SKIP_DIRS)
        for f in filenames:
            if (
                f.endswith(EXTENSIONS)
                and not re.search(r"\.d\.[mc]?ts$", f)
                and not f.endswith((".min.js", ".min.mjs"))
            ):
                out.append(Path(dirpath, f).relative_to(root).as_posix())
    return sorted(out)


def _text(node: Any) -> str:
    return str(node.text.decode("utf-8", "replace"))


def _walk(node: Any) -> Iterable[Any]:
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(n.children))


def parse_file(text: str, language: str) -> Any | None:
    """The tree of a file that parses cleanly, else None (as ``ast.parse`` failing)."""
    tree = parse_js(text, language)
    if tree is None or tree.root_node.has_error:
        return None
    return tree


def declared_names(root: Any) -> dict[str, int]:
    """Functions, classes, methods, interfaces, types and enums declared anywhere in a file,
    and its top-level ``const``/``let``/``var`` (not ``require`` lines): name → first line
    (1-based)."""
    out: dict[str, int] = {}

    def put(name: str, line: int) -> None:
        if name not in out or line < out[name]:
            out[name] = line

    for n in _walk(root):
        if n.type in _DECLS or n.type in _METHODS:
            name = n.child_by_field_name("name")
            if name is not None and name.type in (
                "identifier", "type_identifier", "property_identifier",
            ):  # fmt: skip
                put(_text(name), n.start_point[0] + 1)
    for _, decl, names in js_declarations(root):
        if decl.type in ("lexical_declaration", "variable_declaration"):
            for name in names:
                put(name, decl.start_point[0] + 1)
    return out


def _pattern_names(node: Any, out: set[str]) -> None:
    """The names a binding pattern binds (``{a, b: c}``, ``[d, ...e]``, ``f = 1``)."""
    t = node.type
    if t in ("identifier", "shorthand_property_identifier_pattern"):
        out.add(_text(node))
    elif t in ("object_pattern", "array_pattern", "rest_pattern"):
        for c in node.named_children:
            _pattern_names(c, out)
    elif t == "pair_pattern":
        v = node.child_by_field_name("value")
        if v is not None:
            _pattern_names(v, out)
    elif t in ("assignment_pattern", "object_assignment_pattern"):
        left = node.child_by_field_name("left")
        if left is not None:
            _pattern_names(left, out)
    elif t in ("required_parameter", "optional_parameter"):
        p = node.child_by_field_name("pattern")
        if p is not None:
            _pattern_names(p, out)


def bound_names(root: Any) -> set[str]:
    """Variables of the file: parameters, ``const``/``let``/``var`` below the top level, catch
    and loop bindings. A reference to one of them is a variable, whatever a function elsewhere
    is called (imports do not count: importing a project's function is how a file uses it)."""
    # Node objects are made afresh on each access: compare tree-sitter's ids, not Python's.
    top = {decl.id for _, decl, _ in js_declarations(root)}
    out: set[str] = set()
    for n in _walk(root):
        t = n.type
        if (
            t == "variable_declarator"
            and n.parent is not None
            and n.parent.id not in top
            and not is_require(n.parent)  # an import, not a variable
        ):
            name = n.child_by_field_name("name")
            if name is not None:
                _pattern_names(name, out)
        elif t == "formal_parameters":
            for p in n.named_children:
                _pattern_names(p, out)
        elif t in ("arrow_function", "catch_clause"):
            p = n.child_by_field_name("parameter")
            if p is not None:
                _pattern_names(p, out)
        elif t == "for_in_statement":
            left = n.child_by_field_name("left")
            if left is not None:
                _pattern_names(left, out)
    return out


def _spec_of(node: Any) -> str | None:
    src = node.child_by_field_name("source")
    if src is None:
        return None
    frag = next((c for c in src.named_children if c.type == "string_fragment"), None)
    return _text(frag) if frag is not None else ""


def foreign_names(root: Any) -> set[str]:
    """Names the file imports from packages (``import x, {y} from 'pkg'``,
    ``const z = require('pkg')``): their uses say nothing about the project even when it
    declares the same name. Relative imports are the project's."""
    out: set[str] = set()
    for n in _walk(root):
        if n.type == "import_statement":
            spec = _spec_of(n)
            if spec is None or spec.startswith("."):
                continue
            for c in _walk(n):
                if c.type == "identifier":
                    out.add(_text(c))
        elif n.type == "variable_declarator":
            v = n.child_by_field_name("value")
            name = n.child_by_field_name("name")
            if v is None or name is None or v.type != "call_expression":
                continue
            fn, args = v.child_by_field_name("function"), v.child_by_field_name("arguments")
            if fn is None or fn.text != b"require" or args is None:
                continue
            strings = [c for c in args.named_children if c.type == "string"]
            if strings and not _text(strings[0]).strip("'\"").startswith("."):
                _pattern_names(name, out)
    return out


def _root_name(node: Any) -> str | None:
    """``a`` of ``a.b().c[0].d``."""
    while node is not None:
        if node.type in ("member_expression", "subscript_expression"):
            node = node.child_by_field_name("object")
        elif node.type == "call_expression":
            node = node.child_by_field_name("function")
        elif node.type in ("parenthesized_expression", "non_null_expression"):
            node = node.named_children[0] if node.named_children else None
        else:
            return _text(node) if node.type == "identifier" else None
    return None


def _is_declaration_name(node: Any) -> bool:
    parent = node.parent
    if parent is None:
        return False
    if parent.type in (*_DECLS, *_METHODS, "variable_declarator", "type_parameter"):
        name = parent.child_by_field_name("name")
        return name is not None and name.id == node.id
    return parent.type in ("import_specifier", "import_clause", "namespace_import",
                           "export_specifier", "labeled_statement", "statement_identifier")  # fmt: skip


def referenced_names(
    root: Any, exclude: set[str] | frozenset[str] = frozenset()
) -> dict[int, set[str]]:
    """Line (1-based) → the names a line references: identifiers and type names that are not
    variables (``bound_names``) nor in ``exclude`` nor declaration names, and the names of
    methods called there (``x.name(...)``, on the line of ``name``)."""
    skip = bound_names(root) | set(exclude)
    out: dict[int, set[str]] = {}
    for n in _walk(root):
        t = n.type
        if t in ("identifier", "type_identifier", "shorthand_property_identifier"):
            name = _text(n)
            if name not in skip and not _is_declaration_name(n):
                out.setdefault(n.start_point[0] + 1, set()).add(name)
        elif t in ("call_expression", "new_expression"):
            fn = n.child_by_field_name("function") or n.child_by_field_name("constructor")
            if fn is not None and fn.type == "member_expression":
                prop = fn.child_by_field_name("property")
                if prop is not None and _root_name(fn) not in exclude:
                    out.setdefault(prop.start_point[0] + 1, set()).add(_text(prop))
    return out


def skipped_lines(root: Any, lines: Sequence[str]) -> set[int]:
    """1-based lines that are never tasks: imports, re-exports and ``require`` lines,
    comments, decorators, the headers of declarations (up to the line their body starts on),
    the first line of a type alias, string statements (``'use strict'``)."""
    out: set[int] = set()

    def span(a: int, b: int) -> None:
        out.update(range(a + 1, b + 2))

    for n in _walk(root):
        t = n.type
        if t == "comment":
            # A comment after code on its first line leaves that line a task.
            row, col = n.start_point
            code_before = row < len(lines) and lines[row].encode()[:col].strip() != b""
            span(row + code_before, n.end_point[0])
            continue
        whole = (
            t in ("import_statement", "decorator")
            or (t == "export_statement" and n.child_by_field_name("source") is not None)
            or (t in ("lexical_declaration", "variable_declaration") and is_require(n))
            or (t == "expression_statement" and n.named_children[:1] != []
                and n.named_children[0].type == "string")
        )  # fmt: skip
        if whole:
            span(n.start_point[0], n.end_point[0])
        elif t in _HEADERS:
            body = n.child_by_field_name("body")
            outer = n.parent if n.parent is not None and n.parent.type == "export_statement" else n
            if t == "type_alias_declaration" or body is None:
                span(outer.start_point[0], outer.start_point[0])
            else:
                span(outer.start_point[0], body.start_point[0])
    return out


def classify(
    text: str, others: dict[str, set[str]] | set[str], rel: str = "", language: str | None = None
) -> list[LineInfo]:
    """The task lines of one JS/TS file (as ``quality_tasks.classify``): ``others``, the names
    declared in the project's other files (a set, or rel → names without ``rel``'s own)."""
    tree = parse_file(text, language or language_of(rel))
    if tree is None:
        return []
    root = tree.root_node
    text_lines = text.split("\n")
    return task_lines(
        text_lines,
        cross_names(others, rel),
        declared_names(root),
        referenced_names(root, foreign_names(root)),
        skipped_lines(root, text_lines),
        countable=countable,
        comment=("//", "/*", "*"),
    )


def _declared_ts(rel: str, text: str) -> set[str] | None:
    tree = parse_file(text, language_of(rel))
    if tree is None:
        return None
    return {n for n in declared_names(tree.root_node) if countable(n)}


def scan_ts_project(project: Project) -> ProjectFiles:
    texts, declared = read_project(project, ts_files(project.root), _declared_ts)
    return project_files(project, texts, declared, lambda text, rel: classify(text, declared, rel))


# --------------------------------------------------------------------------- the oracle


def definition_stubs(text: str, names: Sequence[str], language: str = "typescript") -> str | None:
    """The declarations of ``names`` (functions, classes, methods, interfaces, types, enums,
    top-level ``const``) at any depth in a JS/TS text: signatures with ``;`` for bodies, a
    method under its class's first line, a type whole when short, a ``const`` up to its
    function body or its first line."""
    tree = parse_js(text, language)
    if tree is None:
        return None
    lines = text.splitlines()
    wanted = set(names)
    out: list[str] = []
    for n in _walk(tree.root_node):
        outer = n.parent if n.parent is not None and n.parent.type == "export_statement" else n
        if n.type in (*_DECLS, *_METHODS):
            name = n.child_by_field_name("name")
            if name is None or _text(name) not in wanted:
                continue
            closing = None
            if n.type in _METHODS:
                cls = n.parent.parent if n.parent is not None else None
                if cls is not None and cls.type in ("class_declaration", "abstract_class_declaration",
                                                    "class", "interface_declaration"):  # fmt: skip
                    head = lines[cls.start_point[0]].rstrip()
                    out.append(head)
                    closing = " " * (len(head) - len(head.lstrip())) + "}"
            body = n.child_by_field_name("body")
            if n.type in ("class_declaration", "abstract_class_declaration"):
                out.extend(_js_stub(outer, n, lines, 1))  # header, constructor, "}"
            elif n.type in ("interface_declaration", "type_alias_declaration", "enum_declaration"):
                a, b = outer.start_point[0], outer.end_point[0]
                out.extend(lines[a : min(b, a + 29) + 1])
            elif body is None:
                out.append(lines[outer.start_point[0]].rstrip())
            else:
                head = js_header(outer, body, lines)
                if head:
                    out.extend([*head[:-1], head[-1] + ";"])
            if closing is not None:
                out.append(closing)
        elif n.type in ("lexical_declaration", "variable_declaration") and (
            n.parent is not None and n.parent.type in ("program", "export_statement")
        ):
            for d in n.named_children:
                name = d.child_by_field_name("name") if d.type == "variable_declarator" else None
                if name is None or _text(name) not in wanted:
                    continue
                value = d.child_by_field_name("value")
                body = value.child_by_field_name("body") if value is not None else None
                if body is not None and body.start_point[0] > outer.start_point[0]:
                    out.extend(js_header(outer, body, lines))
                else:
                    out.append(lines[outer.start_point[0]].rstrip())
    return "\n".join(out) + "\n" if out else None


_DEFINES = (
    r"^[ \t]*(?:export[ \t]+)?(?:default[ \t]+)?(?:declare[ \t]+)?(?:abstract[ \t]+)?"
    r"(?:async[ \t]+)?(?:function\*?|class|interface|type|enum|const|let|var|namespace)"
    r"[ \t]+{name}\b"
    r"|^[ \t]*(?:(?:public|private|protected|static|readonly|async|override|abstract|get|set)"
    r"[ \t]+)*\*?{name}[ \t]*(?:<[^>\n]*>)?[ \t]*\([^\n]*\)(?:[ \t]*\{{|[ \t]*:[^\n]*[;{{])[ \t]*$"
)


def defines(prompt: str, name: str) -> bool:
    """Whether a JS/TS prompt holds a declaration of ``name`` (see ``definition_stubs``)."""
    return re.search(_DEFINES.format(name=re.escape(name)), prompt, re.M) is not None
