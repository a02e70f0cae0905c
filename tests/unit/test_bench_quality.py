"""``nearline bench quality`` without a model: the task builder (line classification on small
hand-written projects), the metrics on hand-computed examples, the variant table, and a
dry run end to end (JSON, table, chart)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from nearline.bench import quality as q
from nearline.bench import quality_tasks as qt

HELPERS = '''\
"""Helpers used from main.py."""


def compute_total(items):
    return sum(items)


class Widget:
    def __init__(self, size):
        self.size = size

    def resize(self, factor):
        return Widget(self.size * factor)


def get(items):
    return items[0]


def shadowed():
    return 1
'''

# Each marked line says what the classifier must make of it.
MAIN_BODY = '''\
"""The completion file: a docstring that mentions compute_total(items) is no task."""

import functools

from pkg.helpers import Widget, compute_total, get, shadowed


def local_helper(x):
    return x + 1


def lh(x):
    return x


@functools.wraps(compute_total)
def wrapped(*args):
    return args


def uses(items, default=compute_total):
    # compute_total(items) in a comment is no task
    total = compute_total(items)  # INPROJECT compute_total
    w = Widget(3).resize(2)  # INPROJECT Widget resize
    value = local_helper(total)  # INFILE local_helper
    data = get(items)  # SKIP common API
    count = len(items) + total  # SKIP builtins only
    lh(1)
    late = late_helper(value)  # SKIP declared later in this file
    both = compute_total([local_helper(1)])  # INPROJECT compute_total (wins over infile)
    shadowed = 3  # SKIP a variable, not the function
    again = shadowed + 1  # SKIP the variable again
    text = """
    compute_total(items) inside a string
    """
    return total, w, value, data, count, late, both, again, text


def late_helper(v):
    return v
'''


def _main_text() -> str:
    filler = "".join(f"CONSTANT_{i} = {i}\n" for i in range(60))
    return MAIN_BODY + "\n\n" + filler


def write_project(root: Path) -> Path:
    """A small project: pkg/helpers.py, pkg/main.py (the completion file, 80+ lines), and in
    scripts/ files that can never be completion files (too short, too long, not parsing)."""
    pkg = root / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "helpers.py").write_text(HELPERS)
    (pkg / "main.py").write_text(_main_text())
    # Far from main.py (another directory), so that path-distance reaches helpers.py first.
    far = root / "scripts"
    far.mkdir()
    (far / "short.py").write_text(
        "from pkg.helpers import compute_total\n\ntotal = compute_total([1, 2])\n"
    )
    (far / "long.py").write_text(
        "from pkg.helpers import compute_total\n"
        + "".join(f"value_{i} = compute_total([{i}])\n" for i in range(1600))
    )
    (far / "broken.py").write_text(
        "def broken(:\n" + "".join(f"x_{i} = compute_total([{i}])\n" for i in range(100))
    )
    return root


def assert_tasks_as_marked(text: str, tasks: Sequence[qt.LineInfo], comment: str) -> None:
    """The task lines of ``text`` are its marked lines and nothing else: ``{comment} INPROJECT
    a b`` and ``{comment} INFILE a`` give a line's category and names, ``{comment} SKIP`` (or
    no mark) says it is no task. Shared by the Python and the TypeScript classifier tests."""
    expected: dict[int, tuple[str, set[str]] | None] = {}
    for i, line in enumerate(text.split("\n")):
        if f"{comment} INPROJECT" in line:
            names = line.split(f"{comment} INPROJECT")[1].split("(")[0]
            expected[i] = ("inproject", set(names.split()))
        elif f"{comment} INFILE" in line:
            expected[i] = ("infile", set(line.split(f"{comment} INFILE")[1].split()))
        elif f"{comment} SKIP" in line:
            expected[i] = None
    assert expected  # the markers are there
    got = {li.line: li for li in tasks}
    for i, want in expected.items():
        li = got.get(i)
        if want is None:
            assert li is None, (i, text.split("\n")[i], li)
        else:
            assert li is not None, (i, text.split("\n")[i])
            assert (li.category, set(li.names)) == want, text.split("\n")[i]
    assert set(got) == {i for i, w in expected.items() if w is not None}


def test_classification_of_marked_lines() -> None:
    text = _main_text()
    others = qt.declared_names(__import__("ast").parse(HELPERS))
    # Docstrings, imports, decorators, defs, comments, short lines, strings and the filler are
    # no task.
    assert_tasks_as_marked(text, qt.classify(text, set(others)), "#")


def test_skipped_kinds_of_lines() -> None:
    src = (
        '"""Module docstring\ncompute_total(x)\n"""\n'
        "from pkg.helpers import compute_total\n"
        "@compute_total\n"
        "def f(\n    a=compute_total,\n) -> int: ...\n"
        "class K(Base):\n"
        '    """compute_total(1)"""\n'
        "    size = compute_total([1])\n"
        "ct(1)\n"
    )
    lines = qt.classify(src, {"compute_total", "Base", "ct"})
    # Only the class attribute line is a task ("ct(1)" is shorter than 6 characters).
    assert [(li.line, li.category) for li in lines] == [(10, "inproject")]


def test_common_api_and_builtins_do_not_count() -> None:
    for name in ("get", "run", "main", "update", "save", "load", "__init__", "setUp"):
        assert name in qt.COMMON_API
    src = "value = run(x) + get(y) + open(z) + len(w)\n"
    assert qt.classify(src, {"run", "get", "open", "len"}) == []
    assert len(qt.COMMON_API) >= 40
    # Methods of built-in types and files, even when the project declares one of that name.
    assert qt.classify("headers.setdefault(k, v)\nstream.seek(0)\n", {"setdefault", "seek"}) == []


def test_names_imported_from_outside_the_project_do_not_count() -> None:
    src = "import json\nfrom typing import cast\nresult = json.loads(s)\nother = cast(int, s)\n"
    # The project happens to declare functions named json, loads and cast.
    assert qt.classify(src, {"json", "loads", "cast"}, modules={"pkg"}) == []
    src2 = "from pkg.util import cast\nother = cast(int, s)\n"
    assert [li.category for li in qt.classify(src2, {"cast"}, modules={"pkg"})] == ["inproject"]


def test_completion_files_are_80_to_1500_lines_that_parse(tmp_path: Path) -> None:
    root = write_project(tmp_path / "proj")
    pf = qt.scan_project(qt.local_project(root))
    assert [f.rel for f in pf.candidates] == ["pkg/main.py"]  # not short, long, broken
    assert "compute_total" in pf.declared["pkg/helpers.py"]
    assert "scripts/broken.py" not in pf.declared  # does not parse: declares nothing


def test_dataset_is_seeded_and_reports_its_composition(tmp_path: Path) -> None:
    root = write_project(tmp_path / "proj")
    proj = qt.local_project(root)
    a = qt.build_dataset([proj], seed=3, lines_per_category=2)
    b = qt.build_dataset([proj], seed=3, lines_per_category=2)
    assert a.tasks == b.tasks
    comp = a.composition()
    assert comp["lines"] == {"inproject": 2, "infile": 1}  # only one infile line exists
    assert comp["files"] == 1 and comp["tasks"] == 3
    assert comp["projects"]["proj==local"]["files"] == ["pkg/main.py"]
    assert any("only 1 infile" in n for n in a.notes)
    assert [t.line for t in a.tasks] == sorted(t.line for t in a.tasks)
    for t in a.tasks:
        assert t.target == _main_text().split("\n")[t.line]
    many = qt.build_dataset([proj], seed=0, lines_per_category=10)
    assert many.composition()["lines"] == {"inproject": 3, "infile": 1}


def test_project_specs() -> None:
    assert qt.parse_specs("rich==15.0.0, click==8.5.1") == [("rich", "15.0.0"), ("click", "8.5.1")]
    for bad in ("rich", "rich>=1", "==1.0", ""):
        with pytest.raises(qt.DatasetError):
            qt.parse_specs(bad)


def assert_failed_download_is_one_line(
    monkeypatch: pytest.MonkeyPatch,
    download: Callable[[], object],
    stderr: str,
    spec: str,
    why: str,
) -> None:
    """A download tool that fails with ``stderr`` gives one line naming ``spec``, the tool's
    error ``why`` and the way round (``--project-dir``). Shared by the pip and npm tests."""

    def fake_run(*args: object, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess([], 1, "", stderr)

    monkeypatch.setattr(qt.subprocess, "run", fake_run)
    with pytest.raises(qt.DatasetError) as exc:
        download()
    msg = str(exc.value)
    assert "\n" not in msg and "--project-dir" in msg and spec in msg and why in msg


def test_failed_download_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert_failed_download_is_one_line(
        monkeypatch,
        lambda: qt.download_sdist("x", "1", tmp_path),
        "ERROR: Could not find a version that satisfies the requirement x==1\n",
        "x==1",
        "Could not find a version",
    )


def test_existing_sdist_is_found_without_pip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "Foo_Bar-1.0.tar.gz").write_bytes(b"")
    monkeypatch.setattr(qt.subprocess, "run", None)  # would fail if called
    assert qt.download_sdist("foo-bar", "1.0", tmp_path).name == "Foo_Bar-1.0.tar.gz"


# --------------------------------------------------------------------------- metrics


def test_exact_match_strips() -> None:
    assert qt.exact_match("  foo(x)  ", "foo(x)") == 1.0
    assert qt.exact_match("foo(x) ", "foo(y)") == 0.0
    assert qt.exact_match("", "foo") == 0.0


def test_edit_similarity() -> None:
    assert qt.levenshtein("kitten", "sitting") == 3
    assert qt.edit_similarity("kitten", "sitting") == pytest.approx(1 - 3 / 7)
    assert qt.edit_similarity(" abc ", "abc") == 1.0
    assert qt.edit_similarity("", "") == 1.0
    assert qt.edit_similarity("", "abcd") == 0.0
    assert qt.edit_similarity("abcd", "abxd") == pytest.approx(0.75)


def test_micro_and_macro() -> None:
    scores = [("a", 1.0), ("a", 0.0), ("a", 0.0), ("b", 1.0)]
    micro, macro = qt.micro_macro(scores)
    assert micro == pytest.approx(0.5)
    assert macro == pytest.approx((1 / 3 + 1) / 2)
    assert qt.micro_macro([]) == (None, None)


def test_summary_per_category() -> None:
    def rec(file: str, cat: str, em: float, es: float, parses: bool | None) -> dict[str, object]:
        return {
            "project": "p", "file": file, "category": cat, "em": em, "es": es,
            "em_checked": em if parses is not False else 0.0,
            "es_checked": es if parses is not False else 0.0, "api_defined": cat == "inproject",
            "api_mentioned": True, "prompt_tokens": 100, "repo_files": ["x.py"] if em else [], "source": "model", "latency_ms": 10.0,
            "evaluated_tokens": 50, "prediction": "x = 1", "parses": parses,
            "service_parses": parses,
        }  # fmt: skip

    rs = [rec("a", "inproject", 1, 1, True), rec("a", "infile", 0, 0.5, False),
          rec("b", "inproject", 0, 0.25, True)]  # fmt: skip
    s = q.summarize(rs, dry_run=False)
    c = s["categories"]
    assert c["inproject"]["em_micro"] == pytest.approx(0.5)
    assert c["inproject"]["es_macro"] == pytest.approx((1 + 0.25) / 2)
    assert c["all"]["em_micro"] == pytest.approx(1 / 3)
    assert c["all"]["em_macro"] == pytest.approx((0.5 + 0) / 2)
    assert c["infile"]["em_checked_micro"] == 0.0
    assert s["syntax"] == {
        "shown": 3, "checked": 3, "parse_valid_rate": pytest.approx(2 / 3), "would_reject": 1,
        "agrees_with_service": 3,
    }  # fmt: skip
    assert s["api_recall"] == 1.0
    assert s["with_repo_context"] == pytest.approx(1 / 3)


def test_sign_test_against_hand_computed_values() -> None:
    assert q.sign_test_p(0, 0) == 1.0
    # 5 wins, 0 losses: 2 * (1/2)^5
    assert q.sign_test_p(5, 0) == pytest.approx(2 / 32)
    assert q.sign_test_p(0, 5) == pytest.approx(2 / 32)
    # 8 vs 2: 2 * (C(10,0) + C(10,1) + C(10,2)) / 2^10 = 2 * 56 / 1024
    assert q.sign_test_p(8, 2) == pytest.approx(112 / 1024)
    assert q.sign_test_p(3, 3) == 1.0


def test_paired_comparison_counts_discordant_lines() -> None:
    def rec(v: str, line: int, cat: str, em: float, es: float) -> dict[str, object]:
        return {"variant": v, "budget": 1024, "project": "p", "file": "f.py", "line": line,
                "category": cat, "em": em, "es": es, "ran": True}  # fmt: skip

    rs = [
        rec("file-level", 1, "inproject", 0, 0.5), rec("path-distance", 1, "inproject", 1, 1.0),
        rec("file-level", 2, "inproject", 1, 1.0), rec("path-distance", 2, "inproject", 1, 1.0),
        rec("file-level", 3, "inproject", 0, 0.0), rec("path-distance", 3, "inproject", 1, 1.0),
        rec("file-level", 4, "infile", 1, 1.0), rec("path-distance", 4, "infile", 0, 0.5),
        # A line file-level did not run (cut short) is left out of the pairs.
        rec("path-distance", 5, "inproject", 1, 1.0),
    ]  # fmt: skip
    rows = {(r["variant"], r["category"]): r for r in q.paired(rs)}
    inproj = rows[("path-distance", "inproject")]
    assert (inproj["n"], inproj["wins"], inproj["losses"]) == (3, 2, 0)
    assert inproj["em_delta"] == pytest.approx(2 / 3)
    assert inproj["es_delta"] == pytest.approx((0.5 + 0 + 1) / 3)
    assert inproj["p"] == pytest.approx(0.5)
    assert (rows[("path-distance", "infile")]["losses"], rows[("path-distance", "all")]["n"]) == (
        1,
        4,
    )
    assert ("file-level", "all") not in rows


def test_without_file_level_the_first_variant_is_the_baseline() -> None:
    """``--variants path-distance,path-distance-shared``: the layouts against each other."""

    def rec(v: str, line: int, em: float) -> dict[str, object]:
        return {"variant": v, "budget": 1024, "project": "p", "file": "f.py", "line": line,
                "category": "inproject", "em": em, "es": em, "ran": True}  # fmt: skip

    rs = [
        rec("path-distance", 1, 1), rec("path-distance-shared", 1, 0),
        rec("path-distance", 2, 0), rec("path-distance-shared", 2, 0),
    ]  # fmt: skip
    rows = {(r["variant"], r["category"]): r for r in q.paired(rs)}
    row = rows[("path-distance-shared", "all")]
    assert row["baseline"] == "path-distance"
    assert (row["n"], row["wins"], row["losses"]) == (2, 0, 1)


def test_categories_option() -> None:
    assert q.parse_categories(None) == ("inproject", "infile")
    assert q.parse_categories(" inproject ,inproject") == ("inproject",)
    with pytest.raises(q.QualityError, match="--categories"):
        q.parse_categories("infile,other")


# --------------------------------------------------------------------------- variants


def test_variant_table() -> None:
    assert list(q.VARIANTS) == [
        "file-level", "path-distance", "prefix-suffix", "ring-buffer", "bm25",
        "path-distance+suffix", "oracle", "short-256", "short-512", "path-distance-shared",
    ]  # fmt: skip
    # The oracle is a ceiling, not a composer, the short prompts measure a cold start, and
    # the shared layout is measured against path-distance: they run only when asked for.
    assert [v.name for v in q.parse_variants(None)] == list(q.VARIANTS)[:-4]
    assert q.parse_variants("oracle")[0].oracle
    short = q.parse_variants("short-256")[0]
    assert short.short == 256 and short.composer == "file-level" and not short.suffix
    base = {"completion": {}, "model": {"id": "smollm2-135m-instruct-q4_1"}}
    assert q.settings_for(base, short, 1024).completion.cold_prompt_tokens == 256
    # Every other variant is measured on its full prompt.
    assert q.settings_for(base, q.VARIANTS["file-level"], 1024).completion.cold_prompt_tokens == 0
    assert q.variant_problem(q.VARIANTS["path-distance"]) is None
    missing = q.Variant("x", "no-such-composer", False, "")
    assert "not in this build" in (q.variant_problem(missing) or "")
    assert "FIM" in (q.variant_problem(q.VARIANTS["prefix-suffix"], has_fim=False) or "")
    with pytest.raises(q.QualityError, match="unknown variant"):
        q.parse_variants("file-level,nope")
    assert [v.name for v in q.parse_variants("bm25, file-level")] == ["bm25", "file-level"]
    assert q.parse_budgets("1024,2K") == [1024, 2048]
    for bad in ("abc", "10", ""):
        with pytest.raises(q.QualityError):
            q.parse_budgets(bad) if bad else q.parse_budgets(",")


def test_variant_settings() -> None:
    base = q.base_settings(None)
    s = q.settings_for(base, q.VARIANTS["path-distance+suffix"], 2048)
    assert s.context.composer == "path-distance" and s.context.budget_tokens == 2048
    assert s.completion.suffix_lines == q.SUFFIX_LINES
    assert s.completion.debounce_ms == 0 and not s.completion.speculate
    assert s.completion.candidates == 1 and not s.completion.syntax_check
    assert q.settings_for(base, q.VARIANTS["file-level"], 1024).completion.suffix_lines == 0
    shared = q.settings_for(base, q.VARIANTS["path-distance-shared"], 1024)
    assert shared.context.composer == "path-distance" and shared.context.layout == "shared"
    assert q.settings_for(base, q.VARIANTS["path-distance"], 1024).context.layout == "per-file"


def test_workspace_leaves_the_completion_file_out(tmp_path: Path) -> None:
    root = write_project(tmp_path / "proj")
    ds = qt.build_dataset([qt.local_project(root)])
    task = ds.tasks[0]
    ws = q.make_workspace(task, ds.files[task.file_key], len)
    rels = [f.rel for f in ws.index.files()]
    assert "pkg/main.py" not in rels and "pkg/helpers.py" in rels
    assert len(ws.recent) == q.RECENT_FILES and "pkg/main.py" not in ws.recent
    buf, off = q.buffer_for(task, ds.files[task.file_key], suffix=False)
    assert buf.endswith("\n" + task.indent) and off == len(buf)
    full, off2 = q.buffer_for(task, ds.files[task.file_key], suffix=True)
    assert off2 == off and full.startswith(buf + "\n")
    assert task.target.strip() not in full  # the line itself is never in the buffer


def test_estimate_counts_shared_prefixes_once() -> None:
    a = "x" * 400
    secs, evaluated = q.estimate_seconds([(a, 100), (a + "y" * 400, 200), ("z" * 400, 100)])
    assert evaluated == 100 + 100 + 100
    assert secs == pytest.approx(300 / q.READ_TOKENS_PER_S + 3 * q.GENERATE_S_PER_TASK)


def test_api_recall_looks_for_definitions() -> None:
    prompt = "class Widget:\n    pass\n    async def resize(self):\n"
    assert q._defines(prompt, "Widget") and q._defines(prompt, "resize")
    assert not q._defines("w = Widget()\n", "Widget")
    assert q._mentions("w = Widget()\n", "Widget") and not q._mentions("Widgets", "Widget")


def test_definition_stubs_for_the_oracle() -> None:
    text = (
        "import os\n\n\ndef compute_total(items,\n                  start=0):\n"
        "    return sum(items, start)\n\n\nclass Widget:\n    def __init__(self, size):\n"
        "        self.size = size\n\n    async def resize(self, factor):\n        return 1\n"
    )
    assert q.definition_stubs(text, ["compute_total"]) == (
        "def compute_total(items,\n                  start=0):\n    ...\n"
    )
    # A method comes under its class's first line; names not defined give nothing.
    assert q.definition_stubs(text, ["resize"]) == (
        "class Widget:\n    async def resize(self, factor):\n        ...\n"
    )
    assert q.definition_stubs(text, ["nothing_here"]) is None
    assert q.definition_stubs("def broken(:\n", ["broken"]) is None


async def test_dry_run_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_project(tmp_path / "proj")
    out = tmp_path / "out" / "dry.json"
    report = await q.run_quality(
        project_dirs=[str(root)], variants="file-level,path-distance,prefix-suffix,oracle",
        budgets="512,1024", dry_run=True, out_json=str(out), quiet=True, lines_per_category=2,
    )  # fmt: skip
    assert json.loads(out.read_text())["results"] == report["results"]
    oracle = [r for r in report["records"] if r["variant"] == "oracle" and r["budget"] == 1024]
    # The oracle's context is the inproject names' definitions, and nothing else.
    assert all(r["api_defined"] for r in oracle if r["category"] == "inproject")
    assert all(
        r["repo_files"] == ["pkg/helpers.py"] for r in oracle if r["category"] == "inproject"
    )
    report["results"] = [r for r in report["results"] if r["variant"] != "oracle"]
    report["records"] = [r for r in report["records"] if r["variant"] != "oracle"]
    assert report["dry_run"] and not report["partial"]
    assert report["dataset"]["lines"] == {"inproject": 2, "infile": 1}
    assert {(r["variant"], r["budget"]) for r in report["results"]} == {
        (v, b) for v in ("file-level", "path-distance", "prefix-suffix") for b in (512, 1024)
    }
    by = {(r["variant"], r["budget"]): r for r in report["results"]}
    # The helpers file fits the budget: path-distance puts compute_total's definition in.
    assert by[("path-distance", 1024)]["api_recall"] == 1.0
    assert by[("file-level", 1024)]["api_recall"] == 0.0
    assert by[("path-distance", 1024)]["with_repo_context"] == 1.0
    assert by[("file-level", 1024)]["with_repo_context"] == 0.0
    assert (
        by[("prefix-suffix", 1024)]["prompt_tokens_mean"]
        > by[("file-level", 1024)]["prompt_tokens_mean"]
    )
    assert len(report["records"]) == 3 * 2 * 3
    assert report["chart"] and Path(report["chart"]).is_file()
    printed = capsys.readouterr().out
    assert "API recall%" in printed and "pkg/main.py" in printed


async def test_missing_composer_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(q.VARIANTS, "ghost", q.Variant("ghost", "ghost-composer", False, ""))
    root = write_project(tmp_path / "proj")
    report = await q.run_quality(
        project_dirs=[str(root)], variants="file-level,ghost", dry_run=True,
        out_json=str(tmp_path / "r.json"), out_png=str(tmp_path / "r.png"), quiet=True,
    )  # fmt: skip
    ghost = next(r for r in report["results"] if r["variant"] == "ghost")
    assert "not in this build" in ghost["skipped"]
    assert report["variants"]["ghost"]["skipped"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--projects", "rich"], "NAME==VERSION"),
        (["--variants", "nope", "--dry-run"], "unknown variant"),
        (["--budgets", "lots", "--dry-run"], "--budgets"),
        (["--project-dir", "/no/such/dir", "--dry-run"], "no such directory"),
        (["--limit", "0", "--dry-run"], "--limit"),
        (["--categories", "inproject,nope", "--dry-run"], "--categories"),
    ],
)
def test_cli_bad_input_is_one_line(args: list[str], needle: str) -> None:
    from .test_cli import assert_user_error, nearline

    assert_user_error(nearline("bench", "quality", *args), needle)


def test_exclusion_pattern_is_literal(tmp_path: Path) -> None:
    from nearline.config import IndexSettings
    from nearline.workspace.index import WorkspaceIndex

    names = ["we[ird] #1.py", "!bang.py", "weird.py", "w*.py"]
    for n in names:
        (tmp_path / n).write_text("x = 1\n")
    for n in names:
        idx = WorkspaceIndex([tmp_path], IndexSettings(exclude=[q._gitignore_literal(n)]))
        idx.scan()
        assert sorted(f.rel for f in idx.files()) == sorted(set(names) - {n})


def _ladder_records(model: str, budget: int, ems: dict[str, list[int]]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for v, flags in ems.items():
        for i, em in enumerate(flags):
            out.append({"model": model, "variant": v, "budget": budget, "project": "p",
                        "file": "f.py", "line": i + 1, "category": "inproject" if i % 2 else "infile",
                        "target": "x", "prediction": "x" if em else "y", "parses": True,
                        "service_parses": True, "em": float(em), "es": float(em),
                        "em_checked": float(em), "es_checked": float(em), "ran": True,
                        "source": "model", "latency_ms": 10.0, "evaluated_tokens": 5,
                        "prompt_tokens": 100, "repo_files": [], "api_defined": False,
                        "api_mentioned": False})  # fmt: skip
    return out


def test_context_criterion_per_model_and_budget() -> None:
    # 1K: the oracle wins 8 lines and loses none (p < 0.01); path-distance gets 5 of them:
    # more than half the gain, met. 2K: the oracle gains as much, path-distance only 2: not met.
    # 4K: path-distance loses 7 lines and wins none: not met whatever the oracle does.
    n = 20
    base = [0] * n
    oracle = [1] * 8 + [0] * (n - 8)
    rs = (
        _ladder_records("m", 1024, {"file-level": base, "oracle": oracle,
                                    "path-distance": [1] * 5 + [0] * (n - 5)})
        + _ladder_records("m", 2048, {"file-level": base, "oracle": oracle,
                                      "path-distance": [1] * 2 + [0] * (n - 2)})
        + _ladder_records("m", 4096, {"file-level": [1] * 7 + [0] * (n - 7),
                                      "path-distance": base})
    )  # fmt: skip
    crit = {r["budget"]: r for r in q.context_criterion(q.paired(rs))}
    assert crit[1024]["oracle_gains"] and crit[1024]["half_captured"] and crit[1024]["met"]
    assert crit[2048]["oracle_gains"] and crit[2048]["half_captured"] is False
    assert crit[2048]["met"] is False
    assert crit[4096]["path_distance_loses"] and crit[4096]["met"] is False
    assert crit[4096]["oracle"] is None


def test_merge_pairs_runs_line_by_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    small = _ladder_records(
        "small", 2048, {"file-level": [1, 0, 1, 0], "path-distance": [1, 1, 1, 0]}
    )
    large = _ladder_records("large", 1024, {"file-level": [0, 0, 1, 1]})
    paths = []
    for name, recs in (("a", small), ("b", large)):
        p = tmp_path / f"{name}.json"
        p.write_text(json.dumps({"kind": "nearline-bench-quality", "dry_run": False,
                                 "model": recs[0]["model"], "records": recs}))  # fmt: skip
        paths.append(str(p))
    out = tmp_path / "merged.json"
    rep = q.merge_reports(paths, baseline="large:file-level:1024", out_json=str(out),
                          out_png=str(tmp_path / "m.png"), quiet=True)  # fmt: skip
    cells = {(r["model"], r["variant"], r["budget"]): r for r in rep["results"]}
    assert cells[("small", "path-distance", 2048)]["categories"]["all"]["em_micro"] == 0.75
    against = {(r["model"], r["variant"], r["category"]): r for r in rep["against"]}
    pd = against[("small", "path-distance", "all")]
    # Lines 1, 2 only the small model's; line 4 only the large one's.
    assert (pd["n"], pd["wins"], pd["losses"], pd["em"], pd["baseline_em"]) == (4, 2, 1, 0.75, 0.5)
    assert json.loads(out.read_text())["against"]
    assert "NOT met" not in capsys.readouterr().out  # no oracle, path-distance wins: met
    with pytest.raises(q.QualityError, match="no such cell"):
        q.merge_reports(paths, baseline="large:oracle:1024", out_json=str(out), quiet=True)
    (tmp_path / "dry.json").write_text(
        json.dumps({"kind": "nearline-bench-quality", "dry_run": True})
    )
    with pytest.raises(q.QualityError, match="dry run"):
        q.merge_reports([str(tmp_path / "dry.json")], quiet=True)
