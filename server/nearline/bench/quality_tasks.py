"""The quality benchmark's dataset and metrics (``nearline bench quality``), model-free.

Tasks are built the Long Code Arena way from real Python projects (PyPI source distributions,
or a local directory):

* a *completion file* is a ``.py`` file of 80–1,500 lines that ``ast`` parses; the workspace
  for its tasks is the project without it;
* its lines are classified with ``ast``: **inproject** — the line references (calls, names,
  reads an attribute of) a function or class declared in another file of the project and not
  in this one; **infile** — it references one declared earlier in this file. A line with both
  counts as inproject (repository context is what that category tests). Lines that are empty,
  comments, docstrings, decorators, ``def``/``class`` headers, imports or shorter than 6
  characters (stripped) are skipped, and so are names on the common-API list (``COMMON_API``:
  ``__init__``, ``get``, ``run``, …), Python builtins, methods of built-in types and files
  (``setdefault``, ``seek``), dunder names, variables of the file and names imported from
  other packages: they say nothing about the project;
* with a fixed seed, ``files_per_project`` files per project and ``lines_per_category`` lines
  per category per file are drawn.

Metrics: Exact Match of the stripped line, and Edit Similarity = 1 − Levenshtein(a, b) /
max(len(a), len(b)) on the stripped lines (character level; 1.0 for two empty strings), both
micro (mean over lines) and macro (mean per file, then over files).
"""

from __future__ import annotations

import ast
import builtins
import io
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIN_LINES = 80
MAX_LINES = 1500
MIN_LINE_CHARS = 6

# The projects and pins of the default dataset (newest sdists when the benchmark was written).
DEFAULT_PROJECTS: tuple[str, ...] = (
    "rich==15.0.0",
    "starlette==1.10.0",
    "structlog==26.1.0",
    "pluggy==1.7.0",
    "platformdirs==4.14.5",
    "jsonschema==4.26.0",
    "click==8.5.1",
    "attrs==26.1.0",
    "anyio==4.16.0",
    "trio==0.35.0",
)

CATEGORIES: tuple[str, ...] = ("inproject", "infile")

# Names so common that a line using them says nothing about the project (after Long Code
# Arena's list of common APIs): dunders, container and I/O verbs, test scaffolding.
COMMON_API: frozenset[str] = frozenset(
    {
        "__init__", "__call__", "__enter__", "__exit__", "__repr__", "__str__", "__eq__",
        "__hash__", "__len__", "__iter__", "__getitem__", "__setitem__", "__contains__",
        "get", "set", "run", "main", "update", "save", "load", "setUp", "tearDown", "setup",
        "teardown", "start", "stop", "close", "open", "read", "write", "add", "append",
        "extend", "remove", "pop", "clear", "copy", "keys", "values", "items", "format",
        "join", "split", "strip", "replace", "encode", "decode", "parse", "call", "send",
        "test", "init", "reset", "create", "delete", "apply", "process", "execute", "build",
        "handle", "render", "validate", "wait", "json", "name", "value", "result", "next",
        "flush", "connect", "info", "debug", "warning", "error", "log",
    }
)  # fmt: skip
_BUILTINS = frozenset(dir(builtins))
# Methods of built-in types and files (``d.setdefault``, ``f.seek``): common names too.
_BUILTIN_METHODS = frozenset(
    name
    for t in (dict, list, str, bytes, set, tuple, int, float, io.IOBase, io.TextIOWrapper)
    for name in dir(t)
)


class DatasetError(Exception):
    """A problem with the projects (download, extraction, no usable files); one line."""


# --------------------------------------------------------------------------- projects


@dataclass(frozen=True)
class Project:
    name: str
    version: str
    root: Path

    @property
    def label(self) -> str:
        return f"{self.name}=={self.version}"


def parse_specs(text: str) -> list[tuple[str, str]]:
    """``"rich==15.0.0,click==8.5.1"`` → [(name, version), ...]."""
    out: list[tuple[str, str]] = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        name, sep, version = item.partition("==")
        if (
            not sep
            or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name.strip())
            or not (re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.+!_-]*", version.strip()))
        ):
            raise DatasetError(f"--projects wants NAME==VERSION items, got {item!r}")
        out.append((name.strip(), version.strip()))
    if not out:
        raise DatasetError("--projects is empty")
    return out


