"""How much of their prompts two sibling files share (issue #15, point 2), model-free.

    PYTHONPATH=server python scripts/sibling_prefix.py [--set context.layout=shared] ROOT...

For each project ROOT, pairs of Python files of one directory (up to 6 per directory, 24 per
project, seeded): the first file's prompt with the cursor 50% down it, the second's at 60%, as
``nearline bench coldstart`` places them, built by the service with the default model's own
vocabulary and default settings (``--set`` for others). Printed per project: the mean and
median count of leading tokens the two prompts share (what a sibling can start from in the
first file's saved KV state), the second prompt's mean length, and the mean share.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
from pathlib import Path
from typing import Any

from nearline.bench.coldstart import cursor_in
from nearline.completion.prompt import Prompt
from nearline.completion.service import CompletionService, Query
from nearline.config import parse_settings
from nearline.engine.factory import resolve_model
from nearline.engine.llama import common_prefix
from nearline.engine.tokens import load_tokenizer
from nearline.workspace.index import WorkspaceIndex


def prompt_tokens(tok: Any, prompt: Prompt) -> list[int]:
    out: list[int] = []
    for text, special in prompt.segments():
        out.extend([tok.token_id(text)] if special else tok.encode(text))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("roots", nargs="+", type=Path)
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = ap.parse_args()
    raw: dict[str, dict[str, Any]] = {}
    for item in args.set:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        try:
            raw.setdefault(section, {})[name] = json.loads(value)
        except json.JSONDecodeError:
            raw.setdefault(section, {})[name] = value
    settings, problems = parse_settings(raw)
    if problems:
        raise SystemExit("; ".join(map(str, problems)))
    tok = load_tokenizer(resolve_model(settings)[1])
    everything: list[tuple[int, int]] = []
    for root in args.roots:
        svc = CompletionService(settings, on_message=lambda *_: None)
        idx = WorkspaceIndex([root], settings.index, count_tokens=svc.count_tokens)
        idx.scan()
        svc.index = idx
        by_dir: dict[str, list[Any]] = {}
        for f in idx.files("python"):
            if f.path.stat().st_size > 300:
                by_dir.setdefault(str(Path(f.rel).parent), []).append(f)
        rng = random.Random(0)
        pairs = []
        for _, files in sorted(by_dir.items()):
            some = list(itertools.permutations(files, 2))
            rng.shuffle(some)
            pairs += some[:6]
        rng.shuffle(pairs)
        rows = []
        for a, b in pairs[:24]:
            toks = []
            for f, frac in ((a, 0.5), (b, 0.6)):
                buf, ln, col = cursor_in(f.path, None, frac)
                idx.set_overlay(f.path, buf)
                idx.set_current(f.path)
                off = sum(len(line) + 1 for line in buf.split("\n")[:ln]) + col
                q = Query(uri=f.path.as_uri(), text=buf, line=ln, col=col, offset=off,
                          path=f.path, rel=f.rel, language="python", root=root)  # fmt: skip
                toks.append(prompt_tokens(tok, svc.build_prompt(q)))
            rows.append((common_prefix(*toks), len(toks[1])))
        if not rows:
            continue
        everything += rows
        cs, ts = [c for c, _ in rows], [t for _, t in rows]
        print(f"{root.name:24} pairs {len(rows):3}  common mean {statistics.mean(cs):7.1f} "
              f"median {statistics.median(cs):6.0f}  prompt mean {statistics.mean(ts):6.0f}  "
              f"share {statistics.mean(c / t for c, t in rows):.2f}")  # fmt: skip
    if everything:
        print(f"{'all':24} pairs {len(everything):3}  common mean "
              f"{statistics.mean(c for c, _ in everything):7.1f}  share "
              f"{statistics.mean(c / t for c, t in everything):.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
