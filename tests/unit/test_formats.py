"""Prompt formats read from GGUF files: both readers (llama.cpp's vocabulary and the pure-Python
metadata walk) on every model reachable here and on GGUFs written here with made-up token
names; ``model.format``; ``nearline models inspect``."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import pytest

from nearline.cli import main
from nearline.config import PROMPT_FORMATS, parse_settings
from nearline.engine.formats import (
    FormatError,
    choose_format,
    detect_format,
    format_from_info,
    read_model_info,
    read_with_gguf,
    read_with_llama,
)
from nearline.weights.catalog import load_catalog, models_dir

CATALOG = load_catalog()
LOCAL = [m for m in CATALOG.models if (models_dir() / m.file).is_file() and m.sha256 is not None]


def write_gguf(
    path: Path,
    *,
    arch: str = "llama",
    declare: bool = True,
    tokens: tuple[str, ...] = ("<<eos>>", "<<pre>>", "<<suf>>", "<<mid>>", "<<repo>>", "<<sep>>"),
) -> Path:
    """A vocabulary-only GGUF (no tensors) with a byte-level BPE vocabulary llama.cpp accepts.
    With ``declare`` the FIM/repository roles are declared through the tokenizer.ggml.fim_*
    metadata keys, the only way llama.cpp can know tokens with made-up names."""
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("tiny made-up")
    w.add_context_length(4096)
    w.add_embedding_length(64)
    w.add_block_count(1)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_head_count_kv(4)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(50000.0)
    w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
    w.add_rope_scaling_factor(4.0)
    w.add_rope_scaling_orig_ctx_len(1024)
    toks = [*tokens, "Ċ", "a", "b", "ab", "Ġ"]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(toks)
    w.add_token_types([3] * len(tokens) + [1] * 5)
    w.add_token_merges(["a b"])
    w.add_eos_token_id(0)
    if declare:
        for i, role in enumerate(("pre", "suf", "mid", "rep", "sep"), 1):
            w.add_uint32(f"tokenizer.ggml.fim_{role}_token_id", i)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


# -- models reachable here ----------------------------------------------------------------------
@pytest.mark.skipif(not LOCAL, reason="no pulled catalog model")
@pytest.mark.parametrize("entry", LOCAL, ids=lambda m: m.id)
def test_both_readers_give_the_catalog_format(entry) -> None:  # type: ignore[no-untyped-def]
    path = models_dir() / entry.file
    by_llama, by_gguf = read_with_llama(path), read_with_gguf(path)
    assert by_llama.tokens == by_gguf.tokens
    assert (by_llama.architecture, by_llama.trained_context, by_llama.rope_freq_base) == (
        by_gguf.architecture,
        by_gguf.trained_context,
        by_gguf.rope_freq_base,
    )
    assert by_gguf.trained_context == entry.trained_context
    assert by_gguf.rope_freq_base == entry.rope.freq_base
    # What the file says is what the catalog says, down to the format's name.
    assert format_from_info(by_llama) == entry.format
    assert format_from_info(by_gguf) == entry.format
    # A renamed copy (a user's own download) is served by detection with the same format.
    assert set(by_gguf.control_eog) <= set(by_llama.eog)


def test_detection_of_a_renamed_catalog_file(tmp_path: Path) -> None:
    small = CATALOG.get("smollm2-135m-instruct-q4_1")
    if not small.path.is_file():
        pytest.skip("SmolLM2 is not pulled")
    link = tmp_path / "my-own-download.gguf"
    link.symlink_to(small.path)
    default = CATALOG.default
    fmt, why = choose_format(default, link, "auto")
    assert (fmt, why) == (small.format, "detected")  # not the default model's qwen format
    assert choose_format(default, link, "qwen2.5-coder") == (default.format, "model.format")


# -- written GGUFs with made-up names -----------------------------------------------------------
def test_made_up_tokens_declared_in_metadata(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "tiny.gguf")
    # llama.cpp loads a vocabulary this small (gpt2 model with merges, a newline token).
    by_llama = read_with_llama(path)
    by_gguf = read_with_gguf(path)
    for info in (by_llama, by_gguf):
        assert info.tokens == {
            "fim_pre": "<<pre>>", "fim_suf": "<<suf>>", "fim_mid": "<<mid>>",
            "fim_pad": None, "fim_rep": "<<repo>>", "fim_sep": "<<sep>>",
        }  # fmt: skip
        assert (info.architecture, info.trained_context, info.vocab_size) == ("llama", 4096, 11)
        assert (info.rope_freq_base, info.rope_scaling) == (50000.0, "yarn")
        assert (info.rope_scaling_factor, info.rope_orig_context) == (4.0, 1024)
        assert set(info.eog) == {"<<eos>>", "<<repo>>", "<<sep>>"}
    assert by_llama.reader == "llama.cpp" and by_gguf.reader == "gguf"
    fmt = format_from_info(by_llama)
    assert fmt == format_from_info(by_gguf)
    assert fmt.name == "detected:llama"
    assert (fmt.fim_prefix, fmt.fim_suffix, fmt.fim_middle) == ("<<pre>>", "<<suf>>", "<<mid>>")
    assert (fmt.repo_name, fmt.file_sep) == ("<<repo>>", "<<sep>>")
    assert fmt.has_fim
    assert set(fmt.stop) == {"<<eos>>", "<<repo>>", "<<sep>>", "<<pre>>", "<<suf>>", "<<mid>>"}
    # An unknown file, no setting: the detected format, not the catalog entry's.
    assert choose_format(CATALOG.default, path, None) == (fmt, "detected")
    assert detect_format(path) == fmt


def test_undeclared_made_up_names_mean_no_fim(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "plain.gguf", declare=False)
    fmt = format_from_info(read_model_info(path))
    assert not fmt.has_fim and fmt.repo_name is None and fmt.file_sep is None
    assert fmt.stop == ("<<eos>>",)


def test_known_names_found_without_metadata(tmp_path: Path) -> None:
    # StarCoder2's names, which llama.cpp's own name scan does not know for repo/file_sep.
    names = ("<|endoftext|>", "<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<repo_name>",
             "<file_sep>")  # fmt: skip
    path = write_gguf(tmp_path / "sc2.gguf", declare=False, tokens=names)
    for info in (read_with_llama(path), read_with_gguf(path)):
        fmt = format_from_info(info)
        assert (fmt.fim_prefix, fmt.fim_suffix, fmt.fim_middle) == names[1:4]
        assert (fmt.repo_name, fmt.file_sep) == ("<repo_name>", "<file_sep>")
        assert "<|endoftext|>" in fmt.stop


def test_unknown_architecture_falls_back_to_the_metadata(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "odd.gguf", arch="made-up-arch")
    with pytest.raises(FormatError, match=r"llama\.cpp could not load"):
        read_with_llama(path)
    info = read_model_info(path)
    assert info.reader == "gguf" and info.architecture == "made-up-arch"
    assert format_from_info(info).fim_prefix == "<<pre>>"


def test_unreadable_file_falls_back_to_the_entry(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\xff" * 40)
    with pytest.raises(FormatError):
        read_with_gguf(bad)
    assert choose_format(CATALOG.default, bad, None) == (CATALOG.default.format, "fallback")


# -- model.format -------------------------------------------------------------------------------
def test_config_knows_every_catalog_format() -> None:
    assert set(PROMPT_FORMATS) == {"auto", *CATALOG.formats}


def test_model_format_setting() -> None:
    s, problems = parse_settings({"model": {"format": "starcoder2"}})
    assert not problems and s.model.format == "starcoder2"
    assert choose_format(CATALOG.default, None, s.model.format)[0].name == "starcoder2"
    s, problems = parse_settings({"model.format": "deepseek"})
    assert s.model.format == "auto"
    assert [str(p) for p in problems] == [
        "nearline.model.format: must be one of auto, qwen2.5-coder, starcoder2; got "
        "'deepseek'; using the default"
    ]
    with pytest.raises(FormatError, match="unknown prompt format 'deepseek'; known: auto"):
        choose_format(CATALOG.default, None, "deepseek")


# -- nearline models inspect --------------------------------------------------------------------
def test_inspect_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_gguf(tmp_path / "tiny.gguf")
    assert main(["models", "inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "architecture:       llama" in out
    assert "trained context:    4096" in out
    assert "RoPE:               base 50000, yarn x4 from 1024" in out
    assert "FIM tokens:         <<pre>> <<suf>> <<mid>>" in out
    assert "repo <<repo>>, file separator <<sep>>" in out
    assert "format:             detected:llama (detected; FIM yes)" in out
    assert main(["models", "inspect", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["tokens"]["fim_mid"] == "<<mid>>"
    assert data["format"]["name"] == "detected:llama" and data["format"]["fim"] is True
    assert main(["models", "inspect", str(tmp_path / "missing.gguf")]) == 2
    assert "not found" in capsys.readouterr().err
