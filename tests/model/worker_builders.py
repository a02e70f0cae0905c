"""Builders for model processes in tests. The model process imports this module by name (the
"spawn" start method pickles the builder by reference), so it lives outside the test modules
and imports nothing heavy at the top."""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nearline.config import Settings
from nearline.engine.base import GenerationRequest, GenerationResult
from nearline.engine.llama import LlamaEngine


def segfault() -> None:
    """A real native crash: read address 0."""
    ctypes.string_at(0)


def segfault_builder() -> Any:
    segfault()
    raise AssertionError("unreachable")


def abort_builder() -> Any:
    os.abort()


def crash_if_exists(marker: str, builder: Callable[[], Any]) -> Any:
    """Load normally, unless ``marker`` exists: then crash during the load."""
    if Path(marker).exists():
        segfault()
    return builder()


def noisy(builder: Callable[[], Any]) -> Any:
    """Write to stdout every way a library could (Python, the fd, C stdio), then load."""
    print("NOISY-PRINT", flush=True)
    os.write(1, b"NOISY-FD1\n")
    libc = ctypes.CDLL(None)
    libc.puts(b"NOISY-C-STDIO")
    libc.fflush(None)
    return builder()


def print_on_generate(builder: Callable[[], Any]) -> Any:
    """An engine that also writes to stdout while it generates."""
    engine = builder()
    real = engine.generate

    def generate(req: GenerationRequest, cancel: threading.Event) -> GenerationResult:
        print("NOISY-GENERATE")
        sys.stdout.flush()
        os.write(1, b"NOISY-GENERATE-FD1\n")
        return real(req, cancel)

    engine.generate = generate
    return engine


@dataclass(frozen=True)
class KeyedRequest(GenerationRequest):
    """A request with a field ``worker.py`` has never heard of."""

    doc_key: str = ""


class KeyedEngine(LlamaEngine):
    """The real engine with a method and a use of the new field that ``worker.py`` does not
    know: both must cross the process boundary unchanged."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.keys: list[str] = []

    def generate(self, req: GenerationRequest, cancel: threading.Event) -> GenerationResult:
        res = super().generate(req, cancel)
        key = getattr(req, "doc_key", None)
        if key is not None:
            self.keys.append(key)
            res.extra["doc_key"] = key
        return res

    def seen_keys(self, last: int = 10) -> list[str]:
        return self.keys[-last:]


def keyed_engine(settings: Settings) -> KeyedEngine:
    from nearline.engine.factory import resolve_model
    from nearline.engine.options import load_options

    entry, path = resolve_model(settings)
    return KeyedEngine(load_options(entry, path, settings.model), entry.format, entry.id)


def deaf(builder: Callable[[], Any]) -> Any:
    """An engine stuck in a call that never looks at its cancel flag (as native code that hangs
    would be)."""
    engine = builder()

    def generate(req: GenerationRequest, cancel: threading.Event) -> GenerationResult:
        threading.Event().wait()
        raise AssertionError("unreachable")

    engine.generate = generate
    return engine
