"""Local acceptance statistics: how many suggestions were shown and how many were accepted.

Nothing leaves the machine: counts go to a small JSON file in the user state directory
(``$NEARLINE_STATS_FILE`` overrides it). Editors report an accept by running the command that
comes with each suggestion (LSP 3.18's ``InlineCompletionItem.command``; ``CompletionItem.command``
for the completion fallback).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import platformdirs

ACCEPT_COMMAND = "nearline.accepted"


def stats_path() -> Path:
    env = os.environ.get("NEARLINE_STATS_FILE")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_state_dir("nearline")) / "stats.json"


class AcceptanceStats:
    """Counts per language, persisted every ``save_every`` changes and on ``close``."""

    def __init__(self, path: Path | None = None, save_every: int = 20) -> None:
        self.path = path or stats_path()
        self.save_every = save_every
        self._lock = threading.Lock()
        self._dirty = 0
        self._shown_ids: dict[str, str] = {}  # suggestion id -> language, for accepts
        self.data: dict[str, Any] = self._load()

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and isinstance(data.get("languages"), dict):
                return data
        except (OSError, ValueError):
            pass  # missing or unreadable: start afresh (statistics are not worth an error)
        return {"since": time.strftime("%Y-%m-%d"), "languages": {}}

    def _bump(self, language: str, key: str) -> None:
        lang = self.data["languages"].setdefault(language, {"shown": 0, "accepted": 0})
        lang[key] = int(lang.get(key, 0)) + 1
        self._dirty += 1

    def shown(self, suggestion_id: str, language: str) -> None:
        with self._lock:
            if suggestion_id in self._shown_ids:
                return  # the same suggestion again (typing through it): shown once
            self._shown_ids[suggestion_id] = language
            if len(self._shown_ids) > 4096:
                self._shown_ids.pop(next(iter(self._shown_ids)))
            self._bump(language, "shown")
            due = self._dirty >= self.save_every
        if due:
            self.save()

    def accepted(self, suggestion_id: str) -> bool:
        with self._lock:
            language = self._shown_ids.pop(suggestion_id, None)
            if language is None:
                return False  # unknown or already counted
            self._bump(language, "accepted")
        self.save()
        return True

    def totals(self) -> tuple[int, int]:
        langs = self.data["languages"].values()
        return sum(v.get("shown", 0) for v in langs), sum(v.get("accepted", 0) for v in langs)

    def save(self) -> None:
        with self._lock:
            if not self._dirty:
                return
            payload = json.dumps(self.data, indent=2, sort_keys=True)
            self._dirty = 0
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".stats-", suffix=".json")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(payload)
            os.replace(tmp, self.path)

    def close(self) -> None:
        self.save()


def format_report(data: dict[str, Any]) -> str:
    langs: dict[str, dict[str, int]] = data.get("languages", {})
    lines = [f"Nearline suggestions since {data.get('since', '?')} (local statistics, never sent)"]
    total_s = total_a = 0
    for name in sorted(langs):
        s, a = int(langs[name].get("shown", 0)), int(langs[name].get("accepted", 0))
        total_s, total_a = total_s + s, total_a + a
        lines.append(f"  {name:<14} shown {s:>7}  accepted {a:>7}  rate {_rate(a, s)}")
    lines.append(
        f"  {'all':<14} shown {total_s:>7}  accepted {total_a:>7}  rate {_rate(total_a, total_s)}"
    )
    return "\n".join(lines)


def _rate(accepted: int, shown: int) -> str:
    return f"{accepted / shown * 100:5.1f}%" if shown else "    -"
