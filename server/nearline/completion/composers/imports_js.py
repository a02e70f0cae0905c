"""JavaScript/TypeScript imports resolved to workspace files as TypeScript resolves relative
imports (``./y.js`` is ``y.ts``, a folder its ``index``, ``require('./y')``), the names taken
from each, names followed through barrels (``export * from``), and a module's stub from its
tree-sitter tree: signatures with ``;`` for bodies."""

from __future__ import annotations

import posixpath
import re
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any

from nearline.completion.composers.base import FileLike, RepoSource
from nearline.completion.composers.imports import import_specs

_JS_SOURCE_EXTS = (".ts", ".tsx", ".mts", ".cts", ".js", ".jsx", ".mjs", ".cjs")
# TypeScript sources import a sibling by the name it has once compiled (``./y.js`` for
# ``y.ts``, as ESM output needs); the source is what the workspace holds.
_JS_COMPILED = {".js": (".ts", ".tsx"), ".jsx": (".tsx",), ".mjs": (".mts",), ".cjs": (".cts",)}


def resolve_js_import(spec: str, current_rel: str, by_rel: dict[str, FileLike]) -> FileLike | None:
    """The workspace file a relative JS/TS import names (``./y``, ``../y.js``, ``./dir``): the
    path as written, the TypeScript source of a compiled name (``./y.js`` → ``y.ts``), the path
    with a source extension, then the directory's ``index`` file."""
    here = PurePosixPath(current_rel).parent.as_posix()
    base = posixpath.normpath(posixpath.join(here, spec))
    if base == ".." or base.startswith("../"):
        return None  # outside the workspace
    base = "" if base == "." else base
    stem, ext = posixpath.splitext(base)
    tries = [base] if base else []
    tries += [stem + e for e in _JS_COMPILED.get(ext, ())]
    tries += [base + e for e in _JS_SOURCE_EXTS] if base else []
    tries += [(base + "/" if base else "") + "index" + e for e in _JS_SOURCE_EXTS]
    return next((by_rel[t] for t in tries if t in by_rel), None)


_JS_IMPORT_CLAUSE = re.compile(
    r"""\bimport\s+(?:type\s+)?([\w$\s,{}*]*?)\s*\bfrom\s*['"](\.{1,2}/[^'"]*)['"]"""
)
_JS_EXPORT_FROM = re.compile(
    r"""\bexport\s+(?:type\s+)?(\{[^}]*\}|\*(?:\s+as\s+[\w$]+)?)\s*from\s*['"](\.{1,2}/[^'"]*)['"]"""
)
_JS_REQUIRE = re.compile(
    r"""\b(?:const|let|var)\s+(\{[^}]*\}|[\w$]+)\s*=\s*require\s*\(\s*['"](\.{1,2}/[^'"]*)['"]\s*\)"""
)
_JS_WORD = re.compile(r"[A-Za-z_$][\w$]*")


def _js_braced_names(group: str, alias: str) -> set[str]:
    """The exported names of ``{ a, b as c, type T }`` (``alias``: ``as`` or ``:``)."""
    out: set[str] = set()
    for item in group.strip().strip("{}").split(","):
        words_ = item.split(alias)[0].split()
        if words_ and words_[0] == "type" and len(words_) > 1:
            words_ = words_[1:]
        if words_ and _JS_WORD.fullmatch(words_[0]):
            out.add(words_[0])
    return out


