"""``nearline bench index``: index a generated tree and time it.

Generates ``files`` files (a mix of .py/.js/.md in nested directories, some
gitignored, a few binaries, a few secret files and secret-bearing sources) in
a temporary directory, scans it, rescans it, then measures save-to-index
latency with the watcher running.

Peak RSS is ``resource.getrusage(RUSAGE_SELF).ru_maxrss``: process-wide and
monotonic, so it includes whatever the process loaded before (run the bench in
a fresh process for a meaningful number).
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

from nearline.config import IndexSettings
from nearline.workspace.index import WorkspaceIndex
from nearline.workspace.watcher import IndexWatcher

__all__ = ["generate_tree", "run"]

_WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "index",
    "cache",
    "token",
    "parse",
    "build",
    "render",
    "fetch",
    "store",
    "load",
    "save",
    "user",
    "order",
    "item",
    "price",
    "count",
    "total",
    "value",
    "result",
    "config",
    "handler",
    "client",
    "server",
    "buffer",
    "stream",
    "window",
    "column",
    "row",
    "node",
    "edge",
    "graph",
    "tree",
    "queue",
    "stack",
    "batch",
    "chunk",
    "frame",
    "event",
]


def _peak_rss_mib() -> float | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _ident(rng: random.Random) -> str:
    return "_".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 3)))


def _py(rng: random.Random, i: int) -> str:
    out = [f'"""Module {i}: {" ".join(rng.choices(_WORDS, k=8))}."""', "", "import os", ""]
    for f in range(rng.randint(2, 8)):
        name = _ident(rng)
        out.append(f"def {name}_{f}(x, y=None):")
        out.append(f'    """{" ".join(rng.choices(_WORDS, k=6))}."""')
        for _ in range(rng.randint(2, 8)):
            out.append(f"    x = x + {rng.randint(0, 999)}  # {rng.choice(_WORDS)}")
        out.append("    return x")
        out.append("")
    return "\n".join(out)


def _js(rng: random.Random, i: int) -> str:
    out = [f"// module {i}", "'use strict';", ""]
    for f in range(rng.randint(2, 8)):
        name = "".join(w.capitalize() for w in _ident(rng).split("_"))
        out.append(f"export function get{name}{f}(a, b) {{")
        for _ in range(rng.randint(2, 8)):
            out.append(f"  a = a * {rng.randint(1, 99)} + b; // {rng.choice(_WORDS)}")
        out.append("  return a;")
        out.append("}")
        out.append("")
    return "\n".join(out)


def _md(rng: random.Random, i: int) -> str:
    out = [f"# Note {i}", ""]
    for _ in range(rng.randint(3, 12)):
        out.append(" ".join(rng.choices(_WORDS, k=rng.randint(8, 20))) + ".")
        out.append("")
    return "\n".join(out)


def _fake_token() -> str:
    # built at runtime so secret scanners don't flag this source file
    return "gh" + "p_" + "Bench0" * 6


def generate_tree(
    root: Path, files: int, seed: int = 1234, age_s: float = 3600.0
) -> dict[str, int]:
    """Write ``files`` files under ``root``; return what kinds were written.
    Their mtimes are set ``age_s`` into the past, like a checkout that isn't
    being written to (the index re-reads files modified in the last couple of
    seconds on a rescan, as git does with "racy" entries)."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / ".git" / "info").mkdir(parents=True, exist_ok=True)
    (root / ".git" / "info" / "exclude").write_text("*.tmp\n")
    (root / ".gitignore").write_text("build/\n*.log\nnode_modules/\n")
    counts = {"source": 0, "ignored": 0, "binary": 0, "secret_path": 0, "secret_content": 0}
    for i in range(files):
        d = root / "src" / f"pkg{(i // 400) % 25}" / f"mod{(i // 20) % 20}"
        if i % 20 == 0:
            d.mkdir(parents=True, exist_ok=True)
            if i % 400 == 0:
                (d.parent / ".gitignore").write_text("*.gen.js\n!keep.gen.js\n")
        r = i % 100
        if r == 0:
            p = root / "build" / f"out{i}.py"
            p.parent.mkdir(exist_ok=True)
            p.write_text(_py(rng, i))
            counts["ignored"] += 1
        elif r == 1:
            (d / f"run{i}.log").write_text("log line\n" * 20)
            counts["ignored"] += 1
        elif r == 2:
            (d / f"x{i}.gen.js").write_text(_js(rng, i))
            counts["ignored"] += 1
        elif r == 3 and i % 500 == 3:
            (d / f"blob{i}.bin").write_bytes(bytes(rng.randrange(256) for _ in range(2048)) + b"\0")
            counts["binary"] += 1
        elif r == 4 and i % 500 == 4:
            (d / ".env").write_text(f"API_TOKEN={_fake_token()}\n")
            counts["secret_path"] += 1
        elif r == 5 and i % 500 == 5:
            (d / f"settings{i}.py").write_text(
                _py(rng, i) + f'\nGITHUB_TOKEN = "{_fake_token()}"\n'
            )
            counts["secret_content"] += 1
        else:
            kind = i % 3
            if kind == 0:
                (d / f"m{i}.py").write_text(_py(rng, i))
            elif kind == 1:
                (d / f"m{i}.js").write_text(_js(rng, i))
            else:
                (d / f"m{i}.md").write_text(_md(rng, i))
            counts["source"] += 1
    if age_s:
        t = time.time() - age_s
        for dirpath, _dirs, names in os.walk(root):
            for name in names:
                os.utime(os.path.join(dirpath, name), (t, t))
    return counts


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q * (len(s) - 1))))
    return s[k]


