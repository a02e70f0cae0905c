"""Kernel detection from llama.cpp's system-info line, and how `bench kernels` ranks builds."""

from __future__ import annotations

from pathlib import Path

import pytest

from nearline.bench.kernels_bench import BuildResult, fastest
from nearline.engine.kernels import build_label, kernel_features

AVX2 = "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | AVX512 = 0 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | "
AVX512 = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | AVX512 = 1 | AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | OPENMP = 1 | "
AMX = AVX512 + "AMX_INT8 = 1 | "


@pytest.mark.parametrize(
    ("info", "label"),
    [(AVX2, "avx2"), (AVX512, "avx512+bf16+vbmi+vnni"), (AMX, "amx"), ("CPU : NEON = 1 | ", "neon"),
     ("CPU : SSE3 = 1 | ", "generic")],
)  # fmt: skip
def test_build_label_names_the_widest_unit(info: str, label: str) -> None:
    assert build_label(kernel_features(info)) == label


def test_features_are_only_those_switched_on() -> None:
    feats = kernel_features(AVX2)
    assert "AVX2" in feats and "AVX512" not in feats and "SSE3" in feats


def _result(name: str, info: str, prompt: float, gen: float) -> BuildResult:
    return BuildResult(Path(name), kernel_features(info), [prompt] * 3, [gen] * 3)


def test_the_faster_build_is_the_one_a_keystroke_waits_least_for() -> None:
    a = _result("a.whl", AVX2, 120, 25)
    b = _result("b.whl", AVX512, 200, 27)
    assert fastest([a, b]) is b
    # Faster prompts do not win when generation is much slower: a keystroke is both.
    c = _result("c.whl", AVX512, 130, 10)
    assert fastest([a, c]) is a


def test_a_build_with_amx_is_never_chosen() -> None:
    a = _result("a.whl", AVX2, 120, 25)
    amx = _result("amx.whl", AMX, 900, 90)
    assert fastest([a, amx]) is a


def test_builds_with_one_file_name_unpack_apart(tmp_path: Path) -> None:
    """Every build of one version is named llama_cpp_python-0.3.36-...whl: each must get its
    own folder, or the second overwrites the first and both rows measure one build."""
    import zipfile

    from nearline.bench.kernels_bench import _unpack

    wheels = []
    for name in ("avx2", "avx512"):
        d = tmp_path / name
        d.mkdir()
        w = d / "llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl"
        with zipfile.ZipFile(w, "w") as zf:
            zf.writestr("llama_cpp/build.txt", name)
        wheels.append(w)
    into = tmp_path / "sites"
    into.mkdir()
    sites = [_unpack(w, into) for w in wheels]
    assert [(s / "llama_cpp" / "build.txt").read_text() for s in sites] == ["avx2", "avx512"]