def js_import_names(query: str) -> dict[str, frozenset[str] | None]:
    """Relative JS/TS import spec → the names taken from it (``import { a, b as c }``,
    ``export { a } from``, ``const { a } = require(...)``; of a module taken whole by a
    default or namespace import or ``const m = require(...)``, the names the text uses as
    ``m.name``), or None where the module is taken whole and used so (``export *``, an alias
    used without a member)."""
    out: dict[str, set[str] | None] = {}

    def members(alias: str) -> set[str] | None:
        used = set(re.findall(rf"(?<![\w$./\\-]){re.escape(alias)}\??\.([A-Za-z_$][\w$]*)", query))
        return used or None

    def add(spec: str, names: set[str] | None) -> None:
        if spec in out and (out[spec] is None or names is None):
            out[spec] = None
            return
        out[spec] = (out.get(spec) or set()) | names if names is not None else None

    for m in _JS_IMPORT_CLAUSE.finditer(query):
        clause, spec = m.groups()
        braced = re.search(r"\{[^}]*\}", clause)
        rest = clause.replace(braced.group(0), "") if braced else clause
        names: set[str] | None = _js_braced_names(braced.group(0), " as ") if braced else set()
        aliases = _JS_WORD.findall(rest.replace("*", " ").replace(" as ", " "))
        for alias in (a for a in aliases if a != "as"):  # default or namespace import
            used = members(alias)
            if used is None or names is None:
                names = None
                break
            names |= used
        add(spec, names)
    for m in _JS_EXPORT_FROM.finditer(query):
        group, spec = m.groups()
        add(spec, _js_braced_names(group, " as ") if group.startswith("{") else None)
    for m in _JS_REQUIRE.finditer(query):
        group, spec = m.groups()
        add(spec, _js_braced_names(group, ":") if group.startswith("{") else members(group))
    return {k: (frozenset(v) if v is not None else None) for k, v in out.items()}


def resolve_js_imports(
    query: str, current_rel: str, files: Sequence[FileLike], language: str = "typescript"
) -> list[tuple[FileLike, frozenset[str]]]:
    """The workspace files the JS/TS text imports by relative path, in the order imported,
    each with the names taken from it (empty: the module whole, as ``resolve_imports``)."""
    by_rel = {f.rel: f for f in files}
    names = js_import_names(query)
    found: dict[str, tuple[FileLike, frozenset[str] | None]] = {}
    for spec in import_specs(query, language):
        f = resolve_js_import(spec, current_rel, by_rel)
        if f is None or f.rel == current_rel:
            continue
        want = names.get(spec)  # a bare ``import './y'`` or ``import('./y')``: whole
        if f.rel not in found:
            found[f.rel] = (f, want)
        elif (had := found[f.rel][1]) is not None:
            found[f.rel] = (f, None if want is None else had | want)
    return [(f, n or frozenset()) for f, n in found.values()]


_js_defined_cache: OrderedDict[tuple[str, str], frozenset[str] | None] = OrderedDict()


def js_defined_names(text: str, language: str) -> frozenset[str] | None:
    """Names a JS/TS module declares at its top level (None without a grammar); remembered
    for the last 256 texts."""
    key = (text, language)
    if key in _js_defined_cache:
        _js_defined_cache.move_to_end(key)
        return _js_defined_cache[key]
    tree = parse_js(text, language)
    out = None
    if tree is not None:
        out = frozenset(n for _, _, names in js_declarations(tree.root_node) for n in names)
    _js_defined_cache[key] = out
    while len(_js_defined_cache) > 256:
        _js_defined_cache.popitem(last=False)
    return out


def _js_reexports(
    text: str, current_rel: str, files: Sequence[FileLike]
) -> list[tuple[FileLike, frozenset[str]]]:
    """The modules a JS/TS text re-exports from (``export * from``, ``export { a } from``)."""
    by_rel = {f.rel: f for f in files}
    out: list[tuple[FileLike, frozenset[str]]] = []
    for m in _JS_EXPORT_FROM.finditer(text):
        group, spec = m.groups()
        f = resolve_js_import(spec, current_rel, by_rel)
        if f is not None:
            names = _js_braced_names(group, " as ") if group.startswith("{") else set()
            out.append((f, frozenset(names)))
    return out


