"""Longer windows: the llama.cpp context follows ``context.budgetTokens``, RoPE stays the model's
within its trained context and switches to YaRN past it, and a long prompt is reused.

SmolLM2 135M was trained on 8192 tokens (its GGUF and the catalog agree), so budgets past that
exercise YaRN on a model small enough for CI; Qwen2.5-Coder's 32K leaves an 8K budget alone.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import llama_cpp
import pytest

from nearline.completion.service import CompletionService, Query
from nearline.config import Settings, parse_settings
from nearline.engine.factory import _model_settings, create_local_engine
from nearline.engine.formats import read_with_gguf
from nearline.engine.llama import LlamaEngine
from nearline.engine.options import LoadOptions, context_window, load_options
from nearline.weights.catalog import load_catalog

from ..conftest import DEFAULT_ID, SMALL_ID

pytestmark = pytest.mark.model


def settings(raw: dict[str, object]) -> Settings:
    s, problems = parse_settings(raw)
    assert not problems
    return s


def opts_for(raw: dict[str, object], path: Path = Path("/m.gguf")) -> LoadOptions:
    """The options the factory loads with (the window resolved from the whole settings)."""
    s = settings(raw)
    entry = load_catalog().get(s.model.id)
    return load_options(entry, path, _model_settings(entry, s))


def test_the_window_follows_the_budget() -> None:
    entry = load_catalog().get(DEFAULT_ID)
    # The default budget fits the catalog's window, which stays (states on disk keep their key).
    assert context_window(entry, settings({"model": {"id": DEFAULT_ID}})) == 4096
    for budget in (2048, 4096, 8192):
        s = settings({"model": {"id": DEFAULT_ID}, "context": {"budgetTokens": budget}})
        n = context_window(entry, s)
        assert n % 256 == 0
        assert n >= budget + s.completion.max_tokens + 64
        assert n >= entry.context_length
    eight = settings({"model": {"id": DEFAULT_ID}, "context": {"budgetTokens": 8192}})
    assert context_window(entry, eight) == 8448  # 8192 + 48 + 64, up to a multiple of 256
    # A longer completion and drafts take room too.
    s = settings(
        {"model": {"id": DEFAULT_ID, "draftTokens": 8}, "context": {"budgetTokens": 8192},
         "completion": {"maxTokens": 200}}
    )  # fmt: skip
    assert context_window(entry, s) == 8704
    # The user's window wins, even below the budget (the service then budgets to it).
    s = settings({"model": {"id": DEFAULT_ID, "contextLength": 2048},
                  "context": {"budgetTokens": 8192}})  # fmt: skip
    assert context_window(entry, s) == 2048


def test_the_service_budgets_to_the_window() -> None:
    """Before, the service capped the budget at the catalog's window: an 8K budget on the
    default model (window 4096) composed 4K prompts."""
    for budget in (2048, 4096, 8192):
        s = settings({"model": {"id": DEFAULT_ID}, "context": {"budgetTokens": budget}})
        svc = CompletionService(s, lambda _s: None)  # type: ignore[arg-type,return-value]
        assert svc.budget() == budget - s.completion.max_tokens
        svc.close()


def test_qwen_8k_needs_no_rope_scaling() -> None:
    o = opts_for({"model": {"id": DEFAULT_ID}, "context": {"budgetTokens": 8192}})
    assert o.n_ctx == 8448
    assert (o.rope_scaling, o.rope_scaling_factor) == ("none", 1.0)
    assert o.rope_freq_base == 1_000_000.0


def test_small_model_budget_within_its_trained_context_leaves_rope_alone() -> None:
    o = opts_for({"model": {"id": SMALL_ID}, "context": {"budgetTokens": 4096}})
    assert o.n_ctx == 4352
    assert (o.rope_scaling, o.rope_scaling_factor) == ("none", 1.0)
    o = opts_for({"model": {"id": SMALL_ID}, "context": {"budgetTokens": 7936}})
    assert o.n_ctx == 8192  # exactly the trained context: still no scaling
    assert o.rope_scaling == "none"


def test_small_model_budget_past_its_trained_context_turns_yarn_on() -> None:
    o = opts_for({"model": {"id": SMALL_ID}, "context": {"budgetTokens": 12000}})
    assert o.n_ctx == 12288
    assert o.rope_scaling == "yarn"
    assert o.rope_scaling_factor == pytest.approx(12288 / 8192)
    assert o.yarn_orig_ctx == 8192
    # An explicit choice still wins, "none" included (load_options' behaviour is unchanged).
    o = opts_for({"model": {"id": SMALL_ID, "ropeScaling": "none"},
                  "context": {"budgetTokens": 12000}})  # fmt: skip
    assert o.rope_scaling == "none"
    o = opts_for({"model": {"id": SMALL_ID, "ropeScaling": "linear", "ropeScalingFactor": 2.0},
                  "context": {"budgetTokens": 12000}})  # fmt: skip
    assert (o.rope_scaling, o.rope_scaling_factor) == ("linear", 2.0)


def test_a_model_path_file_brings_its_own_trained_context_and_rope(small_model: Path) -> None:
    """``model.path`` with the catalog's default entry (Qwen: 32K, base 1e6): the file's own
    metadata decides (SmolLM2: 8K, base 1e5), not another model's catalog entry."""
    info = read_with_gguf(small_model)
    assert (info.trained_context, info.rope_freq_base) == (8192, 100000.0)
    raw: dict[str, object] = {"model": {"path": str(small_model), "format": "starcoder2"},
                              "context": {"budgetTokens": 12000}}  # fmt: skip
    o = opts_for(raw, small_model)
    assert o.rope_freq_base == 100000.0
    assert (o.rope_scaling, o.yarn_orig_ctx) == ("yarn", 8192)
    assert o.rope_scaling_factor == pytest.approx(12288 / 8192)
    # Without the catalog's floor, a path file's window is what the budget needs.
    raw["context"] = {"budgetTokens": 1024}
    o = opts_for(raw, small_model)
    assert (o.n_ctx, o.rope_scaling) == (1280, "none")


