"""Prompt assembly in a model's own format.

A prompt is a list of parts ordered from the most stable to the least stable — repository
context (changes when other files change), the current file's prefix (grows at its end while
typing), the suffix and FIM markers (short) — so consecutive keystrokes share almost all of
their tokens and the engine re-evaluates only the tail.

Control strings (FIM markers, file separators) are kept apart from file text: the engine
tokenizes ``special`` parts with special-token parsing and everything else without, so a file
that happens to contain ``<|file_sep|>`` cannot forge prompt structure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from nearline.weights.catalog import PromptFormat

PartKind = Literal["special", "repo-file", "header", "prefix", "suffix"]


@dataclass(frozen=True, slots=True)
class PromptPart:
    kind: PartKind
    text: str
    path: str | None = None
    tokens: int | None = None

    @property
    def special(self) -> bool:
        return self.kind == "special"


@dataclass
class Prompt:
    parts: list[PromptPart] = field(default_factory=list)
    fim: bool = False

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.parts)

    def segments(self) -> list[tuple[str, bool]]:
        """(text, is_special) runs with adjacent plain parts merged, as the engine tokenizes
        them. Merging keeps tokenization identical to tokenizing the plain text in one go."""
        out: list[tuple[str, bool]] = []
        for p in self.parts:
            if not p.text:
                continue
            if out and not p.special and not out[-1][1]:
                out[-1] = (out[-1][0] + p.text, False)
            else:
                out.append((p.text, p.special))
        return out

    def breakdown(self) -> list[dict[str, Any]]:
        """One entry per part; control tokens are folded into the header that follows them
        (or listed as "special"), so the entries' tokens add up to the prompt's total."""
        out: list[dict[str, Any]] = []
        pending = 0
        for p in self.parts:
            if p.special:
                pending += p.tokens or 1
                continue
            if pending and p.kind != "header":
                out.append({"kind": "special", "path": None, "tokens": pending})
                pending = 0
            out.append({"kind": p.kind, "path": p.path, "tokens": (p.tokens or 0) + pending})
            pending = 0
        if pending:
            out.append({"kind": "special", "path": None, "tokens": pending})
        return out

    def to_json(self, total_tokens: int) -> str:
        return json.dumps(
            {"prompt": self.text, "parts": self.breakdown(), "total_tokens": total_tokens},
            ensure_ascii=False,
        )


@dataclass(frozen=True, slots=True)
class RepoFile:
    """A repository file as it goes into the prompt (possibly cut to its last lines)."""

    path: str
    text: str
    tokens: int
    truncated: bool = False


def repo_parts(fmt: PromptFormat, repo_name: str, files: list[RepoFile]) -> list[PromptPart]:
    """The repository-level block: ``<repo_name>name`` then ``<file_sep>path\\ncontent`` per
    file, in the order given (the composer puts the nearest file last)."""
    if not files:
        return []
    parts: list[PromptPart] = []
    if fmt.repo_name:
        parts.append(PromptPart("special", fmt.repo_name))
        parts.append(PromptPart("header", repo_name + "\n", path=None))
    for f in files:
        if fmt.file_sep:
            parts.append(PromptPart("special", fmt.file_sep))
            parts.append(PromptPart("header", f.path + "\n", path=f.path))
        else:
            parts.append(PromptPart("header", f"# file: {f.path}\n", path=f.path))
        text = f.text if f.text.endswith("\n") else f.text + "\n"
        parts.append(PromptPart("repo-file", text, path=f.path, tokens=f.tokens))
    return parts


def file_parts(
    fmt: PromptFormat,
    path: str,
    prefix: str,
    suffix: str | None,
    *,
    prefix_tokens: int | None = None,
    suffix_tokens: int | None = None,
) -> tuple[list[PromptPart], bool]:
    """The current file: header, prefix, and (FIM models, when a suffix is given) the suffix.

    Returns the parts and whether FIM is used. The suffix goes after the prefix (PSM order) so
    that it sits in the prompt's volatile tail.
    """
    parts: list[PromptPart] = []
    if fmt.file_sep:
        parts.append(PromptPart("special", fmt.file_sep))
        parts.append(PromptPart("header", path + "\n", path=path))
    use_fim = fmt.has_fim and suffix is not None
    if use_fim:
        assert fmt.fim_prefix and fmt.fim_suffix and fmt.fim_middle
        parts.append(PromptPart("special", fmt.fim_prefix))
        parts.append(PromptPart("prefix", prefix, path=path, tokens=prefix_tokens))
        parts.append(PromptPart("special", fmt.fim_suffix))
        parts.append(PromptPart("suffix", suffix or "", path=path, tokens=suffix_tokens))
        parts.append(PromptPart("special", fmt.fim_middle))
    else:
        parts.append(PromptPart("prefix", prefix, path=path, tokens=prefix_tokens))
    return parts, use_fim
