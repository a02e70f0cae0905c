"""How a model is loaded: threads, the llama.cpp window (it follows the prompt budget) and RoPE
(the model's own; YaRN only past its trained context), for the main model and a draft model."""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nearline.config import ROPE_SCALING_TYPES, ModelSettings, Settings
from nearline.weights.catalog import ModelEntry

log = logging.getLogger(__name__)

DEFAULT_BATCH = 64
"""``model.batchSize`` until the calibration says otherwise (see config.py)."""


def default_threads() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 2
    return max(1, min(8, n))


def threads_setting(ms: ModelSettings) -> int:
    """``model.threads`` as a number: an explicit count, else the default (``auto`` may still
    change it at the load, see ``apply_tuning``)."""
    return ms.threads if isinstance(ms.threads, int) else default_threads()


@dataclass(frozen=True)
class LoadOptions:
    path: Path
    n_ctx: int
    n_threads: int
    n_gpu_layers: int
    n_batch: int
    rope_freq_base: float
    rope_scaling: str
    rope_scaling_factor: float
    yarn_orig_ctx: int
    state_cache_mb: int = 256
    draft_tokens: int = 0
    disk_cache_mb: int = 0
    model_sha256: str | None = None
    """The model file's verified hash (catalog models), which keys its states on disk; None:
    a cheap file identity is used instead (``model.path`` files)."""
    draft_path: Path | None = None
    """A draft model (``model.draftModel``) sharing this model's vocabulary: it writes the
    drafts this model verifies, instead of prompt lookup."""
    n_threads_batch: int = 0
    """Threads for prompt batches (and verify batches); 0: ``n_threads``."""
    tuning: dict[str, Any] | None = None
    """What the calibration decided for the ``auto`` settings and the numbers behind it
    (``apply_tuning``); None when nothing was ``auto``."""


WINDOW_MARGIN = 64
"""Tokens of context kept beyond the budget and the completion: the prompt may run a few
tokens past its budget, and a verify batch needs room for its drafts."""
WINDOW_STEP = 256
DRAFT_MODEL_TOKENS = 6
"""Tokens a draft model writes per verify batch when ``model.draftTokens`` is 0."""


