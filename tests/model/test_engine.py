"""LlamaEngine on the real small model (SmolLM2 135M): stop rules, KV-cache reuse, cancellation,
load options (GPU layers, RoPE / YaRN).

Generation is greedy, so every completion here is deterministic for a given model file. One
engine is shared by the module; each test that cares about the cache starts from ``reset()``.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import llama_cpp
import pytest

from nearline.config import Settings, parse_settings
from nearline.engine.base import GenerationRequest, GenerationResult
from nearline.engine.factory import create_local_engine
from nearline.engine.kernels import kernel_features
from nearline.engine.llama import LlamaEngine
from nearline.engine.options import LoadOptions, load_options
from nearline.weights.catalog import ModelEntry, RopeSettings, load_catalog

from ..conftest import DEFAULT_ID, SMALL_ID

pytestmark = pytest.mark.model

GPU_BUILD = bool(llama_cpp.llama_supports_gpu_offload())

# A prompt after which SmolLM2 writes "3" and ends the line.
EOL_PROMPT = "x = 1\ny = 2\nz = "
# A prompt after which SmolLM2 writes several tokens before its first newline.
LONG_LINE_PROMPT = "# A long comment line that goes on and on about"
# SmolLM2 is an instruct model: after a chat turn it answers and ends with <|im_end|>.
CHAT_PROMPT = "<|im_start|>user\nSay hi<|im_end|>\n<|im_start|>assistant\n"


# One thread: these machines are small and shared, and llama.cpp's threads spin-wait on each
# other, so two threads on two busy cores can make a 64-token batch 5x slower than one thread.
THREADS = 1


def settings(**model: object) -> Settings:
    s, problems = parse_settings({"model": {"id": SMALL_ID, "threads": THREADS, **model}})
    assert not problems
    return s


def long_prompt(tag: str, lines: int = 120) -> str:
    """~1750 SmolLM2 tokens (under its 2048 window): about nine 64-token batches, several
    seconds of prompt evaluation on two CPU cores."""
    return "".join(f"item_{i}_{tag} = compute({i}, '{tag}')\n" for i in range(lines))


def gen(
    engine: LlamaEngine,
    text: str,
    *,
    special: bool = False,
    max_tokens: int = 48,
    timeout_s: float | None = None,
    single_line: bool = True,
) -> GenerationResult:
    req = GenerationRequest([(text, special)], max_tokens, timeout_s, single_line)
    return engine.generate(req, threading.Event())


@pytest.fixture(scope="module")
def engine(small_model: Path) -> Iterator[LlamaEngine]:
    eng = create_local_engine(settings())
    assert isinstance(eng, LlamaEngine)
    yield eng
    eng.close()


# -- stop rules ---------------------------------------------------------------------------------
def test_stops_at_end_of_line(engine: LlamaEngine) -> None:
    engine.reset()
    res = gen(engine, EOL_PROMPT, max_tokens=20)
    assert res.stop_reason == "eol"
    assert res.text.strip() == "3"
    assert "\n" not in res.text
    assert 1 <= res.generated_tokens < 20


def test_multi_line_goes_past_the_newline(engine: LlamaEngine) -> None:
    res = gen(engine, EOL_PROMPT, max_tokens=8, single_line=False)
    assert "\n" in res.text
    assert res.text.startswith("3\n")
    assert res.stop_reason == "max_tokens"
    assert res.generated_tokens == 8


def test_stops_at_max_tokens(engine: LlamaEngine) -> None:
    res = gen(engine, LONG_LINE_PROMPT, max_tokens=3)
    assert res.stop_reason == "max_tokens"
    assert res.generated_tokens == 3
    assert res.text and "\n" not in res.text
    # Same prompt with room: the line really is longer than three tokens.
    longer = gen(engine, LONG_LINE_PROMPT, max_tokens=20)
    assert longer.stop_reason == "eol"
    assert longer.generated_tokens > 3
    assert longer.text.startswith(res.text)


def test_stops_at_time_limit_during_generation(engine: LlamaEngine) -> None:
    """The limit bounds generation (checked after each token); a line that would run on for
    several tokens stops after the first one once the limit is past."""
    full = gen(engine, LONG_LINE_PROMPT, max_tokens=20)
    assert full.stop_reason == "eol" and full.generated_tokens > 2
    res = gen(engine, LONG_LINE_PROMPT, max_tokens=20, timeout_s=1e-6)
    assert res.stop_reason == "timeout"
    assert res.generated_tokens == 1
    assert res.text and full.text.startswith(res.text)


def test_time_limit_does_not_cut_a_cold_prompt(engine: LlamaEngine) -> None:
    """Reading the prompt is not time-limited: it is finished into the KV cache (the next
    keystroke reuses it), and only then does the limit end generation."""
    engine.reset()
    # ~250 tokens (four batches), ending in the middle of a line that goes on.
    prompt = long_prompt("timeout", lines=14) + LONG_LINE_PROMPT
    res = gen(engine, prompt, timeout_s=1e-6, max_tokens=8)
    assert res.prompt_tokens > 3 * engine.opts.n_batch
    assert res.stop_reason == "timeout"
    assert res.reused_tokens == 0
    assert res.evaluated_tokens == res.prompt_tokens
    assert res.generated_tokens == 1
    again = gen(engine, prompt, max_tokens=1)
    assert again.reused_tokens == res.prompt_tokens - 1
    assert again.evaluated_tokens == 1


def test_cancel_during_a_long_prompt_returns_within_a_batch(engine: LlamaEngine) -> None:
    engine.reset()
    prompt = long_prompt("cancel")
    cancel = threading.Event()
    set_at: list[float] = []
    started = threading.Event()

    batch_s: list[float] = []

    def wait_evaluated(n: int) -> float:
        deadline = time.monotonic() + 60
        while engine.last_prefill[1] < n and time.monotonic() < deadline:
            time.sleep(0.002)
        return time.monotonic()

    def canceller() -> None:
        started.wait(5)
        # Cancel in the middle of the prompt, after timing one batch on this machine now.
        t1 = wait_evaluated(engine.opts.n_batch)
        t2 = wait_evaluated(2 * engine.opts.n_batch)
        batch_s.append(t2 - t1)
        set_at.append(time.monotonic())
        cancel.set()

    engine.last_prefill = (0, 0)
    th = threading.Thread(target=canceller, daemon=True)
    th.start()
    started.set()
    res = engine.generate(GenerationRequest([(prompt, False)], max_tokens=8), cancel)
    returned_at = time.monotonic()
    th.join(5)
    assert res.stop_reason == "cancelled"
    assert res.text == ""
    assert set_at, "the canceller never fired"
    # The flag is checked between batches of 64 tokens (~0.3 s each on two idle cores), so the
    # call returns within about one batch; a busy shared machine stretches a batch, hence the
    # bound scales with the batch time measured just before the cancel.
    latency = returned_at - set_at[0]
    bound = max(2.0, 2 * batch_s[0])
    assert latency < bound, f"returned {latency:.2f}s after cancel (one batch: {batch_s[0]:.2f}s)"
    assert 2 * engine.opts.n_batch <= res.evaluated_tokens <= 4 * engine.opts.n_batch
    assert res.evaluated_tokens < res.prompt_tokens
    assert engine.cached_tokens == res.evaluated_tokens


def test_cancel_already_set_evaluates_nothing(engine: LlamaEngine) -> None:
    engine.reset()
    cancel = threading.Event()
    cancel.set()
    res = engine.generate(GenerationRequest([(EOL_PROMPT, False)]), cancel)
    assert res.stop_reason == "cancelled"
    assert res.evaluated_tokens == 0
    assert res.text == ""


def test_stop_ids_are_the_formats_stop_strings(engine: LlamaEngine) -> None:
    fmt = engine.format
    assert fmt.name == "starcoder2"
    expected = set()
    for s in fmt.stop:
        toks = engine.llm.tokenize(s.encode(), add_bos=False, special=True)
        assert len(toks) == 1, f"{s} is not one token in SmolLM2's vocabulary"
        expected.add(toks[0])
    assert engine._stop_ids == expected
    assert len(expected) == len(fmt.stop)


def test_stop_token_ends_generation_with_eog(
    engine: LlamaEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    for stop_id in sorted(engine._stop_ids):
        monkeypatch.setattr(engine, "_argmax", lambda i=-1, sid=stop_id: sid)
        res = gen(engine, EOL_PROMPT, max_tokens=8)
        assert res.stop_reason == "eog", engine.llm.detokenize([stop_id], special=True)
        assert res.text == ""
        assert res.generated_tokens == 0


def test_text_before_a_stop_token_is_kept(
    engine: LlamaEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    word = engine.llm.tokenize(b" hello", add_bos=False, special=False)
    assert len(word) == 1
    file_sep = engine.llm.tokenize(b"<file_sep>", add_bos=False, special=True)[0]
    picks = iter([word[0], file_sep])
    monkeypatch.setattr(engine, "_argmax", lambda i=-1: next(picks))
    res = gen(engine, EOL_PROMPT, max_tokens=8)
    assert res.stop_reason == "eog"
    assert res.text == " hello"
    assert res.generated_tokens == 1


def test_eog_and_control_tokens_outside_the_stop_list(
    engine: LlamaEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    lib, vocab = engine._lib, engine._vocab
    specials = range(32)
    eog = [t for t in specials if lib.llama_vocab_is_eog(vocab, t) and t not in engine._stop_ids]
    control = [
        t
        for t in specials
        if lib.llama_vocab_is_control(vocab, t)
        and not lib.llama_vocab_is_eog(vocab, t)
        and t not in engine._stop_ids
    ]
    assert control, "SmolLM2 has unlisted control tokens such as <gh_stars>"
    for tok, reason in [*((t, "eog") for t in eog[:1]), (control[0], "stop")]:
        monkeypatch.setattr(engine, "_argmax", lambda i=-1, t=tok: t)
        res = gen(engine, EOL_PROMPT, max_tokens=8)
        assert res.stop_reason == reason, engine.llm.detokenize([tok], special=True)
        assert res.text == ""


def test_real_generation_ends_at_end_of_turn(engine: LlamaEngine) -> None:
    engine.reset()
    res = gen(engine, CHAT_PROMPT, special=True, max_tokens=96, single_line=False)
    assert res.stop_reason == "eog"
    assert res.text.strip()
    assert "<|im_end|>" not in res.text
    assert res.generated_tokens < 96


# -- KV cache reuse -----------------------------------------------------------------------------
def test_kv_cache_reuses_the_common_prefix(engine: LlamaEngine) -> None:
    engine.reset()
    p = "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n\n\nresult"
    p2 = p + " x"
    toks = engine.tokenize([(p, False)])
    toks2 = engine.tokenize([(p2, False)])
    assert toks2[: len(toks)] == toks  # the extension does not re-tokenize P's tail

    first = gen(engine, p, max_tokens=4)
    assert first.reused_tokens == 0
    assert first.evaluated_tokens == len(toks)

    second = gen(engine, p2, max_tokens=4)
    assert second.prompt_tokens == len(toks2)
    assert second.reused_tokens >= len(toks) - 1
    assert second.evaluated_tokens <= len(toks2) - len(toks) + 1
    assert second.reused_tokens + second.evaluated_tokens == len(toks2)

    # The identical prompt again: everything but the last token (re-evaluated for its logits).
    again = gen(engine, p2, max_tokens=4)
    assert again.reused_tokens == len(toks2) - 1
    assert again.evaluated_tokens == 1
    assert again.text == second.text

    other = gen(engine, "class Stack:\n    def __init__(self):\n        self.items = []\n")
    assert other.reused_tokens <= 1
    assert other.evaluated_tokens >= other.prompt_tokens - 1


# -- load options: GPU, RoPE, YaRN ---------------------------------------------------------------
def test_gpu_layers_follow_the_build(engine: LlamaEngine) -> None:
    info = engine.info()
    assert info["gpu_offload_supported"] is GPU_BUILD
    assert info["gpu_layers"] == (-1 if GPU_BUILD else 0)
    assert info["model"] == SMALL_ID
    assert info["threads"] == THREADS
    assert info["rope_freq_base"] == 100000.0
    assert info["rope_scaling"] == "none"
    # The kernels reported are the loaded build's own, never AMX (install.sh; llama.cpp #20824).
    import llama_cpp

    assert info["kernels"]["features"] == kernel_features(
        llama_cpp.llama_print_system_info().decode()
    )
    assert "AVX2" in info["kernels"]["features"] or "NEON" in info["kernels"]["features"]
    assert info["kernels"]["build"] != "amx"


@pytest.mark.skipif(GPU_BUILD, reason="checks the CPU-only build")
def test_cpu_build_offloads_nothing(engine: LlamaEngine) -> None:
    assert engine.info()["gpu_layers"] == 0
    assert engine.info()["gpu_offload_supported"] is False


def _opts(model_id: str, **model: object) -> tuple[ModelEntry, LoadOptions]:
    s, problems = parse_settings({"model": {"id": model_id, **model}})
    assert not problems
    entry = load_catalog().get(model_id)
    return entry, load_options(entry, Path("/m.gguf"), s.model)


def test_load_options_from_the_catalog() -> None:
    entry, o = _opts(SMALL_ID, threads=2)
    assert (o.n_ctx, o.n_threads, o.n_batch) == (entry.context_length, 2, 64)
    assert o.rope_freq_base == entry.rope.freq_base == 100000.0
    assert (o.rope_scaling, o.rope_scaling_factor) == ("none", 1.0)
    assert o.yarn_orig_ctx == 8192
    assert o.n_gpu_layers == (-1 if GPU_BUILD else 0)
    _, q = _opts(DEFAULT_ID)
    assert q.rope_freq_base == 1_000_000.0
    assert q.n_ctx == 4096


def test_load_options_settings_override_the_catalog() -> None:
    _, o = _opts(
        SMALL_ID,
        ropeFreqBase=50000.0,
        ropeScaling="linear",
        ropeScalingFactor=4.0,
        yarnOrigContext=4096,
        gpuLayers=7,
        batchSize=32,
        contextLength=1024,
    )
    assert o.rope_freq_base == 50000.0
    assert (o.rope_scaling, o.rope_scaling_factor) == ("linear", 4.0)
    assert o.yarn_orig_ctx == 4096
    assert o.n_gpu_layers == 7
    assert (o.n_batch, o.n_ctx) == (32, 1024)
    _, z = _opts(SMALL_ID, gpuLayers=0)
    assert z.n_gpu_layers == 0


def test_yarn_switches_on_past_the_trained_context() -> None:
    _, within = _opts(SMALL_ID, contextLength=8192)  # trainedContext of SmolLM2
    assert within.rope_scaling == "none"
    _, o = _opts(SMALL_ID, contextLength=16384)
    assert (o.rope_scaling, o.rope_scaling_factor) == ("yarn", 2.0)
    assert o.yarn_orig_ctx == 8192
    _, q = _opts(DEFAULT_ID, contextLength=65536)
    assert (q.rope_scaling, q.rope_scaling_factor) == ("yarn", 2.0)
    # An explicit choice wins, "none" included.
    _, none = _opts(SMALL_ID, contextLength=16384, ropeScaling="none")
    assert none.rope_scaling == "none"
    _, lin = _opts(SMALL_ID, contextLength=16384, ropeScaling="linear", ropeScalingFactor=2.0)
    assert (lin.rope_scaling, lin.rope_scaling_factor) == ("linear", 2.0)


def test_rope_freq_base_override_reaches_llama_cpp(small_model: Path) -> None:
    eng = create_local_engine(settings(ropeFreqBase=50000.0, contextLength=512))
    try:
        assert isinstance(eng, LlamaEngine)
        assert eng.llm.context_params.rope_freq_base == 50000.0
        assert eng.llm.context_params.n_ctx == 512
        assert eng.info()["rope_freq_base"] == 50000.0
        res = gen(eng, EOL_PROMPT, max_tokens=4)
        assert res.stop_reason in ("eol", "max_tokens", "eog")
    finally:
        eng.close()


def test_yarn_reaches_llama_cpp(small_model: Path) -> None:
    """A window twice the (here pretended) trained context loads with YaRN, factor 2."""
    base = load_catalog().get(SMALL_ID)
    entry = dataclasses.replace(
        base, trained_context=512, rope=RopeSettings(freq_base=base.rope.freq_base)
    )
    opts = load_options(entry, small_model, settings(contextLength=1024).model)
    assert (opts.rope_scaling, opts.rope_scaling_factor, opts.yarn_orig_ctx) == ("yarn", 2.0, 512)
    eng = LlamaEngine(opts, entry.format, entry.id)
    try:
        cp = eng.llm.context_params
        assert cp.rope_scaling_type == llama_cpp.LLAMA_ROPE_SCALING_TYPE_YARN
        assert cp.rope_freq_scale == pytest.approx(0.5)
        assert cp.yarn_orig_ctx == 512
        assert cp.n_ctx == 1024
        res = gen(eng, EOL_PROMPT, max_tokens=4)
        assert res.generated_tokens >= 1 or res.stop_reason == "eog"
    finally:
        eng.close()


# -- per-document KV states -----------------------------------------------------------------------
def doc_gen(engine: LlamaEngine, text: str, doc: str) -> GenerationResult:
    return engine.generate(
        GenerationRequest([(text, False)], 8, None, True, doc), threading.Event()
    )


def test_switching_back_to_a_document_restores_its_state(engine: LlamaEngine) -> None:
    """A and B share nothing: without saved states, coming back to A re-reads its whole prompt.
    With them, A's state is restored and only the last token is evaluated again."""
    engine.reset()
    a = long_prompt("alpha", lines=30) + "total = "
    b = long_prompt("beta", lines=30) + "total = "
    first = doc_gen(engine, a, "file:///a.py")
    assert first.evaluated_tokens == first.prompt_tokens
    other = doc_gen(engine, b, "file:///b.py")
    assert other.evaluated_tokens > other.prompt_tokens // 2  # a different prompt: cold
    saved = engine.state_stats["saved"]
    back = doc_gen(engine, a, "file:///a.py")
    assert engine.state_stats["saved"] == saved + 1  # B was kept on the way out
    assert "restored_ms" in back.extra
    assert back.evaluated_tokens <= 2
    # The restored state is the same state: greedy decoding gives the same line.
    assert back.text == first.text
    # And B's state comes back too, once the user returns to it.
    again = doc_gen(engine, b, "file:///b.py")
    assert "restored_ms" in again.extra and again.evaluated_tokens <= 2
    assert again.text == other.text