def follow_js_reexports(
    imported: Sequence[tuple[FileLike, frozenset[str]]],
    source: RepoSource,
    files: Sequence[FileLike],
    hops: int = 2,
) -> list[tuple[FileLike, frozenset[str]]]:
    """JS/TS: names imported from a module that only re-exports them (an ``index.ts`` or
    ``internal.ts`` of ``export * from './x'`` and ``export { a } from './y'``) are looked up
    in the modules it re-exports, up to ``hops`` modules further; such a barrel is left out
    when it declares none of them. A module whose names are found nowhere stays as it is."""
    found: dict[str, tuple[FileLike, set[str]]] = {}
    # (file, names, hops left, whether the names were re-exported from it by name).
    pending = [(f, set(names), hops, True) for f, names in imported]
    i = 0
    while i < len(pending):
        f, names, left, sure = pending[i]
        i += 1
        text = source.text(f.path) if names else None
        declared = js_defined_names(text, f.language) if text else None
        if declared is None or not text:
            if not sure:
                continue
            found.setdefault(f.rel, (f, set()))[1].update(names)
            continue
        here, moved = names & declared, names - declared
        forwarded = False
        if moved and left > 0:
            for g, gnames in _js_reexports(text, f.rel, files):
                # ``export *`` (no names): any of them may be there; the next hop keeps the
                # names it declares.
                take = moved & gnames if gnames else set(moved)
                if take and g.rel != f.rel:
                    pending.append((g, take, left - 1, bool(gnames)))
                    forwarded = True
        if here or (sure and not forwarded):
            found.setdefault(f.rel, (f, set()))[1].update(here or names)
    return [(f, frozenset(names)) for f, names in found.values()]


_JS_FUNCTIONS = ("function_declaration", "generator_function_declaration")
_JS_CLASSES = ("class_declaration", "abstract_class_declaration")
_JS_TYPES = ("interface_declaration", "type_alias_declaration", "enum_declaration")
_JS_FUNCTION_VALUES = ("arrow_function", "function_expression", "function", "generator_function")
_JS_WHOLE_TYPE_LINES = 30


def js_header(outer: Any, body: Any | None, lines: Sequence[str]) -> list[str]:
    """The lines of a declaration from ``outer``'s start (``export``, decorators) up to where
    ``body`` starts (its first line when there is no body), trailing space cut."""
    first = outer.start_point[0]
    if body is None:
        return [lines[first].rstrip()] if first < len(lines) else []
    last, col = body.start_point
    out = list(lines[first : last + 1])
    if out:
        # tree-sitter's columns count UTF-8 bytes.
        cut = out[-1].encode("utf-8")[:col].decode("utf-8", "ignore")
        out[-1] = cut.rstrip() if last > first or col else out[-1]
        if not out[-1].strip():
            out.pop()
    return out


def _js_member_stubs(body: Any, lines: Sequence[str], level: int) -> list[str]:
    """A class body's public members: method signatures (``;`` for the body) and fields;
    ``level`` 1: the constructor only."""
    out: list[str] = []
    for m in body.named_children:
        name_node = m.child_by_field_name("name")
        name = name_node.text.decode("utf-8", "replace") if name_node is not None else ""
        private = name.startswith(("#", "_")) or any(
            c.type == "accessibility_modifier" and c.text in (b"private", b"protected")
            for c in m.children
        )
        if private or (level and name != "constructor"):
            continue
        if m.type == "method_definition":
            head = js_header(m, m.child_by_field_name("body"), lines)
            if head:
                out.extend([*head[:-1], head[-1] + ";"])
        elif m.type in ("method_signature", "abstract_method_signature", "public_field_definition",
                        "field_definition"):  # fmt: skip
            out.append(lines[m.start_point[0]].rstrip())
    return out