def bench_cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("nearline")) / "bench"


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _find_sdist(folder: Path, name: str, version: str) -> Path | None:
    want = f"{_norm(name)}_{_norm(version)}"
    if not folder.is_dir():
        return None
    for p in sorted(folder.iterdir()):
        for ext in (".tar.gz", ".zip", ".tgz", ".tar.bz2"):
            if p.name.endswith(ext) and _norm(p.name[: -len(ext)]) == want:
                return p
    return None


def download_sdist(name: str, version: str, folder: Path) -> Path:
    """The sdist of ``name==version`` in ``folder``, downloaded with pip when not there yet."""
    found = _find_sdist(folder, name, version)
    if found is not None:
        return found
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--disable-pip-version-check", "-q", f"{name}=={version}", "-d", str(folder)]  # fmt: skip
    return run_download(
        cmd,
        lambda: _find_sdist(folder, name, version),
        tool="pip download",
        spec=f"{name}=={version}",
        thing="sdist",
        is_error=lambda ln: ln.strip().startswith("ERROR"),
    )


def run_download(
    cmd: Sequence[str],
    fetched: Callable[[], Path | None],
    *,
    tool: str,
    spec: str,
    thing: str,
    is_error: Callable[[str], bool],
    hint: str = "",
) -> Path:
    """Run a download command (pip, npm) and return what ``fetched`` then finds; one clear
    line (``DatasetError``) when the command cannot run or fetches nothing: the last line of
    its stderr that ``is_error``, else its last line, and how to go on without a download."""
    local = "use --project-dir PATH to run on a local project"
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DatasetError(f"could not run {tool} for {spec} ({exc}); {hint}{local}") from None
    found = fetched()
    if proc.returncode != 0 or found is None:
        errs = [ln for ln in proc.stderr.splitlines() if is_error(ln)]
        why = (errs or proc.stderr.strip().splitlines() or [f"no {thing}"])[-1].strip()
        raise DatasetError(f"could not download the {thing} of {spec} ({why}); offline? {local}")
    return found


def extract_sdist(archive: Path, dest: Path) -> Path:
    """Extract once into ``dest`` (kept as a cache); returns the project's top directory."""
    if not dest.is_dir():
        tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest.parent))
        try:
            if archive.name.endswith(".zip"):
                with zipfile.ZipFile(archive) as zf:
                    for member in zf.namelist():
                        target = (tmp / member).resolve()
                        if not target.is_relative_to(tmp.resolve()):
                            raise DatasetError(f"{archive.name}: unsafe path {member!r}")
                    zf.extractall(tmp)
            else:
                with tarfile.open(archive) as tf:
                    tf.extractall(tmp, filter="data")
            os.replace(tmp, dest)
        except (OSError, tarfile.TarError, zipfile.BadZipFile) as exc:
            raise DatasetError(f"could not extract {archive.name}: {exc}") from None
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    entries = [p for p in dest.iterdir() if not p.name.startswith(".")]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else dest


def fetch_projects(
    specs: Sequence[tuple[str, str]],
    cache: Path | None = None,
    note: Callable[[str], None] = lambda s: None,
) -> list[Project]:
    cache = cache or bench_cache_dir()
    sdists, extracted = cache / "sdists", cache / "projects"
    extracted.mkdir(parents=True, exist_ok=True)
    out = []
    for name, version in specs:
        if _find_sdist(sdists, name, version) is None:
            note(f"downloading the sdist of {name}=={version} ...")
        archive = download_sdist(name, version, sdists)
        root = extract_sdist(archive, extracted / f"{_norm(name)}-{version}")
        out.append(Project(name, version, root))
    return out


def local_project(path: str | Path) -> Project:
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"--project-dir: no such directory: {path}")
    return Project(root.name, "local", root)


# --------------------------------------------------------------------------- files


_SKIP_DIRS = {"__pycache__", "node_modules", "build", "dist", "venv", ".venv", ".tox", ".nox"}


def python_files(root: Path) -> list[str]:
    """Workspace-relative paths of the project's ``.py`` files, sorted."""
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in _SKIP_DIRS)
        for f in filenames:
            if f.endswith(".py"):
                out.append(Path(dirpath, f).relative_to(root).as_posix())
    return sorted(out)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").replace("\r\n", "\n")
    except (OSError, UnicodeDecodeError):
        return None


