"""``nearline bench quality``: how good are the suggestions, per way of composing the prompt.

The dataset (``quality_tasks.py``; ``quality_ts.py`` for ``--language typescript``): lines of
real Python (or TypeScript/JavaScript) projects, *inproject* (using a function or class declared
in another file of the project) and *infile* (one declared earlier in the file), the Long Code
Arena way. Every task goes through the product: the completion
file is an unsaved buffer holding its prefix up to the target line plus that line's
indentation (the ``+suffix`` variants also get the rest of the file after the line), asked
through ``CompletionService.complete`` — the LSP's own path — on a workspace index of the
project *without* that file. The suggestion shown (its first line) is scored against the line.

Variants, at equal token budgets (``context.budgetTokens``):

* ``file-level`` — the file prefix only;
* ``path-distance`` — repository files by path distance, then the prefix;
* ``prefix-suffix`` — file prefix and suffix through FIM, no repository context (as llm-ls);
* ``ring-buffer`` — chunks of recently opened files (as llama.vim);
* ``bm25`` — BM25 top snippets (the CrossCodeEval retrieval setting);
* ``path-distance+suffix`` — path-distance with the suffix through FIM;
* ``short-256``, ``short-512`` (only when asked for) — the short prompt a cold start answers
  from (``completion.coldPromptTokens``): the file's last 256 / 512 tokens before the cursor,
  no repository context, always (paired against file-level, it says what a cold start costs);
* ``oracle`` (only when asked for) — not a composer: the repository context is the definitions
  of the names the line uses, found in the workspace (which only the benchmark knows). It is
  the ceiling of what repository context can do for a model at a budget: if the oracle does not
  beat file-level, no composer will.

A variant whose composer this build lacks is reported as skipped. Before each completion
file's tasks the bench opens, as an editor would (index overlay, syntax tree, current
document), the 3 files nearest to it by path distance: the "recently opened files" the
ring buffer draws from (the other composers ignore them).

Settings of the run: no debounce, no next-line speculation, one candidate, the syntax check
*off* (each shown suggestion is checked with the syntax module's own test instead, so one run
gives EM both with and without the check: with ``candidates`` 1 the service shows nothing when
the check fails), a 10 s generation limit (so a slow machine does not cut lines short), a fresh
document URI per task (no typing-through answers leak between tasks), llama.cpp in this process.

Order: per completion file and budget, line after line, every variant of a line in turn. Each
variant's requests are still in file and line order, and the engine's per-document KV states
(``model.stateCacheMb``) bring back each variant's previous prompt, so consecutive prompts of a
variant share their repository block, and variants whose prompts start alike (file-level and
prefix-suffix) share their prefix; a run cut short by ``--max-minutes`` has every variant on
the same lines. Latency is measured in that order (a variant that follows a similar one reads
less of its prompt): compare variants on evaluated tokens too.

``--models ID,ID``: the whole matrix once per model, one after the other (records, results and
the paired comparison carry the model). ``--latency-json FILE`` (one per model): the warm p95
per keystroke of ``nearline bench latency --json`` for a chart of EM against it.

``--dry-run``: no model. Every prompt is composed and the report gives per variant the prompt
tokens and the *API recall*: the share of inproject lines for which the definition (``def`` /
``class``) of a cross-file name the line uses is in the prompt (and the share where the name
is mentioned at all), plus the time a full run would take.
"""

from __future__ import annotations

import ast
import asyncio
import json
import math
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nearline.completion.composers import JS_LANGUAGES, path_distance
from nearline.workspace.index import language_for

from .latency import pct
from .quality_tasks import (
    CATEGORIES,
    DEFAULT_PROJECTS,
    Dataset,
    DatasetError,
    Task,
    build_dataset,
    edit_similarity,
    exact_match,
    fetch_projects,
    local_project,
    micro_macro,
    parse_specs,
)

DEFAULT_BUDGETS: tuple[int, ...] = (1024,)
DEFAULT_LINES_PER_CATEGORY = 2
DEFAULT_FILES_PER_PROJECT = 1
RECENT_FILES = 3
SUFFIX_LINES = 10
"""Lines after the cursor for the +suffix variants (``completion.suffixLines``). Few enough to
stay under the service's cap on the suffix (a quarter of the budget), which cuts the suffix
mid-line: with 200 lines, Qwen2.5-Coder then continued the cut line instead of filling the
middle (ES 15% against 30% with 10 lines on the same 8 tasks)."""
GENERATION_TIMEOUT_MS = 10_000
# For the time estimate on a 2-core CPU with the default model (Qwen2.5-Coder 0.5B Q4_K_M):
# `nearline bench threads` reads about 200 prompt tokens/s on an idle 2-core machine (half that
# beside a busy process); 150 leaves room. A suggestion line is generated in about a second.
READ_TOKENS_PER_S = 150.0
GENERATE_S_PER_TASK = 1.2
RESULTS_DIR = Path("bench-results")


class QualityError(Exception):
    """A problem the user can fix: one line, no traceback."""


@dataclass(frozen=True)
class Variant:
    name: str
    composer: str
    suffix: bool
    about: str
    oracle: bool = False
    """The repository context is the definitions of the names the line uses (known only to
    the benchmark): what any composer could give at best, under the same budget."""
    short: int = 0
    """Above 0: every request answered from the cold-start short prompt of this many tokens."""
    layout: str = ""
    """``context.layout`` for this variant (empty: the setting's, as ``--set`` gives it)."""


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("file-level", "file-level", False, "file prefix only"),
        Variant("path-distance", "path-distance", False, "repository files by path distance",
                layout="per-file"),
        Variant("prefix-suffix", "file-level", True, "file prefix + suffix (FIM), as llm-ls"),
        Variant("ring-buffer", "ring-buffer", False, "chunks of recently opened files, as llama.vim"),
        Variant("bm25", "bm25", False, "BM25 top-5 snippets (CrossCodeEval retrieval)"),
        Variant("path-distance+suffix", "path-distance", True, "path-distance + suffix (FIM)",
                layout="per-file"),
        Variant("oracle", "path-distance", False,
                "the definitions of the names the line uses (a ceiling, not a composer)",
                oracle=True),
        Variant("short-256", "file-level", False, "the cold-start short prompt, 256 tokens",
                short=256),
        Variant("short-512", "file-level", False, "the cold-start short prompt, 512 tokens",
                short=512),
        Variant("path-distance-shared", "path-distance", False,
                "path-distance, laid out for sharing between siblings (context.layout shared)",
                layout="shared"),
    )
}  # fmt: skip
DEFAULT_VARIANTS = tuple(
    n for n, v in VARIANTS.items() if not v.oracle and not v.short and v.layout != "shared"
)


def variant_problem(v: Variant, has_fim: bool = True) -> str | None:
    """Why ``v`` cannot run in this build, or None."""
    from nearline.config import COMPOSERS

    # completion.composers.COMPOSERS maps exactly these names (mypy checks that it misses none).
    if v.composer not in COMPOSERS:
        return f"composer {v.composer!r} is not in this build (config.COMPOSERS): variant {v.name} skipped"
    if v.suffix and not has_fim:
        return f"the model's prompt format has no FIM: variant {v.name} skipped"
    return None


def parse_variants(text: str | None) -> list[Variant]:
    if not text:
        return [VARIANTS[n] for n in DEFAULT_VARIANTS]
    out = []
    for name in (s.strip() for s in text.split(",")):
        if not name:
            continue
        if name not in VARIANTS:
            raise QualityError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
        if VARIANTS[name] not in out:
            out.append(VARIANTS[name])
    if not out:
        raise QualityError("--variants is empty")
    return out


