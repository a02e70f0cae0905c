"""The cold-start step on llama.cpp and the small model (issue #15, point 5): a request in a
file nothing was read for is answered from the short prompt (few tokens read), the full prompt
is read in the background, and the next request uses it (hardly anything left to read). The
engine's cached_prefix says what it holds, in process and through the model process."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from nearline.completion.service import CompletionService, Query
from nearline.config import parse_settings
from nearline.engine.base import GenerationRequest
from nearline.engine.factory import create_local_engine
from nearline.engine.llama import LlamaEngine

from ..conftest import SMALL_ID

pytestmark = pytest.mark.model

SHORT = 64
# ~650 SmolLM2 tokens before the cursor: within the small model's budget, uncut.
TEXT = "".join(f"item_{i} = compute({i}, 'x')\n" for i in range(80)) + "total = compute(\n"
CURSOR = (80, len("total = compute("))


def service(isolation: str) -> CompletionService:
    s, problems = parse_settings({
        "model": {"id": SMALL_ID, "threads": 1, "diskCacheMb": 0},
        "completion": {"debounceMs": 0, "speculate": False, "coldPromptTokens": SHORT},
        "context": {"composer": "file-level"},
        "engine": {"isolation": isolation},
    })  # fmt: skip
    assert not problems
    return CompletionService(s)


def query(text: str = TEXT, line: int = CURSOR[0], col: int = CURSOR[1]) -> Query:
    return Query(
        uri="file:///w/mod.py", text=text, line=line, col=col,
        path=Path("/w/mod.py"), rel="mod.py",
    )  # fmt: skip


async def settle(svc: CompletionService) -> None:
    for _ in range(3000):
        if not svc._tasks and not svc.inflight:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the background read did not finish")


@pytest.mark.parametrize("isolation", ["thread", "process"])
async def test_short_first_then_full(small_model: Path, isolation: str) -> None:
    svc = service(isolation)
    await svc.start()
    assert svc.state == "ready", svc.error
    try:
        full_tokens = svc.prompt_tokens(svc.build_prompt(query()))
        assert full_tokens > 4 * SHORT
        out = await svc.complete(query())
        assert out.source == "model"
        first = svc.recent[-1]
        assert first["short"] is True
        assert first["evaluated"] <= SHORT + 16 < full_tokens
        await settle(svc)
        warm = [r for r in svc.recent if r["source"] == "warm-up"]
        assert warm and warm[-1]["evaluated"] >= full_tokens - SHORT
        # The user goes on to the next line: the full prompt, almost all of it in the cache.
        out = await svc.complete(query(TEXT + "result = ", CURSOR[0] + 1, len("result = ")))
        second = svc.recent[-1]
        assert second["source"] == "model" and second["short"] is False
        assert second["prompt"] >= full_tokens - 8
        assert second["evaluated"] < 16
    finally:
        svc.close()


def test_cached_prefix_counts_what_the_engine_holds(small_model: Path) -> None:
    s, problems = parse_settings(
        {"model": {"id": SMALL_ID, "threads": 1, "diskCacheMb": 0, "stateCacheMb": 64}}
    )
    assert not problems
    eng = create_local_engine(s)
    assert isinstance(eng, LlamaEngine)
    try:
        a = [(TEXT, False)]
        b = [(TEXT.replace("item_", "other_"), False)]
        cached, total = eng.cached_prefix(a)
        assert cached == 0 and total > 500
        eng.generate(GenerationRequest(a, 4, doc="a"), threading.Event())
        assert eng.cached_prefix(a) == (total, total)
        # Another document's prompt: the KV cache now holds b, a's state is kept aside.
        eng.generate(GenerationRequest(b, 4, doc="b"), threading.Event())
        assert eng.cached_prefix(a, "a") == (total, total)
        eng.reset()
        eng._states.clear()
        assert eng.cached_prefix(a)[0] == 0
    finally:
        eng.close()
