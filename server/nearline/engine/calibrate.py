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

import dataclasses
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


_CORPUS = Path(__file__).resolve().parents[1] / "completion" / "service.py"
"""The text both children read as a prompt: Nearline's own code, present wherever it runs."""


def _run_child(script: str, args: list[str], what: str, timeout_s: float) -> dict[str, Any]:
    """Run a measuring child (``python -c script args``) and return the JSON object on its
    last line; RuntimeError with a one-line reason when it times out or fails."""
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the model process runs (engine/__init__.py)
    cmd = [sys.executable, "-c", script, *args]
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{what} took over {timeout_s:.0f} s") from None
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"{what} failed (exit {out.returncode}): {tail[0]}")
    row: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return row


def measure(
    model_id: str, model_path: Path, *, threads: int, gpu_layers: int = 0, machine: str = "",
    timeout_s: float = 600.0,
) -> Calibration:  # fmt: skip
    """Warm keystrokes of one model on this machine, in a child process. Raises RuntimeError
    with a one-line reason when the child fails (out of memory, a crash, a timeout)."""
    row = _run_child(
        _CHILD, [str(model_path), str(threads), str(gpu_layers), str(PROMPT_TOKENS),
                 str(KEYSTROKES), str(LINE_TOKENS), str(_CORPUS)],
        f"measuring {model_id}", timeout_s,
    )  # fmt: skip
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


# -- tuning the chosen model's load: threads, prompt batch, prompt-lookup drafting ------------
#
# Whether a setting pays depends on the machine: where generation is memory-bound a batch of a
# few tokens costs about one decode step, so drafted tokens come almost free; where it is
# compute-bound they cost nearly their own steps and drafting loses. Threads and the prompt
# batch are the same kind of question. So the load measures, once per machine (a child
# process, seconds), what each choice costs, and ``decide`` turns the numbers into settings.

TUNE_VERSION = 1
"""Part of the cache key: a change of what is measured measures again."""
TUNE_PROMPT_TOKENS = 256
TUNE_BATCHES = (64, 128, 256)
TUNE_MAX_DRAFT = 8
TUNE_REPS = 5
MIN_GAIN = 0.10
"""A measured choice replaces the default only when it is at least this much faster: smaller
differences are within what a busy machine's noise makes of them."""
MAX_BATCH_S = 0.35
"""A prompt batch is also the granularity at which a cancel stops a cold prompt: a larger
batch is taken only while one batch still takes at most this long here."""
ACCEPT_P = 0.65
"""Assumed chance that the model keeps a prompt-lookup drafted token, given that it kept the
ones before it: what is accepted depends on the text, not the machine. On the sample project
the drafts kept per verify batch were a little above what this predicts (README, calibration),
so it errs towards leaving drafting off."""
MIN_DRAFT_GAIN = 0.25
"""Drafting is switched on only where a verify batch is expected to give at least this much
more text per unit of time than decode steps would: drafts exist only at the minority of steps
where the prompt repeats itself, so the whole line gains a fraction of it, and verifying in a
batch rounds differently, which may swap the model's choice between two near-tied tokens."""
BUSY_LOAD = 0.5
"""Share of the CPUs that other programs used while measuring above which the machine was
busy: thread counts are then not changed (another program's threads make fewer look faster),
and the measurement is repeated at a later start."""
BUSY_RETRY_S = 24 * 3600.0