def _parse(text: str) -> ast.Module | None:
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def declared_names(tree: ast.AST) -> dict[str, int]:
    """Functions and classes declared anywhere in a module (methods too): name → first line."""
    out: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and (
            node.name not in out or node.lineno < out[node.name]
        ):
            out[node.name] = node.lineno
    return out


def _countable(name: str) -> bool:
    return not (
        name in COMMON_API
        or name in _BUILTINS
        or name in _BUILTIN_METHODS
        or (name.startswith("__") and name.endswith("__"))
    )


def bound_names(tree: ast.AST) -> set[str]:
    """Names the module binds as variables (assignment and loop targets, parameters, ``except
    … as``): a load of one of them is a variable, whatever a function elsewhere is called.
    Imports do not count: importing a project's function is how a file uses it."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            out.add(node.id)
        elif isinstance(node, ast.arg):
            out.add(node.arg)
        elif isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) and node.name:
            out.add(node.name)
    return out


def foreign_names(tree: ast.AST, project_modules: set[str] | None) -> set[str]:
    """Names the module imports from outside the project: modules (``import json``) and, when
    the project's top-level modules are known, names from other packages (``from typing import
    Final``). Their uses say nothing about the project even when it declares the same name."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out.add(a.asname or a.name.split(".")[0])
        elif (
            isinstance(node, ast.ImportFrom)
            and project_modules is not None
            and node.level == 0
            and (node.module or "").split(".")[0] not in project_modules
        ):
            out.update(a.asname or a.name for a in node.names)
    return out


def referenced_names(
    tree: ast.AST, exclude: set[str] | frozenset[str] = frozenset()
) -> dict[int, set[str]]:
    """Line → the names a line references: loaded names that are not variables of the module
    (see ``bound_names``) nor in ``exclude``, and methods called there (``x.name(...)``; an
    attribute's name is the last token of its node, so it sits on the node's end line)."""
    out: dict[int, set[str]] = {}
    skip = bound_names(tree) | set(exclude)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in skip:
            out.setdefault(node.lineno, set()).add(node.id)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.end_lineno is not None
            and _root_name(node.func) not in exclude
        ):
            out.setdefault(node.func.end_lineno, set()).add(node.func.attr)
    return out


def _root_name(node: ast.AST) -> str | None:
    """``a`` of ``a.b().c[0].d``: whose attribute is being called."""
    while True:
        if isinstance(node, ast.Attribute | ast.Subscript):
            node = node.value
        elif isinstance(node, ast.Call):
            node = node.func
        else:
            return node.id if isinstance(node, ast.Name) else None


def project_modules(rels: Iterable[str]) -> set[str]:
    """Top-level module names of a project's files (``src/`` layouts included)."""
    out: set[str] = set()
    for rel in rels:
        parts = rel.split("/")
        if parts[0] == "src" and len(parts) > 1:
            parts = parts[1:]
        out.add(parts[0].removesuffix(".py"))
    return out


def skipped_lines(tree: ast.AST, lines: Sequence[str] = ()) -> set[int]:
    """1-based lines that are never tasks: docstrings (any string statement), decorators,
    def/class headers (with the line where the header ends, even when the body starts on it:
    ``) -> int: ...``) and imports."""
    out: set[int] = set()

    def span(a: int, b: int | None) -> None:
        out.update(range(a, (b or a) + 1))

    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            span(node.lineno, node.end_lineno)  # a docstring or another string statement
        elif isinstance(node, ast.Import | ast.ImportFrom):
            span(node.lineno, node.end_lineno)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            for d in node.decorator_list:
                span(d.lineno, d.end_lineno)
            body = node.body[0] if node.body else node
            last = body.lineno - 1
            if 0 < body.lineno <= len(lines) and lines[body.lineno - 1][: body.col_offset].strip():
                last = body.lineno  # the body starts on the header's last line
            span(node.lineno, max(node.lineno, last))
    return out


@dataclass(frozen=True)
class LineInfo:
    line: int  # 0-based
    category: str  # "inproject" | "infile"
    names: tuple[str, ...]
    """The names that put the line in its category (cross-file names for inproject)."""


@dataclass
class SourceFile:
    rel: str
    text: str
    lines: list[LineInfo] = field(default_factory=list)

    def of(self, category: str) -> list[LineInfo]:
        return [li for li in self.lines if li.category == category]


