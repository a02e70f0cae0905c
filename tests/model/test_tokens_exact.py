"""GGUFTokenizer must give llama.cpp's exact token ids.

Every ``.py`` file of two real projects (the installed ``pygls`` and ``lsprotocol`` packages),
tricky synthetic strings, seeded random mixes and a sweep over Unicode code points are tokenized
both with :class:`nearline.engine.tokens.GGUFTokenizer` and with
``llama_cpp.Llama(vocab_only=True).tokenize(..., add_bos=False, special=False)``; the ids must be
identical, for both the Qwen2.5-Coder (pre=qwen2) and SmolLM2 (pre=smollm) vocabularies.

The other supported pre-tokenizers (gpt2, llama3, starcoder, default, deepseek-coder, falcon)
are checked the same way on tensor-less copies of the SmolLM2 metadata with
``tokenizer.ggml.pre`` replaced, which llama.cpp loads with ``vocab_only=True``.

Model paths: NEARLINE_TEST_QWEN / NEARLINE_TEST_SMOLLM, default: the pulled models; a missing file
skips.
"""

from __future__ import annotations

import os
import random
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from nearline.engine.tokens import GGUFTokenizer
from nearline.weights.catalog import load_catalog

from ..conftest import DEFAULT_ID, SMALL_ID

pytestmark = pytest.mark.model

# The models the test command pulls (a default under /tmp meant these tests were skipped
# everywhere, CI included).
MODELS = {
    "qwen": Path(os.environ.get("NEARLINE_TEST_QWEN") or load_catalog().get(DEFAULT_ID).path),
    "smollm": Path(os.environ.get("NEARLINE_TEST_SMOLLM") or load_catalog().get(SMALL_ID).path),
}

TRICKY = [
    "def f(x):\n    return x  # comment\n",
    "tabs\t\tand  spaces   \n\n\n   trailing   ",
    "\t\n \t \n\n\t\t\t    \r\n\r\n  \r \r\r\n x",
    "crlf\r\nline\r\n\r\n  indented\r\n\tend\r\n",
    "digits 1234567890 3.14159 0xDEADBEEF 1_000_000 ١٢٣ ۴۵۶ १२३ ½ ² Ⅻ",
    "中文注释：你好，世界！ 日本語のテキスト 한국어 — “quotes” ‘single’ 「括弧」",
    "emoji 🎉👍🏽🇫🇷 👩‍💻 family 👨‍👩‍👧‍👦 keycap 1️⃣",
    "combining: e\u0301 a\u0308 n\u0303 Z\u0336\u0334 \u0915\u094d\u0937 \u0e01\u0e34",
    "contractions: it's I'LL we'Re they'VE don't 'd 'm 's'",
    "text with <|file_sep|> <|fim_prefix|><|fim_suffix|><|fim_middle|> <|endoftext|> in it",
    "<tool_call>{}</tool_call> <file_sep> <filename> <|im_start|>user",
    " " * 300 + "x" + "\t" * 50 + "\n" * 20 + " " * 7,
    "\u00a0nbsp\u2003em\u3000ideographic\u0085nel\u2028ls\u2029ps\u200bzwsp\ufeffbom",
    "'''docstring''' \"\"\"other\"\"\" f'{x!r:>10}' b'\\x00' r'\\d+'",
    "x = [1,2,3]; y = {'a': (4, 5)}; z = a->b && c || !d; w >>= 2 ** -3",
    "\x00\x01\x04\x06\x13\x1b[0m\x7f control bytes",
    "Ünïcödé ÄÖÜ ß ẞ ǅ ǈ ﬁ ﬀ İ ı Kelvin\u212a 'S 'ſ",
    "\U00010d40\u1c89\U000105c0\u1b4e new in Unicode 16",
    "",
]


@dataclass
class Tally:
    texts: int = 0
    tokens: int = 0
    mismatches: list[str] = field(default_factory=list)


_pairs: dict[str, tuple[GGUFTokenizer, Any]] = {}