_TUNE_CHILD = r"""
import json, statistics, sys, time
import llama_cpp
from llama_cpp import Llama
path, gpu, n_prompt, threads, batches, max_k, reps, corpus, max_batch_s = (sys.argv[1],
    int(sys.argv[2]), int(sys.argv[3]), [int(x) for x in sys.argv[4].split(",")],
    [int(x) for x in sys.argv[5].split(",")], int(sys.argv[6]), int(sys.argv[7]), sys.argv[8],
    float(sys.argv[9]))
top = threads[-1]
llm = Llama(path, n_ctx=n_prompt + max_k + 64, n_threads=top, n_threads_batch=top,
            n_gpu_layers=gpu, n_batch=max(batches), n_ubatch=max(batches), verbose=False)
text = open(corpus, encoding="utf-8").read()
toks = llm.tokenize(text.encode("utf-8"), add_bos=False)
while len(toks) < n_prompt + max_k + 1:
    toks = toks + toks

def decode(chunk, pos, all_logits=False):
    llm._batch.set_batch(batch=list(chunk), n_past=pos, logits_all=all_logits)
    llm._ctx.decode(llm._batch)

def read(start, step):
    # Prompt tokens/s: the prompt's tail read again in batches of ``step``.
    llm._ctx.kv_cache_seq_rm(-1, start, -1)
    t = time.perf_counter()
    for i in range(start, n_prompt, step):
        decode(toks[i:min(n_prompt, i + step)], i)
    return (n_prompt - start) / (time.perf_counter() - t)

def batch_ms(n):
    # n tokens after the warm prompt with every position's logits, as a draft is verified
    # (n = 1: one decode step); then dropped again.
    t = time.perf_counter()
    decode(toks[n_prompt:n_prompt + n], n_prompt, all_logits=True)
    dt = (time.perf_counter() - t) * 1000
    llm._ctx.kv_cache_seq_rm(-1, n_prompt, -1)
    return dt

read(0, batches[0])
prompt_tps = {t: [] for t in threads}
step_ms = {t: [] for t in threads}
for r in range(2):
    for t in (threads if r % 2 == 0 else threads[::-1]):
        llama_cpp.llama_set_n_threads(llm.ctx, t, t)
        prompt_tps[t].append(read(n_prompt // 2, batches[0]))
        step_ms[t].extend(batch_ms(1) for _ in range(reps))
llama_cpp.llama_set_n_threads(llm.ctx, top, top)
# A larger batch is only worth reading where it could still be short: at least twice the
# speed of the smallest would be needed for it to pass decide()'s limit otherwise.
limit = 2 * max_batch_s * max(prompt_tps[top])
batch_tps = {b: read(0, b) for b in batches if b == batches[0] or b <= limit}
verify = {n: [] for n in range(1, max_k + 2)}
for _ in range(reps):
    for n in verify:
        verify[n].append(batch_ms(n))
print(json.dumps({
    "step_ms": {t: statistics.median(v) for t, v in step_ms.items()},
    "prompt_tps": {t: max(v) for t, v in prompt_tps.items()},
    "batch_tps": batch_tps,
    "verify_ms": {n: statistics.median(v) for n, v in verify.items()},
}))
"""


@dataclass(frozen=True)
class TuneMeasurement:
    """What the settings cost on this machine, for one model (see ``_TUNE_CHILD``)."""

    threads: int
    """The default thread count, at which batches and drafts were measured."""
    step_ms: dict[int, float]
    """One decode step, per thread count."""
    prompt_tps: dict[int, float]
    """Prompt tokens/s in batches of TUNE_BATCHES[0], per thread count."""
    batch_tps: dict[int, float]
    """Prompt tokens/s per batch size (the smallest, and the larger ones that could still take
    at most MAX_BATCH_S a batch here)."""
    verify_ms: dict[int, float]
    """A batch of n tokens with every position's logits (n = 1: one decode step)."""
    load: float = 0.0
    """Share of the CPUs other programs used while this was measured (0: none)."""
    measured_at: float = 0.0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TuneMeasurement:
        """Back from JSON (whose keys are strings); TypeError/ValueError when malformed."""

        def ints(m: Any) -> dict[int, float]:
            if not isinstance(m, dict) or not m:
                raise ValueError("empty")
            return {int(k): float(v) for k, v in m.items()}

        return cls(
            threads=int(d["threads"]), step_ms=ints(d["step_ms"]),
            prompt_tps=ints(d["prompt_tps"]), batch_tps=ints(d["batch_tps"]),
            verify_ms=ints(d["verify_ms"]), load=float(d.get("load", 0.0)),
            measured_at=float(d.get("measured_at", 0.0)), seconds=float(d.get("seconds", 0.0)),
        )  # fmt: skip


