"""Python imports resolved to workspace files (relative, or absolute by path), names followed
through modules that only re-export them, and a module's stub: its signatures, bodies
replaced by ``...``."""

from __future__ import annotations

import ast
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import PurePosixPath

from nearline.completion.composers.base import FileLike, RepoSource, path_distance
from nearline.completion.composers.imports import import_specs
from nearline.completion.composers.imports_js import resolve_js_import


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