def parse_categories(text: str | None) -> tuple[str, ...]:
    if not text:
        return tuple(CATEGORIES)
    out = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    unknown = [c for c in out if c not in CATEGORIES]
    if unknown or not out:
        raise QualityError(f"--categories wants some of {', '.join(CATEGORIES)}; got {text!r}")
    return out


def parse_budgets(text: str | None) -> list[int]:
    if not text:
        return list(DEFAULT_BUDGETS)
    out = []
    for item in (s.strip().lower() for s in text.split(",")):
        if not item:
            continue
        mult = 1024 if item.endswith("k") else 1
        try:
            value = int(float(item.removesuffix("k")) * mult)
        except ValueError:
            raise QualityError(
                f"--budgets wants token counts such as 1024,2K; got {item!r}"
            ) from None
        if not 64 <= value <= 1 << 20:
            raise QualityError(f"budget {value} out of range (64 to {1 << 20})")
        if value not in out:
            out.append(value)
    if not out:
        raise QualityError("--budgets is empty")
    return out


def base_settings(model: str | None) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "completion": {
            "debounceMs": 0, "speculate": False, "candidates": 1, "syntaxCheck": False,
            "warmUp": False, "timeoutMs": GENERATION_TIMEOUT_MS,
        },
        "engine": {"isolation": "thread"},
        "stats": {"enabled": False},
    }  # fmt: skip
    if model:
        raw["model"] = {"id": model}
    return raw


def settings_for(base: dict[str, Any], v: Variant, budget: int) -> Any:
    from nearline.config import parse_settings

    raw = json.loads(json.dumps(base))
    raw.setdefault("context", {}).update({"composer": v.composer, "budgetTokens": budget})
    if v.layout:
        raw["context"]["layout"] = v.layout
    raw["completion"]["suffixLines"] = SUFFIX_LINES if v.suffix else 0
    # Every other variant is measured on its full prompt, as a warm editor sends it.
    raw["completion"]["coldPromptTokens"] = v.short
    settings, problems = parse_settings(raw)
    if problems:
        raise QualityError("; ".join(str(p) for p in problems))
    return settings


# --------------------------------------------------------------------------- the workspace


def _gitignore_literal(rel: str) -> str:
    """An exclude pattern matching exactly the file ``rel`` (anchored, globs escaped)."""
    return "/" + re.sub(r"([\\*?\[\]!#])", r"\\\1", rel)


@dataclass
class FileWorkspace:
    """One completion file's workspace: the project without the file, and what is open."""

    root: Path
    rel: str
    text: str
    index: Any  # WorkspaceIndex
    recent: list[str] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.root / self.rel


LANGUAGES = ("python", "typescript")
"""``--language``: the dataset's language (``typescript`` covers JavaScript too)."""


def _family(language: str) -> str:
    """JavaScript and TypeScript (and their React forms) are one family of files."""
    return "typescript" if language in JS_LANGUAGES else language


def make_workspace(task: Task, text: str, count: Callable[[str], int]) -> FileWorkspace:
    """The project of ``task`` without its completion file, indexed as ``nearline serve``
    would, and the files nearest to it (by path distance, then name) as the recent ones."""
    from nearline.config import IndexSettings
    from nearline.workspace.index import WorkspaceIndex

    rel = task.rel
    index = WorkspaceIndex(
        [task.root], IndexSettings(exclude=[_gitignore_literal(rel)]), count_tokens=count
    )
    index.scan()
    family = _family(language_for(rel))
    others = [f.rel for f in index.files() if f.rel != rel and _family(f.language) == family]
    others.sort(key=lambda r: (path_distance(rel, r), r))
    return FileWorkspace(task.root, rel, text, index, others[:RECENT_FILES])


def open_like_editor(service: Any, ws: FileWorkspace) -> None:
    """What ``nearline serve`` does when an editor opens a file (didOpen: index overlay and
    syntax tree; the warm-up's query makes it the current document), for the files nearest
    to the completion file, farthest first: they are the recently opened files."""
    service.index = ws.index
    for rel in reversed(ws.recent):
        path = ws.root / rel
        text = ws.index.text(path)
        if text is None:
            continue
        ws.index.set_overlay(path, text)
        service.syntax.open(path.as_uri(), language_for(rel), text)
        ws.index.set_current(path)
        # The LSP tells the service on didOpen/didFocus (the ring buffer's recent files).
        if hasattr(service, "note_used"):
            service.note_used(rel)


def close_like_editor(service: Any, ws: FileWorkspace) -> None:
    # The next task is another project (or file): its recent files are its own.
    if hasattr(service, "recent_docs"):
        service.recent_docs.clear()
    for rel in ws.recent:
        path = ws.root / rel
        service.forget(path.as_uri())
        ws.index.drop_overlay(path)
    ws.index.drop_overlay(ws.path)


def buffer_for(task: Task, text: str, suffix: bool) -> tuple[str, int]:
    """The unsaved buffer of a task and the cursor offset in it."""
    lines = text.split("\n")
    before = "".join(ln + "\n" for ln in lines[: task.line]) + task.indent
    if not suffix:
        return before, len(before)
    return before + "\n" + "\n".join(lines[task.line + 1 :]), len(before)


def query_for(task: Task, ws: FileWorkspace, buffer: str, offset: int, n: int) -> Any:
    import dataclasses

    from nearline.completion.service import Query

    path = ws.path
    extra: dict[str, Any] = {}
    if "recent" in {f.name for f in dataclasses.fields(Query)}:
        # Should a later Query carry the recently opened files itself (most recent last).
        extra["recent"] = tuple(ws.recent[::-1])
    return Query(
        uri=f"{path.as_uri()}#nearline-bench-{n}", text=buffer, line=task.line,
        col=len(task.indent), offset=offset, path=path, rel=ws.rel, language=language_for(ws.rel),
        root=ws.root, **extra,
    )  # fmt: skip


def prepare_task(
    service: Any,
    base: dict[str, Any],
    ws: FileWorkspace,
    task: Task,
    v: Variant,
    budget: int,
    n: int,
) -> tuple[Any, str, int]:
    """Set the service up for one task under one variant (its settings, the oracle's composer,
    the unsaved buffer as the current document); returns the query, the buffer and the cursor
    offset. ``n`` makes the document URI fresh."""
    service.settings = settings_for(base, v, budget)
    service.compose_override = oracle_composer(task.names) if v.oracle else None
    service.short_prompt_only = v.short > 0
    buffer, offset = buffer_for(task, ws.text, v.suffix)
    q = query_for(task, ws, buffer, offset, n)
    ws.index.set_overlay(ws.path, buffer)
    ws.index.set_current(ws.path)
    return q, buffer, offset


# --------------------------------------------------------------------------- prompts


