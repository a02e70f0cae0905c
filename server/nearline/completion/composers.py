"""Which text goes into the prompt: the current file's prefix (and suffix) under a token budget,
and repository context chosen by a composer.

Composers (``context.composer``), each ``(ComposeRequest, RepoSource, count) -> [RepoFile]``
with the file to put nearest the current one last:

* ``file-level`` — the file prefix only (the research baseline);
* ``path-distance`` (the default) — the files the current file imports (Python ``import`` /
  ``from … import``, relative or absolute, found by path in the workspace; JS/TS relative
  imports) nearest of all: a stub of the names imported from a module (their signatures, bodies
  replaced by ``...``), a module imported whole goes in whole (or as its stub when it does not
  fit); then the other files by path distance, farthest first and nearest last;
* ``ring-buffer`` — llama.vim's extra context (autoload/llama.vim: ``s:pick_chunk``,
  ``s:chunk_sim``, ``s:ring_update``, defaults ``ring_n_chunks`` 16, ``ring_chunk_size`` 64): a
  ring of at most 16 chunks from the recently used documents (``ComposeRequest.recent``), the
  most recent nearest; a document shorter than 63 lines is one chunk, a longer one gives 33 lines
  (chunk_size/2 + 1, as llama.vim's inclusive slice); chunks more than 90% alike evict the older
  one, and chunks more than 50% alike the last 33 lines before the cursor are dropped (as
  llama.vim does before each request). llama.vim takes a chunk around the cursor, starting at a
  random line, when a buffer is entered, left or saved, on yanks and after completions; the
  server knows no cursors in other files, so a document's chunk is taken from its top;
* ``bm25`` — CrossCodeEval's retrieval setting: same-language files cut into windows of 20
  lines every 10, ranked by Okapi BM25 against the last 24 lines before the cursor; the top 5
  (windows of one file do not overlap), at most 512 tokens (the one that crosses the cap is cut
  to its end), the best nearest the current file.
  Its block changes with the lines before the cursor: it is recomposed once per line (the
  others only when the workspace, the imports or the recent documents change), so the KV cache
  is re-read more often.

Budget: ``budget`` tokens in all (the service's ``build_prompt``). While repository context is
available the prefix may take at most ``context.prefixShare`` of the budget (cut from the top at
a line boundary, in steps of ``PREFIX_CUT_STEP`` lines) while the composer fills the rest; what
the composer leaves goes back to the prefix (1.0, the default: the prefix first). Repository files
fill their room nearest-first; the last one that does not fit is cut at a line boundary,
keeping its end (the part nearest to what follows it in the prompt).

Model-free measure at a 1K budget: of 255 lines of click, attrs and pluggy that use a name
defined at the top level of another project file (and not bound in their own), the share whose
name is in the repository part of the prompt: file-level 0%, path-distance with the prefix first
12%, with imports first 48%, with a prefix share of 0.5 37%, with both 66% (shares 0.3 / 0.7:
70% / 62%); bm25 37%, ring-buffer 44% (the three nearest files as the recent ones).

KV cache: the repository block is recomposed only when what it depends on changes (see the
service's ``_compose_key``): the workspace, the imports (path-distance), the recent documents
(ring-buffer), the lines before the cursor (bm25). Choices that look at the text before the
cursor beyond that (which imported names were used last, the ring buffer's eviction of chunks
like it) are made when the block is composed and kept until it is recomposed.
"""

from __future__ import annotations

import ast
import math
import posixpath
import re
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, assert_never

from nearline.completion.prompt import RepoFile
from nearline.config import COMPOSERS as COMPOSER_NAMES
from nearline.config import ComposerName

CountTokens = Callable[[str], int]

# The prefix cut moves in steps of this many lines, so that while typing the start of the
# prompt stays put and the KV cache stays valid (a moving cut would invalidate everything after it).
PREFIX_CUT_STEP = 16


class FileLike(Protocol):
    @property
    def path(self) -> Path: ...
    @property
    def rel(self) -> str: ...
    @property
    def language(self) -> str: ...