def classify(
    text: str,
    others: dict[str, set[str]] | set[str],
    rel: str = "",
    modules: set[str] | None = None,
) -> list[LineInfo]:
    """The task lines of one file. ``others``: names declared in the project's other files
    (a set, or rel → names, from which ``rel``'s own entry is left out); ``modules``: the
    project's top-level modules (see ``foreign_names``)."""
    tree = _parse(text)
    if tree is None:
        return []
    text_lines = text.split("\n")
    return task_lines(
        text_lines,
        cross_names(others, rel),
        declared_names(tree),
        referenced_names(tree, foreign_names(tree, modules)),
        skipped_lines(tree, text_lines),
        countable=_countable,
        comment=("#",),
    )


def cross_names(others: dict[str, set[str]] | set[str], rel: str) -> set[str]:
    """The names declared in the project's other files: ``others`` as a set, or the union of
    rel → names without ``rel``'s own entry."""
    if not isinstance(others, dict):
        return set(others)
    cross: set[str] = set()
    for other_rel, names in others.items():
        if other_rel != rel:
            cross |= names
    return cross


def task_lines(
    text_lines: Sequence[str],
    cross: set[str],
    here: dict[str, int],
    refs: dict[int, set[str]],
    skip: set[int],
    *,
    countable: Callable[[str], bool],
    comment: tuple[str, ...],
) -> list[LineInfo]:
    """The task lines of one file, whatever its language: ``cross``, names declared in other
    files; ``here``, the file's declarations (name → 1-based first line); ``refs``, 1-based
    line → the names it references; ``skip``, 1-based lines that are never tasks. A line whose
    stripped text is short or starts with a ``comment`` prefix is none either."""
    out: list[LineInfo] = []
    for i, raw in enumerate(text_lines):
        n = i + 1
        s = raw.strip()
        if n in skip or len(s) < MIN_LINE_CHARS or s.startswith(comment):
            continue
        names = {x for x in refs.get(n, ()) if countable(x)}
        inproject = sorted(x for x in names if x in cross and x not in here)
        if inproject:
            out.append(LineInfo(i, "inproject", tuple(inproject)))
            continue
        infile = sorted(x for x in names if x in here and here[x] < n)
        if infile:
            out.append(LineInfo(i, "infile", tuple(infile)))
    return out


def line_count(text: str) -> int:
    return len(text.splitlines())


@dataclass
class ProjectFiles:
    project: Project
    declared: dict[str, set[str]]  # rel -> countable names declared there
    candidates: list[SourceFile]  # completion-file candidates, classified


def read_project(
    project: Project, rels: Iterable[str], declared_in: Callable[[str, str], set[str] | None]
) -> tuple[dict[str, str], dict[str, set[str]]]:
    """(rel → text, rel → declared names) of the files that read and parse: ``declared_in(rel,
    text)`` gives a file's declared names, or None when it does not parse."""
    texts: dict[str, str] = {}
    declared: dict[str, set[str]] = {}
    for rel in rels:
        text = _read(project.root / rel)
        if text is None:
            continue
        names = declared_in(rel, text)
        if names is None:
            continue
        texts[rel], declared[rel] = text, names
    return texts, declared


def project_files(
    project: Project,
    texts: dict[str, str],
    declared: dict[str, set[str]],
    classify_file: Callable[[str, str], list[LineInfo]],
) -> ProjectFiles:
    """The project's completion-file candidates (``MIN_LINES``–``MAX_LINES`` lines), each
    classified by ``classify_file(text, rel)``."""
    candidates = [
        SourceFile(rel, text, classify_file(text, rel))
        for rel, text in texts.items()
        if MIN_LINES <= line_count(text) <= MAX_LINES
    ]
    return ProjectFiles(project, declared, candidates)


def _declared_py(rel: str, text: str) -> set[str] | None:
    tree = _parse(text)
    return None if tree is None else set(declared_names(tree))


def scan_project(project: Project) -> ProjectFiles:
    texts, declared = read_project(project, python_files(project.root), _declared_py)
    modules = project_modules(texts)
    return project_files(
        project, texts, declared, lambda text, rel: classify(text, declared, rel, modules)
    )


