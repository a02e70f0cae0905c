"""``nearline bench quality --language typescript`` without a model: tree-sitter line
classification on hand-written TS/JS files, the npm tarball handling, the seeded draw, the
oracle's stubs, a dry run end to end; and ``--models`` / ``--latency-json`` (the model column,
the sign test per model, EM against warm p95)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from nearline.bench import quality as q
from nearline.bench import quality_tasks as qt
from nearline.bench import quality_ts as t

from .test_bench_quality import assert_failed_download_is_one_line, assert_tasks_as_marked

UTIL = """\
import { EventEmitter } from "events";

export function computeTotal(items: number[]): number {
  return items.reduce((a, b) => a + b, 0);
}

export class Widget {
  constructor(public size: number) {}

  resize(factor: number): Widget {
    return new Widget(this.size * factor);
  }
}

export interface Options {
  verbose: boolean;
}

export type Shape = { w: number };

export const DEFAULT_SIZE = 10;

export function get(items: number[]): number {
  return items[0];
}

export function shadowed(): number {
  return 1;
}
"""

# Each marked line says what the classifier must make of it.
MAIN_BODY = """\
/**
 * The completion file: computeTotal(items) in a comment is no task.
 */
import { computeTotal, Widget, get, shadowed, DEFAULT_SIZE, type Options } from "./util.js";
import { merge } from "lodash";
import path from "node:path";

function localHelper(x: number): number {
  return x + 1;
}

export function uses(items: number[], opts: Options): number {
  // computeTotal(items) on a comment line is no task
  const total = computeTotal(items); // INPROJECT computeTotal
  const w = new Widget(3).resize(2); // INPROJECT Widget resize
  const value = localHelper(total); // INFILE localHelper
  const data = get(items); // SKIP common API
  const count = items.map((x) => x * 2).length; // SKIP builtins only
  const joined = path.join("a", merge({}, {}).b); // SKIP from packages
  const late = lateHelper(value); // SKIP declared later in this file
  const both = computeTotal([localHelper(1)]); // INPROJECT computeTotal (wins over infile)
  const shadowed = 3; // SKIP a variable, not the function
  const again = shadowed + 1; // SKIP the variable again
  const sized = DEFAULT_SIZE * total; // INPROJECT DEFAULT_SIZE
  const text = `
    computeTotal(items) inside a template string
  `;
  return total + w.size + value + data + count + late + both + again + sized + text.length + joined.length;
}