class RepoSource(Protocol):
    """What a composer needs from the workspace index."""

    def files(self, language: str | None = None) -> Sequence[FileLike]: ...
    def text(self, path: Path) -> str | None: ...
    def tokens_for(self, path: Path) -> int: ...


def path_distance(a: str, b: str) -> int:
    """Steps through the directory tree from file ``a`` to file ``b``:
    (parts(a) − common − 1) + (parts(b) − common − 1), ``common`` = shared leading components."""
    pa, pb = PurePosixPath(a).parts, PurePosixPath(b).parts
    common = 0
    for x, y in zip(pa[:-1], pb[:-1], strict=False):
        if x != y:
            break
        common += 1
    return (len(pa) - common - 1) + (len(pb) - common - 1)


def tail_lines_within(
    text: str, budget: int, count: CountTokens, total: int | None = None
) -> tuple[str, int]:
    """The longest tail of ``text`` starting at a line boundary whose token count fits
    (``total``: the text's count, when known)."""
    if budget <= 0 or not text:
        return "", 0
    total = count(text) if total is None else total
    if total <= budget:
        return text, total
    lines = text.splitlines(keepends=True)
    # Walk lines from the end using per-line counts (cheap), then confirm with an exact count;
    # BPE merges rarely cross a newline, so the estimate is almost always exact.
    acc, start = 0, len(lines)
    while start > 0:
        c = count(lines[start - 1])
        if acc + c > budget:
            break
        acc += c
        start -= 1
    tail = "".join(lines[start:])
    exact = count(tail)
    while exact > budget and start < len(lines):
        start += 1
        tail = "".join(lines[start:])
        exact = count(tail)
    return tail, exact


