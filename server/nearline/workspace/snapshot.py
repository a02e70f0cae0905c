"""One version of a document's text, and what every layer derives from it, computed once.

A keystroke gives a document a new text. The syntax trees want its UTF-8 bytes and line starts,
the index overlay and the prompt want it with lone surrogates replaced (a client may send them
in JSON escapes; they can be neither encoded nor tokenized). ``snapshot(text)`` hands every
caller of the same text object the same :class:`Snapshot`, whose parts are computed on first
use: what nobody asks for (the bytes of a document too large for a tree) costs nothing.

The workspace layer is the bottom one, so every layer may use this module.
"""

from __future__ import annotations

import itertools
import re
import threading
from bisect import bisect_right
from collections import OrderedDict
from functools import cached_property

__all__ = ["Snapshot", "replace_surrogates", "snapshot"]

_SURROGATES = re.compile("[\ud800-\udfff]")


def replace_surrogates(text: str) -> str:
    """``text`` with each lone surrogate replaced by one U+FFFD (every length stays the same)."""
    return text if text.isascii() else _SURROGATES.sub("\ufffd", text)


class Snapshot:
    """An immutable text and its derived forms. Lines are split at ``"\\n"`` alone (a ``"\\r"``
    stays at the end of its line), as ``str.split("\\n")`` does."""

    __slots__ = ("__dict__", "text")

    text: str

    def __init__(self, text: str) -> None:
        object.__setattr__(self, "text", text)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("a Snapshot is immutable")

    def __len__(self) -> int:
        return len(self.text)

    @cached_property
    def data(self) -> bytes:
        """The UTF-8 bytes (a lone surrogate as its three bytes, as tree-sitter is given it)."""
        return self.text.encode("utf-8", "surrogatepass")

    @cached_property
    def is_ascii(self) -> bool:
        return self.text.isascii()

    @cached_property
    def line_starts(self) -> list[int]:
        """The offset at which each line starts; ``line_starts[0] == 0``."""
        return [0, *itertools.accumulate(len(ln) + 1 for ln in self.text.split("\n")[:-1])]

    @cached_property
    def clean(self) -> str:
        """The text with lone surrogates replaced by U+FFFD (same length)."""
        return replace_surrogates(self.text)

    def clean_slice(self, start: int, end: int) -> str:
        """``clean[start:end]``, from the whole clean text when someone has made it, else from
        the slice alone (a window of a 20 MB document costs the window)."""
        if "clean" in self.__dict__:
            return self.clean[start:end]
        return replace_surrogates(self.text[start:end])

    @property
    def line_count(self) -> int:
        return len(self.line_starts)

    def line_span(self, line: int) -> tuple[int, int]:
        """(start, end) offsets of line ``line``, its ``"\\n"`` excluded."""
        starts = self.line_starts
        start = starts[line]
        end = starts[line + 1] - 1 if line + 1 < len(starts) else len(self.text)
        return start, end

    def line(self, line: int) -> str:
        a, b = self.line_span(line)
        return self.text[a:b]

    def lines(self, first: int, last: int) -> list[str]:
        """Lines ``first`` up to (not including) ``last``, clamped to the document."""
        last = min(last, self.line_count)
        return [self.line(i) for i in range(max(0, first), last)]

    def line_of(self, offset: int) -> int:
        return bisect_right(self.line_starts, offset) - 1

    def byte_offset(self, offset: int) -> int:
        """The UTF-8 byte offset of character offset ``offset``."""
        if self.is_ascii:
            return offset
        return len(self.text[:offset].encode("utf-8", "surrogatepass"))


_cache: OrderedDict[int, Snapshot] = OrderedDict()
_lock = threading.Lock()
# Open documents a request touches at once (the edited one, the ones beside it).
CACHE_SIZE = 8
# Larger texts get a snapshot of their own, not kept: nothing derives whole-text forms of them
# per keystroke (no tree, no overlay), and keeping old versions of 20 MB would cost memory.
CACHE_MAX_CHARS = 2_000_000


def snapshot(text: str) -> Snapshot:
    """The snapshot of ``text``: the same object for the same text object, so that the syntax
    trees, the index overlay and the service, handed one version of a document, share its parts.
    Keyed by identity (an equal text from elsewhere gets its own snapshot; comparing would
    cost what sharing saves)."""
    if len(text) > CACHE_MAX_CHARS:
        return Snapshot(text)
    key = id(text)
    with _lock:
        snap = _cache.get(key)
        if snap is not None and snap.text is text:
            _cache.move_to_end(key)
            return snap
        snap = _cache[key] = Snapshot(text)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
        return snap