@pytest.fixture(scope="module", autouse=True)
def _close_llamas() -> Iterator[None]:
    yield
    for _, ref in _pairs.values():
        ref.close()  # not at interpreter exit, where llama_cpp's __del__ fails noisily
    _pairs.clear()


def _pair(name: str) -> tuple[GGUFTokenizer, Any]:
    if name not in _pairs:
        llama_cpp = pytest.importorskip("llama_cpp")
        path = MODELS[name]
        if not path.is_file():
            pytest.skip(f"model file {path} not present (set NEARLINE_TEST_{name.upper()})")
        ours = GGUFTokenizer.from_gguf(path)
        ref = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
        _pairs[name] = (ours, ref)
    return _pairs[name]


def _compare(name: str, items: Iterator[tuple[str, str]]) -> Tally:
    ours, ref = _pair(name)
    tally = Tally()
    for label, text in items:
        got = ours.encode(text)
        want = ref.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        tally.texts += 1
        tally.tokens += len(want)
        assert ours.count(text) == len(got)
        if got != want:
            i = next(
                (k for k, (a, b) in enumerate(zip(got, want, strict=False)) if a != b),
                min(len(got), len(want)),
            )
            ctx = slice(max(0, i - 3), i + 4)
            tally.mismatches.append(
                f"{label}: {len(got)} vs {len(want)} tokens, first difference at {i}: "
                f"{[ours.decode([t]) for t in got[ctx]]} vs {[ours.decode([t]) for t in want[ctx]]}"
            )
    return tally


def _report(capsys: pytest.CaptureFixture[str], what: str, name: str, t: Tally) -> None:
    with capsys.disabled():
        print(
            f"\n[tokens-exact] {name}: {what}: {t.texts} texts, {t.tokens} tokens, "
            f"{len(t.mismatches)} mismatches",
            file=sys.stderr,
        )


def _project_files() -> list[Path]:
    files: list[Path] = []
    for pkg in ("pygls", "lsprotocol"):
        mod = pytest.importorskip(pkg)
        root = Path(mod.__file__ or "").parent
        files += sorted(root.rglob("*.py"))
    return files


