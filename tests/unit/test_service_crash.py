"""How the service reacts when the model process dies (logic only, with a scripted engine; the
real thing — llama.cpp in a child killed with SIGKILL — is tests/e2e/test_worker.py and
tests/model/test_worker.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from nearline.completion.service import CompletionService, Query
from nearline.config import parse_settings
from nearline.engine.base import GenerationRequest, GenerationResult
from nearline.engine.worker import WorkerCrashed, WorkerFailed

from .fakes import FakeEngine, approx_count


class CrashingEngine(FakeEngine):
    """Dies on the requests it is told to; ``restart()`` as ProcessEngine has it."""

    def __init__(self, crashes: int = 1, restart_fails: bool = False) -> None:
        super().__init__(reply="answer()")
        self.crashes_left = crashes
        self.restart_fails = restart_fails
        self.restarts = 0
        self.down = False
        self.generate_calls = 0
        self.restart_s = 0.0

    def generate(self, req: GenerationRequest, cancel: threading.Event) -> GenerationResult:
        self.generate_calls += 1
        if self.down:
            raise AssertionError("called while the model process is down, before restart()")
        if self.crashes_left:
            self.crashes_left -= 1
            self.down = True
            raise WorkerCrashed("the model process was killed by signal SIGKILL while writing")
        return super().generate(req, cancel)

    def restart(self) -> None:
        time.sleep(self.restart_s)
        if self.restart_fails:
            raise WorkerFailed("the model process crashed 3 times within 60 s; giving up")
        self.restarts += 1
        self.down = False


def service(engine: FakeEngine) -> tuple[CompletionService, list[tuple[str, str]]]:
    s, problems = parse_settings(
        {"completion": {"debounceMs": 0}, "context": {"composer": "file-level"}}
    )
    assert not problems
    messages: list[tuple[str, str]] = []
    svc = CompletionService(
        s, lambda _s: engine, count_tokens=approx_count, on_message=lambda *m: messages.append(m)
    )
    return svc, messages


def q(text: str, line: int, col: int) -> Query:
    return Query(uri="file:///w/a.py", text=text, line=line, col=col, path=Path("/w/a.py"),
                 rel="a.py")  # fmt: skip


async def test_a_crash_ends_the_request_is_told_once_and_the_next_request_is_served() -> None:
    engine = CrashingEngine()
    svc, messages = service(engine)
    await svc.start()
    out = await svc.complete(q("a = \n", 0, 4))
    assert out.source == "error" and out.suggestions == []
    # The restart was queued ahead of the next request on the model thread.
    out = await svc.complete(q("b = \n", 0, 4))
    assert out.source == "model" and out.suggestions[0].text == "answer()"
    assert engine.restarts == 1
    assert messages == [
        ("warning", "Nearline: the model process was killed by signal SIGKILL while writing; "
                    "restarting it."),
    ]  # fmt: skip
    assert svc.stats.crashes == 1 and svc.state == "ready"
    svc.close()


async def test_a_crash_during_warm_up_is_handled_the_same_way() -> None:
    engine = CrashingEngine()

    def warm(segments: object, cancel: threading.Event, doc: str = "") -> int:
        engine.down = True
        raise WorkerCrashed("the model process was killed by signal SIGSEGV while reading ahead")

    engine.warm = warm  # type: ignore[method-assign]
    engine.crashes_left = 0
    svc, messages = service(engine)
    await svc.start()
    assert await svc.warm(q("a = 1\n", 1, 0)) == 0
    out = await svc.complete(q("b = \n", 0, 4))
    assert out.suggestions[0].text == "answer()"
    assert len(messages) == 1 and "SIGSEGV" in messages[0][1]
    svc.close()


async def test_giving_up_turns_the_service_off_with_one_error() -> None:
    engine = CrashingEngine(restart_fails=True)
    engine.restart_s = 0.3  # the next request is queued behind the restart
    svc, messages = service(engine)
    await svc.start()
    await svc.complete(q("a = \n", 0, 4))
    # Queued behind the restart that gives up: answered empty without calling the engine.
    out = await svc.complete(q("b = \n", 0, 4))
    assert out.source == "error" and not out.suggestions
    assert engine.generate_calls == 1
    assert svc.state == "error" and "giving up" in (svc.error or "")
    assert [level for level, _ in messages] == ["warning", "error"]
    out = await svc.complete(q("c = \n", 0, 4))
    assert out.source == "unavailable"
    assert len(messages) == 2
    # New settings build a new engine: the service is back.
    engine.restart_fails = False
    engine.down = False
    await svc.start()
    assert svc.state == "ready"
    assert (await svc.complete(q("d = \n", 0, 4))).suggestions[0].text == "answer()"
    svc.close()