def test_state_cache_respects_its_memory_budget(small_model: Path) -> None:
    """SmolLM2 keeps ~23 KB of KV per token: three 500-token documents do not fit in 20 MB
    (~900 tokens), so the least recently used one is evicted and must be read again."""
    eng = create_local_engine(settings(stateCacheMb=20, contextLength=2048, diskCacheMb=0))
    assert isinstance(eng, LlamaEngine)
    try:
        prompts = {f"file:///{t}.py": long_prompt(t, lines=35) + "x = " for t in "pqr"}
        for doc, text in prompts.items():
            doc_gen(eng, text, doc)
        info = eng.info()["state_cache"]
        assert info["evicted"] >= 1
        assert info["mb"] <= 20
        # p was the least recently used: evicted, so returning to it is a cold read.
        res = doc_gen(eng, prompts["file:///p.py"], "file:///p.py")
        assert "restored_ms" not in res.extra
        assert res.evaluated_tokens > res.prompt_tokens // 2
    finally:
        eng.close()


def test_state_cache_off_keeps_single_cache_behaviour(small_model: Path) -> None:
    eng = create_local_engine(settings(stateCacheMb=0))
    assert isinstance(eng, LlamaEngine)
    try:
        a, b = long_prompt("a1", lines=10) + "y = ", long_prompt("b1", lines=10) + "y = "
        doc_gen(eng, a, "file:///a.py")
        doc_gen(eng, b, "file:///b.py")
        back = doc_gen(eng, a, "file:///a.py")
        assert "restored_ms" not in back.extra
        assert eng.state_stats["saved"] == 0
    finally:
        eng.close()


