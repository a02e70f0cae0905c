from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from nearline.completion import composers as context
from nearline.completion.composers import (
    BM25_MAX_TOKENS,
    COMPOSERS,
    PREFIX_CUT_STEP,
    RING_CHUNK_LINES,
    RING_CHUNKS,
    ComposeRequest,
    bm25_scores,
    chunk_sim,
    code_tokens,
    compose_bm25,
    compose_path_distance,
    compose_ring_buffer,
    cut_prefix,
    import_specs,
    path_distance,
    python_outline,
    resolve_imports,
    snippets_of,
    tail_lines_within,
)
from nearline.completion.prompt import RepoFile
from nearline.completion.service import CompletionService, Query
from nearline.config import IndexSettings, parse_settings
from nearline.engine.tokens import ApproxCounter, load_counter
from nearline.workspace.index import WorkspaceIndex

from .fakes import FakeEngine, approx_count


def words(text: str) -> int:
    """A simple exact counter for tests: one token per whitespace-separated word plus newlines."""
    return len(text.split()) + text.count("\n")


@pytest.mark.parametrize(
    ("a", "b", "d"),
    [
        ("a.py", "b.py", 0),
        ("pkg/a.py", "pkg/b.py", 0),
        ("pkg/a.py", "b.py", 1),
        ("pkg/a.py", "pkg/sub/b.py", 1),
        ("pkg/x/a.py", "pkg/y/b.py", 2),
        ("x/y/z/a.py", "b.py", 3),
        ("x/a.py", "y/b.py", 2),
    ],
)
def test_path_distance(a: str, b: str, d: int) -> None:
    assert path_distance(a, b) == d
    assert path_distance(b, a) == d


@dataclass(frozen=True)
class F:
    path: Path
    rel: str
    language: str


class Source:
    def __init__(self, files: dict[str, str]) -> None:
        self.texts = {Path("/w") / k: v for k, v in files.items()}

    def files(self, language: str | None = None) -> list[F]:
        langs = {".py": "python", ".ts": "typescript"}
        out = [F(p, str(p.relative_to("/w")), langs.get(p.suffix, "text")) for p in self.texts]
        return sorted(
            (f for f in out if language is None or f.language == language), key=lambda f: f.rel
        )

    def text(self, path: Path) -> str | None:
        return self.texts.get(path)

    def tokens_for(self, path: Path) -> int:
        return words(self.texts[path])


def req(
    current: str,
    budget: int,
    same_language: bool = True,
    query: str = "",
    recent: tuple[str, ...] = (),
    language: str = "python",
    layout: str = "per-file",
) -> ComposeRequest:
    return ComposeRequest(
        current_rel=current, current_path=Path("/w") / current, language=language, budget=budget,
        same_language=same_language, query=query, recent=recent, layout=layout,
    )  # fmt: skip


PROJECT = {
    "app/main.py": "main = 1\n",
    "app/util.py": "def util():\n    return 1\n",
    "app/sub/deep.py": "deep = 2\n",
    "lib/far.py": "far = 3\n",
    "top.py": "top = 4\n",
    "README.md": "docs here\n",
}


def test_farthest_first_nearest_last_current_excluded() -> None:
    files = compose_path_distance(req("app/main.py", 10_000), Source(PROJECT), words)
    order = [f.path for f in files]
    assert "app/main.py" not in order
    assert order[-1] == "app/util.py"  # distance 0: nearest, right before the current file
    dists = [path_distance("app/main.py", p) for p in order]
    assert dists == sorted(dists, reverse=True)
    assert "README.md" not in order  # same language only by default
    with_md = compose_path_distance(
        req("app/main.py", 10_000, same_language=False), Source(PROJECT), words
    )
    assert "README.md" in [f.path for f in with_md]


def test_budget_fills_nearest_first_and_cuts_the_last_file_keeping_its_end() -> None:
    near = "".join(f"near_{i} = {i}\n" for i in range(10))
    far = "".join(f"far_{i} = {i}\n" for i in range(50))
    src = Source({"a/cur.py": "x\n", "a/near.py": near, "far/away/f.py": far})
    near_cost = words(near) + 1 + words("a/near.py\n")
    budget = near_cost + 1 + words("far/away/f.py\n") + 20
    files = compose_path_distance(req("a/cur.py", budget), src, words)
    assert [f.path for f in files] == ["far/away/f.py", "a/near.py"]
    far_part = files[0]
    assert far_part.truncated and far_part.tokens <= 20
    assert far.endswith(far_part.text)  # the end of the file is kept
    assert far_part.text.startswith("far_")  # cut at a line boundary
    total = sum(f.tokens + 1 + words(f.path + "\n") for f in files)
    assert total <= budget