def _measure_latency(index: WorkspaceIndex, paths: list[Path], rounds: int) -> list[float]:
    lat: list[float] = []
    with IndexWatcher(index) as watcher:
        time.sleep(0.3)  # let watches settle
        for n in range(rounds):
            p = paths[n % len(paths)]
            before = index.get(p)
            old = before.sha256 if before else None
            text = p.read_text() + f"\n# edit {n} {time.time_ns()}\n"
            t0 = time.perf_counter()
            p.write_text(text)
            deadline = t0 + 10.0
            while True:
                e = index.get(p)
                if e is not None and e.sha256 != old:
                    lat.append(time.perf_counter() - t0)
                    break
                if time.perf_counter() > deadline:
                    lat.append(float("inf"))
                    break
                time.sleep(0.002)
            watcher.wait_idle(timeout=5.0, settle_s=0.05)
    return lat


def run(files: int = 10_000, out: TextIO = sys.stdout, *, rounds: int = 20) -> dict[str, Any]:
    """Generate, index, rescan and watch a ``files``-file tree; print a table
    and return the numbers."""
    rss0 = _peak_rss_mib()
    with tempfile.TemporaryDirectory(prefix="nearline-bench-") as tmp:
        root = Path(tmp) / "ws"
        t0 = time.perf_counter()
        kinds = generate_tree(root, files)
        gen_s = time.perf_counter() - t0

        index = WorkspaceIndex([root], IndexSettings())
        t0 = time.perf_counter()
        index.scan()
        scan_s = time.perf_counter() - t0
        indexed = len(index.files())
        rss_scan = _peak_rss_mib()
        t0 = time.perf_counter()
        index.scan()
        rescan_s = time.perf_counter() - t0

        targets = [e.path for e in index.files("python")][:rounds] or [
            e.path for e in index.files()
        ][:rounds]
        lat = _measure_latency(index, targets, rounds)
        rss_end = _peak_rss_mib()
        scan_info = dict(index.last_scan)

    res: dict[str, Any] = {
        "files_generated": files,
        "files_indexed": indexed,
        "kinds": kinds,
        "generate_s": gen_s,
        "scan_s": scan_s,
        "files_per_s": (files / scan_s) if scan_s else float("inf"),
        "indexed_per_s": (indexed / scan_s) if scan_s else float("inf"),
        "rescan_s": rescan_s,
        "peak_rss_mib_before": rss0,
        "peak_rss_mib_after_scan": rss_scan,
        "peak_rss_mib": rss_end,
        "save_latency_p50_ms": _pct(lat, 0.5) * 1000,
        "save_latency_p95_ms": _pct(lat, 0.95) * 1000,
        "save_latency_max_ms": max(lat) * 1000 if lat else float("nan"),
        "save_rounds": len(lat),
        "last_scan": scan_info,
    }
    _print(res, out)
    return res


def _print(r: dict[str, Any], out: TextIO) -> None:
    def fmt(v: Any, unit: str = "") -> str:
        if v is None:
            return "n/a"
        if isinstance(v, float):
            return f"{v:,.1f}{unit}" if abs(v) >= 10 else f"{v:,.3f}{unit}"
        return f"{v:,}{unit}"

    k = r["kinds"]
    rows = [
        ("files generated", fmt(r["files_generated"])),
        ("  source / ignored / binary", f"{k['source']:,} / {k['ignored']:,} / {k['binary']:,}"),
        ("  secret paths / secret-bearing", f"{k['secret_path']:,} / {k['secret_content']:,}"),
        ("files indexed", fmt(r["files_indexed"])),
        ("scan time", fmt(r["scan_s"], " s")),
        ("throughput (generated)", fmt(r["files_per_s"], " files/s")),
        ("throughput (indexed)", fmt(r["indexed_per_s"], " files/s")),
        ("rescan (nothing changed)", fmt(r["rescan_s"], " s")),
        (
            "peak RSS before / after scan",
            f"{fmt(r['peak_rss_mib_before'], ' MiB')} / "
            f"{fmt(r['peak_rss_mib_after_scan'], ' MiB')}",
        ),
        ("peak RSS (process-wide)", fmt(r["peak_rss_mib"], " MiB")),
        ("save -> index p50", fmt(r["save_latency_p50_ms"], " ms")),
        ("save -> index p95", fmt(r["save_latency_p95_ms"], " ms")),
        ("save -> index max", fmt(r["save_latency_max_ms"], " ms")),
    ]
    w = max(len(a) for a, _ in rows)
    print("nearline index benchmark", file=out)
    print("-" * (w + 24), file=out)
    for a, b in rows:
        print(f"{a:<{w}}  {b}", file=out)
    print("-" * (w + 24), file=out)
    print(
        f"(save latency over {r['save_rounds']} saves; includes the watcher's "
        "200 ms quiet period. Peak RSS is ru_maxrss: process-wide high-water mark)",
        file=out,
    )


if __name__ == "__main__":  # pragma: no cover
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    run(n)