# -- prompt-lookup speculative decoding ------------------------------------------------------------
COPY_PROMPTS = [
    # The next line copies text that is already in the prompt: drafts should be accepted.
    "def area(width, height):\n    return width * height\n\n\ndef volume(width, height, depth):\n    return ",
    long_prompt("spec", lines=12) + "item_12_spec = compute(",
    EOL_PROMPT,
    LONG_LINE_PROMPT,
]


def test_speculative_decoding_gives_the_greedy_line(small_model: Path) -> None:
    """Drafts are only accepted where they equal the greedy choice, so the text is the same
    with drafting on and off, except where the model's two best tokens are a near tie: verifying
    a draft computes logits in a batch, and some CPU kernels (the AVX-512 build) round a batch
    differently from one token at a time (tests/model/test_draft.py, NEAR_TIE). On prompts that
    repeat themselves drafts are accepted."""
    from .test_draft import assert_near_greedy

    plain = create_local_engine(settings(stateCacheMb=0))
    spec = create_local_engine(settings(stateCacheMb=0, draftTokens=6))
    assert isinstance(plain, LlamaEngine) and isinstance(spec, LlamaEngine)
    try:
        same = 0
        for prompt in COPY_PROMPTS:
            for eng in (plain, spec):
                eng.reset()
            want = gen(plain, prompt, max_tokens=24)
            got = gen(spec, prompt, max_tokens=24)
            if got.text != want.text:
                n_prompt = got.prompt_tokens
                cached = list(spec._cached)
                assert_near_greedy(plain, cached[:n_prompt], cached[n_prompt:])
                continue
            same += 1
            assert got.stop_reason == want.stop_reason
            assert got.generated_tokens == want.generated_tokens
            # The cache holds the prompt plus exactly the tokens shown, as without drafting,
            # so the next keystroke's prefix reuse is the same.
            assert spec.cached_tokens >= got.prompt_tokens
        assert same >= len(COPY_PROMPTS) - 1
        assert spec.spec_stats["batches"] > 0
        assert spec.spec_stats["accepted"] > 0
    finally:
        plain.close()
        spec.close()