def definition_stubs(text: str, names: Sequence[str]) -> str | None:
    """The definitions (``def`` / ``class``, at any depth) of ``names`` in a Python text: the
    signature lines with the body as ``...``; a method under its class's first line."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError):
        return None
    lines = text.splitlines()
    wanted = set(names)
    out: list[str] = []

    def visit(node: ast.AST, cls: ast.ClassDef | None) -> None:
        for child in ast.iter_child_nodes(node):
            if (
                isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                and child.name in wanted
            ):
                if cls is not None:
                    out.append(lines[cls.lineno - 1])
                first = child.lineno - 1
                last = max(first, child.body[0].lineno - 2)
                out.extend(lines[first : last + 1])
                out.append(" " * (child.col_offset + 4) + "...")
            visit(child, child if isinstance(child, ast.ClassDef) else cls)

    visit(tree, None)
    return "\n".join(out) + "\n" if out else None


def stubs_for(rel: str, text: str, names: Sequence[str]) -> str | None:
    """The oracle's definitions of ``names`` in a file, in the file's language."""
    language = language_for(rel)
    if language in JS_LANGUAGES:
        from .quality_ts import definition_stubs as ts_stubs

        return ts_stubs(text, names, language)
    return definition_stubs(text, names) if language == "python" else None


def oracle_composer(names: Sequence[str]) -> Any:
    """A composer that puts the definitions of ``names`` found in other workspace files into
    the repository context, nearest file last, within the budget it is given."""
    from nearline.completion.composers import _candidates, frame_cost
    from nearline.completion.prompt import RepoFile

    def compose(req: Any, source: Any, count: Callable[[str], int]) -> list[RepoFile]:
        if req.budget <= 0 or not names:
            return []
        files = sorted(
            _candidates(req, source), key=lambda f: (path_distance(req.current_rel, f.rel), f.rel)
        )
        chosen: list[RepoFile] = []
        left = req.budget
        for f in files:
            text = source.text(f.path)
            if not text or not any(n in text for n in names):
                continue
            stub = stubs_for(f.rel, text, names)
            if not stub:
                continue
            n = count(stub)
            if n + frame_cost(f.rel, count) <= left:
                chosen.append(RepoFile(f.rel, stub, n, truncated=True))
                left -= n + frame_cost(f.rel, count)
        return chosen[::-1]

    return compose


def _defines(prompt: str, name: str, language: str = "python") -> bool:
    if language in JS_LANGUAGES:
        from .quality_ts import defines

        return defines(prompt, name)
    return (
        re.search(rf"^[ \t]*(?:async[ \t]+)?(?:def|class)[ \t]+{re.escape(name)}\b", prompt, re.M)
        is not None
    )


def _mentions(prompt: str, name: str) -> bool:
    return re.search(rf"\b{re.escape(name)}\b", prompt) is not None


def estimate_seconds(prompts: Sequence[tuple[str, int]], keep: int = 12) -> tuple[float, int]:
    """Time to run ``prompts`` (text, tokens) in order, with the engine reusing the longest
    common start of the live KV cache or of one of the last ``keep`` saved states (counted in
    characters, scaled to tokens). Returns (seconds, tokens evaluated)."""
    seen: list[str] = []
    evaluated = 0
    for text, tokens in prompts:
        best = 0
        for old in seen[-keep:]:
            n = min(len(old), len(text))
            i = 0
            while i < n and old[i] == text[i]:
                i += 1
            best = max(best, i)
        evaluated += max(1, tokens - int(tokens * best / max(1, len(text))))
        seen.append(text)
    return evaluated / READ_TOKENS_PER_S + GENERATE_S_PER_TASK * len(prompts), evaluated


# --------------------------------------------------------------------------- the run


def _limit(tasks: list[Task], limit: int | None) -> list[Task]:
    """The first ``limit`` tasks taken round-robin over the files (so a quick run sees every
    project), returned in file and line order."""
    if limit is None or limit >= len(tasks):
        return list(tasks)
    by_file: dict[str, list[Task]] = {}
    for t in tasks:
        by_file.setdefault(t.file_key, []).append(t)
    picked: list[Task] = []
    depth = 0
    while len(picked) < limit:
        for ts in by_file.values():
            if depth < len(ts) and len(picked) < limit:
                picked.append(ts[depth])
        depth += 1
    order = {t: i for i, t in enumerate(tasks)}
    return sorted(picked, key=order.__getitem__)


def _note(text: str) -> None:
    print(f"bench quality: {text}", file=sys.stderr, flush=True)


def _fmt_s(s: float) -> str:
    s = round(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def parse_models(models: str | None, model: str | None) -> list[str | None]:
    """``--models ID,ID`` (or ``--model ID``; neither: the default model) → the ids in order."""
    if models is not None and model is not None:
        raise QualityError("use --model or --models, not both")
    if models is None:
        return [model]
    out = list(dict.fromkeys(s.strip() for s in models.split(",") if s.strip()))
    if not out:
        raise QualityError("--models is empty")
    return list(out)


def parse_language(text: str | None) -> str:
    language = (text or "python").strip().lower()
    aliases = {"ts": "typescript", "javascript": "typescript", "js": "typescript", "py": "python"}
    language = aliases.get(language, language)
    if language not in LANGUAGES:
        raise QualityError(f"--language wants one of {', '.join(LANGUAGES)}; got {text!r}")
    return language


def load_dataset(
    language: str,
    projects: str | None,
    project_dirs: Sequence[str],
    cache_dir: str | None,
    note: Callable[[str], None],
    *,
    seed: int,
    files_per_project: int,
    lines_per_category: int,
) -> Dataset:
    """The projects of a language (pinned ones, ``--projects`` or local folders) and the
    files and lines drawn from them."""
    from . import quality_ts

    cache = Path(cache_dir) if cache_dir else None
    try:
        if project_dirs:
            projs = [local_project(p) for p in project_dirs]
        elif language == "typescript":
            specs = quality_ts.parse_npm_specs(projects or ",".join(quality_ts.DEFAULT_TS_PROJECTS))
            projs = quality_ts.fetch_npm_projects(specs, cache, note)
        else:
            py_specs = parse_specs(projects or ",".join(DEFAULT_PROJECTS))
            projs = fetch_projects(py_specs, cache, note)
        return build_dataset(
            projs, seed=seed, files_per_project=files_per_project,
            lines_per_category=lines_per_category,
            scan=quality_ts.scan_ts_project if language == "typescript" else None,
        )  # fmt: skip
    except DatasetError as exc:
        raise QualityError(str(exc)) from None


@dataclass
class ModelRun:
    """What one model's pass over the dataset gave."""

    entry: Any  # the catalog entry
    records: list[dict[str, Any]]
    skipped: dict[str, str]
    partial: bool
    eta_s: float
    stats: dict[str, int]
    messages: list[str]


async def _run_one_model(
    entry: Any,
    base: dict[str, Any],
    dataset: Dataset,
    tasks: list[Task],
    chosen_variants: list[Variant],
    budgets: list[int],
    dry_run: bool,
    deadline: float | None,
    note: Callable[[str], None],
) -> ModelRun:
    from nearline.completion.service import CompletionService

    skipped = {
        v.name: p for v in chosen_variants if (p := variant_problem(v, entry.format.has_fim))
    }
    for msg in skipped.values():
        note(f"{entry.id}: {msg}")
    runnable = [v for v in chosen_variants if v.name not in skipped]
    first = settings_for(base, runnable[0] if runnable else VARIANTS["file-level"], budgets[0])
    messages: list[str] = []
    service = CompletionService(first, on_message=lambda lvl, text: messages.append(text))
    records: list[dict[str, Any]] = []
    partial = False
    eta_s = 0.0
    try:
        # Pass 1, no model: compose every prompt (API recall, prompt tokens, the time estimate).
        groups = _groups(tasks)
        prompts: list[tuple[str, int]] = []
        n = 0
        for key, file_tasks in groups:
            ws = make_workspace(file_tasks[0], dataset.files[key], service.count_tokens)
            open_like_editor(service, ws)
            for budget in budgets:
                for task in file_tasks:
                    for v in runnable:
                        n += 1
                        q, _, _ = prepare_task(service, base, ws, task, v, budget, n)
                        prompt = (
                            service.build_short_prompt(q) if v.short else service.build_prompt(q)
                        )
                        text = prompt.text
                        tokens = service.prompt_tokens(prompt)
                        service.forget(q.uri)
                        prompts.append((text, tokens))
                        records.append(_record(task, v, budget, tokens, prompt, entry.id))
            close_like_editor(service, ws)
        eta_s, to_read = estimate_seconds(prompts)
        exact = "exact" if service.exact_tokens else "estimated"
        note(
            f"{entry.id}: {len(prompts)} prompts composed ({exact} token counts); running them "
            f"reads about {to_read} prompt tokens: ETA {_fmt_s(eta_s)} on a 2-core CPU "
            f"(~{READ_TOKENS_PER_S:.0f} prompt tokens/s)"
        )
        for v in runnable:
            rs = [r for r in records if r["variant"] == v.name]
            if v.composer != "file-level" and rs and not any(r["repo_files"] for r in rs):
                why = (
                    " or the service did not see the opened files"
                    if v.name == "ring-buffer"
                    else ""
                )
                note(f"{v.name}: no prompt has repository context (the file fills the budget{why})")
        if not dry_run and runnable:
            if deadline is not None and time.monotonic() > deadline:
                partial = True
            else:
                note(f"loading {entry.id} ...")
                await service.start()
                if service.state != "ready":
                    raise QualityError(service.error or "the model is not available")
                partial = await _run_model(service, base, groups, dataset, runnable,
                                           budgets, records, deadline, note, eta_s)  # fmt: skip
    finally:
        service.close()
    return ModelRun(entry, records, skipped, partial, eta_s, service.stats.as_dict(), messages)


