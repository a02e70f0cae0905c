"""``model.id: auto``: the best model that keeps up with typing on this machine.

A larger model writes the right line more often, but a suggestion that comes after the user has
typed on is worth nothing. So ``auto`` measures, once per machine, what a warm keystroke costs
with each candidate (read the few new tokens, generate the rest of a line, on a prompt already
in the KV cache) and takes the best-ranked candidate whose 95th percentile meets the target.
The measurement runs in a child process (native code, and a model that may not fit in memory)
and is cached with a description of the machine, the llama.cpp build and the model file, so a
second start costs nothing; a change of any of them measures again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import platformdirs

log = logging.getLogger(__name__)

TARGET_P95_MS = 500.0
PROMPT_TOKENS = 768
KEYSTROKES = 12
LINE_TOKENS = 16

_CHILD = r"""
import json, sys, time
from llama_cpp import Llama
path, threads, gpu, n_prompt, keystrokes, line = (sys.argv[1], int(sys.argv[2]),
    int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
llm = Llama(path, n_ctx=n_prompt + keystrokes * 2 + line + 64, n_threads=threads,
            n_threads_batch=threads, n_gpu_layers=gpu, n_batch=64, verbose=False)
text = open(sys.argv[7], encoding="utf-8").read()
toks = llm.tokenize(text.encode("utf-8"), add_bos=False)
while len(toks) < n_prompt + keystrokes * 2:
    toks = toks + toks
t = time.perf_counter()
llm.eval(toks[:n_prompt])
prompt_s = time.perf_counter() - t
warm, gen_tokens, gen_s = [], 0, 0.0
for k in range(1, keystrokes + 1):
    # A keystroke: the prompt grows by about a token, and the model writes the rest of a line
    # after it (create_completion reuses the longest cached prefix, as the engine does).
    t = time.perf_counter()
    out = llm.create_completion(toks[: n_prompt + 2 * k], max_tokens=line, temperature=0.0,
                                stop=["\n"])
    dt = time.perf_counter() - t
    warm.append(dt)
    n = out["usage"]["completion_tokens"]
    if n:
        gen_tokens += n
        gen_s += dt
print(json.dumps({"prompt_tps": n_prompt / prompt_s,
                  "gen_tps": gen_tokens / gen_s if gen_s else 0.0, "warm_s": warm}))
"""


@dataclass(frozen=True)
class Calibration:
    model_id: str
    prompt_tps: float
    gen_tps: float
    warm_p50_ms: float
    warm_p95_ms: float
    machine: str
    measured_at: float

    def meets(self, target_ms: float = TARGET_P95_MS) -> bool:
        return self.warm_p95_ms <= target_ms


def _pct(values: Sequence[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description(gpu: str = "") -> str:
    """What a measurement depends on besides the model: CPU, cores, and GPU if offloading."""
    return f"{_cpu_name()}; {os.cpu_count()} cores; {platform.machine()}" + (
        f"; GPU {gpu}" if gpu else ""
    )


def cache_file() -> Path:
    env = os.environ.get("NEARLINE_CALIBRATION_FILE")
    if env:
        return Path(env)
    return Path(platformdirs.user_cache_dir("nearline")) / "calibration.json"


def _key(model_path: Path, sha256: str | None, threads: int, gpu_layers: int, machine: str,
         build: str) -> str:  # fmt: skip
    st = model_path.stat()
    ident = sha256 or f"{st.st_size}:{int(st.st_mtime)}"
    raw = json.dumps([ident, threads, gpu_layers, machine, build])
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def _load_cache() -> dict[str, Any]:
    try:
        data = json.loads(cache_file().read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_cache(data: dict[str, Any]) -> None:
    path = cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".calibration-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not save the calibration (%s): it will be measured again", exc)


def measure(
    model_id: str, model_path: Path, *, threads: int, gpu_layers: int = 0, machine: str = "",
    timeout_s: float = 600.0,
) -> Calibration:  # fmt: skip
    """Warm keystrokes of one model on this machine, in a child process. Raises RuntimeError
    with a one-line reason when the child fails (out of memory, a crash, a timeout)."""
    corpus = Path(__file__).resolve().parents[1] / "completion" / "service.py"
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the model process runs (engine/__init__.py)
    cmd = [sys.executable, "-c", _CHILD, str(model_path), str(threads), str(gpu_layers),
           str(PROMPT_TOKENS), str(KEYSTROKES), str(LINE_TOKENS), str(corpus)]  # fmt: skip
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"measuring {model_id} took over {timeout_s:.0f} s") from None
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"measuring {model_id} failed (exit {out.returncode}): {tail[0]}")
    row = json.loads(out.stdout.strip().splitlines()[-1])
    warm_ms = [1000 * s for s in row["warm_s"]]
    return Calibration(
        model_id=model_id, prompt_tps=round(row["prompt_tps"], 1), gen_tps=round(row["gen_tps"], 1),
        warm_p50_ms=round(_pct(warm_ms, 50), 1), warm_p95_ms=round(_pct(warm_ms, 95), 1),
        machine=machine, measured_at=time.time(),
    )  # fmt: skip


@dataclass(frozen=True)
class Candidate:
    model_id: str
    path: Path
    sha256: str | None
    rank: int
    """Higher is better (more often right); from the catalog's ``autoRank``."""


@dataclass
class AutoChoice:
    model_id: str
    reason: str
    calibrations: list[Calibration]
    measured: bool = True
    """False: from earlier measurements only (the load measures what is missing)."""

    def as_dict(self) -> dict[str, Any]:
        return {"chosen": self.model_id, "reason": self.reason,
                "calibrations": [asdict(c) for c in self.calibrations]}  # fmt: skip


Measure = Callable[[Candidate], Calibration]


def choose(
    candidates: Sequence[Candidate], *, threads: int, gpu_layers: int = 0, gpu: str = "",
    build: str = "", target_ms: float = TARGET_P95_MS, measure_fn: Measure | None = None,
    allow_measure: bool = True,
) -> AutoChoice:  # fmt: skip
    """The best-ranked candidate whose warm p95 meets ``target_ms``, measuring (or reading from
    the cache) from the best down; the last candidate is taken without measuring, since nothing
    smaller is left to fall back on. ``candidates`` must not be empty. ``allow_measure=False``
    passes over candidates not measured yet (a quick, provisional answer)."""
    ordered = sorted(candidates, key=lambda c: -c.rank)
    machine = machine_description(gpu)
    cache = _load_cache()
    seen: list[Calibration] = []
    changed = False

    def default_measure(c: Candidate) -> Calibration:
        return measure(c.model_id, c.path, threads=threads, gpu_layers=gpu_layers, machine=machine)

    run = measure_fn or default_measure
    for i, cand in enumerate(ordered):
        if i == len(ordered) - 1:
            if len(ordered) == 1:
                reason = "the only model on this machine that auto may choose"
            else:
                slower = ", ".join(f"{c.model_id} {c.warm_p95_ms:.0f} ms" for c in seen)
                reason = f"no larger model meets {target_ms:.0f} ms warm p95 per keystroke here" + (
                    f" ({slower})" if slower else ""
                )
            _save(cache, changed)
            return AutoChoice(cand.model_id, reason, seen)
        key = _key(cand.path, cand.sha256, threads, gpu_layers, machine, build)
        cal: Calibration | None = None
        if isinstance(cache.get(key), dict):
            try:
                cal = Calibration(**cache[key])
            except TypeError:
                cal = None
        if cal is None and not allow_measure:
            continue
        if cal is None:
            log.info("auto: measuring %s on this machine (once)", cand.model_id)
            try:
                cal = run(cand)
            except RuntimeError as exc:
                log.warning("auto: %s", exc)
                continue
            cache[key] = asdict(cal)
            changed = True
        seen.append(cal)
        if cal.meets(target_ms):
            _save(cache, changed)
            return AutoChoice(
                cand.model_id,
                f"warm p95 {cal.warm_p95_ms:.0f} ms per keystroke meets {target_ms:.0f} ms "
                f"({cal.prompt_tps:.0f} prompt / {cal.gen_tps:.0f} generated tokens/s)",
                seen,
            )
    raise AssertionError("unreachable: the last candidate is always returned")


def _save(cache: dict[str, Any], changed: bool) -> None:
    if changed:
        _save_cache(cache)