def test_yarn_from_the_budget_reaches_llama_cpp(small_model: Path) -> None:
    s = settings({"model": {"id": SMALL_ID, "threads": 1, "diskCacheMb": 0},
                  "context": {"budgetTokens": 12000}})  # fmt: skip
    eng = create_local_engine(s)
    assert isinstance(eng, LlamaEngine)
    try:
        cp = eng.llm.context_params
        assert cp.n_ctx == 12288
        assert cp.rope_scaling_type == llama_cpp.LLAMA_ROPE_SCALING_TYPE_YARN
        assert cp.rope_freq_scale == pytest.approx(8192 / 12288)
        assert cp.yarn_orig_ctx == 8192
    finally:
        eng.close()


def _document(lines: int) -> str:
    return "".join(f"value_{i} = compute_value({i}, 'tag{i % 7}')\n" for i in range(lines))


async def test_a_4k_prompt_completes_and_the_next_keystroke_reuses_it(small_model: Path) -> None:
    """Through the service on the real small model: a 4K budget composes a ~4K-token prompt
    (its catalog window is 2K), which is read once; the next keystroke evaluates a few tokens."""
    s = settings({
        "model": {"id": SMALL_ID, "threads": 2, "diskCacheMb": 0},
        "engine": {"isolation": "thread"},
        "context": {"budgetTokens": 4096, "composer": "file-level"},
        "completion": {"debounceMs": 0, "warmUp": False, "speculate": False, "maxTokens": 16,
                       "coldPromptTokens": 0},  # the whole window at once: what is tested
    })  # fmt: skip
    svc = CompletionService(s)
    await svc.start()
    try:
        text = _document(400) + "total = "
        line = text.count("\n")
        uri = "file:///w/big.py"

        def query(t: str) -> Query:
            return Query(uri=uri, text=t, line=line, col=len(t.rsplit("\n", 1)[1]),
                         path=Path("/w/big.py"), rel="big.py")  # fmt: skip

        first = await svc.complete(query(text))
        assert first.result is not None and first.result.stop_reason != "cancelled"
        assert first.prompt_tokens > 3000  # the budget's prompt, not the catalog window's
        assert first.result.prompt_tokens <= 4096
        # A keystroke the suggestion does not start with, so the model runs again.
        shown = first.suggestions[0].text if first.suggestions else ""
        second = await svc.complete(query(text + ("z" if not shown.startswith("z") else "q")))
        assert second.source == "model" and second.result is not None
        assert second.result.reused_tokens > 3000
        assert second.result.evaluated_tokens <= 8
        assert svc.engine is not None and svc.engine.info()["n_ctx"] == 4352
    finally:
        svc.close()


def test_reused_options_are_frozen() -> None:
    # The factory replaces the window on a copy: the user's settings object keeps None.
    s = settings({"model": {"id": SMALL_ID}, "context": {"budgetTokens": 4096}})
    entry = load_catalog().get(SMALL_ID)
    ms = _model_settings(entry, s)
    assert ms.context_length == 4352 and s.model.context_length is None
    assert dataclasses.replace(ms) == ms
