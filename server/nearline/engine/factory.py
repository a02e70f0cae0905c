"""Build the configured engine from the settings: which model file, which backend, which process.

The service takes a factory (``EngineFactory``) so that tests and benchmarks can hand it another
engine; ``create_engine`` is the default. Loading is lazy throughout: only the factory that is
called imports llama.cpp, the model process's code, or the remote client.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from nearline.config import ModelSettings, Settings
from nearline.engine.formats import choose_format
from nearline.engine.llama import Engine
from nearline.weights.catalog import ModelEntry, PromptFormat, load_catalog
from nearline.weights.download import ModelError

__all__ = [
    "EngineFactory",
    "build_llama_engine",
    "create_engine",
    "create_local_engine",
    "create_process_engine",
    "create_remote_engine",
    "engine_builder",
    "resolve_model",
]

EngineFactory = Callable[[Settings], Engine]


def resolve_model(settings: Settings) -> tuple[ModelEntry, Path]:
    entry = load_catalog().get(settings.model.id)
    if settings.model.path:
        return entry, Path(settings.model.path).expanduser()
    return entry, entry.path


def create_engine(settings: Settings) -> Engine:
    """The configured engine (the service's default factory): a remote OpenAI-compatible
    server (``engine.backend: openai``); else llama.cpp in a child process
    (``engine.isolation: process``: a crash in llama.cpp cannot take the server down), or in
    this process (``thread``: for benchmarks and debugging)."""
    if settings.engine.backend == "openai":
        return create_remote_engine(settings)
    if settings.engine.isolation == "thread":
        return create_local_engine(settings)
    return create_process_engine(settings)


def create_remote_engine(settings: Settings) -> Engine:
    """An OpenAI-compatible server does the generating; the catalog entry of ``model.id`` (or
    the file ``model.path``) still gives the prompt format and, when its GGUF is here, the exact
    vocabulary. Never contacts the server: an unreachable one is reported by the first request
    and retried, so the engine is ready even before the server is."""
    from nearline.engine.remote import RemoteEngine, remote_options
    from nearline.engine.tokens import load_counter

    try:
        entry, path = resolve_model(settings)
    except KeyError as exc:
        raise ModelError(str(exc.args[0])) from None
    fmt = choose_format(entry, path if settings.model.path else None, settings.model.format)[0]
    opts = remote_options(settings.engine)
    counter = load_counter(path if path.is_file() else None)
    return RemoteEngine(opts, fmt, entry.id if not settings.model.path else path.name, counter)


def _verified_model(settings: Settings) -> tuple[ModelEntry, Path, PromptFormat, str]:
    """(entry, file, prompt format, label) of the configured model, checked before loading;
    raises ``ModelError`` with a fix for the user."""
    from nearline.weights.download import check_gguf, ensure_verified

    try:
        entry, path = resolve_model(settings)
    except KeyError as exc:
        raise ModelError(str(exc.args[0])) from None
    if settings.model.path:
        check_gguf(path)
        return entry, path, choose_format(entry, path, settings.model.format)[0], path.name
    ensure_verified(entry, path)
    return entry, path, choose_format(entry, None, settings.model.format)[0], entry.id


def build_llama_engine(
    entry: ModelEntry, path: Path, ms: ModelSettings, fmt: PromptFormat, label: str
) -> Engine:
    """Load a verified model with llama.cpp, in whichever process calls it (the server, or the
    model process); llama.cpp's refusal to load becomes a ``ModelError``."""
    from nearline.engine.llama import LlamaEngine, load_options

    opts = load_options(entry, path, ms)
    try:
        return LlamaEngine(opts, fmt, label)
    except ValueError as exc:
        raise ModelError(
            f"llama.cpp could not load {path}: {exc} (corrupt or unsupported GGUF)"
        ) from None


def create_local_engine(settings: Settings) -> Engine:
    """Verify and load the configured model in this process."""
    entry, path, fmt, label = _verified_model(settings)
    return build_llama_engine(entry, path, settings.model, fmt, label)


def engine_builder(settings: Settings) -> tuple[Callable[[], Engine], PromptFormat, str]:
    """Verify the configured model here; return a picklable zero-argument builder that loads
    it wherever it is called, with the model's prompt format and label."""
    entry, path, fmt, label = _verified_model(settings)
    return (
        functools.partial(build_llama_engine, entry, path, settings.model, fmt, label),
        fmt,
        label,
    )


def create_process_engine(settings: Settings) -> Engine:
    """Verify the configured model here, load it in a child process (``worker.py``): this
    process never imports llama.cpp."""
    from nearline.engine.worker import ProcessEngine

    return ProcessEngine(*engine_builder(settings))
