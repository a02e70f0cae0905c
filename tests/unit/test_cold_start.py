"""The cold-start step (issue #15, point 5): a request whose full prompt no saved state holds
is answered from a short prompt, and the full prompt is read in the background so that the
next requests use it. The engine here reports what it holds; tests/model/test_cold_start.py
runs the same path on llama.cpp."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from nearline.completion.service import (
    BACKGROUND_IDLE_S,
    COLD_GAIN,
    SHORT_DOC,
    CompletionService,
    Query,
    wants_short_prompt,
)
from nearline.config import parse_settings
from nearline.engine.base import GenerationRequest, GenerationResult
from nearline.engine.llama import common_prefix

from .fakes import FakeEngine, approx_count


class HoldingEngine(FakeEngine):
    """Holds the prompts it has read (generated from or warmed), as a KV cache would, and
    says through cached_prefix how much of a prompt a read one starts with."""

    def __init__(self) -> None:
        super().__init__(reply="value")
        self.read: set[str] = set()
        self.queries: list[tuple[int, int]] = []

    def cached_prefix(self, segments: Sequence[tuple[str, bool]], doc: str = "") -> tuple[int, int]:
        text = "".join(t for t, _ in segments)
        total = approx_count(text)
        common = max((common_prefix(text, r) for r in self.read), default=0)
        held = (approx_count(text[:common]), total)
        self.queries.append(held)
        return held

    def generate(self, req: GenerationRequest, cancel: threading.Event) -> GenerationResult:
        self.read.add("".join(t for t, _ in req.segments))
        return super().generate(req, cancel)

    def warm(
        self, segments: Sequence[tuple[str, bool]], cancel: threading.Event, doc: str = ""
    ) -> int:
        self.read.add("".join(t for t, _ in segments))
        return super().warm(segments, cancel, doc)


def make_service(engine: FakeEngine, cold: int | None = None) -> CompletionService:
    raw: dict[str, dict[str, object]] = {
        "completion": {"debounceMs": 0, "speculate": False},
        "context": {"composer": "file-level"},
    }
    if cold is not None:
        raw["completion"]["coldPromptTokens"] = cold
    s, problems = parse_settings(raw)
    assert not problems
    return CompletionService(s, lambda _s: engine, count_tokens=approx_count)


# About 4,000 tokens of file before the cursor (approx_count: 3 bytes a token).
LINES = [f"value_{i} = compute({i}, scale=2)" for i in range(400)]
TEXT = "\n".join([*LINES, "result = ", "print(result)", ""])
CURSOR = (len(LINES), len("result = "))


def query(text: str = TEXT) -> Query:
    return Query(
        uri="file:///w/pkg/mod.py", text=text, line=CURSOR[0], col=CURSOR[1],
        path=Path("/w/pkg/mod.py"), rel="pkg/mod.py",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("cached", "total", "short", "expected"),
    [
        (0, 2000, 256, True),  # nothing held: short
        (0, 256, 256, False),  # the whole prompt is no longer than the short one
        (0, 257, 256, True),
        (1900, 2000, 256, False),  # a saved state holds most of it
        (2000 - 256, 2000, 256, False),  # what is left costs no more than the short prompt
        (2000 - 257, 2000, 256, True),
        (0, 2000, 0, False),  # off
    ],
)
def test_the_decision(cached: int, total: int, short: int, expected: bool) -> None:
    assert COLD_GAIN == 1
    assert wants_short_prompt(cached, total, short) is expected


def test_the_short_prompt_keeps_the_format() -> None:
    svc = make_service(FakeEngine())
    fmt = svc.prompt_format()
    full = svc.build_prompt(query())
    short = svc.build_short_prompt(query())
    assert fmt.fim_prefix and fmt.fim_suffix and fmt.fim_middle and fmt.file_sep
    for prompt in (full, short):
        specials = [t for t, special in prompt.segments() if special]
        assert specials == [fmt.file_sep, fmt.fim_prefix, fmt.fim_suffix, fmt.fim_middle]
    text = "".join(t for t, _ in short.segments())
    assert "pkg/mod.py\n" in text
    assert text.split(fmt.fim_suffix)[0].endswith("result = ")
    assert svc.prompt_tokens(short) <= 256 + 16
    assert svc.prompt_tokens(full) > 4 * svc.prompt_tokens(short)


async def settle(svc: CompletionService) -> None:
    """Wait for the background read the service spawned (if any)."""
    for _ in range(200):
        if not svc._tasks:
            return
        await asyncio.sleep(0.01)


async def test_a_cold_request_is_answered_from_the_short_prompt_then_the_full_one() -> None:
    engine = HoldingEngine()
    svc = make_service(engine)
    await svc.start()
    out = await svc.complete(query())
    assert out.source == "model" and out.suggestions[0].text == "value"
    first = engine.calls[0]
    assert first.doc == "file:///w/pkg/mod.py" + SHORT_DOC
    assert approx_count("".join(t for t, _ in first.segments)) <= 256 + 16
    assert svc.recent[-1]["short"] is True
    # The full prompt is read in the background...
    await settle(svc)
    assert len(engine.warms) == 1
    assert approx_count("".join(t for t, _ in engine.warms[0])) > 1000
    # ...and the next request uses it.
    q2 = query(TEXT.replace("result = ", "result = ("))
    out = await svc.complete(Query(**{**q2.__dict__, "col": CURSOR[1] + 1}))
    second = engine.calls[1]
    assert second.doc == "file:///w/pkg/mod.py"
    assert svc.recent[-1]["short"] is False
    svc.close()


async def test_a_held_prompt_is_used_at_once() -> None:
    engine = HoldingEngine()
    svc = make_service(engine)
    await svc.start()
    await svc.warm(query())
    await svc.complete(query())
    assert engine.calls[0].doc == "file:///w/pkg/mod.py"
    assert len(engine.warms) == 1  # no second background read
    svc.close()


async def test_off_means_the_full_prompt() -> None:
    engine = HoldingEngine()
    svc = make_service(engine, cold=0)
    await svc.start()
    await svc.complete(query())
    assert engine.calls[0].doc == "file:///w/pkg/mod.py"
    assert not engine.queries  # not even asked
    svc.close()


async def test_an_engine_that_cannot_tell_gets_the_full_prompt() -> None:
    # A remote server (RemoteEngine.cached_prefix says None), or an engine without the query.
    for engine in (HoldingEngine(), FakeEngine()):
        if isinstance(engine, HoldingEngine):
            engine.cached_prefix = lambda segments, doc="": None  # type: ignore[method-assign]
        svc = make_service(engine)
        await svc.start()
        out = await svc.complete(query())
        assert out.source == "model"
        assert engine.calls[0].doc == "file:///w/pkg/mod.py"
        await settle(svc)
        assert not engine.warms
        svc.close()


async def test_typing_on_defers_the_full_prompts_read_to_a_pause() -> None:
    """While the user types on (a request every few tens of milliseconds), reading the full
    prompt in the background would take the model thread between keystrokes and switch the KV
    cache between the short prompt's state and the full prompt's at each one: it waits for a
    pause (BACKGROUND_IDLE_S), then runs once."""
    engine = HoldingEngine()
    svc = make_service(engine)
    await svc.start()
    line = "result = "
    for ch in "compute(":
        line += ch
        q = query(TEXT.replace("result = ", line))
        await svc.complete(Query(**{**q.__dict__, "col": len(line)}))
        await asyncio.sleep(BACKGROUND_IDLE_S / 10)  # the editor's round trips between keys
    assert not engine.warms
    assert all(c.doc.endswith(SHORT_DOC) for c in engine.calls)
    await asyncio.sleep(BACKGROUND_IDLE_S * 2)
    await settle(svc)
    assert len(engine.warms) == 1  # the newest only
    assert line in "".join(t for t, _ in engine.warms[0])
    svc.close()


async def test_a_waiting_request_says_what_it_waited_for() -> None:
    """bench latency's breakdown of the slow keystrokes names what held the model thread."""
    engine = HoldingEngine()
    engine.warm_s = 0.3
    svc = make_service(engine)
    await svc.start()
    warming = asyncio.ensure_future(svc.warm(query(TEXT.replace("result = ", "answer = "))))
    while not engine.warms:
        await asyncio.sleep(0.01)
    await svc.complete(query())
    await warming
    rec = [r for r in svc.recent if r.get("source") == "model"][-1]
    assert rec["waited_on"] == "warm-up"
    svc.close()
