"""Every composer by its ``context.composer`` name, and ``file-level``, the one that adds
nothing."""

from __future__ import annotations

from typing import assert_never

from nearline.completion.composers.base import Composer, ComposeRequest, CountTokens, RepoSource
from nearline.completion.composers.bm25 import compose_bm25
from nearline.completion.composers.path_distance_composer import compose_path_distance
from nearline.completion.composers.ring_buffer import compose_ring_buffer
from nearline.completion.prompt import RepoFile
from nearline.config import COMPOSERS as COMPOSER_NAMES
from nearline.config import ComposerName


def compose_file_level(
    req: ComposeRequest, source: RepoSource, count: CountTokens
) -> list[RepoFile]:
    """No repository context: the file prefix only."""
    return []


def composer_for(name: ComposerName) -> Composer:
    # A match over the names' Literal: mypy fails here when config gains a name without a function.
    match name:
        case "file-level":
            return compose_file_level
        case "path-distance":
            return compose_path_distance
        case "ring-buffer":
            return compose_ring_buffer
        case "bm25":
            return compose_bm25
        case _:
            assert_never(name)


#: Every composer by its ``context.composer`` name (the names are config's).
COMPOSERS: dict[str, Composer] = {name: composer_for(name) for name in COMPOSER_NAMES}
