"""A GGUF's prompt format, read from the model itself.

A model file names its own control tokens: the fill-in-the-middle trio, the repository and
file-separator tokens of repository-level pretraining, and the tokens that end a generation.
From those this module builds the ``PromptFormat`` the prompt is composed in, so that a file
the catalog does not know (DeepSeek-Coder, StarCoder2, CodeGemma, Qwen3-Coder, ...) is served
through ``model.path`` alone.

Two readers give the same answer: llama.cpp's own vocabulary (``vocab_only``: no weights are
read), which knows the token names llama.cpp itself recognises, and a pure-Python walk of the
GGUF metadata, for the server process (which never loads native llama.cpp code: a crash there
would take the editor's server down) and for files llama.cpp cannot load.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from nearline.engine.gguf_meta import GGUFError, read_metadata
from nearline.weights.catalog import ModelEntry, PromptFormat, load_catalog

ROLES = ("fim_pre", "fim_suf", "fim_mid", "fim_pad", "fim_rep", "fim_sep")

# Token names per role, most specific first. llama.cpp scans names too, but not all of these
# (StarCoder2's <repo_name>/<file_sep>, CodeGemma's <|file_separator|>), and for a vocabulary
# holding both StarCoder generations' tokens it picks the older <reponame>.
CANDIDATES: dict[str, tuple[str, ...]] = {
    "fim_pre": ("<|fim_prefix|>", "<fim_prefix>", "<fim-prefix>", "<｜fim▁begin｜>", "<PRE>"),
    "fim_suf": ("<|fim_suffix|>", "<fim_suffix>", "<fim-suffix>", "<｜fim▁hole｜>", "<SUF>"),
    "fim_mid": ("<|fim_middle|>", "<fim_middle>", "<fim-middle>", "<｜fim▁end｜>", "<MID>"),
    "fim_pad": ("<|fim_pad|>", "<fim_pad>", "<fim-pad>"),
    "fim_rep": ("<|repo_name|>", "<repo_name>", "<reponame>", "<|fim_repo|>"),
    "fim_sep": ("<|file_sep|>", "<file_sep>", "<|file_separator|>"),
}

# The names llama.cpp treats as end of generation (llama-vocab.cpp), for the metadata reader.
EOG_NAMES = (
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",
    "<EOT>", "_<EOT>", "<|end_of_text|>", "<end_of_utterance>",
)  # fmt: skip

_TT_CONTROL, _TT_USER_DEFINED = 3, 4  # gguf.TokenType
_ATTR_NORMAL, _ATTR_CONTROL, _ATTR_USER_DEFINED = 1 << 2, 1 << 3, 1 << 4  # llama_token_attr


class FormatError(Exception):
    """The file's metadata could not be read (one line, for the user)."""


@dataclass(frozen=True)
class ModelInfo:
    """What a GGUF says about itself, as far as prompting it goes."""

    path: str
    reader: str  # "llama.cpp" or "gguf"
    architecture: str | None
    name: str | None
    tokenizer: str | None
    vocab_size: int
    trained_context: int | None
    rope_freq_base: float | None
    rope_scaling: str | None
    rope_scaling_factor: float | None
    rope_orig_context: int | None
    tokens: dict[str, str | None]  # role -> token text (ROLES)
    eog: tuple[str, ...]
    control_eog: tuple[str, ...] = field(default=())  # eog tokens that never occur in text

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------
def _arch_keys(arch: str | None) -> dict[str, str]:
    a = arch or "llama"
    return {
        "trained_context": f"{a}.context_length",
        "rope_freq_base": f"{a}.rope.freq_base",
        "rope_scaling": f"{a}.rope.scaling.type",
        "rope_scaling_factor": f"{a}.rope.scaling.factor",
        "rope_orig_context": f"{a}.rope.scaling.original_context_length",
    }


def _num(v: Any, kind: type) -> Any:
    try:
        return kind(v) if v is not None and v != "" else None
    except (TypeError, ValueError):
        return None