async def run_quality(
    *,
    projects: str | None = None,
    project_dirs: Sequence[str] = (),
    variants: str | None = None,
    budgets: str | None = None,
    lines_per_category: int = DEFAULT_LINES_PER_CATEGORY,
    files_per_project: int = DEFAULT_FILES_PER_PROJECT,
    seed: int = 0,
    limit: int | None = None,
    max_minutes: float | None = None,
    dry_run: bool = False,
    model: str | None = None,
    models: str | None = None,
    out_json: str | None = None,
    out_png: str | None = None,
    cache_dir: str | None = None,
    quiet: bool = False,
    overrides: dict[str, Any] | None = None,
    categories: str | None = None,
    language: str | None = None,
    latency_json: Sequence[str] = (),
) -> dict[str, Any]:
    """Run the benchmark; returns the report (also written as JSON, a table and a chart).
    ``overrides``: settings for every variant, ``{"context": {"prefixShare": 0.75}}``;
    ``models``: comma-separated catalog ids, the whole matrix once per model;
    ``latency_json``: ``nearline bench latency --json`` reports (one per model) for the chart
    of Exact Match against warm p95 per keystroke."""
    from nearline.weights.catalog import load_catalog

    note = (lambda s: None) if quiet else _note
    t_start = time.monotonic()
    if lines_per_category < 1 or files_per_project < 1:
        raise QualityError("--lines-per-category and --files-per-project must be at least 1")
    if limit is not None and limit < 1:
        raise QualityError("--limit must be at least 1")
    if max_minutes is not None and max_minutes <= 0:
        raise QualityError("--max-minutes must be positive")
    lang = parse_language(language)
    chosen_variants = parse_variants(variants)
    chosen_budgets = parse_budgets(budgets)
    chosen_categories = parse_categories(categories)
    model_ids = parse_models(models, model)
    catalog = load_catalog()
    entries = []
    for mid in model_ids:
        try:
            entries.append(catalog.get(mid))
        except KeyError as exc:
            raise QualityError(str(exc.args[0])) from None
    latencies = load_latency_reports(latency_json)
    dataset = load_dataset(
        lang, projects, project_dirs, cache_dir, note, seed=seed,
        files_per_project=files_per_project, lines_per_category=lines_per_category,
    )  # fmt: skip
    # Files and lines are drawn as for both categories (the same seed gives the same lines),
    # then only the asked ones are run.
    dataset.tasks[:] = [t for t in dataset.tasks if t.category in chosen_categories]
    if not dataset.tasks:
        kind = ".py" if lang == "python" else "JS/TS"
        raise QualityError(
            f"no tasks: no project has a {kind} file of 80-1500 lines with inproject lines"
        )
    tasks = _limit(dataset.tasks, limit)
    comp = dataset.composition()
    _print_composition(comp, dataset, len(tasks))

    deadline = t_start + max_minutes * 60 if max_minutes else None
    runs: list[ModelRun] = []
    for entry, mid in zip(entries, model_ids, strict=True):
        base = base_settings(mid)
        for section, values in (overrides or {}).items():
            base.setdefault(section, {}).update(values)
        runs.append(await _run_one_model(entry, base, dataset, tasks, chosen_variants,
                                         chosen_budgets, dry_run, deadline, note))  # fmt: skip
    elapsed = time.monotonic() - t_start
    base = base_settings(model_ids[0])
    for section, values in (overrides or {}).items():
        base.setdefault(section, {}).update(values)
    report = _report(
        dataset=dataset, comp=comp, tasks=tasks, variants=chosen_variants, runs=runs,
        budgets=chosen_budgets, dry_run=dry_run, base=base, elapsed_s=elapsed, language=lang,
    )  # fmt: skip
    if not dry_run:
        report["criterion"] = context_criterion(report["paired"])
    print_table(report)
    print_criterion(report.get("criterion") or [])
    json_path = Path(out_json) if out_json else _default_out(dry_run)
    _write_outputs(report, json_path, out_png, latencies, note)
    partial = report["partial"]
    note(f"elapsed {_fmt_s(elapsed)}" + (" (partial: --max-minutes reached)" if partial else ""))
    return report