def cut_prefix(
    prefix: str, budget: int, count: CountTokens, total: int | None = None
) -> tuple[str, int, int]:
    """Cut the file prefix from the top at a line boundary so it fits ``budget``
    (``total``: the prefix's count, when known).

    Returns (text, tokens, first_line_kept). The cut line is rounded up to a multiple of
    ``PREFIX_CUT_STEP`` so it stays still for many keystrokes.
    """
    total = count(prefix) if total is None else total
    if total <= budget:
        return prefix, total, 0
    lines = prefix.splitlines(keepends=True)
    tail, _ = tail_lines_within(prefix, budget, count, total)
    first = len(lines) - len(tail.splitlines(keepends=True))
    # Never cut into the cursor's own line.
    first = min(len(lines) - 1, -(-first // PREFIX_CUT_STEP) * PREFIX_CUT_STEP)
    text = "".join(lines[first:])
    tokens = count(text)
    while tokens > budget and first < len(lines) - 1:
        first += 1
        text = "".join(lines[first:])
        tokens = count(text)
    if tokens > budget:
        # A single cursor line longer than the whole budget: keep its end, shrunk until it fits
        # (a character may be several tokens: CJK, emoji). Whatever is over the budget the
        # engine would cut from the prompt's start, taking the repository and the FIM tokens.
        text = text[-budget * 2 :]
        tokens = count(text)
        while tokens > budget and text:
            text = text[len(text) - int(len(text) * budget / tokens * 0.9) :]
            tokens = count(text) if text else 0
    return text, tokens, first


@dataclass(frozen=True)
class ComposeRequest:
    current_rel: str
    current_path: Path
    language: str
    budget: int
    """Tokens available for repository files (already net of prefix, suffix and framing)."""
    same_language: bool = True
    query: str = ""
    """The current file's text before the cursor (the service passes the prefix window up to
    the start of the cursor's line, so it changes once per line, not per keystroke)."""
    recent: tuple[str, ...] = ()
    """Workspace-relative paths of recently opened/used documents, most recent last."""


def frame_cost(path: str, count: CountTokens) -> int:
    """Tokens of one file's framing (separator + path line): the separator is one token."""
    return 1 + count(path + "\n")


def _candidates(req: ComposeRequest, source: RepoSource) -> list[FileLike]:
    """Repository files a composer may use: not the current file, same language if asked."""
    return [
        f
        for f in source.files(req.language if req.same_language else None)
        if f.path != req.current_path and f.rel != req.current_rel
    ]


def _fill(
    ordered: Sequence[FileLike], source: RepoSource, count: CountTokens, budget: int
) -> list[RepoFile]:
    """Whole files in the given order (the first is nearest the current file) while they fit;
    the first that does not is cut at a line boundary keeping its end. Returned farthest first."""
    chosen: list[RepoFile] = []
    left = budget
    for f in ordered:
        framing = frame_cost(f.rel, count)
        if left <= framing:
            break
        text = source.text(f.path)
        if not text:
            continue
        tokens = source.tokens_for(f.path)
        if tokens + framing <= left:
            chosen.append(RepoFile(f.rel, text, tokens))
            left -= tokens + framing
            continue
        tail, n = tail_lines_within(text, left - framing, count)
        if tail.strip():
            chosen.append(RepoFile(f.rel, tail, n, truncated=True))
        break
    chosen.reverse()
    return chosen


# -- imports of the current file ------------------------------------------------------------

_PY_FROM = re.compile(
    r"^[ \t]*from[ \t]+(\.*)([\w.]*)[ \t]+import[ \t]+(?:\(([^)]*)\)|([^#\n]*))", re.M
)
_PY_IMPORT = re.compile(r"^[ \t]*import[ \t]+([\w. \t,]+)", re.M)
_JS_FROM = re.compile(
    r"""(?:\bfrom[ \t]*|\bimport[ \t]*\(?[ \t]*|\brequire[ \t]*\([ \t]*)['"](\.{1,2}/[^'"]*)['"]"""
)
JS_LANGUAGES = frozenset({"javascript", "typescript", "javascriptreact", "typescriptreact"})
_JS_SOURCE_EXTS = (".ts", ".tsx", ".mts", ".cts", ".js", ".jsx", ".mjs", ".cjs")
# TypeScript sources import a sibling by the name it has once compiled (``./y.js`` for
# ``y.ts``, as ESM output needs); the source is what the workspace holds.
_JS_COMPILED = {".js": (".ts", ".tsx"), ".jsx": (".tsx",), ".mjs": (".mts",), ".cjs": (".cts",)}
_NAME = re.compile(r"[A-Za-z_]\w*")


def import_specs(query: str, language: str) -> tuple[str, ...]:
    """The modules the text imports, as written, in order: ``.a.b`` / ``pkg.mod`` (Python;
    ``from m import x`` gives ``m`` and ``m.x``, since ``x`` may be a submodule), ``./x``
    (JavaScript/TypeScript relative imports)."""
    found: list[tuple[int, str]] = []
    if language == "python":
        for m in _PY_FROM.finditer(query):
            dots, mod, group, line = m.groups()
            base = dots + mod
            found.append((m.start(), base))
            sep = "" if base.endswith(".") else "."
            names = re.sub(r"#[^\n]*", "", group) if group is not None else line
            for name in names.split(","):
                name = name.split()[0] if name.strip() else ""
                if _NAME.fullmatch(name):
                    found.append((m.start(), base + sep + name))
        for m in _PY_IMPORT.finditer(query):
            for part in m.group(1).split(","):
                words_ = part.split()
                if words_ and all(_NAME.fullmatch(w) for w in words_[0].split(".")):
                    found.append((m.start(), words_[0]))
    elif language in JS_LANGUAGES:
        found.extend((m.start(), m.group(1)) for m in _JS_FROM.finditer(query))
    found.sort(key=lambda x: x[0])  # stable: names stay after their module
    return tuple(dict.fromkeys(spec for _, spec in found))


def resolve_imports(
    specs: Sequence[str], current_rel: str, files: Sequence[FileLike]
) -> list[tuple[FileLike, frozenset[str]]]:
    """Workspace files the import specs name, in the order imported, each with the names
    imported from it (``from m import a, b``; empty: the module itself). Relative imports
    resolve from the current file's directory; absolute ones match a file whose path ends with
    the module's path (``pkg/mod.py`` also under ``src/``), nearest to the current file first."""
    by_rel = {f.rel: f for f in files}
    here = PurePosixPath(current_rel).parent
    # Module name -> files that may be it (``name.py``, ``name/__init__.py``).
    by_module: dict[str, list[FileLike]] = {}
    for file in files:
        pp = PurePosixPath(file.rel)
        if pp.name == "__init__.py" and pp.parent.name:
            by_module.setdefault(pp.parent.name, []).append(file)
        elif pp.suffix == ".py":
            by_module.setdefault(pp.stem, []).append(file)

    def one(spec: str) -> FileLike | None:
        if spec.startswith(("./", "../")):  # JS/TS
            return resolve_js_import(spec, current_rel, by_rel)
        dots = len(spec) - len(spec.lstrip("."))
        parts = [p for p in spec[dots:].split(".") if p]
        if dots:
            base_dir = here
            for _ in range(dots - 1):
                base_dir = base_dir.parent
            stem = (base_dir / "/".join(parts)).as_posix().removeprefix("./")
            if stem == ".":
                stem = ""
            if not parts:
                return by_rel.get((stem + "/" if stem else "") + "__init__.py")
            return by_rel.get(stem + ".py") or by_rel.get(stem + "/__init__.py")
        if not parts:
            return None
        tails = ("/".join(parts) + ".py", "/".join(parts) + "/__init__.py")
        hits = [
            f
            for f in by_module.get(parts[-1], ())
            if any(f.rel == t or f.rel.endswith("/" + t) for t in tails)
        ]
        if not hits:
            return None
        return min(hits, key=lambda f: (path_distance(current_rel, f.rel), f.rel))

    found: dict[str, tuple[FileLike, set[str]]] = {}
    modules: dict[str, FileLike | None] = {}
    for spec in specs:
        f = modules[spec] = one(spec)
        if f is not None:
            # ``from . import views``: the package itself only if a name is taken from it.
            parent = spec if spec.endswith(".") else spec + "."
            if f.rel != current_rel and not any(s.startswith(parent) for s in specs):
                found.setdefault(f.rel, (f, set()))
            continue
        if spec.startswith(("./", "../")):
            continue  # JS/TS: ``./y.js`` is a path, not a module ``./y`` with a name ``js``
        # ``from m import name`` where ``name`` is not a submodule: a name defined in ``m``.
        parent, dot, name = spec.rpartition(".")
        if not dot or not name:
            continue
        if not parent.strip("."):
            parent += "."  # ``from . import name``
        owner = modules[parent] if parent in modules else one(parent)
        if owner is not None and owner.rel != current_rel:
            found.setdefault(owner.rel, (owner, set()))[1].add(name)
    return [(f, frozenset(names)) for f, names in found.values()]


# -- JavaScript / TypeScript imports ---------------------------------------------------------


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
        if not head or body is None:
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


def outline(text: str, names: frozenset[str], language: str, level: int = 0) -> str | None:
    """The stub of a module in its language (Python or JS/TS); None for other languages."""
    if language == "python":
        return python_outline(text, names, level=level)
    if language in JS_LANGUAGES:
        return js_outline(text, names, level=level, language=language)
    return None


_defined_cache: OrderedDict[str, frozenset[str] | None] = OrderedDict()


def defined_names(text: str) -> frozenset[str] | None:
    """Names a Python module defines at its top level (classes, functions, assignments);
    None when it does not parse. Remembered for the last 256 texts."""
    if text in _defined_cache:
        _defined_cache.move_to_end(text)
        return _defined_cache[text]
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError):
        out = None
    else:
        names: set[str] = set()
        for n in tree.body:
            if isinstance(n, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                names.add(n.name)
            elif isinstance(n, ast.Assign | ast.AnnAssign):
                targets = n.targets if isinstance(n, ast.Assign) else [n.target]
                names.update(t.id for t in targets if isinstance(t, ast.Name))
        out = frozenset(names)
    _defined_cache[text] = out
    while len(_defined_cache) > 256:
        _defined_cache.popitem(last=False)
    return out


def follow_reexports(
    imported: Sequence[tuple[FileLike, frozenset[str]]],
    source: RepoSource,
    files: Sequence[FileLike],
    hops: int = 2,
) -> list[tuple[FileLike, frozenset[str]]]:
    """Python: names imported from a module that only re-exports them (``pkg/__init__.py``,
    a compatibility module) are looked up where that module imports them from, up to ``hops``
    modules further; a module none of whose imported names it defines is left out."""
    found: dict[str, tuple[FileLike, set[str]]] = {}
    pending = [(f, set(names), hops) for f, names in imported]
    i = 0
    while i < len(pending):
        f, names, left = pending[i]
        i += 1
        text = source.text(f.path) if names and left > 0 else None
        defined = defined_names(text) if text else None
        if defined is not None:
            moved = names - defined
            for g, gnames in resolve_imports(import_specs(text or "", "python"), f.rel, files):
                if take := gnames & moved:
                    pending.append((g, set(take), left - 1))
                    moved -= take
            names = names - (names - defined - moved)
            if not names:
                continue
        found.setdefault(f.rel, (f, set()))[1].update(names)
    return [(f, frozenset(names)) for f, names in found.values()]


_outline_cache: OrderedDict[tuple[str, frozenset[str], int], str | None] = OrderedDict()


def python_outline(text: str, names: frozenset[str] = frozenset(), *, level: int = 0) -> str | None:
    """``_python_outline``, remembered for the last 256 (text, names, level)."""
    key = (text, names, level)
    if key in _outline_cache:
        _outline_cache.move_to_end(key)
        return _outline_cache[key]
    out = _outline_cache[key] = _python_outline(text, names, level)
    while len(_outline_cache) > 256:
        _outline_cache.popitem(last=False)
    return out


def _python_outline(text: str, names: frozenset[str], level: int) -> str | None:
    """A stub of a Python module: its classes' and functions' signature lines (with the first
    line of a docstring), public methods included, bodies replaced by ``...``, and its top-level
    assignments' first lines. Only the definitions of ``names`` when given (and any found).
    ``level`` 1: no docstrings, and of a class's methods only ``__init__``; 2: the first line of
    each definition only. None when the text does not parse."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError):
        return None
    lines = text.splitlines()
    out: list[str] = []

    def signature(node: ast.AST, depth: int) -> None:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            if depth and node.name != "__init__" and (level or node.name.startswith("_")):
                return
            if level >= 2:
                out.append(lines[node.lineno - 1])
                return
            first = node.lineno - 1
            body = node.body[0]
            last = max(first, body.lineno - 2)
            if body.lineno - 1 == first:  # ``def f(): return 1`` on one line
                out.append(lines[first])
                return
            out.extend(lines[first : last + 1])
            indent = " " * (body.col_offset if body.col_offset else node.col_offset + 4)
            doc = None if level else ast.get_docstring(node, clean=True)
            if doc:
                out.append(f'{indent}"""{doc.splitlines()[0]}"""')
            if isinstance(node, ast.ClassDef) and depth == 0:
                n = len(out)
                for child in node.body:
                    signature(child, depth + 1)
                if len(out) == n and not doc:
                    out.append(indent + "...")
            else:
                out.append(indent + "...")
        elif depth == 0 and isinstance(node, ast.Assign | ast.AnnAssign):
            out.append(lines[node.lineno - 1])

    chosen = tree.body
    if names:
        wanted = [
            n
            for n in tree.body
            if (getattr(n, "name", None) in names)
            or (
                isinstance(n, ast.Assign | ast.AnnAssign)
                and any(
                    isinstance(t, ast.Name) and t.id in names
                    for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
                )
            )
        ]
        chosen = wanted or tree.body
    for node in chosen:
        signature(node, 0)
    return "\n".join(out) + "\n" if out else None


def _past_imports(text: str) -> int:
    """Where the text after its last unindented import statement begins (0 if none)."""
    end = 0
    for pattern in (_PY_FROM, _PY_IMPORT):
        for m in pattern.finditer(text):
            if text[m.start()] not in " \t":
                end = max(end, m.end())
    return end


def compose_path_distance(
    req: ComposeRequest, source: RepoSource, count: CountTokens
) -> list[RepoFile]:
    """The files the current file imports nearest to it, then the other files by path
    distance, farthest first and nearest last. An imported file goes in as a stub of the names
    imported from it (``from m import a, b``: their signatures; shorter when it does not fit),
    or whole (``import m``; its stub when it does not fit). The stubs come first (nearest),
    and within each group the file whose names were used last before the cursor."""
    if req.budget <= 0:
        return []
    candidates = _candidates(req, source)
    if req.language in JS_LANGUAGES:
        imported = resolve_js_imports(req.query, req.current_rel, candidates, req.language)
        imported = follow_js_reexports(imported, source, candidates)
    else:
        imported = resolve_imports(
            import_specs(req.query, req.language), req.current_rel, candidates
        )
    if req.language == "python":
        imported = follow_reexports(imported, source, candidates)
    chosen: list[RepoFile] = []
    left = req.budget
    # The stubs of imported names first (small, and what the code at hand calls), then the
    # modules imported whole; each group by where its names were last used before the cursor.
    body_start = _past_imports(req.query)

    def last_use(fn: tuple[FileLike, frozenset[str]]) -> int:
        f, names = fn
        words_ = names or {PurePosixPath(f.rel).stem}
        pat = re.compile(r"\b(?:" + "|".join(map(re.escape, sorted(words_))) + r")\b")
        last = -1
        for m in pat.finditer(req.query, body_start):
            last = m.start()
        return last

    imported.sort(key=lambda fn: (not fn[1], -last_use(fn)))
    for f, names in imported:
        framing = frame_cost(f.rel, count)
        text = source.text(f.path)
        if left <= framing or not text:
            continue
        tokens = source.tokens_for(f.path)
        short = None
        if names or tokens + framing > left:
            short = outline(text, names, f.language)
            if short is None and tokens + framing > left:
                continue
        if short is not None:
            n = count(short)
            # Signatures without docstrings and methods but ``__init__``; first lines only.
            for level in (1, 2):
                if n + framing <= left:
                    break
                short = outline(text, names, f.language, level) or short
                n = count(short)
            text, tokens = short, n
            if n + framing > left:
                text, tokens = tail_lines_within(short, left - framing, count)
            if not text.strip():
                continue
        chosen.append(RepoFile(f.rel, text, tokens, truncated=short is not None))
        left -= tokens + framing
    seen = {f.rel for f, _ in imported}
    rest = [f for f in candidates if f.rel not in seen]
    # Nearest first for filling; ties broken by path so the result is deterministic.
    rest.sort(key=lambda f: (path_distance(req.current_rel, f.rel), f.rel))
    # Farthest first: the imported files (filled first) sit nearest the current file.
    return _fill(rest, source, count, left) + chosen[::-1]


# -- ring buffer (llama.vim) ----------------------------------------------------------------

RING_CHUNKS = 16
RING_CHUNK_LINES = 64  # llama.vim's ring_chunk_size
RING_PIECE = RING_CHUNK_LINES // 2 + 1
_WORD_SPLIT = re.compile(r"\W+")


def chunk_sim(c0: str, c1: str) -> float:
    """llama.vim's ``s:chunk_sim``: 2 x (words of ``c1`` also in ``c0``) / (words of both),
    words split at ``\\W+``; 1.0 for two empty chunks."""
    t0 = [t for t in _WORD_SPLIT.split(c0) if t]
    t1 = [t for t in _WORD_SPLIT.split(c1) if t]
    if not t0 and not t1:
        return 1.0
    s0 = set(t0)
    common = sum(1 for t in t1 if t in s0)
    return 2.0 * common / (len(t0) + len(t1))


def compose_ring_buffer(
    req: ComposeRequest, source: RepoSource, count: CountTokens
) -> list[RepoFile]:
    """llama.vim's extra context: a ring of chunks from recently used files, the most recent
    nearest the current file."""
    if req.budget <= 0 or not req.recent:
        return []
    by_rel = {f.rel: f for f in _candidates(req, source)}
    ring: list[tuple[str, str, bool]] = []  # (rel, chunk, a piece of the file), oldest first
    for rel in list(dict.fromkeys(reversed(req.recent)))[::-1]:  # a path's last use counts
        f = by_rel.get(rel)
        if f is None:
            continue
        text = source.text(f.path)
        lines = text.splitlines(keepends=True) if text else []
        if len(lines) < 3:  # llama.vim: "don't pick very small chunks"
            continue
        # llama.vim's s:pick_chunk: a text shorter than the chunk size whole, else a piece of
        # chunk_size/2 + 1 lines (a Vim slice includes its end) of the window around the
        # cursor; its piece starts at random, this one at the top of the file.
        piece = len(lines) + 1 >= RING_CHUNK_LINES
        chunk = "".join(lines[:RING_PIECE] if piece else lines)
        if any(c == chunk for _, c, _ in ring):
            continue
        # Evict older chunks very similar to the new one (llama.vim: > 0.9).
        ring = [e for e in ring if chunk_sim(e[1], chunk) <= 0.9]
        ring.append((rel, chunk, piece))
        del ring[:-RING_CHUNKS]
    if req.query:
        # Evict chunks very similar to the text around the cursor (llama.vim: > 0.5): they
        # make the model repeat what is already there.
        here = "".join(req.query.splitlines(keepends=True)[-RING_PIECE:])
        ring = [e for e in ring if chunk_sim(e[1], here) <= 0.5]
    chosen: list[RepoFile] = []
    left = req.budget
    for rel, chunk, piece in reversed(ring):
        framing = frame_cost(rel, count)
        if left <= framing:
            break
        n = count(chunk)
        if n + framing <= left:
            chosen.append(RepoFile(rel, chunk, n, truncated=piece))
            left -= n + framing
            continue
        tail, n = tail_lines_within(chunk, left - framing, count)
        if tail.strip():
            chosen.append(RepoFile(rel, tail, n, truncated=True))
        break
    chosen.reverse()
    return chosen


# -- BM25 retrieval (CrossCodeEval) ---------------------------------------------------------

BM25_WINDOW = 20
BM25_STRIDE = 10
BM25_TOP = 5
BM25_MAX_TOKENS = 512
BM25_QUERY_LINES = 24
BM25_K1 = 1.5
BM25_B = 0.75
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+")


def code_tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


@dataclass(frozen=True)
class Snippet:
    rel: str
    start: int  # first line, 0-based
    end: int  # one past the last line
    text: str
    tf: Counter[str]
    length: int


_snippet_cache: OrderedDict[tuple[str, str], list[Snippet]] = OrderedDict()
_SNIPPET_CACHE_CHARS = 32 << 20
_snippet_chars = 0
# BM25 looks at no more files than this, the nearest by path distance (one ranking per line).
BM25_MAX_FILES = 2000


def snippets_of(rel: str, text: str) -> list[Snippet]:
    """Windows of ``BM25_WINDOW`` lines every ``BM25_STRIDE`` lines (the last one reaching the
    file's end), each with its term counts; cached per (path, text), 32 MB of texts at most."""
    key = (rel, text)
    hit = _snippet_cache.get(key)
    if hit is not None:
        _snippet_cache.move_to_end(key)
        return hit
    lines = text.splitlines(keepends=True)
    out: list[Snippet] = []
    starts = list(range(0, max(1, len(lines) - BM25_WINDOW + BM25_STRIDE), BM25_STRIDE))
    for s in starts:
        e = min(len(lines), s + BM25_WINDOW)
        body = "".join(lines[s:e])
        if not body.strip():
            continue
        toks = code_tokens(body)
        out.append(Snippet(rel, s, e, body, Counter(toks), len(toks)))
        if e == len(lines):
            break
    global _snippet_chars
    _snippet_cache[key] = out
    _snippet_chars += len(text)
    while _snippet_chars > _SNIPPET_CACHE_CHARS and len(_snippet_cache) > 1:
        (_, old), _ = _snippet_cache.popitem(last=False)
        _snippet_chars -= len(old)
    return out


def bm25_scores(query: Sequence[str], docs: Sequence[Snippet]) -> list[float]:
    """Okapi BM25 of each document for the query terms (IDF with the +1 that keeps it positive)."""
    if not docs:
        return []
    n = len(docs)
    avg = sum(d.length for d in docs) / n or 1.0
    terms = Counter(query)
    df = {t: sum(1 for d in docs if t in d.tf) for t in terms}
    idf = {t: math.log((n - df[t] + 0.5) / (df[t] + 0.5) + 1.0) for t in terms}
    scores = []
    for d in docs:
        norm = BM25_K1 * (1 - BM25_B + BM25_B * d.length / avg)
        s = 0.0
        for t, qn in terms.items():
            f = d.tf.get(t, 0)
            if f:
                s += qn * idf[t] * f * (BM25_K1 + 1) / (f + norm)
        scores.append(s)
    return scores


def compose_bm25(req: ComposeRequest, source: RepoSource, count: CountTokens) -> list[RepoFile]:
    """CrossCodeEval's retrieval setting: the repository's snippets (sliding windows) ranked by
    BM25 against the last lines before the cursor; the top five, at most 512 tokens, the best
    nearest the current file."""
    budget = min(req.budget, BM25_MAX_TOKENS)
    query = code_tokens("".join(req.query.splitlines(keepends=True)[-BM25_QUERY_LINES:]))
    if budget <= 0 or not query:
        return []
    docs: list[Snippet] = []
    files = sorted(_candidates(req, source), key=lambda f: path_distance(req.current_rel, f.rel))
    for f in files[:BM25_MAX_FILES]:
        text = source.text(f.path)
        if text:
            docs.extend(snippets_of(f.rel, text))
    scores = bm25_scores(query, docs)
    ranked = sorted(
        (i for i in range(len(docs)) if scores[i] > 0),
        key=lambda i: (-scores[i], docs[i].rel, docs[i].start),
    )
    picked: list[tuple[float, RepoFile]] = []
    taken: dict[str, list[tuple[int, int]]] = {}
    left = budget
    for i in ranked:
        if len(picked) >= BM25_TOP:
            break
        d = docs[i]
        if any(d.start < e and s < d.end for s, e in taken.get(d.rel, [])):
            continue  # overlaps a better window of the same file
        framing = frame_cost(d.rel, count)
        if left <= framing:
            break
        n = count(d.text)
        if n + framing > left:
            # The context is cut at the cap (as CrossCodeEval truncates it): this one's end.
            tail, n = tail_lines_within(d.text, left - framing, count)
            if tail.strip():
                picked.append((scores[i], RepoFile(d.rel, tail, n, truncated=True)))
            break
        picked.append((scores[i], RepoFile(d.rel, d.text, n, truncated=True)))
        taken.setdefault(d.rel, []).append((d.start, d.end))
        left -= n + framing
    picked.sort(key=lambda p: p[0])  # lowest score first: the best sits nearest the file
    return [f for _, f in picked]


def compose_file_level(
    req: ComposeRequest, source: RepoSource, count: CountTokens
) -> list[RepoFile]:
    """No repository context: the file prefix only."""
    return []


Composer = Callable[[ComposeRequest, RepoSource, CountTokens], list[RepoFile]]


def composer_for(name: ComposerName) -> Composer:
    # A match over the names' Literal: mypy fails here when config gains a name without a function.
    match name:
        case "file-level":
            return compose_file_level
        case "path-distance":
            return compose_path_distance
        case "ring-buffer":
            return compose_ring_buffer
        case "bm25":
            return compose_bm25
        case _:
            assert_never(name)


#: Every composer by its ``context.composer`` name (the names are config's).
COMPOSERS: dict[str, Composer] = {name: composer_for(name) for name in COMPOSER_NAMES}