def test_nothing_when_no_budget() -> None:
    assert compose_path_distance(req("app/main.py", 0), Source(PROJECT), words) == []


def test_composition_is_deterministic() -> None:
    a = compose_path_distance(req("app/main.py", 30), Source(PROJECT), words)
    b = compose_path_distance(req("app/main.py", 30), Source(PROJECT), words)
    assert a == b


def test_tail_lines_within() -> None:
    text = "".join(f"line {i}\n" for i in range(100))
    tail, n = tail_lines_within(text, 30, words)
    assert n <= 30 and text.endswith(tail) and tail.startswith("line ")
    assert tail_lines_within(text, 0, words) == ("", 0)
    assert tail_lines_within("short\n", 10, words) == ("short\n", 2)


def test_cut_prefix_is_sticky_while_typing() -> None:
    """The cut line moves in steps: consecutive keystrokes keep the same first line, so the
    prompt's start (and the KV cache) stays valid."""
    lines = [f"value_{i} = compute({i})" for i in range(500)]
    base = "\n".join(lines) + "\n"
    cuts = set()
    for typed in ["r", "re", "res", "resu", "resul", "result = "]:
        text, n, first = cut_prefix(base + typed, 400, words)
        assert n <= 400
        assert text.endswith(typed)
        cuts.add(first)
    assert len(cuts) == 1
    assert next(iter(cuts)) % PREFIX_CUT_STEP == 0


def test_cut_prefix_single_huge_line() -> None:
    text, n, _ = cut_prefix("x " * 10_000, 50, words)
    assert n <= 50 and text


WIDE_LINES = [
    "s = '" + "中文注释日本語한국어" * 300,  # CJK: 3 UTF-8 bytes a character
    "s = '" + "🎉👍🏽🇫🇷👩‍💻" * 300,  # emoji, modifiers, flags, ZWJ sequences
]


def _assert_wide_cut_fits(count: Callable[[str], int]) -> None:
    """A cursor line longer than the budget in characters that take several tokens each: the
    kept end fits the budget (an overshoot is cut by the engine from the prompt's start)."""
    for line in WIDE_LINES:
        for prefix in (line, "x = 1\n" * 40 + line):
            for budget in (16, 100, 333):
                text, n, _ = cut_prefix(prefix, budget, count)
                assert n == count(text) and n <= budget, (budget, n)
                assert prefix.endswith(text) and n > budget // 2


@pytest.mark.parametrize("bytes_per_token", [1.0, 2.0])
def test_cut_prefix_wide_characters_approximate_counter(bytes_per_token: float) -> None:
    _assert_wide_cut_fits(ApproxCounter(bytes_per_token=bytes_per_token).count)
    _assert_wide_cut_fits(approx_count)


def test_cut_prefix_wide_characters_real_tokenizer(default_model: Path) -> None:
    _assert_wide_cut_fits(load_counter(default_model).count)


def _service(tmp_path: Path, **raw: object) -> tuple[CompletionService, WorkspaceIndex]:
    settings, problems = parse_settings({"completion": {"debounceMs": 0}, **raw})
    assert not problems
    svc = CompletionService(settings, lambda _s: FakeEngine(), count_tokens=approx_count)
    idx = WorkspaceIndex([tmp_path], IndexSettings(), count_tokens=approx_count)
    idx.scan()
    svc.index = idx
    return svc, idx


def test_consecutive_keystrokes_extend_the_prompt(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "models.py").write_text("class Item:\n    name: str\n" * 20)
    (tmp_path / "pkg" / "app.py").write_text("")
    svc, _idx = _service(tmp_path)
    path = tmp_path / "pkg" / "app.py"
    doc = "from .models import Item\n\n\ndef make():\n    return It"
    prompts = []
    for extra in ["", "e", "em"]:
        text = doc + extra
        lines = text.split("\n")
        q = Query(uri=path.as_uri(), text=text, line=len(lines) - 1, col=len(lines[-1]), path=path,
                  rel="pkg/app.py", root=tmp_path)  # fmt: skip
        prompts.append(svc.build_prompt(q).text)
    for a, b in itertools.pairwise(prompts):
        # Everything up to the typed character is identical; only the tail differs.
        head = a.split("<|fim_suffix|>")[0]
        assert b.startswith(head)
    assert "class Item" in prompts[0]