def read_with_llama(path: str | os.PathLike[str]) -> ModelInfo:
    """Load only the vocabulary with llama.cpp and ask it. Raises ``FormatError`` when llama.cpp
    cannot load the file."""
    import llama_cpp as L

    from nearline.engine.llama import _silence_llama_logs

    _silence_llama_logs()
    params = L.llama_model_default_params()
    params.vocab_only = True
    model = L.llama_model_load_from_file(os.fsencode(path), params)
    if not model:
        raise FormatError(f"llama.cpp could not load the vocabulary of {path}")
    try:
        vocab = L.llama_model_get_vocab(model)
        buf = ctypes.create_string_buffer(1024)

        def meta(key: str) -> str | None:
            n = L.llama_model_meta_val_str(model, key.encode(), buf, len(buf))
            return buf.value.decode("utf-8", "replace") if n >= 0 else None

        n_vocab = L.llama_vocab_n_tokens(vocab)

        def text(tok: int) -> str | None:
            if tok < 0 or tok >= n_vocab:
                return None
            return bytes(L.llama_vocab_get_text(vocab, tok)).decode("utf-8", "replace")

        def single_special(name: str) -> bool:
            raw = name.encode()
            out = (L.llama_token * 4)()
            n = L.llama_tokenize(vocab, raw, len(raw), out, 4, False, True)
            if n != 1 or text(out[0]) != name:
                return False
            return bool(
                L.llama_vocab_get_attr(vocab, out[0]) & (_ATTR_CONTROL | _ATTR_USER_DEFINED)
            )

        tokens: dict[str, str | None] = {}
        for role in ROLES:
            found = text(getattr(L, f"llama_vocab_{role}")(vocab))
            # A token the file declares wins; else our names before llama.cpp's guess by name.
            if meta(f"tokenizer.ggml.{role}_token_id") is None:
                found = next((c for c in CANDIDATES[role] if single_special(c)), found)
            tokens[role] = found
        eog: list[str] = []
        control: list[str] = []
        for tok in range(n_vocab):
            if L.llama_vocab_is_eog(vocab, tok):
                t = text(tok) or ""
                eog.append(t)
                attr = L.llama_vocab_get_attr(vocab, tok)
                if attr & _ATTR_CONTROL and not attr & _ATTR_NORMAL:
                    control.append(t)
        # The role tokens we picked end a generation as llama.cpp's own picks would.
        for role in ("fim_pad", "fim_rep", "fim_sep"):
            if (picked := tokens[role]) and picked not in eog:
                eog.append(picked)
                control.append(picked)
        arch = meta("general.architecture")
        keys = _arch_keys(arch)
        return ModelInfo(
            path=str(path), reader="llama.cpp", architecture=arch, name=meta("general.name"),
            tokenizer=meta("tokenizer.ggml.model"), vocab_size=n_vocab,
            trained_context=_num(meta(keys["trained_context"]), int),
            rope_freq_base=_num(meta(keys["rope_freq_base"]), float),
            rope_scaling=meta(keys["rope_scaling"]),
            rope_scaling_factor=_num(meta(keys["rope_scaling_factor"]), float),
            rope_orig_context=_num(meta(keys["rope_orig_context"]), int),
            tokens=tokens, eog=tuple(eog), control_eog=tuple(control),
        )  # fmt: skip
    finally:
        L.llama_model_free(model)


