"""The first suggestion in a file after a server restart, with KV states on disk and without.

    PYTHONPATH=server python scripts/kv_restart_bench.py [--file httpx/_models.py] [--line 600]

A project Nearline was never tuned on (httpx, as installed beside Nearline) is copied to a
temporary directory. For each mode the server is started, the file is opened with the cursor
in the middle of a line and a suggestion is asked for at once (as an editor does), the server
is stopped, started again, and the same is done: the second answer's latency is the figure.
The default 0.5B model (``--model``) and default settings throughout; only ``model.diskCacheMb`` differs (0 = without).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from nearline.tools.client import EditorSession


async def first_suggestion(
    root: Path, rel: str, line: int, settings: dict[str, Any]
) -> dict[str, Any]:
    session = EditorSession(root, settings)
    t_start = time.perf_counter()
    if await session.start_ready() is None:
        raise SystemExit("the model did not load")
    ready_s = time.perf_counter() - t_start
    path = root / rel
    lines = path.read_text(encoding="utf-8").split("\n")
    cut = lines[line][: max(1, len(lines[line]) // 2)]
    text = "\n".join([*lines[:line], cut, *lines[line + 1 :]])
    uri = session.open(path, text)
    ans = await session.inline(uri, line, len(cut))
    st = await session.status()
    await session.stop()
    runs = [r for r in st.get("recent", []) if r.get("source") == "model"]
    last = runs[-1] if runs else {}
    return {
        "latency_s": round(ans.latency_s, 3),
        "text": ans.text,
        "ready_s": round(ready_s, 2),
        "prompt": last.get("prompt"),
        "evaluated": last.get("evaluated"),
        "disk_cache": (st.get("engine") or {}).get("disk_cache"),
        "recent": st.get("recent", []),
    }


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--file", default="httpx/_models.py")
    ap.add_argument("--line", type=int, default=600)
    ap.add_argument("--modes", default="disk,none")
    ap.add_argument("--model", default="qwen2.5-coder-0.5b-instruct-q4_k_m")
    args = ap.parse_args()
    import httpx

    with tempfile.TemporaryDirectory(prefix="nearline-kvbench-") as tmp:
        root = Path(tmp) / "project"
        shutil.copytree(Path(httpx.__file__).parent, root / "httpx")
        out = {}
        for mode in args.modes.split(","):
            os.environ["NEARLINE_KV_DIR"] = str(Path(tmp) / f"kv-{mode}")
            settings = {"model": {"id": args.model, "diskCacheMb": 1024 if mode == "disk" else 0}}
            first = await first_suggestion(root, args.file, args.line, settings)
            again = await first_suggestion(root, args.file, args.line, settings)
            out[mode] = {"first_run": first, "after_restart": again}
            print(mode, json.dumps(out[mode], indent=1), flush=True)
        summary = {
            m: (r["first_run"]["latency_s"], r["after_restart"]["latency_s"])
            for m, r in out.items()
        }
        print(json.dumps(summary))


if __name__ == "__main__":
    asyncio.run(main())