def test_repo_context_recomposed_only_when_the_workspace_changes(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("alpha = 1\n")
    (tmp_path / "b.py").write_text("")
    svc, idx = _service(tmp_path)
    q = Query(uri=(tmp_path / "b.py").as_uri(), text="x = ", line=0, col=4, path=tmp_path / "b.py",
              rel="b.py", root=tmp_path)  # fmt: skip
    first = svc.build_prompt(q)
    repo_before = svc._repo_blocks[q.uri]
    svc.build_prompt(Query(**{**q.__dict__, "text": "x = 1", "col": 5}))
    assert svc._repo_blocks[q.uri] is repo_before  # same object: not recomposed on a keystroke
    (tmp_path / "c.py").write_text("gamma = 3\n")
    idx.refresh([tmp_path / "c.py"])
    second = svc.build_prompt(q)
    assert svc._repo_blocks[q.uri] is not repo_before
    assert "gamma = 3" in second.text and "gamma" not in first.text


def test_budget_is_respected_with_prefix_priority(tmp_path: Path) -> None:
    for i in range(30):
        (tmp_path / f"m{i}.py").write_text("".join(f"v{i}_{j} = {j}\n" for j in range(40)))
    (tmp_path / "cur.py").write_text("")
    svc, _ = _service(
        tmp_path, context={"budgetTokens": 1000}, completion={"maxTokens": 32, "debounceMs": 0}
    )
    prefix = "".join(f"line_{j} = {j}\n" for j in range(50)) + "y = "
    lines = prefix.split("\n")
    q = Query(uri=(tmp_path / "cur.py").as_uri(), text=prefix, line=len(lines) - 1, col=4,
              path=tmp_path / "cur.py", rel="cur.py", root=tmp_path)  # fmt: skip
    p = svc.build_prompt(q)
    assert svc.prompt_tokens(p) <= 1000 - 32
    pre = next(x for x in p.parts if x.kind == "prefix")
    assert pre.text == prefix  # the whole prefix fits and is kept
    assert any(x.kind == "repo-file" for x in p.parts)


def test_composers_offered() -> None:
    from nearline.config import COMPOSERS as NAMES

    assert set(COMPOSERS) == set(NAMES) == {"file-level", "path-distance", "ring-buffer", "bm25"}


# -- imports first ----------------------------------------------------------------------------


def test_import_specs_python() -> None:
    text = (
        "import os, pkg.mod as m\n"
        "from .a import b, c as d\n"
        "from .. import sibling\n"
        "from pkg.sub import (\n"
        "    thing,\n"
        ")\n"
        "    from .lazy import later  # inside a function\n"
        "x = 'from nowhere import nothing'\n"
    )
    specs = import_specs(text, "python")
    assert specs[:2] == ("os", "pkg.mod") or "os" in specs
    for spec in ("pkg.mod", ".a", ".a.b", ".a.c", "..", "..sibling", "pkg.sub", ".lazy"):
        assert spec in specs, spec
    assert "nowhere" not in specs
    assert import_specs(
        "import { x } from './util'\nconst y = require('../y')\n", "typescript"
    ) == (
        "./util",
        "../y",
    )
    assert import_specs("import x\n", "rust") == ()


IMPORTING = {
    "src/pkg/__init__.py": "from .core import Engine\n",
    "src/pkg/core.py": "class Engine:\n    def run(self, n: int) -> int:\n        return n\n",
    "src/pkg/util/__init__.py": "",
    "src/pkg/util/helpers.py": "def helper(x):\n    return x\n\n\ndef other():\n    pass\n",
    "src/pkg/app/main.py": "",
    "src/pkg/app/views.py": "VIEW = 1\n",
    "src/other/core.py": "class Engine:\n    pass\n",
    "web/util.ts": "export const u = 1\n",
    "web/app.ts": "",
}


def test_resolve_relative_and_absolute_imports() -> None:
    src = Source(IMPORTING)
    files = src.files()
    query = (
        "from pkg.util.helpers import helper\n"
        "from ..core import Engine\n"
        "from . import views\n"
        "from .. import util\n"
        "import json\n"
    )
    specs = import_specs(query, "python")
    got = [(f.rel, set(n)) for f, n in resolve_imports(specs, "src/pkg/app/main.py", files)]
    assert got == [
        ("src/pkg/util/helpers.py", {"helper"}),  # absolute, found under src/
        ("src/pkg/core.py", {"Engine"}),  # relative, not src/other/core.py
        ("src/pkg/app/views.py", set()),  # `from . import views`: a submodule
        ("src/pkg/util/__init__.py", set()),
    ]
    got = resolve_imports(("pkg.util.helpers",), "src/pkg/app/main.py", files)
    assert [(f.rel, set(n)) for f, n in got] == [("src/pkg/util/helpers.py", set())]
    # `from . import name` where name is not a module: a name of the package's __init__.
    got = resolve_imports(
        import_specs("from . import Engine\n", "python"), "src/pkg/core.py", files
    )
    assert [(f.rel, set(n)) for f, n in got] == [("src/pkg/__init__.py", {"Engine"})]
    js = resolve_imports(("./util",), "web/app.ts", files)
    assert [f.rel for f, _ in js] == ["web/util.ts"]


def test_imported_files_come_nearest_as_stubs_of_what_is_imported() -> None:
    src = Source(IMPORTING)
    query = "from ..util.helpers import helper\n\n"
    files = compose_path_distance(req("src/pkg/app/main.py", 10_000, query=query), src, words)
    assert files[-1].path == "src/pkg/util/helpers.py"  # nearest of all, though farther away
    assert "def helper(x):" in files[-1].text and "other" not in files[-1].text
    assert files[-1].truncated
    assert files[-2].path == "src/pkg/app/views.py"  # then by path distance
    # Stubs of imported names are nearest, modules imported whole come before them.
    query = "from . import views\nfrom ..util.helpers import helper\n"
    files = compose_path_distance(req("src/pkg/app/main.py", 10_000, query=query), src, words)
    assert [f.path for f in files][-2:] == ["src/pkg/app/views.py", "src/pkg/util/helpers.py"]
    assert not files[-2].truncated and files[-1].truncated
    # Without the import, path distance alone.
    plain = compose_path_distance(req("src/pkg/app/main.py", 10_000), src, words)
    assert plain[-1].path == "src/pkg/app/views.py"
    assert "def other():" in next(f.text for f in plain if f.path == "src/pkg/util/helpers.py")


def test_python_outline() -> None:
    text = (
        "import os\n"
        "LIMIT = 10\n"
        "class Box:\n"
        '    """A box.\n\n    Long text.\n    """\n'
        "    def __init__(self, size):\n"
        "        self.size = size\n"
        "    def _private(self):\n"
        "        pass\n"
        "    def open(\n"
        "        self, force: bool = False\n"
        "    ) -> None:\n"
        "        return None\n"
        "def make(n):\n"
        "    return Box(n)\n"
    )
    out = python_outline(text)
    assert out is not None
    assert "LIMIT = 10" in out and "class Box:" in out and '"""A box."""' in out
    assert "def __init__(self, size):" in out and "_private" not in out
    assert "    def open(\n        self, force: bool = False\n    ) -> None:\n        ...\n" in out
    assert "def make(n):\n    ...\n" in out and "return" not in out
    compact = python_outline(text, level=1)
    assert compact is not None
    assert "class Box:\n    def __init__(self, size):\n        ...\n" in compact
    assert "A box" not in compact and "def open" not in compact and "def make(n):" in compact
    assert python_outline(text, level=2) == "LIMIT = 10\nclass Box:\ndef make(n):\n"
    only = python_outline(text, frozenset({"make"}))
    assert only == "def make(n):\n    ...\n"
    assert python_outline("def broken(:\n") is None


# -- ring buffer -------------------------------------------------------------------------------


def numbered(tag: str, n: int) -> str:
    return "".join(f"{tag}_{i} = compute_{tag}({i})\n" for i in range(n))


def test_ring_buffer_chunks_of_recent_files_most_recent_nearest() -> None:
    src = Source(
        {
            "a.py": numbered("alpha", 100),
            "b.py": numbered("beta", 10),
            "c.py": numbered("gamma", 10),
            "cur.py": "",
            "tiny.py": "x = 1\n",
            "notes.md": numbered("md", 10),
        }
    )
    recent = ("gone.py", "c.py", "a.py", "tiny.py", "notes.md", "cur.py", "b.py")
    files = compose_ring_buffer(req("cur.py", 100_000, recent=recent), src, words)
    assert [f.path for f in files] == ["c.py", "a.py", "b.py"]  # most recent last
    a = files[1]
    # Files shorter than the chunk size whole, longer ones 33 lines (llama.vim's piece).
    assert a.text == numbered("alpha", RING_CHUNK_LINES // 2 + 1)
    assert files[0].text == numbered("gamma", 10)
    assert a.truncated and not files[0].truncated
    # A path used again moves to its latest place.
    again = compose_ring_buffer(req("cur.py", 100_000, recent=(*recent, "c.py")), src, words)
    assert [f.path for f in again] == ["a.py", "b.py", "c.py"]
    assert compose_ring_buffer(req("cur.py", 100_000), src, words) == []


def test_ring_buffer_dedups_similar_chunks_and_the_text_at_the_cursor() -> None:
    base = numbered("same", 30)
    src = Source(
        {
            "old.py": base,
            "new.py": base.replace("same_29 = compute_same(29)", "same_29 = 0"),
            "other.py": numbered("other", 30),
            "cur.py": "",
        }
    )
    assert chunk_sim(base, base) == 1.0
    assert chunk_sim("", "") == 1.0
    assert chunk_sim("a b", "c d") == 0.0
    assert chunk_sim(base, src.texts[Path("/w/new.py")]) > 0.9
    files = compose_ring_buffer(req("cur.py", 100_000, recent=("old.py", "new.py")), src, words)
    assert [f.path for f in files] == ["new.py"]  # the older near-duplicate is evicted
    # Chunks much like the text before the cursor are dropped (llama.vim: similarity > 0.5).
    files = compose_ring_buffer(
        req("cur.py", 100_000, query=base, recent=("other.py", "new.py")), src, words
    )
    assert [f.path for f in files] == ["other.py"]


def test_ring_buffer_size_and_budget() -> None:
    texts = {f"m{i:02}.py": numbered(f"mod{i}", 10) for i in range(RING_CHUNKS + 4)}
    src = Source({**texts, "cur.py": ""})
    recent = tuple(sorted(texts))
    files = compose_ring_buffer(req("cur.py", 1_000_000, recent=recent), src, words)
    assert len(files) == RING_CHUNKS
    assert [f.path for f in files] == list(recent[-RING_CHUNKS:])
    budget = 100
    files = compose_ring_buffer(req("cur.py", budget, recent=recent), src, words)
    assert sum(f.tokens + 1 + words(f.path + "\n") for f in files) <= budget
    assert files[-1].path == recent[-1] and not files[-1].truncated
    assert files[0].truncated and texts[files[0].path].endswith(files[0].text)
    assert compose_ring_buffer(req("cur.py", 0, recent=recent), src, words) == []


# -- bm25 --------------------------------------------------------------------------------------


def test_snippets_are_sliding_windows() -> None:
    text = "".join(f"line{i}\n" for i in range(45))
    snips = snippets_of("f.py", text)
    assert [(s.start, s.end) for s in snips] == [(0, 20), (10, 30), (20, 40), (30, 45)]
    assert snips[1].text.startswith("line10\n") and snips[1].length == 20
    assert [(s.start, s.end) for s in snippets_of("g.py", "a\nb\n")] == [(0, 2)]


def test_bm25_ranks_rare_shared_terms_first() -> None:
    docs = [
        snippets_of("a.py", "def parse_header(raw):\n    return raw.split()\n")[0],
        snippets_of("b.py", "def render(page):\n    return page\n")[0],
        snippets_of("c.py", "x = raw\ny = raw\n")[0],
    ]
    scores = bm25_scores(code_tokens("header = parse_header(raw)"), docs)
    assert scores[0] > scores[2] > scores[1] == 0.0


def test_bm25_composer_top_snippets_best_last_capped() -> None:
    filler = "".join(f"unrelated_{i} = {i}\n" for i in range(60))
    src = Source(
        {
            "cur.py": "",
            "lib/http.py": filler + "def parse_header(raw):\n    return raw.split(':')\n" + filler,
            "lib/util.py": "def split_text(data):\n    return data\n",
            "docs.md": "parse_header parse_header parse_header\n",
        }
    )
    query = "def handle(raw):\n    name = parse_header(raw)\n"
    files = compose_bm25(req("cur.py", 10_000, query=query), src, words)
    assert files, "something matches"
    assert "def parse_header(raw):" in files[-1].text  # the best is nearest the current file
    assert files[-1].path == "lib/http.py"
    assert all(f.path != "docs.md" for f in files)  # same language only
    assert len(files) <= 5
    http = [f for f in files if f.path == "lib/http.py"]
    assert len(http) == 1  # overlapping windows of one file are not repeated
    # The best of everything, ordered lowest score first.
    assert compose_bm25(req("cur.py", 10_000, query=""), src, words) == []


def test_bm25_respects_512_tokens_and_the_budget() -> None:
    def body(n: int) -> str:
        return "".join(f"value = lookup(key_{i}, table)\n" for i in range(n))

    def cost(files: list[RepoFile]) -> int:
        return sum(f.tokens + 1 + words(f.path + "\n") for f in files)

    query = "x = lookup(key_1, table)\n"
    # Ten matching files of 15 lines (78 tokens each with framing): the top five.
    src = Source({"cur.py": "", **{f"m{i}.py": body(15) for i in range(10)}})
    top = compose_bm25(req("cur.py", 100_000, query=query), src, words)
    assert len(top) == 5 and cost(top) <= BM25_MAX_TOKENS
    # Windows of 20 lines (103 tokens each): 512 tokens hold four and the end of a fifth.
    src = Source({"cur.py": "", **{f"m{i}.py": body(20) for i in range(10)}})
    big = compose_bm25(req("cur.py", 100_000, query=query), src, words)
    assert len(big) == 5 and BM25_MAX_TOKENS - 5 <= cost(big) <= BM25_MAX_TOKENS
    cut = [f for f in big if f.text != body(20)]
    assert len(cut) == 1 and body(20).endswith(cut[0].text)
    small = compose_bm25(req("cur.py", 150, query=query), src, words)
    assert len(small) == 2 and cost(small) <= 150


# -- through the service -----------------------------------------------------------------------


def _q(tmp_path: Path, rel: str, text: str) -> Query:
    lines = text.split("\n")
    return Query(uri=(tmp_path / rel).as_uri(), text=text, line=len(lines) - 1,
                 col=len(lines[-1]), path=tmp_path / rel, rel=rel, root=tmp_path)  # fmt: skip


def _long_workspace(tmp_path: Path) -> None:
    for i in range(10):
        (tmp_path / f"m{i}.py").write_text("".join(f"v{i}_{j} = {j}\n" for j in range(200)))
    (tmp_path / "cur.py").write_text("")


LONG_PREFIX = "".join(f"line_{j} = compute({j})\n" for j in range(400)) + "y = "


@pytest.mark.parametrize("share", [0.5, 1.0])
def test_a_wide_cursor_line_keeps_the_prompt_within_the_budget(
    tmp_path: Path, share: float
) -> None:
    """A cursor line of emoji longer than the budget: the prompt still fits, so the engine
    cuts nothing from its start (the repository block and the FIM tokens stay)."""
    _long_workspace(tmp_path)
    svc, _ = _service(
        tmp_path,
        context={"budgetTokens": 1000, "prefixShare": share},
        completion={"maxTokens": 32, "debounceMs": 0},
    )
    p = svc.build_prompt(_q(tmp_path, "cur.py", "x = 1\n" + WIDE_LINES[1]))
    assert svc.prompt_tokens(p) <= 1000 - 32
    assert p.fim and any(x.kind == "repo-file" for x in p.parts)


@pytest.mark.parametrize("share", [0.3, 0.5, 1.0])
def test_prefix_share_splits_the_budget(tmp_path: Path, share: float) -> None:
    _long_workspace(tmp_path)
    svc, _ = _service(
        tmp_path,
        context={"budgetTokens": 1000, "prefixShare": share},
        completion={"maxTokens": 32, "debounceMs": 0},
    )
    p = svc.build_prompt(_q(tmp_path, "cur.py", LONG_PREFIX))
    budget = 1000 - 32
    assert svc.prompt_tokens(p) <= budget
    pre = sum(x.tokens or 0 for x in p.parts if x.kind == "prefix")
    repo = sum(x.tokens or 0 for x in p.parts if x.kind == "repo-file")
    if share == 1.0:
        # The old behaviour: the prefix takes all but what its 16-line cut step leaves.
        assert pre >= 0.85 * budget
        assert repo <= budget - pre
    else:
        # At most its share, plus what the composer could not use (framing, a line's slack).
        assert pre <= budget * share + 40
        assert repo >= budget * (1 - share) - 120


def test_prefix_takes_what_the_repository_leaves(tmp_path: Path) -> None:
    (tmp_path / "small.py").write_text("SMALL = 1\n")
    (tmp_path / "cur.py").write_text("")
    svc, _ = _service(
        tmp_path, context={"budgetTokens": 1000}, completion={"maxTokens": 32, "debounceMs": 0}
    )
    p = svc.build_prompt(_q(tmp_path, "cur.py", LONG_PREFIX))
    pre = sum(x.tokens or 0 for x in p.parts if x.kind == "prefix")
    assert "SMALL = 1" in p.text
    assert pre > 0.8 * (1000 - 32)


def test_keystrokes_extend_the_prompt_with_a_prefix_share(tmp_path: Path) -> None:
    _long_workspace(tmp_path)
    svc, _ = _service(
        tmp_path, context={"budgetTokens": 1000}, completion={"maxTokens": 32, "debounceMs": 0}
    )
    prompts = []
    text = LONG_PREFIX
    repo_objects = set()
    for ch in "compute(1)":
        text += ch
        prompts.append(svc.build_prompt(_q(tmp_path, "cur.py", text)).text)
        repo_objects.add(id(svc._repo_blocks[(tmp_path / "cur.py").as_uri()]))
    # The prefix overflows: its cut moves by PREFIX_CUT_STEP lines once the typing has filled
    # the room the last move left, at most once in ten keystrokes; every other keystroke
    # extends the prompt, and the repository block is never recomposed.
    moves = [not b.startswith(a.split("<|fim_suffix|>")[0]) for a, b in itertools.pairwise(prompts)]
    assert sum(moves) <= 1
    assert len(repo_objects) == 1


def test_service_records_recent_documents_for_the_ring_buffer(tmp_path: Path) -> None:
    for name in ("a.py", "b.py", "c.py"):
        (tmp_path / name).write_text(numbered(name[0], 5))
    (tmp_path / "cur.py").write_text("")
    svc, _ = _service(tmp_path, context={"composer": "ring-buffer"})
    svc.note_used("b.py")
    svc.note_used("a.py")
    svc.note_used("b.py")
    assert list(svc.recent_docs) == ["a.py", "b.py"]
    p = svc.build_prompt(_q(tmp_path, "cur.py", "x = "))
    paths = [x.path for x in p.parts if x.kind == "repo-file"]
    assert paths == ["a.py", "b.py"]
    for i in range(40):
        svc.note_used(f"x{i}.py")
    assert len(svc.recent_docs) == 32


def test_completing_marks_the_document_used(tmp_path: Path) -> None:
    import asyncio

    (tmp_path / "cur.py").write_text("")
    svc, _ = _service(tmp_path)

    async def go() -> None:
        await svc.start()
        await svc.complete(_q(tmp_path, "cur.py", "x = "))

    try:
        asyncio.run(go())
    finally:
        svc.close()
    assert list(svc.recent_docs) == ["cur.py"]


def test_bm25_recomposes_per_line_not_per_keystroke(tmp_path: Path) -> None:
    (tmp_path / "lib.py").write_text("def parse_header(raw):\n    return raw\n")
    (tmp_path / "cur.py").write_text("")
    svc, _ = _service(tmp_path, context={"composer": "bm25"})
    uri = (tmp_path / "cur.py").as_uri()
    p = svc.build_prompt(_q(tmp_path, "cur.py", "h = parse_header(raw)\nx = "))
    assert "def parse_header" in p.text
    first = svc._repo_blocks[uri]
    svc.build_prompt(_q(tmp_path, "cur.py", "h = parse_header(raw)\nx = p"))
    assert svc._repo_blocks[uri] is first
    svc.build_prompt(_q(tmp_path, "cur.py", "h = parse_header(raw)\nx = p\n"))
    assert svc._repo_blocks[uri] is not first


def test_path_distance_recomposes_when_an_import_is_added(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "near.py").write_text("NEAR = 1\n")
    (tmp_path / "far").mkdir()
    (tmp_path / "far" / "away.py").write_text("def api(x):\n    return x\n")
    (tmp_path / "pkg" / "cur.py").write_text("")
    svc, _ = _service(tmp_path, context={"layout": "per-file"})
    p = svc.build_prompt(_q(tmp_path, "pkg/cur.py", "x = "))
    assert [x.path for x in p.parts if x.kind == "repo-file"][-1] == "pkg/near.py"
    p = svc.build_prompt(_q(tmp_path, "pkg/cur.py", "from far.away import api\nx = "))
    assert [x.path for x in p.parts if x.kind == "repo-file"][-1] == "far/away.py"
    assert "def api(x):\n    ...\n" in p.text
    assert context.import_specs("from far.away import api\n", "python") == (
        "far.away",
        "far.away.api",
    )


def test_names_re_exported_by_a_package_are_found_where_they_are_defined() -> None:
    src = Source(
        {
            "pkg/__init__.py": "from .impl import Engine, make\nfrom ._compat import shim\n",
            "pkg/_compat.py": "from .impl import shim\n",
            "pkg/impl.py": (
                "class Engine:\n    def run(self):\n        pass\n\n\n"
                "def make():\n    return Engine()\n\n\ndef shim():\n    pass\n\n\ndef unused():\n"
                "    pass\n"
            ),
            "pkg/other.py": "OTHER = 1\n",
            "app.py": "",
        }
    )
    query = "from pkg import Engine, shim\n"
    files = compose_path_distance(req("app.py", 10_000, query=query), src, words)
    last = files[-1]
    assert last.path == "pkg/impl.py" and last.truncated
    assert "class Engine:" in last.text and "def shim():" in last.text
    assert "def unused" not in last.text
    # The package only passes them on: it comes in by path distance, whole, like any file.
    assert [f.path for f in files if f.truncated] == ["pkg/impl.py"]


def test_an_imported_stub_that_does_not_fit_goes_in_compact() -> None:
    methods = "".join(
        f'    def method_{i}(self, a, b):\n        """Doc {i}."""\n        return a\n'
        for i in range(30)
    )
    src = Source(
        {
            "lib.py": "class Big:\n    def __init__(self, x):\n        self.x = x\n" + methods,
            "app.py": "",
        }
    )
    query = "from lib import Big\n"
    files = compose_path_distance(req("app.py", 60, query=query), src, words)
    assert files[-1].path == "lib.py"
    assert files[-1].text == "class Big:\n    def __init__(self, x):\n        ...\n"
    tight = compose_path_distance(req("app.py", 8, query=query), src, words)
    assert tight[-1].text == "class Big:\n"
    roomy = compose_path_distance(req("app.py", 10_000, query=query), src, words)
    assert "def method_29(self, a, b):" in roomy[-1].text


def test_imported_files_whose_names_were_used_last_are_nearest() -> None:
    src = Source(
        {
            "a.py": "def alpha():\n    pass\n",
            "b.py": "def beta():\n    pass\n",
            "app.py": "",
        }
    )
    head = "from a import alpha\nfrom b import beta\n\n"

    def order(body: str) -> list[str]:
        files = compose_path_distance(req("app.py", 10_000, query=head + body), src, words)
        return [f.path for f in files]

    assert order("beta()\nalpha()\n") == ["b.py", "a.py"]
    assert order("alpha()\nbeta()\n") == ["a.py", "b.py"]
    assert order("") == ["b.py", "a.py"]  # unused: in import order, the first nearest


def test_the_server_reports_opened_and_focused_documents_by_workspace_path(
    tmp_path: Path,
) -> None:
    from nearline.lsp.server import NearlineServer

    (tmp_path / "pkg").mkdir()
    svc, _ = _service(tmp_path)
    server = NearlineServer()
    server.roots = [tmp_path]
    server.service = svc
    server.note_used((tmp_path / "pkg" / "a.py").as_uri())
    server.note_used((tmp_path.parent / "elsewhere.py").as_uri())  # outside: by its name
    server.note_used((tmp_path / "b.py").as_uri())
    assert list(svc.recent_docs) == ["pkg/a.py", "elsewhere.py", "b.py"]
    assert server.rel_of(tmp_path / "pkg" / "a.py") == ("pkg/a.py", tmp_path)
    assert server.rel_of(None) == (None, None)


def test_a_place_in_a_long_file_gets_the_same_prompt_whatever_came_before(
    tmp_path: Path,
) -> None:
    """When the file's prefix alone overflows the budget, the repository block no longer
    depends on where the cursor was first: the same place gives the same prompt in a server
    that has just started as in one that composed elsewhere in the file before (a KV state
    saved on disk before a restart must match the new prompt beyond its first tokens)."""
    (tmp_path / "lib.py").write_text(
        "".join(f"def helper_{k}(value):\n    return value + {k}\n\n" for k in range(60))
    )
    body = "".join(
        f"row_{j} = helper_{j % 60}({j}) + {'word ' * (j % 7)!r}.count('w')\n" for j in range(400)
    )
    text = "from lib import helper_1, helper_2, helper_3\n" + body
    lines = text.split("\n")
    (tmp_path / "cur.py").write_text(text)

    def at(line: int) -> Query:
        t = "\n".join(lines[:line]) + "\nresult = "
        return _q(tmp_path, "cur.py", t)

    settings = {"context": {"budgetTokens": 1024}, "completion": {"maxTokens": 32}}
    fresh = {}
    for line in (120, 260, 390):
        svc, _ = _service(tmp_path, **settings)
        fresh[line] = svc.build_prompt(at(line)).text
        assert "<|file_sep|>lib.py" in fresh[line]  # the block keeps a room
    for order in itertools.permutations((120, 260, 390)):
        svc, _ = _service(tmp_path, **settings)
        for line in order:
            assert svc.build_prompt(at(line)).text == fresh[line], (order, line)
