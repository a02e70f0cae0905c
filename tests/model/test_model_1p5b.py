"""The 1.5B catalog model (pulled from its 22 PyPI chunks) loads with the real engine and
completes a line; skipped unless ``nearline models pull qwen2.5-coder-1.5b-instruct-q4_k_m``
has run on this machine."""

from __future__ import annotations

import threading

import pytest

from nearline.config import parse_settings
from nearline.engine.base import GenerationRequest
from nearline.engine.factory import create_local_engine
from nearline.engine.formats import read_with_gguf
from nearline.engine.llama import LlamaEngine
from nearline.weights.catalog import load_catalog

pytestmark = pytest.mark.model
ENTRY = load_catalog().get("qwen2.5-coder-1.5b-instruct-q4_k_m")
needs_file = pytest.mark.skipif(not ENTRY.path.is_file(), reason=f"{ENTRY.id} is not pulled")


@needs_file
def test_the_1p5b_model_completes_a_line() -> None:
    fmt = ENTRY.format
    info = read_with_gguf(ENTRY.path)
    assert (info.architecture, info.trained_context) == ("qwen2", ENTRY.trained_context)
    s, problems = parse_settings(
        {"model": {"id": ENTRY.id, "threads": 2, "contextLength": 512},
         "engine": {"isolation": "thread"}}
    )  # fmt: skip
    assert not problems
    eng = create_local_engine(s)  # verifies the sha256 (stamped after the first time)
    try:
        assert isinstance(eng, LlamaEngine)
        assert eng.format == fmt
        assert fmt.fim_prefix and fmt.fim_suffix and fmt.fim_middle
        prefix = "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return "
        segments = [(fmt.fim_prefix, True), (prefix, False), (fmt.fim_suffix, True),
                    ("\n", False), (fmt.fim_middle, True)]  # fmt: skip
        res = eng.generate(GenerationRequest(segments, max_tokens=12), threading.Event())
        assert res.stop_reason in ("eol", "eog", "stop")
        assert res.text.strip() == "a * b"
    finally:
        eng.close()
