"""What every engine shares: a generation request and its result, and the protocol the
service holds an engine to (``llama`` in this process or a child, ``remote`` on a server)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from nearline.weights.catalog import PromptFormat

StopReason = Literal[
    "eol", "eog", "stop", "max_tokens", "timeout", "cancelled", "context_full", "error"
]


@dataclass(frozen=True)
class GenerationRequest:
    segments: Sequence[tuple[str, bool]]
    """The prompt as (text, is_special) runs; see ``prompt.Prompt.segments``."""
    max_tokens: int = 48
    timeout_s: float | None = None
    single_line: bool = True
    doc: str = ""
    """The document the prompt belongs to: the engine keeps the KV state of recently used
    documents and restores it when the user comes back (empty: no per-document state)."""
    candidates: int = 1
    """Suggestions wanted: above 1, ``GenerationResult.alternatives`` holds up to
    ``candidates - 1`` other lines (greedy continuations of the runner-up first tokens)."""


@dataclass
class GenerationResult:
    text: str
    stop_reason: StopReason
    prompt_tokens: int = 0
    reused_tokens: int = 0
    evaluated_tokens: int = 0
    generated_tokens: int = 0
    prompt_s: float = 0.0
    first_token_s: float = 0.0
    total_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    alternatives: list[tuple[str, float]] = field(default_factory=list)
    """Other lines than ``text`` as (text, log-probability), most probable first; distinct,
    non-empty, each ended by the model (not by a limit)."""


class Cancelled(Exception):
    pass


class Engine(Protocol):
    """What the service needs from a model backend. Call only from the model worker thread."""

    format: PromptFormat

    def tokenize(self, segments: Sequence[tuple[str, bool]]) -> list[int]: ...

    def generate(self, req: GenerationRequest, cancel: threading.Event) -> GenerationResult: ...

    def warm(
        self, segments: Sequence[tuple[str, bool]], cancel: threading.Event, doc: str = ""
    ) -> int: ...

    def info(self) -> dict[str, Any]: ...

    def close(self) -> None: ...