def test_lookup_draft_finds_the_latest_continuation() -> None:
    from nearline.engine.llama import lookup_draft

    hist = [1, 2, 3, 9, 9, 1, 2, 3, 7, 8, 5, 1, 2, 3]
    assert lookup_draft(hist, 2) == [7, 8]  # the nearest earlier "1 2 3" is followed by 7 8
    assert lookup_draft([4, 5, 6], 3) == []
    assert lookup_draft([5, 6, 1, 5, 6], 4) == [1, 5, 6]


# -- alternatives -------------------------------------------------------------------------------
ALT_PROMPT = "def area(width, height):\n    return "


def test_alternatives_are_distinct_ranked_lines_and_the_cache_keeps_the_greedy_line(
    engine: LlamaEngine,
) -> None:
    engine.reset()
    greedy = engine.generate(GenerationRequest([(ALT_PROMPT, False)], 24), threading.Event())
    assert greedy.alternatives == []  # one candidate: nothing else decoded
    cached = list(engine._cached)
    engine.reset()
    req = GenerationRequest([(ALT_PROMPT, False)], 24, candidates=4)
    res = engine.generate(req, threading.Event())
    assert res.text == greedy.text  # the first suggestion does not change
    assert 1 <= len(res.alternatives) <= 3
    texts = [t.strip() for t, _ in res.alternatives]
    assert len(set(texts)) == len(texts) and greedy.text.strip() not in texts
    assert all(t and "\n" not in t for t in texts)
    logprobs = [lp for _, lp in res.alternatives]
    assert logprobs == sorted(logprobs, reverse=True) and all(lp < 0 for lp in logprobs)
    # The KV cache ends with the greedy line again: typing through it costs nothing.
    assert engine._cached == cached
    # Each alternative is the model's own greedy line after its first token: asking for that
    # line's first token as a prompt suffix reproduces the rest.
    best = res.alternatives[0][0]
    first_tok = engine.tokenize([(ALT_PROMPT, False)])
    for n in range(1, len(best) + 1):
        toks = engine.tokenize([(ALT_PROMPT + best[:n], False)])
        if toks[: len(first_tok)] == first_tok and len(toks) == len(first_tok) + 1:
            follow = engine.generate(
                GenerationRequest([(ALT_PROMPT + best[:n], False)], 24), threading.Event()
            )
            assert best[:n] + follow.text == best
            break
    else:
        pytest.fail(f"no one-token prefix of {best!r}")


