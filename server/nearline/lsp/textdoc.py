"""Open documents kept exactly as the client has them.

pygls's own ``TextDocument`` splits lines with ``str.splitlines``, which also breaks at form
feeds, ``\\x1c``-``\\x1e``, ``\\x85``, U+2028 and U+2029: a client (LSP counts only ``\\n``,
``\\r\\n`` and ``\\r``) and the server then disagree about line numbers after any such character,
and every later edit lands in the wrong place. It also rebuilds the whole text line by line on
every change (seconds per keystroke for a 20 MB file), clamps a too-long character to one before
the line's end, and keys open documents by the *unquoted* URI while the URI a request carries is
quoted. :class:`LspDocument` fixes all of that: offsets into one string, line starts kept in a
numpy array and updated around each edit, characters converted in the negotiated encoding
(UTF-8, UTF-16 or UTF-32 code units), positions past a line's end clamped to it as the
specification says.
"""

from __future__ import annotations

import itertools
import logging
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
from lsprotocol import types
from pygls.uris import to_fs_path
from pygls.workspace import TextDocument, Workspace
from pygls.workspace.position_codec import PositionCodec

log = logging.getLogger(__name__)

_EOL = re.compile(r"\r\n|\r|\n")


def _line_breaks(text: str, base: int = 0) -> np.ndarray:
    """Offsets at which a new line starts (0 excluded), shifted by ``base``."""
    return np.fromiter((m.end() + base for m in _EOL.finditer(text)), dtype=np.int64)


