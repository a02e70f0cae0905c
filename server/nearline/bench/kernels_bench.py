"""``nearline bench kernels``: the same model read and run by two or more llama.cpp builds on
this CPU, alternating, so that the faster build is a measurement and not a guess.

Why it exists: the install builds llama.cpp for the CPU at hand (AVX2, or AVX-512 with VNNI and
BF16 where the CPU has them; AMX never, see scripts/install.sh). Which build is faster depends on
the CPU and on whether generation is memory-bound, so the install measures both builds here and
keeps the faster one. Each build is a wheel; it is unpacked into a temporary directory that goes
first on the child's ``PYTHONPATH``, so no second virtual environment is needed.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nearline.engine.kernels import build_label, kernel_features

# One child per build and round: prompt tokens/s of a cold read, generation tokens/s after it,
# and the build's own feature line.
_CHILD = r"""
import json, sys, time
import llama_cpp
from llama_cpp import Llama
path, threads, n_prompt, n_gen = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
llm = Llama(path, n_ctx=n_prompt + n_gen + 16, n_threads=threads, n_threads_batch=threads,
            n_batch=512, verbose=False)
text = open(sys.argv[5], encoding="utf-8").read()
toks = llm.tokenize(text.encode("utf-8"), add_bos=False)
while len(toks) < n_prompt:
    toks = toks + toks
toks = toks[:n_prompt]
llm.reset()
t = time.perf_counter()
llm.eval(toks)
prompt_s = time.perf_counter() - t
t = time.perf_counter()
for _ in range(n_gen):
    tok = llm.sample(top_k=1)
    llm.eval([tok])
gen_s = time.perf_counter() - t
print(json.dumps({"prompt_tok_s": n_prompt / prompt_s, "gen_tok_s": n_gen / gen_s,
                  "system_info": llama_cpp.llama_print_system_info().decode()}))
"""

# What a warm keystroke costs, roughly: re-read the tokens after the last match and generate
# most of a line. Used to rank builds by one number that weighs both speeds as typing does.
KEYSTROKE_PROMPT_TOKENS = 200
KEYSTROKE_GEN_TOKENS = 20


@dataclass
class BuildResult:
    wheel: Path
    features: list[str] = field(default_factory=list)
    prompt: list[float] = field(default_factory=list)
    gen: list[float] = field(default_factory=list)

    @property
    def label(self) -> str:
        return build_label(self.features)

    def keystroke_ms(self) -> float:
        p, g = statistics.median(self.prompt), statistics.median(self.gen)
        return 1000 * (KEYSTROKE_PROMPT_TOKENS / p + KEYSTROKE_GEN_TOKENS / g)

    def as_dict(self) -> dict[str, Any]:
        return {
            "wheel": str(self.wheel), "label": self.label, "features": self.features,
            "prompt_tok_s": self.prompt, "gen_tok_s": self.gen,
            "prompt_median": statistics.median(self.prompt),
            "gen_median": statistics.median(self.gen), "keystroke_ms": self.keystroke_ms(),
        }  # fmt: skip


def _unpack(wheel: Path, into: Path) -> Path:
    # Builds of one version share a file name: each gets a folder of its own.
    dest = into / f"{len(list(into.iterdir()))}-{wheel.stem}"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(dest)
    # zipfile drops the executable bit; the shared libraries load either way, but keep them
    # as the installer would.
    for lib in dest.rglob("*.so*"):
        lib.chmod(0o755)
    return dest


def _run_child(site: Path, model: Path, threads: int, n_prompt: int, n_gen: int,
               corpus: Path) -> dict[str, Any]:  # fmt: skip
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the model process runs (engine/__init__.py)
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(model), str(threads), str(n_prompt), str(n_gen),
         str(corpus)],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"build {site.name} failed (exit {out.returncode}): {' | '.join(tail)}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def compare_builds(
    wheels: list[Path], model: Path, *, threads: int, n_prompt: int = 512, n_gen: int = 32,
    rounds: int = 3, corpus: Path | None = None, log: Any = print,
) -> list[BuildResult]:  # fmt: skip
    """Each build ``rounds`` times, alternating (A B A B ...) so that drift on the machine falls
    on both alike; medians decide."""
    corpus = corpus or Path(__file__).resolve().parents[1] / "completion" / "service.py"
    results = [BuildResult(w) for w in wheels]
    with tempfile.TemporaryDirectory(prefix="nearline-kernels-") as tmp:
        sites = [_unpack(w, Path(tmp)) for w in wheels]
        for r in range(rounds):
            for res, site in zip(results, sites, strict=True):
                row = _run_child(site, model, threads, n_prompt, n_gen, corpus)
                res.features = kernel_features(row["system_info"])
                res.prompt.append(row["prompt_tok_s"])
                res.gen.append(row["gen_tok_s"])
                log(
                    f"  round {r + 1}: {res.label:<28} prompt {row['prompt_tok_s']:7.1f} t/s  "
                    f"generation {row['gen_tok_s']:6.1f} t/s"
                )
    return results


def fastest(results: list[BuildResult]) -> BuildResult:
    """The build a keystroke waits least for; a build with AMX is never chosen (it crashes on
    the virtual machines that advertise it, llama.cpp issue 20824)."""
    usable = [r for r in results if not any(f.startswith("AMX") for f in r.features)]
    return min(usable or results, key=BuildResult.keystroke_ms)


def run_kernels_bench(
    wheels: list[str], model: str | None = None, n_prompt: int = 512, n_gen: int = 32,
    rounds: int = 3, threads: int | None = None, out_json: str | None = None,
    pick_file: str | None = None,
) -> int:  # fmt: skip
    from nearline.engine.factory import model_on_disk
    from nearline.weights.download import ModelError

    paths = [Path(w).expanduser() for w in wheels]
    for p in paths:
        if not p.is_file() or p.suffix != ".whl":
            raise ModelError(f"not a wheel file: {p}")
    entry, path = model_on_disk(model)
    threads = threads or max(1, min(8, os.cpu_count() or 1))
    print(
        f"nearline bench kernels — {entry.id}, {n_prompt}-token prompt, {n_gen} generated, "
        f"{threads} threads, median of {rounds} alternating rounds"
    )
    results = compare_builds(
        paths, path, threads=threads, n_prompt=n_prompt, n_gen=n_gen, rounds=rounds
    )
    best = fastest(results)
    print(f"{'build':<28} {'prompt t/s':>11} {'gen t/s':>8} {'keystroke ms':>13}")
    for r in results:
        mark = "  <- faster" if r is best else ""
        print(
            f"{r.label:<28} {statistics.median(r.prompt):>11.1f} {statistics.median(r.gen):>8.1f} "
            f"{r.keystroke_ms():>13.0f}{mark}"
        )
    base = max(results, key=BuildResult.keystroke_ms)
    if base is not best:
        print(
            f"{best.label} over {base.label}: prompt x"
            f"{statistics.median(best.prompt) / statistics.median(base.prompt):.2f}, generation "
            f"x{statistics.median(best.gen) / statistics.median(base.gen):.2f}"
        )
    report = {
        "model": entry.id, "threads": threads, "n_prompt": n_prompt, "n_gen": n_gen,
        "rounds": rounds, "builds": [r.as_dict() for r in results], "fastest": str(best.wheel),
    }  # fmt: skip
    if out_json:
        Path(out_json).write_text(json.dumps(report, indent=2))
    if pick_file:
        Path(pick_file).write_text(str(best.wheel) + "\n")
    return 0