def test_alternatives_respect_cancel(engine: LlamaEngine) -> None:
    engine.reset()
    cancel = threading.Event()
    cancel.set()
    res = engine.generate(GenerationRequest([(ALT_PROMPT, False)], 24, candidates=3), cancel)
    assert res.stop_reason == "cancelled" and res.alternatives == []


# -- preemption within a batch ----------------------------------------------------------------------
def test_a_cancel_stops_a_background_read_within_its_batch(small_model: Path) -> None:
    """A request preempts a warm-up at once, not after the batch in flight: llama.cpp's abort
    callback stops the decode between graph nodes, and the aborted batch leaves the KV cache
    as it was, so reading on afterwards gives the same answer as an uninterrupted read."""
    eng = create_local_engine(settings(batchSize=512, diskCacheMb=0, stateCacheMb=0))
    assert isinstance(eng, LlamaEngine)
    try:
        text = long_prompt("abort", lines=70)  # ~1000 tokens: two 512-token batches
        segs = [(text, False)]
        t0 = time.perf_counter()
        whole = eng.warm(segs, threading.Event())
        full_s = time.perf_counter() - t0
        expected = gen(eng, text + "total = ")
        eng.reset()
        cancel = threading.Event()
        timer = threading.Timer(full_s / 8, cancel.set)
        timer.start()
        eng.warm(segs, cancel)
        timer.join()
        # llama_decode itself said it was aborted (not a stop between batches), and what the
        # aborted batch had read is not counted: the cache ends on a batch boundary. (When the
        # decode returns is a timing, left to bench latency's breakdown: under load the timer
        # fires late.)
        assert eng.state_stats["aborted"] == 1
        assert eng.cached_tokens in (0, 512)
        # Aborted in the second batch: the first one's 512 tokens stay.
        eng.reset()
        cancel = threading.Event()
        timer = threading.Timer(full_s * 0.75, cancel.set)
        timer.start()
        eng.warm(segs, cancel)
        timer.join()
        assert eng.cached_tokens in (0, 512, whole)
        eng.warm(segs, threading.Event())
        assert eng.cached_tokens == whole
        again = gen(eng, text + "total = ")
        assert again.text == expected.text
        # An unarmed decode (nothing to cancel) is never aborted by a flag left set.
        assert gen(eng, text + "total = ").stop_reason != "cancelled"
    finally:
        eng.close()


