"""``context.layout: shared``: every file of a directory starts its repository block the same
way, so a sibling's prompt starts with tokens a file opened before it already read; the
budget stays exact."""

from __future__ import annotations

from pathlib import Path

import pytest

from nearline.completion.composers import compose_path_distance, frame_cost
from nearline.completion.prompt import Prompt
from nearline.completion.service import CompletionService, Query
from nearline.config import IndexSettings, parse_settings
from nearline.engine.llama import common_prefix
from nearline.workspace.index import WorkspaceIndex

from .fakes import FakeEngine, approx_count
from .test_context import Source, req, words


def _package(tmp_path: Path) -> None:
    """A package of eight modules, one subpackage and a top-level script."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    for i in range(8):
        body = "".join(f"def f{i}_{j}(x):\n    return x + {j}\n\n" for j in range(12))
        (pkg / f"m{i}.py").write_text(f'"""Module {i}."""\n\n' + body)
    (pkg / "__init__.py").write_text("from .m0 import f0_0\n")
    (pkg / "sub" / "deep.py").write_text("DEEP = 1\n" * 20)
    (tmp_path / "setup.py").write_text("SETUP = 1\n")


def _service(tmp_path: Path, layout: str, budget: int = 1000) -> CompletionService:
    settings, problems = parse_settings({
        "completion": {"debounceMs": 0, "maxTokens": 32},
        "context": {"layout": layout, "budgetTokens": budget},
    })  # fmt: skip
    assert not problems
    svc = CompletionService(settings, lambda _s: FakeEngine(), count_tokens=approx_count)
    idx = WorkspaceIndex([tmp_path], IndexSettings(), count_tokens=approx_count)
    idx.scan()
    svc.index = idx
    return svc


def _prompt(svc: CompletionService, tmp_path: Path, rel: str, lines: int = 3) -> Prompt:
    head = (tmp_path / rel).read_text().split("\n")[:lines]
    buffer = "\n".join(head) + "\nvalue = "
    q = Query(uri=(tmp_path / rel).as_uri(), text=buffer, line=len(head), col=8,
              path=tmp_path / rel, rel=rel, root=tmp_path)  # fmt: skip
    return svc.build_prompt(q)


def _repo_chars(p: Prompt) -> int:
    return sum(len(x.text) for x in p.parts if x.kind in ("repo-file", "header") and x.path)


@pytest.mark.parametrize("pair", [("pkg/m5.py", "pkg/m6.py"), ("pkg/m7.py", "pkg/m4.py")])
def test_siblings_share_most_of_the_repository_block(tmp_path: Path, pair: tuple[str, str]) -> None:
    """Two modules of one package: with ``shared`` their prompts agree up to the first place
    where one of the two stands in the other's block (the files sort by path: m4..m7 come
    after the four before them); with ``per-file`` they agree on the repository's name only."""
    _package(tmp_path)
    a, b = pair
    # Their cursors stand at different depths, so their blocks get different room.
    shared = _service(tmp_path, "shared")
    pa, pb = _prompt(shared, tmp_path, a, 3), _prompt(shared, tmp_path, b, 20)
    assert common_prefix(pa.text, pb.text) >= 0.5 * min(_repo_chars(pa), _repo_chars(pb))
    old = _service(tmp_path, "per-file")
    oa, ob = _prompt(old, tmp_path, a, 3), _prompt(old, tmp_path, b, 20)
    assert common_prefix(oa.text, ob.text) < 0.1 * min(_repo_chars(oa), _repo_chars(ob))


def test_the_shared_block_is_exact_within_the_budget(tmp_path: Path) -> None:
    _package(tmp_path)
    for budget in (200, 400, 1000, 3000):
        svc = _service(tmp_path, "shared", budget)
        for rel in ("pkg/m0.py", "pkg/m3.py", "pkg/sub/deep.py", "setup.py"):
            p = _prompt(svc, tmp_path, rel)
            total = svc.prompt_tokens(p)
            assert total <= budget - 32, (budget, rel)
            if budget >= 1000:
                # The room the prefix leaves is used, as per-file uses it.
                old = _service(tmp_path, "per-file", budget)
                assert total >= old.prompt_tokens(_prompt(old, tmp_path, rel)) - 40, (budget, rel)


def test_a_smaller_budget_gives_a_start_of_the_larger_block() -> None:
    """Siblings get different room (their prefixes differ): the smaller block must be a start
    of the larger one, the last file cut keeping its start."""
    files = {f"p/m{i}.py": "".join(f"v{i}_{j} = {j}\n" for j in range(30)) for i in range(6)}
    files["p/cur.py"] = ""
    src = Source(files)
    big = compose_path_distance(req("p/cur.py", 400, layout="shared"), src, words)
    for budget in (60, 120, 200, 333):
        small = compose_path_distance(req("p/cur.py", budget, layout="shared"), src, words)
        assert sum(f.tokens + frame_cost(f.path, words) for f in small) <= budget
        assert [f.path for f in small] == [f.path for f in big][: len(small)]
        for s, b in zip(small, big, strict=False):
            assert b.text.startswith(s.text)
        assert small[-1].truncated and small[-1].text.startswith("v")


def test_nearest_first_then_the_imported_stubs_last() -> None:
    files = {
        "app/cur.py": "",
        "app/util.py": "def util():\n    return 1\n",
        "app/models.py": "class Item:\n    def price(self):\n        return 1\n",
        "lib/far.py": "far = 3\n",
    }
    query = "from .models import Item\n\nx = Item().price()\n"
    got = compose_path_distance(
        req("app/cur.py", 10_000, query=query, layout="shared"), Source(files), words
    )
    assert [f.path for f in got] == ["app/util.py", "lib/far.py", "app/models.py"]
    assert got[-1].truncated  # the stub of the imported name