def _js_stub(outer: Any, decl: Any, lines: Sequence[str], level: int) -> list[str]:
    """One top-level declaration as a stub: signatures with ``;`` for bodies, a class with its
    public members, a type whole when short; ``level`` 2: the first line only."""
    first = lines[outer.start_point[0]].rstrip() if outer.start_point[0] < len(lines) else ""
    if level >= 2:
        return [first]
    if decl.type in _JS_FUNCTIONS:
        head = js_header(outer, decl.child_by_field_name("body"), lines)
        return [*head[:-1], head[-1] + ";"] if head else []
    if decl.type in _JS_CLASSES:
        body = decl.child_by_field_name("body")
        head = js_header(outer, body, lines)
        # A class on one line is its own stub (its members' lines are that line again).
        if not head or body is None or body.start_point[0] == body.end_point[0]:
            return [first]
        indent = " " * (len(head[0]) - len(head[0].lstrip()))
        return [*head[:-1], head[-1] + " {", *_js_member_stubs(body, lines, level), indent + "}"]
    if decl.type in _JS_TYPES:
        a, b = outer.start_point[0], outer.end_point[0]
        return list(lines[a : b + 1]) if level == 0 and b - a < _JS_WHOLE_TYPE_LINES else [first]
    if decl.type in ("lexical_declaration", "variable_declaration"):
        value = next(
            (d.child_by_field_name("value") for d in decl.named_children
             if d.type == "variable_declarator"), None,
        )  # fmt: skip
        if value is not None and value.type in _JS_FUNCTION_VALUES:
            body = value.child_by_field_name("body")
            if body is not None:
                head = js_header(outer, body, lines)
                return [*head[:-1], head[-1] + " ..."] if head else [first]
        return [first]
    return [first]


def is_require(decl: Any) -> bool:
    """A ``const x = require('...')`` declaration: an import, not a definition."""
    for d in decl.named_children:
        value = d.child_by_field_name("value") if d.type == "variable_declarator" else None
        if value is not None and value.type == "call_expression":
            fn = value.child_by_field_name("function")
            if fn is not None and fn.text == b"require":
                return True
    return False


def js_declarations(root: Any) -> list[tuple[Any, Any, list[str]]]:
    """A JS/TS program's top-level declarations: (node with ``export``, declaration, names)."""
    out: list[tuple[Any, Any, list[str]]] = []
    for child in root.named_children:
        decl = (
            child.child_by_field_name("declaration") if child.type == "export_statement" else child
        )
        if decl is None:
            continue
        if decl.type in ("lexical_declaration", "variable_declaration"):
            if is_require(decl):
                continue
            names = [
                n.text.decode("utf-8", "replace")
                for d in decl.named_children
                if d.type == "variable_declarator"
                and (n := d.child_by_field_name("name")) is not None
                and n.type == "identifier"
            ]
        elif decl.type in (*_JS_FUNCTIONS, *_JS_CLASSES, *_JS_TYPES, "function_signature"):
            n = decl.child_by_field_name("name")
            names = [n.text.decode("utf-8", "replace")] if n is not None else []
        else:
            continue
        out.append((child, decl, names))
    return out


def parse_js(text: str, language: str) -> Any | None:
    """The tree-sitter tree of a JS/TS text (None without the grammar)."""
    from nearline.completion.syntax import ts_language

    lang = ts_language(language)
    if lang is None:
        return None
    import tree_sitter

    return tree_sitter.Parser(lang).parse(text.encode("utf-8"))


_js_outline_cache: OrderedDict[tuple[str, frozenset[str], int, str], str | None] = OrderedDict()


def js_outline(
    text: str, names: frozenset[str] = frozenset(), *, level: int = 0, language: str = "typescript"
) -> str | None:
    """A stub of a JS/TS module (as ``python_outline``): its top-level functions' and
    classes' signatures with ``;`` for bodies, a class's public members, short types whole,
    other declarations' first lines; only those of ``names`` when given (and any found).
    ``level`` 1: of a class's members only the constructor; 2: first lines only. None without
    a grammar or declarations. Remembered for the last 256 (text, names, level, language)."""
    key = (text, names, level, language)
    if key in _js_outline_cache:
        _js_outline_cache.move_to_end(key)
        return _js_outline_cache[key]
    tree = parse_js(text, language)
    out: str | None = None
    if tree is not None:
        lines = text.splitlines()
        items = js_declarations(tree.root_node)
        chosen = [it for it in items if names & set(it[2])] if names else items
        stub = [
            ln for outer, decl, _ in (chosen or items) for ln in _js_stub(outer, decl, lines, level)
        ]
        out = "\n".join(stub) + "\n" if stub else None
    _js_outline_cache[key] = out
    while len(_js_outline_cache) > 256:
        _js_outline_cache.popitem(last=False)
    return out
