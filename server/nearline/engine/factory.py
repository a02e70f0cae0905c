"""Build the configured engine from the settings: which model file, which backend, which process.

The service takes a factory (``EngineFactory``) so that tests and benchmarks can hand it another
engine; ``create_engine`` is the default. Loading is lazy throughout: only the factory that is
called imports llama.cpp, the model process's code, or the remote client.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from nearline.config import ModelSettings, Settings
from nearline.engine.base import Engine
from nearline.engine.calibrate import AutoChoice, Candidate, choose
from nearline.engine.formats import choose_format
from nearline.weights.catalog import ModelEntry, PromptFormat, load_catalog
from nearline.weights.download import ModelError

log = logging.getLogger(__name__)

__all__ = [
    "AUTO",
    "EngineFactory",
    "auto_choice",
    "build_llama_engine",
    "create_engine",
    "create_local_engine",
    "create_process_engine",
    "create_remote_engine",
    "engine_builder",
    "resolve_draft",
    "resolve_model",
]

EngineFactory = Callable[[Settings], Engine]


AUTO = "auto"


def is_auto(ms: ModelSettings) -> bool:
    """``model.id`` unset or ``auto`` and no explicit file: the machine decides."""
    return not ms.path and ms.id in (None, AUTO)


_auto_choices: dict[tuple[int, int], AutoChoice] = {}


def _gpu_name() -> str:
    # Which GPU is part of what a measurement depends on; nvidia-smi is the cheap way to ask
    # without loading the CUDA runtime into this process.
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return ""
    try:
        out = subprocess.run([exe, "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=5)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""


def auto_choice(settings: Settings, *, measure: bool = False) -> AutoChoice:
    """The model ``model.id: auto`` runs: the best catalog model (``autoRank``) that is on this
    machine and whose warm p95 per keystroke meets 500 ms here. ``measure=True`` measures the
    candidates not measured yet (tens of seconds, once per machine: call it off the event loop,
    as the model load does); without it the answer comes from earlier measurements only."""
    from nearline.engine.options import threads_setting

    ms = settings.model
    threads = threads_setting(ms)
    gpu_layers = -1 if ms.gpu_layers is None else ms.gpu_layers
    key = (threads, gpu_layers)
    known = _auto_choices.get(key)
    # Asked per request (the prompt format comes from the chosen entry): answer from memory;
    # only a measuring call may replace a provisional answer.
    if known is not None and (known.measured or not measure):
        return known
    catalog = load_catalog()
    default = catalog.default
    candidates = [
        Candidate(e.id, e.path, e.sha256, e.auto_rank)
        for e in catalog.models
        if e.auto_rank is not None
        and e.path.is_file()
        and (e.size is None or e.path.stat().st_size == e.size)
    ]
    if not candidates:
        # Nothing pulled yet: the default, whose load then says how to pull it.
        return AutoChoice(default.id, "no model is on this machine yet: the catalog's default", [])
    choice = choose(candidates, threads=threads, gpu_layers=gpu_layers, gpu=_gpu_name(),
                    build=_build_id(), allow_measure=measure)  # fmt: skip
    choice.measured = measure
    _auto_choices[key] = choice
    return choice


def _build_id() -> str:
    # The llama.cpp build is part of what was measured: another build (other kernels, a CUDA
    # build) measures again. Its libraries' times identify it without importing llama.cpp here.
    import importlib.util

    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        return ""
    libs = sorted(Path(spec.origin).parent.glob("lib/*.so*"))
    return ";".join(f"{p.name}:{int(p.stat().st_mtime)}" for p in libs)


def resolve_model(settings: Settings) -> tuple[ModelEntry, Path]:
    """The catalog entry and file of the configured model (``auto`` resolved, see
    ``auto_choice``; with a remote engine this machine's speed says nothing, and ``auto`` is
    the catalog's default, whose format and vocabulary the family shares)."""
    catalog = load_catalog()
    if is_auto(settings.model) and settings.engine.backend == "local":
        entry = catalog.get(auto_choice(settings).model_id)
    else:
        entry = catalog.get(None if settings.model.id == AUTO else settings.model.id)
    if settings.model.path:
        return entry, Path(settings.model.path).expanduser()
    return entry, entry.path


def model_on_disk(model_id: str | None) -> tuple[ModelEntry, Path]:
    """The catalog model ``model_id`` (None: the configured default) and its file, for the
    benchmarks that load it themselves; ``ModelError`` with the pull command when it is not
    on this machine."""
    settings = Settings()
    if model_id:
        settings.model.id = model_id
    entry, path = resolve_model(settings)
    if not path.is_file():
        raise ModelError(
            f"model {entry.id} is not on this machine ({path}): run `nearline models pull "
            f"{entry.id}`"
        )
    return entry, path


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

    if is_auto(settings.model) and settings.engine.backend == "local":
        auto_choice(settings, measure=True)  # once per machine; then from the cache
    try:
        entry, path = resolve_model(settings)
    except KeyError as exc:
        raise ModelError(str(exc.args[0])) from None
    if settings.model.path:
        check_gguf(path)
        return entry, path, choose_format(entry, path, settings.model.format)[0], path.name
    ensure_verified(entry, path)
    return entry, path, choose_format(entry, None, settings.model.format)[0], entry.id


def resolve_draft(settings: Settings) -> Path | None:
    """The file of ``model.draftModel`` (a catalog id, verified like the main model, or a GGUF
    path), or None when drafting by a model is off; raises ``ModelError`` with a fix."""
    from nearline.weights.download import check_gguf, ensure_verified

    name = settings.model.draft_model
    if not name:
        return None
    catalog = load_catalog()
    if name in {m.id for m in catalog.models}:
        entry = catalog.get(name)
        return ensure_verified(entry, entry.path)
    path = Path(name).expanduser()
    if not path.exists():
        raise ModelError(
            f"model.draftModel {name!r} is neither a catalog model id nor an existing GGUF file"
        )
    check_gguf(path)
    return path


def _model_settings(entry: ModelEntry, settings: Settings) -> ModelSettings:
    """The model settings the load uses: the window resolved from the whole settings (the
    prompt budget and the completion length live outside ``model``)."""
    from nearline.engine.options import context_window

    return dataclasses.replace(settings.model, context_length=context_window(entry, settings))


def build_llama_engine(
    entry: ModelEntry,
    path: Path,
    ms: ModelSettings,
    fmt: PromptFormat,
    label: str,
    draft_path: Path | None = None,
) -> Engine:
    """Load a verified model (and its draft model) with llama.cpp, in whichever process calls
    it (the server, or the model process); llama.cpp's refusal to load becomes a
    ``ModelError``."""
    from nearline.engine.llama import LlamaEngine
    from nearline.engine.options import apply_tuning, load_options

    opts = dataclasses.replace(load_options(entry, path, ms), draft_path=draft_path)
    opts = apply_tuning(opts, ms, gpu=_gpu_name() if opts.n_gpu_layers else "", build=_build_id())
    try:
        return LlamaEngine(opts, fmt, label)
    except ValueError as exc:
        raise ModelError(
            f"llama.cpp could not load {path}: {exc} (corrupt or unsupported GGUF)"
        ) from None


def create_local_engine(settings: Settings) -> Engine:
    """Verify and load the configured model in this process."""
    entry, path, fmt, label = _verified_model(settings)
    draft = resolve_draft(settings)
    return build_llama_engine(entry, path, _model_settings(entry, settings), fmt, label, draft)


def engine_builder(settings: Settings) -> tuple[Callable[[], Engine], PromptFormat, str]:
    """Verify the configured model here; return a picklable zero-argument builder that loads
    it wherever it is called, with the model's prompt format and label."""
    entry, path, fmt, label = _verified_model(settings)
    draft = resolve_draft(settings)
    ms = _model_settings(entry, settings)
    return (
        functools.partial(build_llama_engine, entry, path, ms, fmt, label, draft),
        fmt,
        label,
    )


def create_process_engine(settings: Settings) -> Engine:
    """Verify the configured model here, load it in a child process (``worker.py``): this
    process never imports llama.cpp."""
    from nearline.engine.options import tuning_summary
    from nearline.engine.worker import ProcessEngine

    engine = ProcessEngine(*engine_builder(settings))
    # The model process decided the auto settings; its own log lines stay in there.
    tuning = engine.info().get("tuning")
    if tuning:
        log.info("%s", tuning_summary(tuning))
    return engine
