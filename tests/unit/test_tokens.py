"""Fast tests of nearline.engine.tokens (no llama.cpp).

Most tests use a tiny byte-level BPE GGUF written with the `gguf` package; the ones that need the
real Qwen/SmolLM vocabularies read their paths from NEARLINE_TEST_QWEN / NEARLINE_TEST_SMOLLM
(default: the models the test command pulls) and skip when the file is absent.  Pinned ids below were checked
against llama.cpp (llama-cpp-python 0.3.36, tokenize(add_bos=False, special=False)).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import gguf
import pytest

from nearline.engine import tokens
from nearline.engine.tokens import (
    ApproxCounter,
    GGUFTokenizer,
    TokenCounter,
    TokenizerLoadError,
    load_counter,
    load_tokenizer,
)
from nearline.weights.catalog import load_catalog

from ..conftest import DEFAULT_ID, SMALL_ID

# The models the test command pulls.
QWEN = Path(os.environ.get("NEARLINE_TEST_QWEN") or load_catalog().get(DEFAULT_ID).path)
SMOLLM = Path(os.environ.get("NEARLINE_TEST_SMOLLM") or load_catalog().get(SMALL_ID).path)

TRICKY = [
    "",
    "def f(x):\n    return x  # comment\n",
    "tabs\t\tand  spaces   \n\n\n   trailing   ",
    "crlf\r\nline\r\n\r\n",
    "digits 1234567890 3.14159 0xDEADBEEF 1_000_000",
    "中文注释 日本語 한국어 — “quotes” ‘single’",
    "emoji 🎉👍🏽🇫🇷 👩‍💻 zwj",
    "combining: e\u0301 a\u0308 n\u0303 Z\u0336\u0334",
    "contractions: it's I'LL we'Re they'VE don't",
    "text with <|file_sep|> and <|fim_prefix|> in it",
    " " * 300 + "x",
    "\u00a0nbsp\u2003em\u3000ideographic\u0085nel",
]


def _bytes_to_unicode() -> dict[int, str]:
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    bs += range(ord("®"), ord("ÿ") + 1)
    cs = list(bs)
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs, strict=True)}


def write_tiny_gguf(
    path: Path,
    *,
    pre: str | None = "qwen2",
    model: str = "gpt2",
    endianess: gguf.GGUFEndian = gguf.GGUFEndian.LITTLE,
) -> Path:
    """A GGUF holding only tokenizer metadata: 256 byte tokens, a few merges, and
    one control ("<|fim_prefix|>") and one user-defined ("<tool_call>") token."""
    byte_tokens = list(_bytes_to_unicode().values())
    merges = [("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o"), ("Ġ", "w"), ("o", "r")]
    merges += [("Ġw", "or"), ("l", "d"), ("Ġwor", "ld")]
    vocab = byte_tokens + [a + b for a, b in merges]
    types = [gguf.TokenType.NORMAL] * len(vocab)
    vocab += ["<|fim_prefix|>", "<tool_call>"]
    types += [gguf.TokenType.CONTROL, gguf.TokenType.USER_DEFINED]
    w = gguf.GGUFWriter(str(path), arch="llama", endianess=endianess)
    w.add_tokenizer_model(model)
    if pre is not None:
        w.add_tokenizer_pre(pre)
    w.add_token_list(vocab)
    w.add_token_types(types)
    w.add_token_merges([f"{a} {b}" for a, b in merges])
    w.add_string("general.padding_after", "x" * 100)  # an unrelated key after the tokenizer
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return write_tiny_gguf(tmp_path / "tiny.gguf")


@pytest.fixture(autouse=True)
def _fresh_process_cache() -> None:
    tokens.clear_cache()


def _real(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(
            f"model file {path} not present (set NEARLINE_TEST_QWEN / NEARLINE_TEST_SMOLLM)"
        )
    return path


@pytest.fixture(scope="module")
def qwen() -> GGUFTokenizer:
    return GGUFTokenizer.from_gguf(_real(QWEN))


@pytest.fixture(scope="module")
def smollm() -> GGUFTokenizer:
    return GGUFTokenizer.from_gguf(_real(SMOLLM))


# ---------------------------------------------------------------- synthetic GGUF


def test_read_gguf_vocab(tiny: Path) -> None:
    v = tokens.read_gguf_vocab(tiny)
    assert v.model == "gpt2"
    assert v.pre == "qwen2"
    assert len(v.tokens) == 256 + 9 + 2
    assert v.tokens[-2:] == ["<|fim_prefix|>", "<tool_call>"]
    assert v.token_types[-2:] == [3, 4]
    assert v.merges[0] == "h e"


def test_read_gguf_vocab_big_endian(tmp_path: Path, tiny: Path) -> None:
    be = write_tiny_gguf(tmp_path / "be.gguf", endianess=gguf.GGUFEndian.BIG)
    assert tokens.read_gguf_vocab(be) == tokens.read_gguf_vocab(tiny)


def test_tiny_tokenizer_merges_and_specials(tiny: Path) -> None:
    tok = GGUFTokenizer.from_gguf(tiny)
    assert tok.vocab_size == 256 + 9 + 2
    hello, world = tok.token_id("hello"), tok.token_id("Ġworld")
    assert tok.encode("hello world") == [hello, world]
    fim = tok.token_id("<|fim_prefix|>")
    call = tok.token_id("<tool_call>")
    assert fim is not None and call is not None
    # control tokens are not parsed from text; user-defined ones are (as in llama.cpp)
    assert fim not in tok.encode("a<|fim_prefix|>b")
    assert tok.encode("<tool_call>") == [call]
    assert tok.token_id("no such piece") is None


def test_round_trip_tiny(tiny: Path) -> None:
    tok = GGUFTokenizer.from_gguf(tiny)
    for text in TRICKY:
        ids = tok.encode(text)
        assert tok.count(text) == len(ids)
        assert tok.decode(ids) == text


def test_unicode16_letters_follow_llama_cpp_tables(tiny: Path) -> None:
    # U+1C89 is a letter since Unicode 16; llama.cpp's table still has it unassigned, so
    # "a\u1c89b" pre-tokenizes as "a" + "\u1c89b" there, not as one letter run.
    tok = GGUFTokenizer.from_gguf(tiny)
    pre = tok._tok.pre_tokenizer
    assert pre is not None
    pieces = [p for p, _ in pre.pre_tokenize_str("a\u1c89b")]
    assert len(pieces) == 2


def test_unknown_pre_type_falls_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_tiny_gguf(tmp_path / "odd.gguf", pre="brand-new-pre")
    with caplog.at_level(logging.WARNING, logger="nearline.engine.tokens"):
        tok = GGUFTokenizer.from_gguf(path)
    assert "brand-new-pre" in caplog.text
    assert tok.decode(tok.encode("hello world 123")) == "hello world 123"


def test_missing_pre_type_uses_default(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_tiny_gguf(tmp_path / "nopre.gguf", pre=None)
    with caplog.at_level(logging.WARNING, logger="nearline.engine.tokens"):
        tok = GGUFTokenizer.from_gguf(path)
    assert "tokenizer.ggml.pre" in caplog.text
    assert tok.count("hello") == 1


def test_all_known_pre_types_build(tiny: Path) -> None:
    vocab = tokens.read_gguf_vocab(tiny)
    for pre in tokens._PRE_TOKENIZERS:
        hf = tokens.build_hf_tokenizer(
            tokens.GGUFVocab(vocab.model, pre, vocab.tokens, vocab.token_types, vocab.merges)
        )
        tok = GGUFTokenizer(hf)
        for text in TRICKY:
            assert tok.decode(tok.encode(text)) == text, pre


def test_unsupported_tokenizer_model(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "spm.gguf", model="llama")
    with pytest.raises(TokenizerLoadError, match="not supported"):
        GGUFTokenizer.from_gguf(path)
    assert isinstance(load_counter(path, disk_cache=False), ApproxCounter)


def test_not_a_gguf(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf at all, definitely not" * 4)
    with pytest.raises(TokenizerLoadError):
        GGUFTokenizer.from_gguf(bad)
    truncated = tmp_path / "trunc.gguf"
    truncated.write_bytes(write_tiny_gguf(tmp_path / "whole.gguf").read_bytes()[:500])
    with pytest.raises(TokenizerLoadError):
        GGUFTokenizer.from_gguf(truncated)
    with pytest.raises(TokenizerLoadError):
        load_tokenizer(tmp_path / "missing.gguf")
    assert isinstance(load_counter(tmp_path / "missing.gguf"), ApproxCounter)
    assert isinstance(load_counter(None), ApproxCounter)


def test_surrogates_do_not_crash(tiny: Path) -> None:
    tok = GGUFTokenizer.from_gguf(tiny)
    assert tok.count("a\ud800b") > 0


# ---------------------------------------------------------------- caching


def test_load_tokenizer_caches_in_process_and_on_disk(tiny: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = load_tokenizer(tiny, cache_dir=cache)
    assert load_tokenizer(tiny, cache_dir=cache) is first
    files = list(cache.glob("*.json"))
    assert len(files) == 1
    tokens.clear_cache()
    again = load_tokenizer(tiny, cache_dir=cache)  # from the disk cache
    assert again is not first
    for text in TRICKY:
        assert again.encode(text) == first.encode(text)
    assert again.encode("<tool_call>") == first.encode("<tool_call>")
    assert again.token_id("<|fim_prefix|>") == first.token_id("<|fim_prefix|>")
    assert len(again.encode("<|fim_prefix|>")) > 1  # still not parsed after a cache load


def test_changed_file_is_rebuilt(tiny: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = load_tokenizer(tiny, cache_dir=cache)
    st = tiny.stat()
    os.utime(tiny, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    second = load_tokenizer(tiny, cache_dir=cache)
    assert second is not first
    assert len(list(cache.glob("*.json"))) == 2


def test_corrupt_disk_cache_is_rebuilt(
    tiny: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    load_tokenizer(tiny, cache_dir=cache)
    (cached,) = cache.glob("*.json")
    cached.write_text("{ broken")
    tokens.clear_cache()
    with caplog.at_level(logging.WARNING, logger="nearline.engine.tokens"):
        tok = load_tokenizer(tiny, cache_dir=cache)
    assert "unreadable tokenizer cache" in caplog.text
    assert tok.count("hello world") == 2
    GGUFTokenizer.from_file(cached)  # rewritten and valid again


def test_disk_cache_can_be_disabled(tiny: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    load_tokenizer(tiny, cache_dir=cache, disk_cache=False)
    assert not cache.exists()


# ---------------------------------------------------------------- ApproxCounter


def test_approx_counter() -> None:
    approx = ApproxCounter()
    assert isinstance(approx, TokenCounter)
    assert approx.count("") == 0
    assert approx.count("ab") == 1
    assert approx.count("abc") == 2
    assert approx.count("é") == 1  # bytes, not characters
    assert len(approx.encode("hello world")) == approx.count("hello world")
    assert ApproxCounter(bytes_per_token=1.0).count("hello") == 5
    assert ApproxCounter(bytes_per_token=3.0).count("abcd") == 2
    with pytest.raises(ValueError):
        ApproxCounter(bytes_per_token=0)


def test_approx_counter_over_estimates_source(qwen: GGUFTokenizer, smollm: GGUFTokenizer) -> None:
    approx = ApproxCounter()
    strict = ApproxCounter(bytes_per_token=1.0)
    sources = sorted(Path(tokens.__file__).parent.rglob("*.py"))
    assert sources
    texts = [p.read_text(encoding="utf-8") for p in sources] + TRICKY
    for tok in (qwen, smollm):
        for text in texts:
            assert strict.count(text) >= tok.count(text)  # a hard bound, per text
        whole = "\n".join(texts)
        assert approx.count(whole) >= tok.count(whole)  # the default, over a whole project


# ---------------------------------------------------------------- real vocabularies


def test_qwen_pinned_ids(qwen: GGUFTokenizer) -> None:
    assert isinstance(qwen, TokenCounter)
    assert qwen.vocab_size == 151936
    assert qwen.encode("def hello(x):") == [750, 23811, 2075, 1648]
    assert qwen.encode("12345") == [16, 17, 18, 19, 20]  # qwen2 splits every digit
    assert qwen.token_id("<|fim_prefix|>") == 151659
    assert qwen.token_id("<|fim_suffix|>") == 151661
    assert qwen.token_id("<|fim_middle|>") == 151660
    assert qwen.token_id("<|file_sep|>") == 151664
    assert qwen.token_id("<|repo_name|>") == 151663
    assert qwen.token_id("<|endoftext|>") == 151643
    # "<|file_sep|>" in a file is ordinary text; "<tool_call>" is user-defined and matched
    assert qwen.encode("<|file_sep|>") == [27, 91, 1192, 54775, 91, 29]
    assert qwen.encode("<tool_call>") == [151657]


def test_smollm_pinned_ids(smollm: GGUFTokenizer) -> None:
    assert smollm.vocab_size == 49152
    assert smollm.token_id("<file_sep>") == 5
    assert smollm.token_id("<|endoftext|>") == 0
    assert smollm.encode("12345") == [33, 34, 35, 36, 37]
    assert 5 not in smollm.encode("x<file_sep>y")


def test_real_round_trips(qwen: GGUFTokenizer, smollm: GGUFTokenizer) -> None:
    for tok in (qwen, smollm):
        for text in TRICKY:
            assert tok.decode(tok.encode(text)) == text