function lateHelper(v: number): number {
  return v;
}
"""


def main_text() -> str:
    filler = "".join(f"export const CONSTANT_{i} = {i};\n" for i in range(60))
    return MAIN_BODY + "\n" + filler


def write_ts_project(root: Path) -> Path:
    """src/util.ts, src/main.ts (the completion file, 80+ lines); far/ files that can never be
    completion files (short, declarations, too long, not parsing)."""
    src = root / "src"
    src.mkdir(parents=True)
    (src / "util.ts").write_text(UTIL)
    (src / "main.ts").write_text(main_text())
    far = root / "far"
    far.mkdir()
    (far / "short.ts").write_text(
        'import { computeTotal } from "../src/util";\ncomputeTotal([1]);\n'
    )
    (far / "types.d.ts").write_text(
        "".join(f"export declare const d{i}: number;\n" for i in range(100))
    )
    (far / "long.ts").write_text("".join(f"export const v{i} = {i};\n" for i in range(1600)))
    (far / "broken.ts").write_text("function broken( {\n" + "const x = 1;\n" * 100)
    return root


def _declared(text: str, lang: str = "typescript") -> set[str]:
    tree = t.parse_file(text, lang)
    assert tree is not None
    return set(t.declared_names(tree.root_node))


def test_classification_of_marked_lines() -> None:
    text = main_text()
    got = t.classify(text, {"src/util.ts": _declared(UTIL)}, "src/main.ts")
    assert_tasks_as_marked(text, got, "//")


def test_declared_names_in_typescript() -> None:
    assert _declared(UTIL) >= {
        "computeTotal", "Widget", "resize", "Options", "Shape", "DEFAULT_SIZE", "get", "shadowed",
    }  # fmt: skip
    # Local variables are not declarations; a require line is an import.
    assert _declared(
        "const x = require('./x');\nfunction f() {\n  const inner = 1;\n  return inner;\n}\n",
        "javascript",
    ) == {"f"}


def test_skipped_kinds_of_lines() -> None:
    text = (
        "import {\n  a,\n  b,\n} from './m';\n"  # 1-4 an import over lines
        "export { c } from './c';\n"  # 5 a re-export
        "const req = require('./r');\n"  # 6 a require line
        "@decorate(a)\n"  # 7 a decorator
        "export class K extends a.Base {\n"  # 8 a class header
        "  method(\n    x: number,\n  ): void {\n"  # 9-11 a method header over lines
        "    b(x); // trailing comment\n"  # 12 a task despite the comment
        "  }\n}\n"
        "type T =\n  | A\n  | B;\n"  # 15 the first line of a type alias
        "'use strict';\n"  # 18
    )
    tree = t.parse_file(text, "typescript")
    assert tree is not None
    skip = t.skipped_lines(tree.root_node, text.split("\n"))
    assert {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 15, 18} <= skip
    assert 12 not in skip


def test_javascript_commonjs_file() -> None:
    text = (
        "const { helper } = require('./helper');\n"
        "const lodash = require('lodash');\n"
        "class Thing {\n"
        "  run(items) {\n"
        "    const total = helper(items);\n"  # 5 inproject
        "    const merged = lodash.mergeWith(items);\n"  # 6 foreign
        "    return this.report(total, merged);\n"  # 7 none: report is declared later
        "  }\n"
        "  report(total, merged) {\n"
        "    return total + merged;\n"
        "  }\n"
        "  summary(items) {\n"
        "    return this.report(items, items);\n"  # 13 infile
        "  }\n"
        "}\n"
        "module.exports = { Thing };\n"  # 16 infile
    )
    got = {li.line + 1: (li.category, li.names) for li in t.classify(
        text, {"helper.js": {"helper", "mergeWith"}}, "thing.js")}  # fmt: skip
    assert got == {
        5: ("inproject", ("helper",)), 13: ("infile", ("report",)), 16: ("infile", ("Thing",)),
    }  # fmt: skip


def test_files_of_a_project(tmp_path: Path) -> None:
    root = write_ts_project(tmp_path / "proj")
    assert t.ts_files(root) == ["far/broken.ts", "far/long.ts", "far/short.ts", "src/main.ts",
                                "src/util.ts"]  # fmt: skip
    pf = t.scan_ts_project(qt.local_project(root))
    assert [f.rel for f in pf.candidates] == ["src/main.ts"]  # not short, long, broken
    assert "computeTotal" in pf.declared["src/util.ts"]
    assert "far/broken.ts" not in pf.declared


def test_dataset_is_seeded(tmp_path: Path) -> None:
    root = write_ts_project(tmp_path / "proj")
    proj = qt.local_project(root)

    def draw(seed: int, n: int = 2) -> qt.Dataset:
        return qt.build_dataset([proj], seed=seed, lines_per_category=n, scan=t.scan_ts_project)

    a, b = draw(3), draw(3)
    assert a.tasks == b.tasks and len(a.tasks) == 3  # one infile line exists
    assert a.composition()["lines"] == {"inproject": 2, "infile": 1}
    assert {tuple(x.line for x in draw(s).tasks) for s in range(8)} != {
        tuple(x.line for x in a.tasks)
    }  # other seeds draw other inproject lines
    assert draw(0, 10).composition()["lines"] == {"inproject": 4, "infile": 1}
    for task in a.tasks:
        assert task.target == main_text().split("\n")[task.line]


def test_npm_specs_and_tarball_names() -> None:
    assert t.parse_npm_specs("zod@4.6.7:src, @tanstack/query-core@5.108.4") == [
        ("zod", "4.6.7", "src"), ("@tanstack/query-core", "5.108.4", None),
    ]  # fmt: skip
    for bad in ("zod", "zod==4.6.7", "@x@1", "zod@4:../etc", ""):
        with pytest.raises(qt.DatasetError):
            t.parse_npm_specs(bad)
    assert t.tarball_name("@tanstack/query-core", "5.1.0") == "tanstack-query-core-5.1.0.tgz"
    assert len(t.DEFAULT_TS_PROJECTS) == 8
    assert len(t.parse_npm_specs(",".join(t.DEFAULT_TS_PROJECTS))) == 8


def test_failed_npm_pack_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert_failed_download_is_one_line(
        monkeypatch,
        lambda: t.download_tarball("zod", "0.0.0", tmp_path),
        "npm error code E404\nnpm error 404 No match found for version 0.0.0\n",
        "zod@0.0.0",
        "404 No match found",
    )


def test_cached_tarball_is_used_without_npm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = tmp_path / "build" / "package"
    (pkg / "src").mkdir(parents=True)
    (pkg / "src" / "util.ts").write_text(UTIL)
    (pkg / "dist").mkdir()
    npm = tmp_path / "cache" / "npm"
    npm.mkdir(parents=True)
    with tarfile.open(npm / "scope-lib-1.0.0.tgz", "w:gz") as tf:
        tf.add(pkg, arcname="package")
    monkeypatch.setattr(qt.subprocess, "run", None)  # would fail if called
    (proj,) = t.fetch_npm_projects([("@scope/lib", "1.0.0", None)], tmp_path / "cache")
    assert proj.root.name == "src" and t.ts_files(proj.root) == ["util.ts"]
    with pytest.raises(qt.DatasetError, match="no folder 'nope'"):
        t.fetch_npm_projects([("@scope/lib", "1.0.0", "nope")], tmp_path / "cache")


def test_definition_stubs_for_the_oracle() -> None:
    stub = t.definition_stubs(UTIL, ["computeTotal", "resize", "Options", "DEFAULT_SIZE", "Widget"])
    assert stub == (
        "export function computeTotal(items: number[]): number;\n"
        "export class Widget {\n"
        "  constructor(public size: number);\n"
        "}\n"
        "export class Widget {\n"
        "  resize(factor: number): Widget;\n"
        "}\n"
        "export interface Options {\n"
        "  verbose: boolean;\n"
        "}\n"
        "export const DEFAULT_SIZE = 10;\n"
    )
    assert t.definition_stubs(UTIL, ["absent"]) is None
    for name in ("computeTotal", "resize", "Options", "DEFAULT_SIZE", "Widget"):
        assert t.defines(stub, name), name
    # A call is no definition, nor a mention in a comment.
    assert not t.defines("  resize(2);\n  // computeTotal\n  x.computeTotal(1) {\n", "resize")
    assert not t.defines("// function computeTotal\n", "computeTotal")
    assert t.defines("  async *resize<T>(a: T): Gen {\n", "resize")


async def test_dry_run_on_a_typescript_project(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_ts_project(tmp_path / "proj")
    out = tmp_path / "out" / "dry.json"
    report = await q.run_quality(
        project_dirs=[str(root)], language="typescript", dry_run=True, out_json=str(out),
        variants="file-level,path-distance,oracle", budgets="1024", quiet=True,
    )  # fmt: skip
    assert json.loads(out.read_text())["language"] == "typescript"
    assert report["dataset"]["lines"] == {"inproject": 2, "infile": 1}
    by = {r["variant"]: r for r in report["results"]}
    # util.ts fits: path-distance (through the "./util.js" import) has the definitions.
    assert by["path-distance"]["api_recall"] == 1.0
    assert by["file-level"]["api_recall"] == 0.0
    assert by["oracle"]["api_recall"] == 1.0
    oracle = [r for r in report["records"] if r["variant"] == "oracle"]
    assert all(r["repo_files"] == ["src/util.ts"] for r in oracle if r["category"] == "inproject")
    assert {r["model"] for r in report["records"]} == {report["model"]}
    printed = capsys.readouterr().out
    assert "(typescript)" in printed and "src/main.ts" in printed


async def test_two_models_in_one_dry_run(tmp_path: Path) -> None:
    from ..conftest import DEFAULT_ID, SMALL_ID

    root = write_ts_project(tmp_path / "proj")
    report = await q.run_quality(
        project_dirs=[str(root)], language="typescript", dry_run=True,
        out_json=str(tmp_path / "r.json"), variants="file-level,path-distance",
        models=f"{SMALL_ID},{DEFAULT_ID}", quiet=True,
    )  # fmt: skip
    assert report["models"] == [SMALL_ID, DEFAULT_ID]
    assert [(r["model"], r["variant"]) for r in report["results"]] == [
        (m, v) for m in (SMALL_ID, DEFAULT_ID) for v in ("file-level", "path-distance")
    ]
    assert len(report["records"]) == 2 * 2 * 3
    assert report["chart"] and Path(report["chart"]).is_file()


def test_parse_models_and_language() -> None:
    assert q.parse_models(None, None) == [None]
    assert q.parse_models(None, "a") == ["a"]
    assert q.parse_models("a, b,a", None) == ["a", "b"]
    with pytest.raises(q.QualityError, match="not both"):
        q.parse_models("a", "b")
    with pytest.raises(q.QualityError, match="empty"):
        q.parse_models(" , ", None)
    assert q.parse_language(None) == "python"
    assert q.parse_language("TS") == "typescript" and q.parse_language("javascript") == "typescript"
    with pytest.raises(q.QualityError, match="--language"):
        q.parse_language("cobol")


def _rec(model: str, variant: str, line: int, em: float) -> dict[str, object]:
    return {"model": model, "variant": variant, "budget": 1024, "project": "p", "file": "f",
            "line": line, "category": "inproject", "ran": True, "em": em, "es": em}  # fmt: skip


def test_sign_test_is_per_model() -> None:
    records = [
        *(_rec("a", "file-level", i, 0.0) for i in range(6)),
        *(_rec("a", "path-distance", i, 1.0) for i in range(6)),
        *(_rec("b", "file-level", i, 1.0) for i in range(6)),
        *(_rec("b", "path-distance", i, 1.0) for i in range(6)),
    ]
    rows = {(r["model"], r["category"]): r for r in q.paired(records)}
    assert rows[("a", "all")]["wins"] == 6 and rows[("a", "all")]["p"] == pytest.approx(1 / 32)
    # Model b's file-level lines are not model a's baseline.
    assert rows[("b", "all")]["wins"] == 0 and rows[("b", "all")]["losses"] == 0


def _latency(path: Path, model: str, p95: float, budget: int | None = None) -> str:
    settings: dict[str, object] = {"completion": {"debounceMs": 0}}
    if budget:
        settings["context"] = {"budgetTokens": budget}
    path.write_text(json.dumps({"model": model, "settings": settings,
                                "nearline": {"p50_ms": p95 / 2, "p95_ms": p95}}))  # fmt: skip
    return str(path)


def test_em_against_latency(tmp_path: Path) -> None:
    def row(model: str, variant: str, em: float) -> dict[str, object]:
        return {"model": model, "variant": variant, "budget": 1024,
                "categories": {"all": {"em_micro": em}}}  # fmt: skip

    report = {
        "dry_run": False, "partial": False, "model": "small", "models": ["small", "big"],
        "language": "python",
        "results": [row("small", "file-level", 0.2), row("small", "path-distance", 0.25),
                    row("big", "file-level", 0.3), row("big", "path-distance", 0.2),
                    {"model": "big", "variant": "ring-buffer", "budget": 1024, "skipped": "x"}],
    }  # fmt: skip
    lats = q.load_latency_reports([
        _latency(tmp_path / "s.json", "small", 200.0),
        _latency(tmp_path / "b.json", "big", 600.0, 1024),
        _latency(tmp_path / "o.json", "other", 50.0),
    ])  # fmt: skip
    notes: list[str] = []
    points = q.pareto_points(report, lats, notes.append)
    front = {(p["model"], p["variant"]) for p in points if p["pareto"]}
    assert front == {("small", "path-distance"), ("big", "file-level")}
    assert len(points) == 4 and any("other" in n for n in notes)
    png = q.write_pareto_chart(report, points, tmp_path / "p.png", notes.append)
    assert png and Path(png).stat().st_size > 1000


def test_bad_latency_json_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(q.QualityError, match="cannot read"):
        q.load_latency_reports([str(tmp_path / "missing.json")])
    (tmp_path / "x.json").write_text('{"kind": "something else"}')
    with pytest.raises(q.QualityError, match="not a `nearline bench latency --json` report"):
        q.load_latency_reports([str(tmp_path / "x.json")])


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--language", "cobol", "--dry-run"], "--language"),
        (["--language", "typescript", "--projects", "zod==4.6.7", "--dry-run"], "NAME@VERSION"),
        (["--models", "a", "--model", "b", "--dry-run"], "not both"),
        (["--models", ",", "--dry-run"], "--models is empty"),
        (["--models", "no-such-model", "--dry-run"], "no-such-model"),
        (["--latency-json", "/no/such.json", "--dry-run"], "--latency-json"),
    ],
)
def test_cli_bad_input_is_one_line(args: list[str], needle: str) -> None:
    from .test_cli import assert_user_error, nearline

    assert_user_error(nearline("bench", "quality", *args), needle)
