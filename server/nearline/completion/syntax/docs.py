"""Per-document trees kept in step with the editor (``SyntaxDocs``): LSP changes become
``tree.edit`` calls, and a tree is reparsed, incrementally, only when a request needs it.
Documents over ``MAX_TREE_BYTES`` get no tree and cost nothing per keystroke."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from nearline.completion.syntax.check import Check, check_in_tree, cursor_byte
from nearline.completion.syntax.gate import line_scope
from nearline.completion.syntax.trees import parser_for, scope_at, ts_language
from nearline.languages import language_info
from nearline.workspace.snapshot import snapshot

# Larger documents get no tree (a full parse would hold up the event loop), and no work per
# keystroke: their size is checked before anything walks or encodes them.
MAX_TREE_BYTES = 2_000_000


@dataclass
class _Doc:
    language: str
    data: bytes
    tree: Any = None
    dirty: bool = True


class SyntaxDocs:
    """Per-document tree-sitter trees, kept in step with the editor: LSP changes are applied as
    ``tree.edit`` calls (cheap), and the tree is reparsed incrementally when a request needs it.
    A document whose text disagrees with what a request sees is brought up to date by a diff."""

    def __init__(self, max_docs: int = 32) -> None:
        self.max_docs = max_docs
        self._docs: OrderedDict[str, _Doc] = OrderedDict()
        self.stats = {"full_parses": 0, "incremental_parses": 0, "edits": 0, "resyncs": 0}

    def open(self, uri: str, language: str | None, text: str) -> None:
        # A character is at least one byte: a text longer than the limit is not encoded.
        if language is None or len(text) > MAX_TREE_BYTES or ts_language(language) is None:
            self._docs.pop(uri, None)
            return
        data = snapshot(text).data
        if len(data) > MAX_TREE_BYTES:
            self._docs.pop(uri, None)
            return
        self._docs[uri] = _Doc(language, data)
        self._docs.move_to_end(uri)
        while len(self._docs) > self.max_docs:
            self._docs.popitem(last=False)

    def forget(self, uri: str) -> None:
        self._docs.pop(uri, None)

    def __contains__(self, uri: str) -> bool:
        return uri in self._docs

    def change(
        self,
        uri: str,
        changes: Sequence[tuple[tuple[int, int], tuple[int, int], str] | str],
        text: str,
        encoding: str = "utf-16",
    ) -> None:
        """Apply LSP content changes: ((line, char), (line, char), new text) with characters in
        the client's ``encoding``, or a whole new text. ``text`` is the editor's result, used to
        resynchronise if an edit cannot be applied. Edits that apply but do not reproduce it (a
        stale position) are caught by ``tree``, which compares the document with the text a
        request sees: comparing here would encode the whole text on every keystroke."""
        doc = self._docs.get(uri)
        if doc is None:
            return
        for ch in changes:
            if isinstance(ch, str):
                if len(ch) > MAX_TREE_BYTES:
                    self._docs.pop(uri, None)
                    return
                self._replace(doc, 0, len(doc.data), ch.encode("utf-8", "surrogatepass"))
                continue
            (l0, c0), (l1, c1), new = ch
            start = _byte_offset(doc.data, l0, c0, encoding)
            end = _byte_offset(doc.data, l1, c1, encoding)
            if start is None or end is None or end < start:
                self.sync(uri, text)
                return
            self._replace(doc, start, end, new.encode("utf-8", "surrogatepass"))
        if len(doc.data) > MAX_TREE_BYTES:
            self._docs.pop(uri, None)  # grown too large for a tree: no more work per keystroke

    def _replace(self, doc: _Doc, start: int, end: int, new: bytes) -> None:
        data = doc.data
        if doc.tree is not None:
            doc.tree.edit(
                start_byte=start,
                old_end_byte=end,
                new_end_byte=start + len(new),
                start_point=_point(data, start),
                old_end_point=_point(data, end),
                new_end_point=_point_after(data, start, new),
            )
            self.stats["edits"] += 1
        doc.data = data[:start] + new + data[end:]
        doc.dirty = True

    def sync(self, uri: str, text: str) -> None:
        """Bring the document to ``text`` with one edit over the part that differs."""
        doc = self._docs.get(uri)
        if doc is None:
            return
        if len(text) > MAX_TREE_BYTES:
            self._docs.pop(uri, None)
            return
        new = snapshot(text).data
        if len(new) > MAX_TREE_BYTES:
            self._docs.pop(uri, None)
            return
        old = doc.data
        if old == new:
            return
        self.stats["resyncs"] += 1
        p = _common_prefix(old, new)
        s = _common_suffix(old, new, p)
        self._replace(doc, p, len(old) - s, new[p : len(new) - s])

    def tree(self, uri: str, language: str | None, text: str) -> Any | None:
        """The tree of ``text`` (the document at ``uri``), reparsed incrementally if needed;
        None for languages without a grammar and for very large documents."""
        if language is None or ts_language(language) is None:
            return None
        if len(text) > MAX_TREE_BYTES or len(snapshot(text).data) > MAX_TREE_BYTES:
            self._docs.pop(uri, None)
            return None
        doc = self._docs.get(uri)
        if doc is None or doc.language != language:
            self.open(uri, language, text)
            doc = self._docs.get(uri)
            if doc is None:
                return None
        else:
            self.sync(uri, text)
            self._docs.move_to_end(uri)
        if doc.dirty or doc.tree is None:
            parser = parser_for(language)
            if doc.tree is None:
                doc.tree = parser.parse(doc.data)
                self.stats["full_parses"] += 1
            else:
                doc.tree = parser.parse(doc.data, doc.tree)
                self.stats["incremental_parses"] += 1
            doc.dirty = False
        return doc.tree

    def scope(self, uri: str, language: str | None, text: str, line: int, col: int) -> str | None:
        """``"comment"``, ``"string"`` or ``"code"`` at the cursor: the tree decides, unless
        the cursor is in a broken region, where the line's own lexing does (it catches a string
        still being typed); None for languages without gating."""
        info = language_info(language)
        if info is None or len(text) > MAX_TREE_BYTES:
            # Too large for a tree: None leaves it to the caller's lexing of the cursor's line,
            # which is what this would do, without a walk over the whole text.
            return None
        snap = snapshot(text)
        before = snap.line(line)[:col] if line < snap.line_count else ""
        tree = self.tree(uri, language, text)
        if tree is not None:
            found = scope_at(tree, cursor_byte(snap, line, col))
            if found is not None:
                return found[0]
        return line_scope(info, before) or "code"

    def check(
        self,
        uri: str,
        language: str | None,
        text: str,
        line: int,
        col: int,
        suggestion: str,
        *,
        line_ends: bool = True,
    ) -> Check | None:
        """Check ``suggestion`` inserted at (line, col) of ``text``; None when there is nothing to
        check (no grammar, or the cursor is in a string or comment begun on an earlier line)."""
        tree = self.tree(uri, language, text)
        if tree is None or language is None:
            return None
        return check_in_tree(language, tree, text, line, col, suggestion, line_ends)


def _units_to_chars(s: str, units: int, encoding: str) -> int:
    if encoding == "utf-32":
        return units
    width: Callable[[str], int]
    if encoding == "utf-8":
        width = lambda c: len(c.encode("utf-8", "surrogatepass"))  # noqa: E731
    else:
        width = lambda c: 2 if ord(c) > 0xFFFF else 1  # noqa: E731
    n = 0
    for i, c in enumerate(s):
        if n >= units:
            return i
        n += width(c)
    return len(s)


def _byte_offset(data: bytes, line: int, units: int, encoding: str) -> int | None:
    """Byte offset of an LSP position (``units`` in the client's encoding) in ``data``; a
    position past the end of a line clamps to it, past the last line to the end."""
    start = 0
    for _ in range(line):
        i = data.find(b"\n", start)
        if i < 0:
            return len(data)
        start = i + 1
    end = data.find(b"\n", start)
    end = len(data) if end < 0 else end
    if encoding == "utf-8":
        return min(start + units, end)
    text = data[start:end].decode("utf-8", errors="replace")
    return start + len(
        text[: _units_to_chars(text, units, encoding)].encode("utf-8", "surrogatepass")
    )


def _point(data: bytes, offset: int) -> tuple[int, int]:
    row = data.count(b"\n", 0, offset)
    return row, offset - (data.rfind(b"\n", 0, offset) + 1)


def _point_after(data: bytes, start: int, new: bytes) -> tuple[int, int]:
    row, col = _point(data, start)
    nl = new.count(b"\n")
    if nl == 0:
        return row, col + len(new)
    return row + nl, len(new) - (new.rfind(b"\n") + 1)


def _common_prefix(a: bytes, b: bytes) -> int:
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:  # binary search with C-speed slice comparisons
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _common_suffix(a: bytes, b: bytes, prefix: int) -> int:
    lo, hi = 0, min(len(a), len(b)) - prefix
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[len(a) - mid :] == b[len(b) - mid :]:
            lo = mid
        else:
            hi = mid - 1
    return lo
