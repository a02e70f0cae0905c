"""Which CPU kernels a llama.cpp build runs: read from the build's own system-info line.

The install builds llama.cpp for the CPU at hand (scripts/install.sh: AVX2, or AVX-512 with
VNNI/BF16/VBMI where the CPU has them, never AMX) and keeps the faster build on this machine;
``nearline.status`` reports what the running model process actually uses.
"""

from __future__ import annotations

import re


def kernel_features(system_info: str) -> list[str]:
    """The CPU features a llama.cpp build was compiled with, from its system-info line
    (``CPU : SSE3 = 1 | AVX2 = 1 | ...``): the names whose value is 1."""
    return [m.group(1) for m in re.finditer(r"([A-Z][A-Z0-9_]*) = 1\b", system_info)]


def build_label(features: list[str]) -> str:
    """A short name for a build: the widest vector unit it uses (``avx512+bf16+vnni``)."""
    if any(f.startswith("AMX") for f in features):
        return "amx"
    if "AVX512" in features:
        extra = sorted(
            f.removeprefix("AVX512_").lower() for f in features if f.startswith("AVX512_")
        )
        return "avx512" + "".join(f"+{e}" for e in extra)
    if "AVX2" in features:
        return "avx2"
    if "NEON" in features:
        return "neon"
    return "generic"


def running_kernels() -> dict[str, object]:
    """The loaded llama.cpp library's kernels (imports llama_cpp: call it in the model's process)."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    features = kernel_features(info)
    return {"build": build_label(features), "features": features}