def _widths(line: str, encoding: str) -> np.ndarray:
    """Code units of each code point of ``line`` (lone surrogates count as one UTF-16 unit,
    three UTF-8 bytes, as a JavaScript client sees them)."""
    cps = np.frombuffer(line.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    if encoding == types.PositionEncodingKind.Utf8:
        return 1 + (cps >= 0x80) + (cps >= 0x800) + (cps >= 0x10000)
    return 1 + (cps > 0xFFFF).astype(np.int64)


class LspDocument(TextDocument):
    """One open document: ``source`` is the exact text, positions are LSP positions."""

    def __init__(
        self,
        uri: str,
        source: str | None = None,
        version: int | None = None,
        language_id: str | None = None,
        position_codec: PositionCodec | None = None,
    ) -> None:
        super().__init__(
            uri,
            source=source or "",
            version=version,
            language_id=language_id,
            sync_kind=types.TextDocumentSyncKind.Incremental,
            position_codec=position_codec,
        )
        self._text = source or ""
        self._source = None  # pygls's copy is not used: `source` is this class's
        self._breaks = _line_breaks(self._text)

    # -- reading -------------------------------------------------------------------------
    @property
    def source(self) -> str:
        return self._text

    @property
    def encoding(self) -> str:
        return str(self.position_codec.encoding or types.PositionEncodingKind.Utf16)

    @property
    def line_count(self) -> int:
        return len(self._breaks) + 1

    @property
    def lines(self) -> tuple[str, ...]:
        """Lines as LSP counts them, each with its line ending."""
        starts = [0, *self._breaks.tolist(), len(self._text)]
        return tuple(self._text[a:b] for a, b in itertools.pairwise(starts) if a < b)

    def line_span(self, line: int) -> tuple[int, int]:
        """(start, end) offsets of line ``line``'s content, its line ending excluded."""
        text = self._text
        start = 0 if line == 0 else int(self._breaks[line - 1])
        if line >= len(self._breaks):
            return start, len(text)
        end = int(self._breaks[line]) - 1
        if text[end] == "\n" and end > start and text[end - 1] == "\r":
            end -= 1
        return start, end

    def line_text(self, line: int) -> str:
        a, b = self.line_span(line)
        return self._text[a:b]

    def units(self, text: str) -> int:
        """Length of ``text`` in the negotiated position encoding."""
        enc = self.encoding
        if enc == types.PositionEncodingKind.Utf32 or text.isascii():
            return len(text)
        if enc == types.PositionEncodingKind.Utf8:
            return len(text.encode("utf-8", "surrogatepass"))
        return len(text.encode("utf-16-le", "surrogatepass")) // 2

    def _chars(self, line: str, units: int) -> int:
        """Code points of ``line`` covered by ``units`` code units: clamped to the line, rounded
        down inside a character."""
        if units <= 0:
            return 0
        enc = self.encoding
        if enc == types.PositionEncodingKind.Utf32 or line.isascii():
            return min(units, len(line))
        if enc != types.PositionEncodingKind.Utf8 and max(line) <= "\uffff":
            return min(units, len(line))
        cum = np.cumsum(_widths(line, enc))
        return int(np.searchsorted(cum, units, side="right"))

    def offset_at(self, position: types.Position) -> int:
        """Offset of an LSP position in ``source``. A character past its line's end means the
        end of the line, a line past the last one the end of the document (what clients send
        as the end of a whole-document range)."""
        if position.line >= self.line_count:
            return len(self._text)
        a, b = self.line_span(position.line)
        return a + self._chars(self._text[a:b], position.character)

    def exact_offset(self, position: types.Position) -> int | None:
        """Offset of a position that names a real place: None past the end of its line or the
        document, or inside a character."""
        if position.line >= self.line_count:
            return None
        a, b = self.line_span(position.line)
        line = self._text[a:b]
        n = self._chars(line, position.character)
        if self.units(line[:n]) != position.character:
            return None
        return a + n

    def position_at(self, offset: int) -> types.Position:
        """The LSP position of an offset (which must not fall inside a line ending)."""
        line = int(np.searchsorted(self._breaks, offset, side="right"))
        a = 0 if line == 0 else int(self._breaks[line - 1])
        return types.Position(line=line, character=self.units(self._text[a:offset]))

    # -- changes -------------------------------------------------------------------------
    def apply_change(self, change: types.TextDocumentContentChangeEvent) -> None:
        if isinstance(change, types.TextDocumentContentChangePartial):
            s = self.offset_at(change.range.start)
            e = self.offset_at(change.range.end)
            if e < s:
                s, e = e, s
            self.replace(s, e, change.text)
        else:
            self._text = change.text
            self._breaks = _line_breaks(self._text)

    def replace(self, s: int, e: int, new: str) -> None:
        """Replace ``source[s:e]`` by ``new``, updating line starts only around the edit.

        Whether offset ``p`` starts a line depends on the two characters around it, so starts
        before ``s`` and after the old ``e`` are kept (the latter shifted); those in
        ``[s, s + len(new)]`` are found again, which also catches a ``\\r`` and ``\\n`` that the
        edit joined into one line ending or split apart."""
        old = self._text
        text = old[:s] + new + old[e:]
        breaks = self._breaks
        lo = int(np.searchsorted(breaks, s, side="left"))
        hi = int(np.searchsorted(breaks, e, side="right"))
        end = s + len(new)
        base = max(s - 1, 0)
        mid = _line_breaks(text[base : end + 1], base)
        mid = mid[(mid >= s) & (mid <= end) & (mid > 0)]
        self._breaks = np.concatenate([breaks[:lo], mid, breaks[hi:] + (len(new) - (e - s))])
        self._text = text


class NearlineWorkspace(Workspace):
    """pygls's workspace with :class:`LspDocument` documents, looked up by quoted or unquoted
    URI alike, and a change to a document that is not open ignored with a log line (pygls
    raises, which shows the user an error popup)."""

    @classmethod
    def replacing(cls, old: Workspace) -> NearlineWorkspace:
        ws = cls(
            old.root_uri,
            old._sync_kind,
            list(old.folders.values()),
            old.position_encoding,
        )
        for uri, doc in old.text_documents.items():
            ws.text_documents[uri] = ws._create_text_document(
                uri, doc.source, doc.version, doc.language_id
            )
        return ws

    def _create_text_document(
        self,
        doc_uri: str,
        source: str | None = None,
        version: int | None = None,
        language_id: str | None = None,
    ) -> TextDocument:
        return LspDocument(
            doc_uri,
            source=source,
            version=version,
            language_id=language_id,
            position_codec=self._position_codec,
        )

    def document(self, uri: str) -> LspDocument | None:
        doc = self.text_documents.get(unquote(uri))
        return doc if isinstance(doc, LspDocument) else None

    def update_text_document(self, text_doc: Any, change: Any) -> None:
        doc = self.text_documents.get(unquote(text_doc.uri))
        if doc is None:
            log.warning("change to a document that is not open ignored: %s", text_doc.uri)
            return
        doc.apply_change(change)
        doc.version = text_doc.version


def fs_path(uri: str) -> Path | None:
    """The file a ``file:`` URI names; None for other schemes (an untitled buffer)."""
    if not uri.startswith("file:"):
        return None
    fs = to_fs_path(uri)
    return Path(fs) if fs else None