# --------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class Task:
    project: str
    root: Path
    rel: str
    line: int  # 0-based
    category: str
    target: str  # the line as in the file (indentation included)
    names: tuple[str, ...]

    @property
    def file_key(self) -> str:
        return f"{self.project}:{self.rel}"

    @property
    def indent(self) -> str:
        return self.target[: len(self.target) - len(self.target.lstrip())]


@dataclass
class Dataset:
    tasks: list[Task]
    files: dict[str, str]  # file_key -> text
    projects: list[Project]
    seed: int
    lines_per_category: int
    files_per_project: int
    notes: list[str] = field(default_factory=list)

    def composition(self) -> dict[str, Any]:
        per_project: dict[str, dict[str, Any]] = {}
        for p in self.projects:
            per_project[p.label] = {"files": [], **{c: 0 for c in CATEGORIES}}
        for t in self.tasks:
            label = next(p.label for p in self.projects if p.name == t.project)
            entry = per_project[label]
            if t.rel not in entry["files"]:
                entry["files"].append(t.rel)
            entry[t.category] += 1
        return {
            "projects": per_project,
            "files": len({t.file_key for t in self.tasks}),
            "lines": {c: sum(t.category == c for t in self.tasks) for c in CATEGORIES},
            "tasks": len(self.tasks),
            "seed": self.seed,
            "lines_per_category": self.lines_per_category,
            "files_per_project": self.files_per_project,
        }


def build_dataset(
    projects: Iterable[Project],
    *,
    seed: int = 0,
    files_per_project: int = 1,
    lines_per_category: int = 1,
    scan: Callable[[Project], ProjectFiles] | None = None,
) -> Dataset:
    """Draw completion files and lines (deterministic for a seed). ``scan``: how a project's
    files are found and classified (default: Python's ``scan_project``)."""
    projects = list(projects)
    tasks: list[Task] = []
    files: dict[str, str] = {}
    notes: list[str] = []
    for project in projects:
        pf = (scan or scan_project)(project)
        rng = random.Random(f"{seed}:{project.name}")
        n = lines_per_category
        full = [f for f in pf.candidates if all(len(f.of(c)) >= n for c in CATEGORIES)]
        if len(full) >= files_per_project:
            chosen = rng.sample(full, files_per_project)
        else:
            # Too few files with enough lines of both categories: all of those, then files
            # with at least one inproject line.
            rest = [f for f in pf.candidates if f.of("inproject") and f not in full]
            chosen = full + rng.sample(rest, min(files_per_project - len(full), len(rest)))
        if not chosen:
            notes.append(
                f"{project.label}: no source file of {MIN_LINES}-{MAX_LINES} lines with "
                "inproject lines; skipped"
            )
            continue
        chosen.sort(key=lambda f: f.rel)
        for f in chosen:
            key = f"{project.name}:{f.rel}"
            files[key] = f.text
            text_lines = f.text.split("\n")
            picked: list[LineInfo] = []
            for c in CATEGORIES:
                lines = f.of(c)
                if len(lines) < n:
                    notes.append(f"{key}: only {len(lines)} {c} line(s)")
                picked += rng.sample(lines, min(n, len(lines)))
            for li in sorted(picked, key=lambda li: li.line):
                tasks.append(
                    Task(project.name, project.root, f.rel, li.line, li.category,
                         text_lines[li.line], li.names)
                )  # fmt: skip
    return Dataset(tasks, files, projects, seed, lines_per_category, files_per_project, notes)


# --------------------------------------------------------------------------- metrics


def levenshtein(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def exact_match(pred: str, target: str) -> float:
    return 1.0 if pred.strip() == target.strip() else 0.0


def edit_similarity(pred: str, target: str) -> float:
    """1 − Levenshtein / max length, on the stripped lines (1.0 when both are empty)."""
    a, b = pred.strip(), target.strip()
    if not a and not b:
        return 1.0
    return 1.0 - levenshtein(a, b) / max(len(a), len(b))


def micro_macro(scores: Sequence[tuple[str, float]]) -> tuple[float | None, float | None]:
    """(micro, macro) of (file, score) pairs: the mean over lines, and the mean over files of
    each file's mean. None for no scores."""
    if not scores:
        return None, None
    micro = sum(s for _, s in scores) / len(scores)
    per_file: dict[str, list[float]] = {}
    for f, s in scores:
        per_file.setdefault(f, []).append(s)
    macro = sum(sum(v) / len(v) for v in per_file.values()) / len(per_file)
    return micro, macro