def test_leaving_a_document_unchanged_saves_nothing(engine: LlamaEngine) -> None:
    """Switching between two documents' states (a keystroke answered from the short prompt, a
    background read of the full prompt aborted before it read anything) copies a state out of
    llama.cpp only when the cache changed since it was restored."""
    engine.reset()
    a = long_prompt("keep_a", lines=10) + "total = "
    b = long_prompt("keep_b", lines=10) + "total = "
    doc_gen(engine, a, "file:///ka.py")
    doc_gen(engine, b, "file:///kb.py")  # saves A
    saved, unchanged = engine.state_stats["saved"], engine.state_stats["unchanged"]
    cancel = threading.Event()
    cancel.set()
    engine.warm([(a, False)], cancel, "file:///ka.py")  # restores A (saves B), reads nothing
    assert engine.state_stats["saved"] == saved + 1
    back = doc_gen(engine, b, "file:///kb.py")  # leaves A as it was restored
    assert engine.state_stats["saved"] == saved + 1
    assert engine.state_stats["unchanged"] == unchanged + 1
    assert "restored_ms" in back.extra and back.evaluated_tokens <= 2
    # A's kept state is still the one to come back to.
    again = doc_gen(engine, a, "file:///ka.py")
    assert "restored_ms" in again.extra and again.evaluated_tokens <= 2