@pytest.mark.parametrize("name", sorted(MODELS))
def test_project_files_exact(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    files = _project_files()
    assert len(files) >= 20
    tally = _compare(name, ((str(p), p.read_text(encoding="utf-8")) for p in files))
    _report(capsys, "pygls+lsprotocol .py files", name, tally)
    assert tally.tokens > 100_000
    assert tally.mismatches == []


@pytest.mark.parametrize("name", sorted(MODELS))
def test_tricky_strings_exact(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    items = [(repr(t[:40]), t) for t in TRICKY]
    items.append(("all tricky joined", "\n".join(TRICKY)))
    tally = _compare(name, iter(items))
    _report(capsys, "tricky strings", name, tally)
    assert tally.mismatches == []


_ALPHABET = list(
    " \t\n\r\x0b\x0c\x85\xa0\u2000\u3000 'sStTreREvVmMlLdD0123456789٣۴१"
    'abcXYZ_-+=()[]{}<>|!?.,;:"`~@#$%^&*/\\'
    "éüñßøÆŒʼ\u0301\u0303"
    "世界中文日本語한국어ひらがなカタカナ"
    "🎉👍🏽🇫🇷‍💻✓→∑∞Ⅻ½²³\u200b\u200d\ufeff\ufffdـ؟،\x04\x06"
)
_PIECES = [
    "<|file_sep|>", "<|fim_prefix|>", "<tool_call>", "</tool_call>", "<|endoftext|>",
    "<file_sep>", "<|im_start|>", "    ", "\r\n", "\n\n\n", "'ll", "'S", "1234567", "def ", "self.",
]  # fmt: skip


def _random_texts(n: int, seed: int) -> Iterator[tuple[str, str]]:
    rnd = random.Random(seed)
    for k in range(n):
        parts = []
        for _ in range(rnd.randint(1, 40)):
            if rnd.random() < 0.1:
                parts.append(rnd.choice(_PIECES))
            else:
                parts.append(
                    rnd.choice(_ALPHABET) * (1 if rnd.random() < 0.8 else rnd.randint(2, 6))
                )
        yield f"random #{k}", "".join(parts)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_random_mixes_exact(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    tally = _compare(name, _random_texts(5000, seed=1234))
    _report(capsys, "seeded random mixes", name, tally)
    assert tally.mismatches == []


def _codepoints() -> Iterator[int]:
    """Planes 0-3 and 14 in full (everything assigned), a stride through the rest."""
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        if cp >> 16 in (0, 1, 2, 3, 14) or cp % 251 == 0:
            yield cp


def _codepoint_texts() -> Iterator[tuple[str, str]]:
    chunk: list[str] = []
    first = 0
    for cp in _codepoints():
        if not chunk:
            first = cp
        ch = chr(cp)
        chunk.append(f"x{ch}{ch}1 {ch}'s{ch}\t{ch}\n {ch}a")
        if len(chunk) == 4000:
            yield f"code points U+{first:04X}..U+{cp:04X}", "".join(chunk)
            chunk = []
    if chunk:
        yield f"code points U+{first:04X}..", "".join(chunk)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_unicode_sweep_exact(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    tally = _compare(name, _codepoint_texts())
    _report(capsys, "code point sweep", name, tally)
    assert tally.mismatches == []


def _copy_with_pre(src: Path, dst: Path, pre: str) -> Path:
    """A tensor-less GGUF holding `src`'s metadata, with tokenizer.ggml.pre set to `pre`."""
    buf = src.read_bytes()
    assert buf[:4] == b"GGUF"
    version, _n_tensors, n_kv = struct.unpack_from("<IQQ", buf, 4)
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def skip(vtype: int, off: int) -> int:
        if vtype == 8:  # string
            return off + 8 + struct.unpack_from("<Q", buf, off)[0]
        if vtype == 9:  # array
            etype, count = struct.unpack_from("<IQ", buf, off)
            off += 12
            for _ in range(count):
                off = skip(etype, off)
            return off
        return off + sizes[vtype]

    def kv_string(key: str, value: str) -> bytes:
        k, v = key.encode(), value.encode()
        return struct.pack("<Q", len(k)) + k + struct.pack("<IQ", 8, len(v)) + v

    kvs = [kv_string("tokenizer.ggml.pre", pre)]
    off = 24
    for _ in range(n_kv):
        start = off
        klen = struct.unpack_from("<Q", buf, off)[0]
        key = buf[off + 8 : off + 8 + klen].decode()
        off = skip(struct.unpack_from("<I", buf, off + 8 + klen)[0], off + 12 + klen)
        if key != "tokenizer.ggml.pre":
            kvs.append(buf[start:off])
    data = b"GGUF" + struct.pack("<IQQ", version, 0, len(kvs)) + b"".join(kvs)
    dst.write_bytes(data + b"\0" * (-len(data) % 32))
    return dst


@pytest.mark.parametrize(
    "pre", ["gpt-2", "llama-bpe", "starcoder", "default", "deepseek-coder", "falcon"]
)
def test_other_pre_tokenizers_exact(
    pre: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = MODELS["smollm"]
    if not src.is_file():
        pytest.skip(f"model file {src} not present (set NEARLINE_TEST_SMOLLM)")
    name = f"smollm-vocab+{pre}"
    path = _copy_with_pre(src, tmp_path / f"{pre}.gguf", pre)
    llama_cpp = pytest.importorskip("llama_cpp")
    _pairs[name] = (
        GGUFTokenizer.from_gguf(path),
        llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False),
    )
    items: list[tuple[str, str]] = [
        (str(p), p.read_text(encoding="utf-8")) for p in _project_files()
    ]
    items += [(repr(t[:40]), t) for t in TRICKY]
    items += list(_random_texts(1000, seed=99))
    tally = _compare(name, iter(items))
    _report(capsys, "pygls+lsprotocol, tricky strings, random mixes", name, tally)
    assert tally.mismatches == []