@dataclass(frozen=True)
class Tuning:
    """What the calibration decided, why, and the numbers behind it."""

    threads: int
    threads_batch: int
    batch_size: int
    draft_tokens: int
    reasons: dict[str, str]
    measurement: TuneMeasurement | None = None
    cached: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "threads": self.threads, "threads_batch": self.threads_batch,
            "batch_size": self.batch_size, "draft_tokens": self.draft_tokens,
            "reasons": dict(self.reasons), "cached": self.cached,
            "measured": self.measurement.as_dict() if self.measurement else None,
        }  # fmt: skip


def expected_accepted(k: int, accept_p: float = ACCEPT_P) -> float:
    """Drafted tokens the model keeps, on average, out of ``k`` (each kept only after all
    before it were)."""
    return sum(accept_p**j for j in range(1, k + 1))


def draft_gain(m: TuneMeasurement, k: int, accept_p: float = ACCEPT_P) -> float:
    """Tokens per unit of time with ``k`` drafted tokens per verify batch, relative to
    one token per decode step (>1: drafting pays)."""
    step = m.verify_ms[1]
    batch = m.verify_ms.get(k + 1)
    if not step or not batch:
        return 0.0
    return (1 + expected_accepted(k, accept_p)) / (batch / step)


def decide(
    m: TuneMeasurement, *, default_batch: int, accept_p: float = ACCEPT_P,
    min_gain: float = MIN_GAIN, min_draft_gain: float = MIN_DRAFT_GAIN,
) -> Tuning:  # fmt: skip
    """Settings from measured costs: each keeps its default unless another choice measured at
    least ``min_gain`` faster; drafting is on with the number of tokens whose expected gain is
    best, when that is at least ``min_draft_gain`` (a pure function; the numbers come from
    ``tune``)."""
    reasons: dict[str, str] = {}
    default = m.threads
    threads = threads_batch = default
    if m.load > BUSY_LOAD:
        reasons["threads"] = reasons["threads_batch"] = (
            f"kept at {default}: other programs used {m.load:.0%} of the CPUs while measuring"
        )
    else:
        step = m.step_ms.get(default)
        best = min(m.step_ms, key=lambda t: m.step_ms[t])
        if step and m.step_ms[best] <= step * (1 - min_gain):
            threads = best
        reasons["threads"] = ", ".join(
            f"{t}: {v:.0f} ms per token" for t, v in sorted(m.step_ms.items())
        )
        tps = m.prompt_tps.get(default)
        best = max(m.prompt_tps, key=lambda t: m.prompt_tps[t])
        if tps and m.prompt_tps[best] >= tps * (1 + min_gain):
            threads_batch = best
        reasons["threads_batch"] = ", ".join(
            f"{t}: {v:.0f} prompt tokens/s" for t, v in sorted(m.prompt_tps.items())
        )
    batch = default_batch
    base = m.batch_tps.get(default_batch)
    fits = [b for b, v in m.batch_tps.items() if v > 0 and b / v <= MAX_BATCH_S]
    if base and fits:
        best = max(fits, key=lambda b: m.batch_tps[b])
        if m.batch_tps[best] >= base * (1 + min_gain):
            batch = best
    reasons["batch_size"] = ", ".join(
        f"{b}: {v:.0f} tokens/s" for b, v in sorted(m.batch_tps.items())
    )
    gains = {k: draft_gain(m, k, accept_p) for k in range(1, max(m.verify_ms))}
    k_best = max(gains, key=lambda k: (gains[k], -k), default=0)
    step = m.verify_ms[1]
    costs = ", ".join(f"{n}: {v / step:.2f}" for n, v in sorted(m.verify_ms.items()) if n > 1)
    if k_best and gains[k_best] >= 1 + min_draft_gain:
        draft = k_best
        reasons["draft_tokens"] = (
            f"{k_best} drafted tokens: expected {gains[k_best]:.2f}x tokens per step "
            f"(a batch of n tokens costs this many decode steps of {step:.0f} ms: {costs})"
        )
    else:
        draft = 0
        best_txt = f"{gains[k_best]:.2f}x at {k_best}" if k_best else "nothing measured"
        reasons["draft_tokens"] = (
            f"off: drafting would gain under {1 + min_draft_gain:.2f}x here (best {best_txt}; a "
            f"batch of n tokens costs this many decode steps of {step:.0f} ms: {costs})"
        )
    return Tuning(threads, threads_batch, batch, draft, reasons, m)


