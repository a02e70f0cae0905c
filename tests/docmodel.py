"""A client's view of a document, written from the LSP specification and kept deliberately
naive (character by character), to check the server's fast implementation against.

Lines end at "\\r\\n", "\\r" or "\\n" and at nothing else; a position's character counts code
units of the negotiated encoding; a character past the end of its line means the line's end.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

# Pieces of text that have broken editors' document sync: line endings of every kind, astral
# characters (two UTF-16 units, four UTF-8 bytes), emoji sequences with modifiers and joiners,
# CJK, combining marks, characters Python's splitlines() takes for line breaks but LSP does
# not, characters whose lower() is longer, a NUL.
PIECES = [
    "a", "xyz", "def f(x):", " ", "    ", "\t", "(", ")", "'", '"', "=",
    "\n", "\r\n", "\r", "\n\n",
    "😀", "👍🏽", "👩‍💻", "🇯🇵", "𝔘𝔫𝔦", "𐍈",
    "漢字", "テスト", "한국어",
    "e\u0301", "\u0301", "a\u0308\u0323", "\u200d",
    "\x0c", "\x0b", "\x1c", "\x85", "\u2028", "\u2029",
    "ß", "İ", "ﬁ", "\x00", "é",
]  # fmt: skip

texts = st.lists(st.sampled_from(PIECES), max_size=12).map("".join)


def lsp_lines(text: str) -> list[tuple[int, int]]:
    """(start, end of text) offsets of every line, line endings excluded."""
    out: list[tuple[int, int]] = []
    start = i = 0
    while i < len(text):
        c = text[i]
        if c == "\r" and i + 1 < len(text) and text[i + 1] == "\n":
            out.append((start, i))
            i += 2
            start = i
        elif c in "\r\n":
            out.append((start, i))
            i += 1
            start = i
        else:
            i += 1
    out.append((start, len(text)))
    return out


def char_units(c: str, encoding: str) -> int:
    if encoding == "utf-8":
        return len(c.encode("utf-8", "surrogatepass"))
    if encoding == "utf-16":
        return 2 if ord(c) > 0xFFFF else 1
    return 1


def units(s: str, encoding: str) -> int:
    return sum(char_units(c, encoding) for c in s)


@dataclass
class ClientDoc:
    text: str
    encoding: str

    def valid_offsets(self) -> list[int]:
        """Offsets a position can name (not between the "\\r" and "\\n" of a line ending)."""
        out = []
        for a, b in lsp_lines(self.text):
            out.extend(range(a, b + 1))
        return out

    def position(self, offset: int) -> tuple[int, int]:
        for n, (a, b) in enumerate(lsp_lines(self.text)):
            if a <= offset <= b:
                return n, units(self.text[a:offset], self.encoding)
        raise ValueError(f"offset {offset} is inside a line ending")

    def offset(self, line: int, character: int) -> int:
        lines = lsp_lines(self.text)
        if line >= len(lines):
            return len(self.text)
        a, b = lines[line]
        used = 0
        for i in range(a, b):
            used += char_units(self.text[i], self.encoding)
            if used > character:
                return i
        return b

    def line_end_units(self, line: int) -> int:
        a, b = lsp_lines(self.text)[line]
        return units(self.text[a:b], self.encoding)

    def apply(self, start: tuple[int, int], end: tuple[int, int], new: str) -> None:
        s, e = self.offset(*start), self.offset(*end)
        self.text = self.text[:s] + new + self.text[e:]