def _write_outputs(
    report: dict[str, Any],
    json_path: Path,
    out_png: str | None,
    latencies: Sequence[LatencyReport],
    note: Callable[[str], None],
) -> None:
    """The JSON report (written first, so a failing chart loses nothing), the bar chart and,
    with latency reports, the EM-against-p95 chart."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    png_path = Path(out_png) if out_png else json_path.with_suffix(".png")
    report["chart"] = write_chart(report, png_path, note)
    if latencies:
        report["pareto"] = pareto_points(report, latencies, note)
        print_pareto(report["pareto"])
        report["pareto_chart"] = write_pareto_chart(
            report, report["pareto"], png_path.with_name(png_path.stem + "-pareto.png"), note
        )
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    charts = [c for c in (report["chart"], report.get("pareto_chart")) if c]
    note(f"JSON: {json_path}" + (f", chart: {', '.join(charts)}" if charts else ""))


def _default_out(dry_run: bool) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return RESULTS_DIR / f"quality-{'dry-' if dry_run else ''}{stamp}.json"


def _groups(tasks: list[Task]) -> list[tuple[str, list[Task]]]:
    out: dict[str, list[Task]] = {}
    for t in tasks:
        out.setdefault(t.file_key, []).append(t)
    return [(k, sorted(v, key=lambda t: t.line)) for k, v in out.items()]


def _record(
    task: Task, v: Variant, budget: int, tokens: int, prompt: Any, model: str = ""
) -> dict[str, Any]:
    text = prompt.text
    defined = [x for x in task.names if _defines(text, x, language_for(task.rel))]
    mentioned = [x for x in task.names if _mentions(text, x)]
    repo = sorted({p.path for p in prompt.parts if p.kind == "repo-file" and p.path})
    return {
        "model": model, "project": task.project, "file": task.rel, "line": task.line + 1,
        "category": task.category, "names": list(task.names), "variant": v.name,
        "budget": budget, "target": task.target.strip(), "prompt_tokens": tokens,
        "repo_files": repo, "api_defined": bool(defined), "api_mentioned": bool(mentioned),
        "ran": False,
    }  # fmt: skip


async def _run_model(
    service: Any,
    base: dict[str, Any],
    groups: list[tuple[str, list[Task]]],
    dataset: Dataset,
    variants: list[Variant],
    budgets: list[int],
    records: list[dict[str, Any]],
    deadline: float | None,
    note: Callable[[str], None],
    eta_s: float,
) -> bool:
    """Pass 2: every task through ``CompletionService.complete``; fills ``records`` in
    place (same order as pass 1). Returns whether it stopped early."""
    from nearline.completion.syntax import parses_in_window

    i = 0
    n = 0
    t0 = time.monotonic()
    total_lines = sum(len(ts) for _, ts in groups) * len(budgets)
    done_lines = 0
    for key, file_tasks in groups:
        ws = make_workspace(file_tasks[0], dataset.files[key], service.count_tokens)
        open_like_editor(service, ws)
        try:
            for budget in budgets:
                for task in file_tasks:
                    if deadline is not None and time.monotonic() > deadline:
                        return True
                    for v in variants:
                        n += 1
                        q, buffer, offset = prepare_task(
                            service, base, ws, task, v, budget, 10_000_000 + n
                        )
                        out = await service.complete(q)
                        service.forget(q.uri)
                        rec = records[i]
                        i += 1
                        assert rec["variant"] == v.name and rec["line"] == task.line + 1
                        shown = out.suggestions[0].text if out.suggestions else ""
                        res = out.result
                        ends = res is not None and res.stop_reason in ("eol", "eog", "stop")
                        parses: bool | None = None
                        if shown:
                            try:
                                parses = parses_in_window(
                                    language_for(task.rel), buffer[:offset], shown, buffer[offset:],
                                    line_ends=ends,
                                )  # fmt: skip
                            except Exception:
                                parses = None
                        checked = shown if parses is not False else ""
                        rec.update({
                            "ran": True, "source": out.source, "prediction": shown.strip(),
                            "service_parses": out.suggestions[0].parses if out.suggestions else None,
                            "parses": parses, "prompt_tokens": out.prompt_tokens or rec["prompt_tokens"],
                            "evaluated_tokens": res.evaluated_tokens if res else 0,
                            "latency_ms": round(out.latency_s * 1000, 1),
                            "stop": res.stop_reason if res else None,
                            "em": exact_match(shown, task.target),
                            "es": edit_similarity(shown, task.target),
                            "em_checked": exact_match(checked, task.target),
                            "es_checked": edit_similarity(checked, task.target),
                        })  # fmt: skip
                    done_lines += 1
                    spent = time.monotonic() - t0
                    left = spent / done_lines * (total_lines - done_lines)
                    note(
                        f"[{done_lines}/{total_lines}] {task.project} {task.rel}:{task.line + 1} "
                        f"({task.category}) elapsed {_fmt_s(spent)}, about {_fmt_s(left)} left "
                        f"(estimated {_fmt_s(eta_s)} in all)"
                    )
        finally:
            close_like_editor(service, ws)
    return False


# --------------------------------------------------------------------------- the report


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def summarize(records: list[dict[str, Any]], dry_run: bool) -> dict[str, Any]:
    """Metrics of one variant at one budget."""
    out: dict[str, Any] = {"tasks": len(records)}
    cats: dict[str, Any] = {}
    for cat in (*CATEGORIES, "all"):
        rs = [r for r in records if cat == "all" or r["category"] == cat]
        c: dict[str, Any] = {"n": len(rs)}
        if not dry_run:
            for m in ("em", "es", "em_checked", "es_checked"):
                micro, macro = micro_macro([(f"{r['project']}:{r['file']}", r[m]) for r in rs])
                c[f"{m}_micro"], c[f"{m}_macro"] = micro, macro
        cats[cat] = c
    out["categories"] = cats
    inproj = [r for r in records if r["category"] == "inproject"]
    out["api_recall"] = _mean([float(r["api_defined"]) for r in inproj])
    out["api_mentioned"] = _mean([float(r["api_mentioned"]) for r in inproj])
    out["prompt_tokens_mean"] = _mean([float(r["prompt_tokens"]) for r in records])
    out["with_repo_context"] = _mean([float(bool(r["repo_files"])) for r in records])
    if not dry_run:
        runs = [r for r in records if r.get("source") == "model"]
        lat = [float(r["latency_ms"]) for r in runs]
        out["latency_ms"] = {
            "p50": pct(lat, 50) if lat else None,
            "p95": pct(lat, 95) if lat else None,
        }
        out["evaluated_tokens_mean"] = _mean([float(r["evaluated_tokens"]) for r in runs])
        out["sources"] = {s: sum(r.get("source") == s for r in records) for s in
                          sorted({str(r.get("source")) for r in records})}  # fmt: skip
        shown = [r for r in records if r.get("prediction")]
        checked = [r for r in shown if r.get("parses") is not None]
        out["syntax"] = {
            "shown": len(shown),
            "checked": len(checked),
            "parse_valid_rate": _mean([float(bool(r["parses"])) for r in checked]),
            "would_reject": sum(r.get("parses") is False for r in shown),
            "agrees_with_service": sum(
                (r.get("service_parses") is not False) == (r.get("parses") is not False)
                for r in shown
            ),
        }
    return out


def sign_test_p(wins: int, losses: int) -> float:
    """Exact two-sided sign test (McNemar's exact test on the discordant pairs): the chance of
    a split at least this uneven if either variant were as likely to be the one right."""
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired(records: list[dict[str, Any]], baseline: str = "file-level") -> list[dict[str, Any]]:
    """Each variant against ``baseline`` on the same lines, per model, budget and category:
    lines only it gets right (wins), lines only the baseline gets right (losses), and the sign
    test's p. Without ``baseline`` in the run, the first variant run is the baseline
    (``--variants path-distance,path-distance-shared``: the layouts against each other)."""
    ran = list(dict.fromkeys(r["variant"] for r in records))
    if baseline not in ran and ran:
        baseline = ran[0]
    out: list[dict[str, Any]] = []
    for model in dict.fromkeys(r.get("model", "") for r in records):
        rows = _paired_one([r for r in records if r.get("model", "") == model], baseline)
        out.extend({"model": model, **row} for row in rows)
    return out


def _paired_one(records: list[dict[str, Any]], baseline: str) -> list[dict[str, Any]]:
    base = {
        (r["budget"], r["project"], r["file"], r["line"]): r
        for r in records
        if r["variant"] == baseline and r.get("ran")
    }
    out: list[dict[str, Any]] = []
    variants = list(dict.fromkeys(r["variant"] for r in records if r["variant"] != baseline))
    budgets = list(dict.fromkeys(r["budget"] for r in records))
    for budget in budgets:
        for v in variants:
            for cat in (*CATEGORIES, "all"):
                pairs = [
                    (r, b)
                    for r in records
                    if r["variant"] == v and r["budget"] == budget and r.get("ran")
                    and (cat == "all" or r["category"] == cat)
                    and (b := base.get((budget, r["project"], r["file"], r["line"]))) is not None
                ]  # fmt: skip
                if pairs:
                    out.append({"variant": v, "baseline": baseline, "budget": budget,
                                "category": cat, **_pair_stats(pairs)})  # fmt: skip
    return out


def _pair_stats(pairs: Sequence[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    """(record, baseline record) pairs on the same lines: the lines only the record gets
    exact (wins), only the baseline (losses), the mean differences and the sign test's p."""
    n = len(pairs)
    wins = sum(1 for r, b in pairs if r["em"] and not b["em"])
    losses = sum(1 for r, b in pairs if b["em"] and not r["em"])
    return {
        "n": n, "wins": wins, "losses": losses,
        "em_delta": (sum(r["em"] for r, _ in pairs) - sum(b["em"] for _, b in pairs)) / n,
        "es_delta": (sum(r["es"] for r, _ in pairs) - sum(b["es"] for _, b in pairs)) / n,
        "p": sign_test_p(wins, losses),
    }  # fmt: skip


def _report(
    *,
    dataset: Dataset,
    comp: dict[str, Any],
    tasks: list[Task],
    variants: list[Variant],
    runs: list[ModelRun],
    budgets: list[int],
    dry_run: bool,
    base: dict[str, Any],
    elapsed_s: float,
    language: str = "python",
) -> dict[str, Any]:
    records = [r for run in runs for r in run.records if dry_run or r["ran"]]
    results = []
    for run in runs:
        mid = run.entry.id
        for budget in budgets:
            for v in variants:
                if v.name in run.skipped:
                    results.append({"model": mid, "variant": v.name, "budget": budget,
                                    "skipped": run.skipped[v.name]})  # fmt: skip
                    continue
                rs = [r for r in records
                      if r["model"] == mid and r["variant"] == v.name and r["budget"] == budget]  # fmt: skip
                results.append(
                    {"model": mid, "variant": v.name, "budget": budget, **summarize(rs, dry_run)}
                )
    stats: dict[str, int] = {}
    for run in runs:
        for k, n in run.stats.items():
            stats[k] = stats.get(k, 0) + n
    skipped: dict[str, str] = {}
    for run in runs:
        for name, why in run.skipped.items():
            skipped.setdefault(name, why)
    return {
        "kind": "nearline-bench-quality",
        "version": 2,
        "dry_run": dry_run,
        "partial": any(run.partial for run in runs),
        "language": language,
        "model": runs[0].entry.id,
        "models": [run.entry.id for run in runs],
        "settings": base,
        "suffix_lines": SUFFIX_LINES,
        "recent_files": RECENT_FILES,
        "budgets": budgets,
        "variants": {
            v.name: {
                "composer": v.composer,
                "suffix": v.suffix,
                "about": v.about,
                "skipped": skipped.get(v.name),
            }
            for v in variants
        },
        "dataset": comp,
        "tasks_run": len({(r["project"], r["file"], r["line"]) for r in records}),
        "tasks_planned": len(tasks),
        "notes": dataset.notes,
        "metrics": {
            "em": "exact match of the stripped line",
            "es": "edit similarity: 1 - Levenshtein(prediction, line) / max(lengths), "
            "on the stripped lines",
            "micro": "mean over lines",
            "macro": "mean per file, then mean over files",
            "checked": "as the service shows it with completion.syntaxCheck on (candidates 1): "
            "a suggestion that fails the syntax module's check counts as none",
            "api_recall": "share of inproject lines for which the definition of a cross-file "
            "name the line uses is in the prompt",
            "api_mentioned": "share of inproject lines whose cross-file name appears anywhere "
            "in the prompt",
            "paired": "each variant against file-level (else the first variant) on the same "
            "lines, per model and "
            "budget: wins (only the variant exact), losses (only file-level exact), em_delta / "
            "es_delta (mean differences), p (exact two-sided sign test on wins vs losses)",
        },
        "results": results,
        "paired": [] if dry_run else paired(records),
        "eta_s": round(sum(run.eta_s for run in runs), 1),
        "elapsed_s": round(elapsed_s, 1),
        "service_stats": stats,
        "service_stats_by_model": {run.entry.id: run.stats for run in runs},
        "messages": [m for run in runs for m in run.messages],
        "records": records,
    }


def _print_composition(comp: dict[str, Any], dataset: Dataset, planned: int) -> None:
    print("dataset:")
    for label, p in comp["projects"].items():
        files = ", ".join(p["files"]) or "-"
        print(f"  {label:<24} {p['inproject']:>3} inproject {p['infile']:>3} infile  {files}")
    lines = comp["lines"]
    print(
        f"  {comp['files']} files, {lines['inproject']} inproject + {lines['infile']} infile "
        f"lines (seed {comp['seed']}, {comp['lines_per_category']} per category per file, "
        f"{comp['files_per_project']} file(s) per project); {planned} task(s) to run"
    )
    for n in dataset.notes:
        print(f"  note: {n}")


def _f(x: float | None, pctg: bool = True) -> str:
    if x is None:
        return "-"
    return f"{x * 100:.1f}" if pctg else f"{x:.0f}"


def print_table(report: dict[str, Any]) -> None:
    dry = report["dry_run"]
    models = report.get("models") or [report["model"]]
    title = "dry run (no model)" if dry else f"model {', '.join(models)}"
    part = " — PARTIAL (--max-minutes)" if report["partial"] else ""
    print(f"\nnearline bench quality ({report.get('language', 'python')}) — {title}{part}")
    w = max(6, *(len(m) for m in models)) + 1
    if dry:
        print(
            f"{'model':<{w}}{'variant':<22}{'budget':>7}{'tasks':>6}{'API recall%':>12}"
            f"{'mentioned%':>11}{'repo ctx%':>10}{'prompt tok':>11}"
        )
    else:
        print(
            f"{'model':<{w}}{'variant':<22}{'budget':>7}{'n':>4}{'EM inproj':>10}{'EM infile':>10}"
            f"{'EM all':>8}{'EM macro':>9}{'ES all':>8}{'EM+check':>9}{'parse%':>8}{'API rec%':>9}"
            f"{'prompt':>7}{'eval':>6}{'p50 ms':>8}{'p95 ms':>8}"
        )
    for r in report["results"]:
        head = f"{r.get('model', report['model']):<{w}}{r['variant']:<22}{r['budget']:>7}"
        if "skipped" in r:
            print(f"{head}  skipped: {r['skipped']}")
            continue
        c = r["categories"]
        if dry:
            print(f"{head}{r['tasks']:>6}{_f(r['api_recall']):>12}"
                  f"{_f(r['api_mentioned']):>11}{_f(r['with_repo_context']):>10}"
                  f"{_f(r['prompt_tokens_mean'], False):>11}")  # fmt: skip
            continue
        lat = r["latency_ms"]
        print(
            f"{head}{c['all']['n']:>4}"
            f"{_f(c['inproject']['em_micro']):>10}{_f(c['infile']['em_micro']):>10}"
            f"{_f(c['all']['em_micro']):>8}{_f(c['all']['em_macro']):>9}"
            f"{_f(c['all']['es_micro']):>8}{_f(c['all']['em_checked_micro']):>9}"
            f"{_f(r['syntax']['parse_valid_rate']):>8}{_f(r['api_recall']):>9}"
            f"{_f(r['prompt_tokens_mean'], False):>7}{_f(r['evaluated_tokens_mean'], False):>6}"
            f"{_f(lat['p50'], False):>8}{_f(lat['p95'], False):>8}"
        )
    if not dry:
        print(
            "EM/ES in % (micro: per line; macro: per file, then averaged); EM+check: as shown with "
            "completion.syntaxCheck on; parse%: shown suggestions that parse in their window; "
            "API rec%: inproject lines with a used cross-file definition in the prompt"
        )
    rows = report.get("paired") or []
    if rows:
        print(f"\nagainst {rows[0]['baseline']} on the same lines, per model and budget (wins: "
              "only the variant exact; losses: only the baseline; p: two-sided sign test)")  # fmt: skip
        print(f"{'model':<{w}}{'variant':<22}{'budget':>7}{'category':>11}{'n':>5}{'wins':>6}"
              f"{'losses':>7}{'EM diff':>9}{'ES diff':>9}{'p':>8}")  # fmt: skip
        for r in rows:
            print(f"{r.get('model', ''):<{w}}{r['variant']:<22}{r['budget']:>7}{r['category']:>11}"
                  f"{r['n']:>5}{r['wins']:>6}{r['losses']:>7}{r['em_delta'] * 100:>+9.1f}"
                  f"{r['es_delta'] * 100:>+9.1f}{r['p']:>8.3f}")  # fmt: skip
    eta, el = report["eta_s"], report["elapsed_s"]
    what = "estimated time of a model run" if dry else "estimated at start"
    print(f"{what}: {_fmt_s(eta)} (2-core CPU, default model); elapsed {_fmt_s(el)}")


def _pyplot(note: Callable[[str], None]) -> Any:
    """matplotlib's pyplot (Agg), imported here only: the server never needs it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        note("chart skipped: matplotlib is not installed (pip install 'nearline[bench]')")
        return None
    return plt


def write_chart(report: dict[str, Any], path: Path, note: Callable[[str], None]) -> str | None:
    """A bar chart of EM per category per variant, one panel per model and budget (API recall
    for a dry run)."""
    plt = _pyplot(note)
    if plt is None:
        return None
    dry = report["dry_run"]
    budgets = report["budgets"]
    models = report.get("models") or [report["model"]]
    rows = [r for r in report["results"] if "skipped" not in r]
    names = list(dict.fromkeys(r["variant"] for r in rows))
    series = ["api_recall", "api_mentioned"] if dry else [*CATEGORIES, "all"]
    fig, axes = plt.subplots(
        len(models), len(budgets),
        figsize=(max(6, 1.6 * len(names)) * len(budgets), 4.5 * len(models)), squeeze=False,
    )  # fmt: skip
    width = 0.8 / len(series)
    for row, model in zip(axes, models, strict=True):
        for ax, budget in zip(row, budgets, strict=True):
            for k, s in enumerate(series):
                vals = []
                for name in names:
                    r = next((x for x in rows if x.get("model", model) == model
                              and x["variant"] == name and x["budget"] == budget), None)  # fmt: skip
                    v = None
                    if r is not None:
                        v = r[s] if dry else r["categories"][s]["em_micro"]
                    vals.append(100 * v if v is not None else 0.0)
                xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(names))]
                ax.bar(xs, vals, width, label=s)
            ax.set_xticks(range(len(names)))
            ax.set_xticklabels(names, rotation=30, ha="right")
            ax.set_ylim(0, 100)
            ax.set_ylabel("inproject lines (%)" if dry else "Exact Match (%)")
            ax.set_title(f"{model}, budget {budget} tokens" if len(models) > 1
                         else f"budget {budget} tokens")  # fmt: skip
            ax.legend(loc="upper right", fontsize="small")
    part = " (partial)" if report["partial"] else ""
    who = report["model"] if len(models) == 1 else f"{len(models)} models"
    fig.suptitle(f"nearline bench quality ({report.get('language', 'python')}) — {who}{part}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


# --------------------------------------------------------------------------- EM against latency


@dataclass(frozen=True)
class LatencyReport:
    """What the EM-against-latency chart needs from one ``nearline bench latency --json``."""

    path: str
    model: str
    p95_ms: float
    budget: int | None


def load_latency_reports(paths: Sequence[str]) -> list[LatencyReport]:
    """``--latency-json`` files: each a ``nearline bench latency --json`` report (its model and
    warm p95 per keystroke, and its budget when the run set one)."""
    out: list[LatencyReport] = []
    for p in paths:
        try:
            data = json.loads(Path(p).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise QualityError(f"--latency-json {p}: cannot read it ({why})") from None
        nl = data.get("nearline") if isinstance(data, dict) else None
        p95 = nl.get("p95_ms") if isinstance(nl, dict) else None
        model = data.get("model") if isinstance(data, dict) else None
        if not isinstance(model, str) or not isinstance(p95, int | float) or math.isnan(p95):
            raise QualityError(
                f"--latency-json {p}: not a `nearline bench latency --json` report "
                "(wants 'model' and 'nearline.p95_ms')"
            )
        ctx = (data.get("settings") or {}).get("context") or {}
        budget = ctx.get("budgetTokens") if isinstance(ctx, dict) else None
        out.append(LatencyReport(p, model, float(p95), budget if isinstance(budget, int) else None))
    return out


def pareto_points(
    report: dict[str, Any], latencies: Sequence[LatencyReport], note: Callable[[str], None]
) -> list[dict[str, Any]]:
    """One point per model, budget and variant with a latency report for its model (the one
    of its budget when there is one): EM (all lines) against warm p95 per keystroke, and
    whether it is on the Pareto front (no other point has at least its EM at most its p95,
    and is better in one)."""
    if report["dry_run"]:
        note("EM against latency skipped: a dry run has no Exact Match")
        return []
    by_model: dict[str, list[LatencyReport]] = {}
    for lat in latencies:
        by_model.setdefault(lat.model, []).append(lat)
    for m in by_model:
        if m not in (report.get("models") or [report["model"]]):
            note(f"--latency-json: model {m} is not in this run; ignored")
    points: list[dict[str, Any]] = []
    for r in report["results"]:
        lats = by_model.get(r.get("model", report["model"]), [])
        if "skipped" in r or not lats:
            continue
        em = r["categories"]["all"]["em_micro"]
        if em is None:
            continue
        lat = next((x for x in lats if x.budget == r["budget"]), None) or lats[0]
        points.append({"model": r.get("model", report["model"]), "variant": r["variant"],
                       "budget": r["budget"], "em": em, "p95_ms": lat.p95_ms,
                       "latency_json": lat.path})  # fmt: skip
    for p in points:
        p["pareto"] = not any(
            q["em"] >= p["em"] and q["p95_ms"] <= p["p95_ms"]
            and (q["em"] > p["em"] or q["p95_ms"] < p["p95_ms"])
            for q in points
        )  # fmt: skip
    return points


def print_pareto(points: Sequence[dict[str, Any]]) -> None:
    if not points:
        return
    print("\nExact Match against warm p95 per keystroke (*: on the Pareto front)")
    for p in sorted(points, key=lambda p: (p["p95_ms"], -p["em"])):
        mark = "*" if p["pareto"] else " "
        print(f" {mark} {p['model']:<28}{p['variant']:<22}{p['budget']:>7}"
              f"{p['em'] * 100:>7.1f}% EM{p['p95_ms']:>8.0f} ms")  # fmt: skip


def write_pareto_chart(
    report: dict[str, Any],
    points: Sequence[dict[str, Any]],
    path: Path,
    note: Callable[[str], None],
) -> str | None:
    """EM (all lines) against warm p95 per keystroke, one marker per model, the Pareto front
    as a line: the choice a user makes between quality and speed."""
    if not points:
        return None
    plt = _pyplot(note)
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for model in dict.fromkeys(p["model"] for p in points):
        ps = [p for p in points if p["model"] == model]
        ax.scatter([p["p95_ms"] for p in ps], [100 * p["em"] for p in ps], label=model)
        for p in ps:
            ax.annotate(f"{p['variant']} {p['budget']}", (p["p95_ms"], 100 * p["em"]),
                        fontsize="x-small", xytext=(3, 3), textcoords="offset points")  # fmt: skip
    front = sorted((p for p in points if p["pareto"]), key=lambda p: p["p95_ms"])
    ax.plot([p["p95_ms"] for p in front], [100 * p["em"] for p in front], "k--", lw=1,
            label="Pareto front")  # fmt: skip
    ax.set_xlabel("warm p95 per keystroke (ms, nearline bench latency)")
    ax.set_ylabel("Exact Match, all lines (%)")
    ax.set_ylim(0, 100)
    ax.legend(loc="lower right", fontsize="small")
    part = " (partial)" if report["partial"] else ""
    ax.set_title(f"nearline bench quality ({report.get('language', 'python')}): "
                 f"quality against latency{part}")  # fmt: skip
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def main_quality(**kwargs: Any) -> int:
    merge = kwargs.pop("merge", None)
    baseline = kwargs.pop("baseline", None)
    if merge:
        merge_reports(merge, baseline=baseline, latency_json=kwargs.get("latency_json") or (),
                      out_json=kwargs.get("out_json"), out_png=kwargs.get("out_png"))  # fmt: skip
        return 0
    if baseline:
        raise QualityError("--baseline goes with --merge")
    asyncio.run(run_quality(**kwargs))
    return 0


# --------------------------------------------------------------------------- merging runs


def _load_report(path: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise QualityError(f"--merge {path}: cannot read it ({why})") from None
    if not isinstance(data, dict) or data.get("kind") != "nearline-bench-quality":
        raise QualityError(f"--merge {path}: not a `nearline bench quality` JSON report")
    if data.get("dry_run"):
        raise QualityError(f"--merge {path}: a dry run has no Exact Match to merge")
    return data


def parse_cell(text: str) -> tuple[str, str, int]:
    """``MODEL:VARIANT:BUDGET`` (``--baseline``)."""
    parts = text.rsplit(":", 2)
    if len(parts) != 3 or not parts[2].isdigit():
        raise QualityError(f"--baseline {text!r}: wants MODEL:VARIANT:BUDGET")
    return parts[0], parts[1], int(parts[2])


def paired_against(
    records: list[dict[str, Any]], cell: tuple[str, str, int]
) -> list[dict[str, Any]]:
    """Every other (model, variant, budget) against one cell on the lines both ran, across
    models and budgets: does a configuration beat another one, line for line."""
    key = lambda r: (r["project"], r["file"], r["line"])  # noqa: E731
    base = {key(r): r for r in records if (r["model"], r["variant"], r["budget"]) == cell}
    if not base:
        raise QualityError(f"--baseline {':'.join(map(str, cell))}: no such cell in the runs")
    cells = dict.fromkeys((r["model"], r["variant"], r["budget"]) for r in records)
    out: list[dict[str, Any]] = []
    for c in cells:
        if c == cell:
            continue
        for cat in (*CATEGORIES, "all"):
            pairs = [
                (r, b) for r in records
                if (r["model"], r["variant"], r["budget"]) == c
                and (cat == "all" or r["category"] == cat)
                and (b := base.get(key(r))) is not None
            ]  # fmt: skip
            if pairs:
                out.append({
                    "model": c[0], "variant": c[1], "budget": c[2], "category": cat,
                    "baseline": ":".join(map(str, cell)), **_pair_stats(pairs),
                    "em": sum(r["em"] for r, _ in pairs) / len(pairs),
                    "baseline_em": sum(b["em"] for _, b in pairs) / len(pairs),
                })  # fmt: skip
    return out


def context_criterion(
    paired_rows: list[dict[str, Any]], alpha: float = 0.05
) -> list[dict[str, Any]]:
    """#14's criterion for repository context, per model and budget, on all lines: (1)
    path-distance never loses significantly to file-level (or bm25, ring-buffer when they
    ran; those are checked against file-level's wins and losses only, which is what the run
    pairs); (2) where the oracle beats file-level significantly, path-distance captures at
    least half of that gain. ``None`` for a part that cannot be judged (a variant missing)."""
    rows = [r for r in paired_rows if r["category"] == "all"]
    out: list[dict[str, Any]] = []
    for model, budget in dict.fromkeys((r.get("model", ""), r["budget"]) for r in rows):
        at = {
            r["variant"]: r for r in rows if r.get("model", "") == model and r["budget"] == budget
        }
        pd, orc = at.get("path-distance"), at.get("oracle")
        loses = None
        if pd is not None:
            loses = pd["losses"] > pd["wins"] and pd["p"] < alpha
        oracle_gain = orc is not None and orc["wins"] > orc["losses"] and orc["p"] < alpha
        captured: bool | None = None
        if oracle_gain and pd is not None and orc is not None:
            captured = pd["em_delta"] >= orc["em_delta"] / 2
        met = None if loses is None else (not loses and captured is not False)
        out.append({
            "model": model, "budget": budget,
            "path_distance": None if pd is None else {k: pd[k] for k in ("n", "wins", "losses", "em_delta", "p")},
            "oracle": None if orc is None else {k: orc[k] for k in ("n", "wins", "losses", "em_delta", "p")},
            "path_distance_loses": loses, "oracle_gains": oracle_gain if orc is not None else None,
            "half_captured": captured, "met": met,
        })  # fmt: skip
    return out


def print_criterion(rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    print("\nrepository context, per model and budget (all lines, against file-level): "
          "path-distance must not lose significantly; where the oracle gains significantly, "
          "path-distance must capture half of it")  # fmt: skip
    for r in rows:

        def cell(x: dict[str, Any] | None) -> str:
            if x is None:
                return "not run"
            return f"{x['em_delta'] * 100:+.1f} EM ({x['wins']}/{x['losses']}, p {x['p']:.3f})"

        verdict = {True: "met", False: "NOT met", None: "cannot judge"}[r["met"]]
        print(f"  {r['model']:<36}{r['budget']:>6}  path-distance {cell(r['path_distance'])}; "
              f"oracle {cell(r['oracle'])}: {verdict}")  # fmt: skip


def merge_reports(
    paths: Sequence[str],
    *,
    baseline: str | None = None,
    latency_json: Sequence[str] = (),
    out_json: str | None = None,
    out_png: str | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Several runs' JSON reports as one: their records (a line is its project, file and
    line number, so runs drawn with the same seed pair up), recounted per model, variant and
    budget, with the paired tests, the context criterion, and the charts. This is how the
    model x budget ladder is assembled from runs sized to fit a slow machine."""
    note = (lambda s: None) if quiet else _note
    if not paths:
        raise QualityError("--merge: no reports")
    reports = [_load_report(p) for p in paths]
    records: list[dict[str, Any]] = []
    seen: set[tuple[Any, ...]] = set()
    for rep in reports:
        for r in rep.get("records", []):
            if not r.get("ran"):
                continue
            r.setdefault("model", rep.get("model", ""))
            k = (r["model"], r["variant"], r["budget"], r["project"], r["file"], r["line"])
            if k not in seen:  # the first report that ran a cell's line wins
                seen.add(k)
                records.append(r)
    cells = list(dict.fromkeys((r["model"], r["variant"], r["budget"]) for r in records))
    cells.sort(key=lambda c: (c[0], c[2]))
    results = [
        {"model": m, "variant": v, "budget": b,
         **summarize([r for r in records if (r["model"], r["variant"], r["budget"]) == (m, v, b)],
                     False)}
        for m, v, b in cells
    ]  # fmt: skip
    rows = paired(records)
    report: dict[str, Any] = {
        "kind": "nearline-bench-quality",
        "version": 2,
        "dry_run": False,
        "partial": any(rep.get("partial") for rep in reports),
        "language": reports[0].get("language", "python"),
        "model": cells[0][0] if cells else "",
        "models": list(dict.fromkeys(c[0] for c in cells)),
        "merged_from": list(paths),
        "budgets": sorted({c[2] for c in cells}),
        "variants": {},
        "results": results,
        "paired": rows,
        "criterion": context_criterion(rows),
        "eta_s": sum(float(rep.get("eta_s") or 0) for rep in reports),
        "elapsed_s": sum(float(rep.get("elapsed_s") or 0) for rep in reports),
        "records": records,
    }
    if baseline:
        report["against"] = paired_against(records, parse_cell(baseline))
    print_table(report)
    print_criterion(report["criterion"])
    if report.get("against"):
        print(f"\nagainst {report['against'][0]['baseline']} on the same lines "
              "(wins: only this cell exact; losses: only the baseline)")  # fmt: skip
        for r in report["against"]:
            print(f"  {r['model']:<36}{r['variant']:<16}{r['budget']:>6}{r['category']:>11}"
                  f"{r['n']:>5}  EM {r['em'] * 100:5.1f} vs {r['baseline_em'] * 100:5.1f}"
                  f"  {r['wins']:>3}/{r['losses']:<3} p {r['p']:.3f}")  # fmt: skip
    stamp = time.strftime("%Y%m%d-%H%M%S")
    json_path = Path(out_json) if out_json else RESULTS_DIR / f"quality-merged-{stamp}.json"
    _write_outputs(report, json_path, out_png, load_latency_reports(latency_json), note)
    return report