def thread_candidates(default: int) -> list[int]:
    """Thread counts compared against the default, ascending with the default last."""
    return sorted({max(1, default // 2), default})


def measure_tuning(
    model_path: Path, *, threads: int, gpu_layers: int = 0, timeout_s: float = 300.0
) -> TuneMeasurement:
    """Run ``_TUNE_CHILD`` on one model; RuntimeError with a one-line reason on failure."""
    cands = thread_candidates(threads)
    cpu0, child0 = _cpu_busy_s(), _children_cpu_s()
    t0 = time.perf_counter()
    row = _run_child(
        _TUNE_CHILD, [str(model_path), str(gpu_layers), str(TUNE_PROMPT_TOKENS),
                      ",".join(map(str, cands)), ",".join(map(str, TUNE_BATCHES)),
                      str(TUNE_MAX_DRAFT), str(TUNE_REPS), str(_CORPUS), str(MAX_BATCH_S)],
        f"calibrating {model_path.name}", timeout_s,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    cpu1 = _cpu_busy_s()
    others = 0.0
    if cpu0 is not None and cpu1 is not None:
        others = max(0.0, (cpu1 - cpu0) - (_children_cpu_s() - child0))
        others /= wall * (os.cpu_count() or 1)
    row.update(threads=threads, load=others, measured_at=time.time(), seconds=wall)
    m = TuneMeasurement.from_dict(row)
    return dataclasses.replace(
        m, step_ms=_round(m.step_ms), prompt_tps=_round(m.prompt_tps),
        batch_tps=_round(m.batch_tps), verify_ms=_round(m.verify_ms), load=round(m.load, 2),
        seconds=round(m.seconds, 1),
    )  # fmt: skip


def _round(d: dict[int, float]) -> dict[int, float]:
    return {k: round(v, 1) for k, v in d.items()}


def _cpu_busy_s() -> float | None:
    """CPU seconds the whole machine has been busy (Linux /proc/stat), None elsewhere. The load
    average would not do: it trails by a minute, so it still counts a program that just
    stopped, and misses one that just started."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            vals = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    if len(vals) < 5:
        return None
    return (sum(vals) - vals[3] - vals[4]) / os.sysconf("SC_CLK_TCK")


def _children_cpu_s() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


MeasureTuning = Callable[[], TuneMeasurement]


def tune(
    model_path: Path, sha256: str | None, *, threads: int, default_batch: int,
    gpu_layers: int = 0, gpu: str = "", build: str = "",
    measure_fn: MeasureTuning | None = None,
) -> Tuning:  # fmt: skip
    """The tuning of one model on this machine: measured once (``measure_tuning``) and cached
    beside ``auto``'s measurements, keyed by the model file, thread count, GPU offload, the
    machine and the llama.cpp build; a change of any of them measures again. A measurement
    taken on a busy machine is repeated at a start a day later."""
    machine = machine_description(gpu)
    key = "tune:" + _key(model_path, sha256, threads, gpu_layers, machine,
                         f"{build};v{TUNE_VERSION}")  # fmt: skip
    cache = _load_cache()
    m: TuneMeasurement | None = None
    entry = cache.get(key)
    if isinstance(entry, dict):
        try:
            m = TuneMeasurement.from_dict(entry)
        except (KeyError, TypeError, ValueError):
            m = None
    if m is not None and m.load > BUSY_LOAD and time.time() - m.measured_at > BUSY_RETRY_S:
        m = None
    cached = m is not None
    if m is None:
        log.info("calibrating %s on this machine (once)", model_path.name)
        run = measure_fn or (
            lambda: measure_tuning(model_path, threads=threads, gpu_layers=gpu_layers)
        )
        m = run()
        cache[key] = m.as_dict()
        _save_cache(cache)
    return dataclasses.replace(decide(m, default_batch=default_batch), cached=cached)
