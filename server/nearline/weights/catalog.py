"""The catalog of supported models (``models/catalog.json``): files, hashes, sources, prompt
formats and RoPE settings. The catalog is data so that adding a model needs no code."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import platformdirs

_PACKAGE = Path(__file__).resolve().parent.parent  # nearline/


def _catalog_file() -> Path:
    # A wheel carries the catalog inside the package; an editable install reads the repo's copy.
    packaged = _PACKAGE / "_data" / "catalog.json"
    if packaged.is_file():
        return packaged
    return _PACKAGE.parent.parent / "models" / "catalog.json"


@dataclass(frozen=True)
class PromptFormat:
    name: str
    fim_prefix: str | None
    fim_suffix: str | None
    fim_middle: str | None
    repo_name: str | None
    file_sep: str | None
    stop: tuple[str, ...]

    @property
    def has_fim(self) -> bool:
        return bool(self.fim_prefix and self.fim_suffix and self.fim_middle)

    @property
    def specials(self) -> tuple[str, ...]:
        """Every control string of the format: never allowed to come from file text."""
        out = [
            s
            for s in (
                self.fim_prefix,
                self.fim_suffix,
                self.fim_middle,
                self.repo_name,
                self.file_sep,
            )
            if s
        ]
        out += [s for s in self.stop if s not in out]
        return tuple(out)


@dataclass(frozen=True)
class RopeSettings:
    freq_base: float
    scaling: str = "none"
    factor: float = 1.0
    yarn_orig_context: int = 0


@dataclass(frozen=True)
class ModelEntry:
    id: str
    name: str
    file: str
    size: int | None
    sha256: str | None
    source: dict[str, Any]
    format: PromptFormat
    trained_context: int
    context_length: int
    budget_tokens: int
    rope: RopeSettings
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @property
    def path(self) -> Path:
        return models_dir() / self.file


@dataclass(frozen=True)
class Catalog:
    default_id: str
    models: tuple[ModelEntry, ...]

    def get(self, model_id: str | None) -> ModelEntry:
        wanted = model_id or self.default_id
        for m in self.models:
            if m.id == wanted:
                return m
        known = ", ".join(m.id for m in self.models)
        raise KeyError(f"unknown model id {wanted!r}; known: {known}")

    @property
    def default(self) -> ModelEntry:
        return self.get(self.default_id)


def models_dir() -> Path:
    """Where pulled weights live: the user cache (XDG), never the repository."""
    env = os.environ.get("NEARLINE_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("nearline")) / "models"


@cache
def load_catalog(path: str | None = None) -> Catalog:
    data = json.loads(Path(path or _catalog_file()).read_text(encoding="utf-8"))
    formats = {
        name: PromptFormat(
            name=name,
            fim_prefix=f.get("fimPrefix"),
            fim_suffix=f.get("fimSuffix"),
            fim_middle=f.get("fimMiddle"),
            repo_name=f.get("repoName"),
            file_sep=f.get("fileSep"),
            stop=tuple(f.get("stop", ())),
        )
        for name, f in data["formats"].items()
    }
    models = []
    for m in data["models"]:
        rope = m.get("rope", {})
        models.append(
            ModelEntry(
                id=m["id"],
                name=m["name"],
                file=m["file"],
                size=m.get("size"),
                sha256=m.get("sha256"),
                source=m["source"],
                format=formats[m["format"]],
                trained_context=int(m["trainedContext"]),
                context_length=int(m["contextLength"]),
                budget_tokens=int(m["budgetTokens"]),
                rope=RopeSettings(
                    freq_base=float(rope.get("freqBase", 10000.0)),
                    scaling=str(rope.get("scaling", "none")),
                    factor=float(rope.get("factor", 1.0)),
                    yarn_orig_context=int(rope.get("yarnOrigContext", 0)),
                ),
                raw=m,
            )
        )
    return Catalog(default_id=data["default"], models=tuple(models))


def format_for_path(path: str | os.PathLike[str], fallback: PromptFormat) -> PromptFormat:
    """The prompt format for an explicit GGUF path: the catalog entry with that file name, if
    any, else ``fallback``."""
    name = Path(path).name
    for m in load_catalog().models:
        if m.file == name:
            return m.format
    return fallback
