"""``nearline demo``: start ``nearline serve`` and use it like an editor on the sample project.

It opens ``inventory/report.py`` with its last lines removed, then types those lines back one
character at a time; at the start of each line (after the indentation and a few characters) it
asks for an inline completion and prints the suggestion next to what the line really is.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from nearline.tools.client import EditorSession

SAMPLE = Path(__file__).resolve().parents[3] / "examples" / "sample_project"


def sample_project() -> Path:
    if SAMPLE.is_dir():
        return SAMPLE
    raise FileNotFoundError(f"sample project not found at {SAMPLE} (run from a source checkout)")


def _utf16(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


async def run_demo(
    model: str | None = None, lines: int = 6, file: str = "inventory/report.py"
) -> int:
    root = sample_project()
    target = root / file
    full = target.read_text(encoding="utf-8").split("\n")
    # Type the last `lines` non-empty lines of the file.
    body_end = len(full) - 1 if full[-1] == "" else len(full)
    start = body_end - lines
    settings: dict[str, dict[str, Any]] = {"completion": {"debounceMs": 0}}
    if model:
        settings["model"] = {"id": model}
    log = Path(tempfile.gettempdir()) / "nearline-demo-server.log"
    session = EditorSession(root, settings, stderr_path=log)
    print(f"Nearline demo: {root} — typing {lines} lines of {file}")
    t0 = time.perf_counter()
    engine = await session.start_ready()
    if engine is None:
        return 1
    print(f"server ready in {time.perf_counter() - t0:.1f}s — model {engine.get('model')}, "
          f"{engine.get('threads')} threads, gpu layers {engine.get('gpu_layers')}")  # fmt: skip
    text = "\n".join(full[:start]) + "\n"
    uri = session.open(target, text)
    line_no = start
    hits = 0
    asked = 0
    for real in full[start:body_end]:
        if not real.strip():
            # Nothing to complete on a blank line: just type it.
            session.insert(uri, line_no, 0, real + "\n")
            line_no += 1
            continue
        asked += 1
        indent = len(real) - len(real.lstrip())
        typed_upto = min(len(real), indent + max(3, (len(real) - indent) // 4))
        col = 0
        # Type the start of the line character by character, asking after the last one.
        for ch in real[:typed_upto]:
            session.insert(uri, line_no, _utf16(real[:col]), ch)
            col += 1
        ans = await session.inline(uri, line_no, _utf16(real[:col]))
        shown = ans.text or ""
        ok = (real[:col] + shown).rstrip() == real.rstrip()
        hits += ok
        mark = "✓" if ok else " "
        print(f"{mark} {ans.latency_s * 1000:7.0f} ms  {real[:col]}\x1b[2m{shown}\x1b[0m")
        if not ok:
            print(f"{'':12}  actual: {real}")
        # Finish the line as the user would, then the newline.
        rest = real[col:] + "\n"
        session.insert(uri, line_no, _utf16(real[:col]), rest)
        line_no += 1
    print(f"{hits}/{asked} lines completed exactly")
    recent = (await session.status()).get("recent") or []
    evaluated = [r.get("evaluated") for r in recent if r.get("source") == "model"]
    if evaluated:
        print(
            f"prompt tokens evaluated per model run: {evaluated} — the first request after opening "
            "reads the whole prompt; later ones reuse the KV cache and read only what changed"
        )
    await session.stop()
    return 0