def read_gguf_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Every metadata value of a GGUF except the large tokenizer arrays we do not need (merges,
    scores); tensors are never touched."""
    skip = {"tokenizer.ggml.merges", "tokenizer.ggml.scores", "tokenizer.chat_template"}
    try:
        return read_metadata(path, lambda key: key not in skip)
    except GGUFError as exc:
        raise FormatError(str(exc)) from None


def read_with_gguf(path: str | os.PathLike[str]) -> ModelInfo:
    """The same answer as ``read_with_llama`` from the metadata alone (no native code)."""
    meta = read_gguf_metadata(path)
    vocab = meta.get("tokenizer.ggml.tokens")
    if not isinstance(vocab, list):
        raise FormatError(f"{path} has no tokenizer vocabulary")
    types = meta.get("tokenizer.ggml.token_type")
    if not isinstance(types, list) or len(types) != len(vocab):
        types = [1] * len(vocab)
    ids = {t: i for i, t in enumerate(vocab)}
    special = {i for i, ty in enumerate(types) if ty in (_TT_CONTROL, _TT_USER_DEFINED)}

    def declared(key: str) -> int | None:
        v = meta.get(f"tokenizer.ggml.{key}_token_id")
        return v if isinstance(v, int) and 0 <= v < len(vocab) else None

    tokens: dict[str, str | None] = {}
    for role in ROLES:
        tid = declared(role)
        if tid is None:
            tid = next((ids[c] for c in CANDIDATES[role] if ids.get(c) in special), None)
        tokens[role] = vocab[tid] if tid is not None else None
    eog_ids = {i for i in (declared("eos"), declared("eot"), declared("eom")) if i is not None}
    eog_ids |= {ids[n] for n in EOG_NAMES if n in ids}
    eog_ids |= {ids[t] for r in ("fim_pad", "fim_rep", "fim_sep") if (t := tokens[r])}
    eog = tuple(vocab[i] for i in sorted(eog_ids))
    control = tuple(vocab[i] for i in sorted(eog_ids) if types[i] == _TT_CONTROL)
    arch = meta.get("general.architecture")
    arch = arch if isinstance(arch, str) else None
    keys = _arch_keys(arch)
    name, tok_model = meta.get("general.name"), meta.get("tokenizer.ggml.model")
    return ModelInfo(
        path=str(path), reader="gguf", architecture=arch,
        name=name if isinstance(name, str) else None,
        tokenizer=tok_model if isinstance(tok_model, str) else None, vocab_size=len(vocab),
        trained_context=_num(meta.get(keys["trained_context"]), int),
        rope_freq_base=_num(meta.get(keys["rope_freq_base"]), float),
        rope_scaling=_num(meta.get(keys["rope_scaling"]), str),
        rope_scaling_factor=_num(meta.get(keys["rope_scaling_factor"]), float),
        rope_orig_context=_num(meta.get(keys["rope_orig_context"]), int),
        tokens=tokens, eog=eog, control_eog=control,
    )  # fmt: skip


def read_model_info(path: str | os.PathLike[str], reader: str = "llama.cpp") -> ModelInfo:
    """``reader`` "llama.cpp" falls back to the metadata walk when llama.cpp cannot load the
    file (an architecture this build does not know, a vocabulary it rejects)."""
    if reader == "gguf":
        return read_with_gguf(path)
    try:
        return read_with_llama(path)
    except FormatError:
        return read_with_gguf(path)


# --------------------------------------------------------------------------------------------
# Formats
# --------------------------------------------------------------------------------------------
def format_from_info(
    info: ModelInfo, known: Mapping[str, PromptFormat] | None = None
) -> PromptFormat:
    """The prompt format the file's tokens call for. When the tokens are exactly those of a
    catalog format, that format (its name and its curated stop list) is the answer."""
    t = info.tokens
    fim = (t["fim_pre"], t["fim_suf"], t["fim_mid"])
    if not all(fim):  # a partial trio cannot make a FIM prompt
        fim = (None, None, None)
    known = load_catalog().formats if known is None else known
    for fmt in known.values():
        if (fmt.fim_prefix, fmt.fim_suffix, fmt.fim_middle) == fim and (
            fmt.repo_name,
            fmt.file_sep,
        ) == (t["fim_rep"], t["fim_sep"]):
            return fmt
    controls = [x for x in (*fim, t["fim_pad"], t["fim_rep"], t["fim_sep"]) if x]
    stop = tuple(dict.fromkeys([*info.control_eog, *controls]))
    return PromptFormat(
        name=f"detected:{info.architecture or 'unknown'}",
        fim_prefix=fim[0],
        fim_suffix=fim[1],
        fim_middle=fim[2],
        repo_name=t["fim_rep"],
        file_sep=t["fim_sep"],
        stop=stop,
    )


@lru_cache(maxsize=16)
def _detect(path: str, size: int, mtime_ns: int, reader: str) -> PromptFormat:
    return format_from_info(read_model_info(path, reader))


def detect_format(path: str | os.PathLike[str], reader: str = "gguf") -> PromptFormat:
    """The format of a GGUF file, cached per file version. The default reader is the pure-Python
    one: this runs in the server process, which never loads llama.cpp."""
    st = os.stat(path)
    return _detect(str(path), st.st_size, st.st_mtime_ns, reader)


def known_format(name: str) -> PromptFormat:
    formats = load_catalog().formats
    if name not in formats:
        raise FormatError(
            f"unknown prompt format {name!r}; known: auto, {', '.join(sorted(formats))}"
        )
    return formats[name]


def choose_format(
    entry: ModelEntry, path: str | os.PathLike[str] | None, setting: str | None
) -> tuple[PromptFormat, str]:
    """(format, why) for the configured model: ``model.format`` when it names a format; else
    the catalog's format for a catalog file (the catalog's is tested on the benchmark: e.g.
    SmolLM2 has no FIM training although its vocabulary is StarCoder's); else what the file
    says; else, if its metadata cannot be read, the catalog entry's format."""
    if setting and setting != "auto":
        return known_format(setting), "model.format"
    if path is None:
        return entry.format, "catalog"
    path = os.path.expanduser(path)
    name = Path(path).name
    for m in load_catalog().models:
        if m.file == name:
            return m.format, "catalog"
    try:
        return detect_format(path), "detected"
    except (FormatError, OSError):
        return entry.format, "fallback"
