"""A scripted engine for logic tests of the service (never the only test of a feature: the
same paths run against llama.cpp in tests/model and tests/e2e)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from nearline.engine.base import GenerationRequest, GenerationResult
from nearline.weights.catalog import load_catalog


class FakeEngine:
    def __init__(
        self,
        reply: str = "x + 1",
        delay_s: float = 0.0,
        script: Callable[[str], str] | None = None,
        alternatives: list[tuple[str, float]] | None = None,
    ) -> None:
        self.format = load_catalog().get("qwen2.5-coder-0.5b-instruct-q4_k_m").format
        self.reply = reply
        self.script = script  # prompt text -> reply, when replies depend on the prompt
        # Other lines for requests with candidates > 1, as the real engine ranks them.
        self.alternatives = alternatives or []
        self.delay_s = delay_s
        self.calls: list[GenerationRequest] = []
        self.started = threading.Event()
        self.warms: list[list[tuple[str, bool]]] = []
        self.warm_s = 0.0

    def tokenize(self, segments: Sequence[tuple[str, bool]]) -> list[int]:
        return [len(t) for t, _ in segments]

    def generate(self, req: GenerationRequest, cancel: threading.Event) -> GenerationResult:
        self.calls.append(req)
        self.started.set()
        deadline = time.monotonic() + self.delay_s
        while time.monotonic() < deadline:
            if cancel.is_set():
                return GenerationResult(text="", stop_reason="cancelled")
            time.sleep(0.005)
        text = self.script("".join(t for t, _ in req.segments)) if self.script else self.reply
        return GenerationResult(
            text=text,
            stop_reason="eol",
            prompt_tokens=10,
            alternatives=self.alternatives[: req.candidates - 1],
        )

    def warm(
        self, segments: Sequence[tuple[str, bool]], cancel: threading.Event, doc: str = ""
    ) -> int:
        self.warms.append(list(segments))
        self.started.set()
        deadline = time.monotonic() + self.warm_s
        while time.monotonic() < deadline:
            if cancel.is_set():
                return -1
            time.sleep(0.005)
        return len(segments)

    def info(self) -> dict[str, Any]:
        return {"backend": "fake"}

    def close(self) -> None:
        pass


def approx_count(text: str) -> int:
    return max(0, (len(text.encode()) + 2) // 3)