def context_window(entry: ModelEntry, settings: Settings) -> int:
    """The llama.cpp context (n_ctx) the settings call for: ``model.contextLength`` when set;
    else room for the prompt budget, the completion and a margin, in steps of WINDOW_STEP, and
    for a catalog model at least the catalog's window (a 1K budget keeps the tested 4K one).
    The service budgets prompts with the same number, so the two cannot disagree."""
    ms = settings.model
    if ms.context_length:
        return ms.context_length
    budget = settings.context.budget_tokens or entry.budget_tokens
    # ``auto`` takes no room of its own: the window (and so the key of states on disk) does not
    # depend on what the calibration decides, and drafts are cut to the room that is left.
    if isinstance(ms.draft_tokens, int) and ms.draft_tokens:
        draft = ms.draft_tokens
    else:
        draft = DRAFT_MODEL_TOKENS if ms.draft_model else 0
    need = budget + settings.completion.max_tokens + WINDOW_MARGIN + draft
    need = -(-need // WINDOW_STEP) * WINDOW_STEP
    # The catalog's window belongs to the catalog's file; another file may have been trained
    # on less, and a larger window than asked for would then switch YaRN on for nothing.
    return need if ms.path else max(need, entry.context_length)


@dataclass(frozen=True)
class _FileRope:
    trained_context: int
    freq_base: float
    scaling: str
    factor: float
    orig_context: int


def _file_rope(path: Path, entry: ModelEntry) -> _FileRope:
    """A ``model.path`` file's own trained context and RoPE settings (its GGUF metadata; the
    catalog entry's only for what the file does not say or when it cannot be read): the
    catalog entry is another model's."""
    from nearline.engine.formats import FormatError, read_with_gguf

    trained, base = entry.trained_context, entry.rope.freq_base
    scaling, factor, orig = "none", 1.0, 0
    try:
        info = read_with_gguf(path)
    except (FormatError, OSError):
        info = None
    if info is not None:
        trained = info.trained_context or trained
        base = info.rope_freq_base or base
        if info.rope_scaling in ROPE_SCALING_TYPES and info.rope_scaling != "none":
            scaling = info.rope_scaling
            factor = info.rope_scaling_factor or 1.0
            orig = info.rope_orig_context or 0
    return _FileRope(trained, base, scaling, factor, orig or trained)


def load_options(entry: ModelEntry, path: Path, ms: ModelSettings) -> LoadOptions:
    """Resolve load parameters: settings override the model (the catalog entry, or for a
    ``model.path`` file its own metadata); RoPE scaling switches on by itself (YaRN) only when
    the window exceeds the trained context and the user chose no scaling."""
    import llama_cpp

    if ms.path:
        rope = _file_rope(path, entry)
    else:
        r = entry.rope
        rope = _FileRope(entry.trained_context, r.freq_base, r.scaling, r.factor,
                         r.yarn_orig_context or entry.trained_context)  # fmt: skip
    n_ctx = ms.context_length or entry.context_length
    scaling = ms.rope_scaling or rope.scaling
    factor = ms.rope_scaling_factor or rope.factor
    if scaling == "none" and n_ctx > rope.trained_context and ms.rope_scaling is None:
        scaling, factor = "yarn", n_ctx / rope.trained_context
    if ms.gpu_layers is not None:
        gpu = ms.gpu_layers
    else:
        gpu = -1 if llama_cpp.llama_supports_gpu_offload() else 0
    return LoadOptions(
        path=path,
        n_ctx=n_ctx,
        n_threads=threads_setting(ms),
        n_gpu_layers=gpu,
        n_batch=ms.batch_size if isinstance(ms.batch_size, int) else DEFAULT_BATCH,
        rope_freq_base=ms.rope_freq_base or rope.freq_base,
        rope_scaling=scaling,
        rope_scaling_factor=factor,
        yarn_orig_ctx=ms.yarn_orig_context or rope.orig_context,
        state_cache_mb=ms.state_cache_mb,
        draft_tokens=ms.draft_tokens if isinstance(ms.draft_tokens, int) else 0,
        disk_cache_mb=ms.disk_cache_mb,
        # The catalog's hash is only the file's when the file is the catalog's (verified).
        model_sha256=None if ms.path else entry.sha256,
    )


def draft_options(opts: LoadOptions, path: Path) -> LoadOptions:
    """Load options for the draft model at ``path`` beside a main model loaded with ``opts``:
    the same window, threads and batch; its own RoPE (from its file; YaRN only past its own
    trained context); no disk cache and no drafting of its own."""
    from nearline.engine.formats import FormatError, read_with_gguf

    try:
        info = read_with_gguf(path)
        trained, base = info.trained_context, info.rope_freq_base
    except (FormatError, OSError):
        trained, base = None, None
    trained = trained or opts.n_ctx
    scaling, factor = "none", 1.0
    if opts.n_ctx > trained:
        scaling, factor = "yarn", opts.n_ctx / trained
    return dataclasses.replace(
        opts, path=path, rope_freq_base=base or opts.rope_freq_base, rope_scaling=scaling,
        rope_scaling_factor=factor, yarn_orig_ctx=trained, draft_tokens=0, disk_cache_mb=0,
        model_sha256=None, draft_path=None, tuning=None,
    )  # fmt: skip


def apply_tuning(opts: LoadOptions, ms: ModelSettings, *, gpu: str = "", build: str = "",
                 tune: Any = None) -> LoadOptions:  # fmt: skip
    """``opts`` with the settings left ``auto`` (threads, batch size, prompt-lookup drafting)
    decided by this machine's calibration of the model (engine/calibrate.py: measured once, a
    few seconds, then cached). A failed calibration keeps the defaults, with a log line.
    ``tune`` replaces ``calibrate.tune`` (tests)."""
    from nearline.engine import calibrate

    settings = {"threads": ms.threads, "batchSize": ms.batch_size, "draftTokens": ms.draft_tokens}
    auto = [name for name, value in settings.items() if not isinstance(value, int)]
    # With a draft model, its own default applies; prompt lookup is not what would be tuned.
    if opts.draft_path is not None and "draftTokens" in auto:
        auto.remove("draftTokens")
    if not auto:
        return opts
    run = tune or calibrate.tune
    try:
        t = run(opts.path, opts.model_sha256, threads=opts.n_threads, default_batch=opts.n_batch,
                gpu_layers=opts.n_gpu_layers, gpu=gpu, build=build)  # fmt: skip
    except (RuntimeError, OSError, ValueError) as exc:
        log.warning("calibration failed, %s stay at their defaults: %s", ", ".join(auto), exc)
        return dataclasses.replace(opts, tuning={"auto": auto, "error": str(exc)})
    changes: dict[str, Any] = {}
    if "threads" in auto:
        changes.update(n_threads=t.threads, n_threads_batch=t.threads_batch)
    if "batchSize" in auto:
        changes["n_batch"] = t.batch_size
    if "draftTokens" in auto:
        changes["draft_tokens"] = t.draft_tokens
    out = dataclasses.replace(opts, **changes, tuning={"auto": auto, **t.as_dict()})
    log.info("%s", tuning_summary(out.tuning))
    return out


def tuning_summary(tuning: dict[str, Any] | None) -> str:
    """One log line: what the calibration decided for the ``auto`` settings, and why."""
    if not tuning:
        return "calibration: no setting is auto"
    auto = tuning.get("auto") or []
    if "error" in tuning:
        return f"calibration failed, {', '.join(auto)} at their defaults: {tuning['error']}"
    names = {"threads": "threads", "threads_batch": "threads", "batch_size": "batchSize",
             "draft_tokens": "draftTokens"}  # fmt: skip
    reasons = tuning.get("reasons") or {}
    parts = [
        f"{key}={tuning.get(key)} ({reasons.get(key, '')})"
        for key, setting in names.items()
        if setting in auto
    ]
    cached = " (measured earlier)" if tuning.get("cached") else ""
    return f"calibration{cached}: " + "; ".join(parts)
