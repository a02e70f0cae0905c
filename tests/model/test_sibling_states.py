"""Starting a document from another document's saved state (issue #15, point 2), on llama.cpp
and the small model: the engine restores whichever saved state shares the longest prefix with
a new prompt, keeps that state for its own document, does so within a document too (after a
short cold prompt), and ``cached_prefix`` counts it; through the service, a sibling of a warm
file under ``context.layout: shared`` gets its first answer from the full prompt."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from nearline.completion.service import CompletionService, Query
from nearline.config import IndexSettings, parse_settings
from nearline.engine.base import GenerationRequest, GenerationResult
from nearline.engine.factory import create_local_engine
from nearline.engine.llama import LlamaEngine
from nearline.workspace.index import WorkspaceIndex

from ..conftest import SMALL_ID

pytestmark = pytest.mark.model


def lines(tag: str, n: int) -> str:
    return "".join(f"item_{i}_{tag} = compute({i}, '{tag}')\n" for i in range(n))


# ~700 SmolLM2 tokens both prompts start with, then ~100 of their own.
SHARED = lines("shared", 50)
A = SHARED + lines("aaa", 7) + "total = "
B = SHARED + lines("bbb", 7) + "total = "
C = lines("other", 40) + "x = "


@pytest.fixture
def engine(small_model: Path) -> LlamaEngine:
    s, problems = parse_settings(
        {"model": {"id": SMALL_ID, "threads": 1, "diskCacheMb": 0, "stateCacheMb": 128}}
    )
    assert not problems
    eng = create_local_engine(s)
    assert isinstance(eng, LlamaEngine)
    return eng


def run(engine: LlamaEngine, text: str, doc: str) -> GenerationResult:
    return engine.generate(
        GenerationRequest([(text, False)], 4, None, True, doc), threading.Event()
    )


def test_a_new_document_starts_from_the_state_sharing_the_longest_prefix(
    engine: LlamaEngine,
) -> None:
    try:
        shared = len(engine.tokenize([(SHARED, False)]))
        run(engine, A, "a")
        run(engine, C, "c")  # the KV cache now holds C; A's state is kept aside
        held, total = engine.cached_prefix([(B, False)], "b")
        assert shared - 1 <= held < total
        res = run(engine, B, "b")
        assert "restored_ms" in res.extra
        # Only what A's state does not hold is read (the last held token is read again).
        assert res.prompt_tokens - res.evaluated_tokens >= held - 1
        assert res.evaluated_tokens <= total - shared + 2
        # A's state served B as a start and is still A's: returning to A reads nothing.
        back = run(engine, A, "a")
        assert "restored_ms" in back.extra
        assert back.evaluated_tokens <= 2
    finally:
        engine.close()


def test_within_a_document_the_full_prompt_starts_from_a_siblings_state(
    engine: LlamaEngine,
) -> None:
    """B's first answer came from a short prompt (only the file's last lines): its full
    prompt's read must still start from A's state, as ``cached_prefix`` told the service."""
    try:
        run(engine, A, "a")
        run(engine, lines("bbb", 4) + "total = ", "b")  # the short prompt: the cache holds it
        held, total = engine.cached_prefix([(B, False)], "b")
        assert held >= total - 120
        res = run(engine, B, "b")
        assert res.prompt_tokens - res.evaluated_tokens >= held - 1
    finally:
        engine.close()


# -- through the service -------------------------------------------------------------------------
SHORT = 64


def _workspace(root: Path) -> None:
    """Two larger modules every file of ``pkg`` gets first, then the two being edited."""
    pkg = root / "pkg"
    pkg.mkdir()
    (pkg / "a_models.py").write_text(
        "".join(f"def model_{i}(x):\n    return x * {i}\n\n" for i in range(25))
    )
    (pkg / "b_store.py").write_text(
        "".join(f"def store_{i}(x):\n    return x + {i}\n\n" for i in range(25))
    )
    (pkg / "y.py").write_text("Y = model_1(2)\n")
    (pkg / "z.py").write_text("Z = store_1(3)\n")
    (root / "other").mkdir()
    (root / "other" / "c.py").write_text("".join(f"c_{i} = {i}\n" for i in range(120)))


def _service(root: Path, layout: str) -> CompletionService:
    s, problems = parse_settings({
        "model": {"id": SMALL_ID, "threads": 1, "diskCacheMb": 0},
        "completion": {"debounceMs": 0, "speculate": False, "coldPromptTokens": SHORT},
        "context": {"layout": layout},
        "engine": {"isolation": "thread"},
    })  # fmt: skip
    assert not problems
    svc = CompletionService(s)
    idx = WorkspaceIndex([root], IndexSettings(), count_tokens=svc.count_tokens)
    idx.scan()
    svc.index = idx
    return svc


def _query(root: Path, rel: str, text: str) -> Query:
    rows = text.split("\n")
    return Query(uri=(root / rel).as_uri(), text=text, line=len(rows) - 1, col=len(rows[-1]),
                 path=root / rel, rel=rel, root=root)  # fmt: skip


async def _settle(svc: CompletionService) -> None:
    for _ in range(3000):
        if not svc._tasks and not svc.inflight:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the background read did not finish")


@pytest.mark.parametrize("layout", ["shared", "per-file"])
async def test_a_sibling_of_a_warm_file_answers_from_its_full_prompt(
    tmp_path: Path, small_model: Path, layout: str
) -> None:
    _workspace(tmp_path)
    svc = _service(tmp_path, layout)
    await svc.start()
    assert svc.state == "ready", svc.error
    try:
        for rel, text in (("pkg/y.py", "Y = model_1(2)\nW = "), ("other/c.py", "c_0 = 0\nd = ")):
            await svc.complete(_query(tmp_path, rel, text))
            await _settle(svc)
        # z.py after y.py (and a file elsewhere in between): y.py's state starts z.py's prompt.
        # A longer prefix than y.py's, as siblings have: less room for the block.
        q = _query(tmp_path, "pkg/z.py", "Z = store_1(3)\nZ2 = store_2(Z, 4)\nZ3 = Z2 + 1\nV = ")
        total = svc.prompt_tokens(svc.build_prompt(q))
        assert total > 4 * SHORT
        out = await svc.complete(q)
        assert out.source == "model"
        first = svc.recent[-1]
        if layout == "shared":
            assert first["short"] is False
            assert first["evaluated"] <= SHORT
        else:
            # Today's layout shares almost nothing: the short prompt answers first.
            assert first["short"] is True
    finally:
        svc.close()
