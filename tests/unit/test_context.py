from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import pytest

from nearline.config import parse_settings
from nearline.context import (
    PREFIX_CUT_STEP,
    ComposeRequest,
    compose_path_distance,
    cut_prefix,
    path_distance,
    tail_lines_within,
)
from nearline.index import IndexSettings, WorkspaceIndex
from nearline.service import CompletionService, Query

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
        out = [
            F(p, str(p.relative_to("/w")), "python" if p.suffix == ".py" else "text")
            for p in self.texts
        ]
        return sorted(
            (f for f in out if language is None or f.language == language), key=lambda f: f.rel
        )

    def text(self, path: Path) -> str | None:
        return self.texts.get(path)

    def tokens_for(self, path: Path) -> int:
        return words(self.texts[path])


def req(current: str, budget: int, same_language: bool = True) -> ComposeRequest:
    return ComposeRequest(
        current_rel=current, current_path=Path("/w") / current, language="python", budget=budget,
        same_language=same_language,
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
    state = svc._docs[q.uri]
    repo_before = state.repo
    svc.build_prompt(Query(**{**q.__dict__, "text": "x = 1", "col": 5}))
    assert state.repo is repo_before  # same object: not recomposed on a keystroke
    (tmp_path / "c.py").write_text("gamma = 3\n")
    idx.refresh([tmp_path / "c.py"])
    second = svc.build_prompt(q)
    assert state.repo is not repo_before
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
