"""A notebook cell seen as part of one file: the notebook's earlier cells are its prefix.

A cell on its own is a few lines with no imports and no definitions; the names it uses were
defined in the cells above. So a request in a cell completes against a *virtual document*: the
earlier code cells of the cell's language in order, markdown cells as comments, then the cell
itself up to its end. Cells are separated the way jupytext's "percent" format and VS Code's
interactive window write notebooks as plain files (``# %%`` and ``# %% [markdown]``), which code
models have seen in training. Later cells are left out: the suffix is the cell's own text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# Line comments by LSP language id; a language without one gets its markdown cells dropped
# rather than pasted in as code.
LINE_COMMENT = {
    "python": "#", "r": "#", "julia": "#", "ruby": "#", "shellscript": "#", "powershell": "#",
    "javascript": "//", "typescript": "//", "javascriptreact": "//", "typescriptreact": "//",
    "go": "//", "rust": "//", "java": "//", "c": "//", "cpp": "//", "csharp": "//",
    "fsharp": "//", "scala": "//", "kotlin": "//", "swift": "//", "sql": "--", "lua": "--",
    "haskell": "--",
}  # fmt: skip

MARKUP = "markup"
CODE = "code"


@dataclass(frozen=True)
class Cell:
    uri: str
    kind: str
    """``"code"`` or ``"markup"`` (LSP's NotebookCellKind, as a word)."""
    language: str
    text: str


@dataclass(frozen=True)
class CellView:
    """The virtual document for one cell and where the cell starts in it."""

    text: str
    start: int
    """Offset of the cell's first character in ``text``."""
    start_line: int
    """Line of the cell's first line in ``text``."""
    language: str


def _separator(comment: str, markdown: bool) -> str:
    return f"{comment} %% [markdown]\n" if markdown else f"{comment} %%\n"


def cell_view(cells: Sequence[Cell], uri: str) -> CellView | None:
    """The virtual document for the cell ``uri``; None if the notebook has no such code cell."""
    index = next((i for i, c in enumerate(cells) if c.uri == uri), None)
    if index is None or cells[index].kind != CODE:
        return None
    me = cells[index]
    comment = LINE_COMMENT.get(me.language)
    parts: list[str] = []
    for cell in cells[:index]:
        if cell.kind == CODE and cell.language == me.language:
            if comment:
                parts.append(_separator(comment, False))
            parts.append(cell.text.rstrip("\n") + "\n\n")
        elif cell.kind == MARKUP and comment and cell.text.strip():
            lines = cell.text.rstrip("\n").split("\n")
            parts.append(_separator(comment, True))
            parts.append("".join(f"{comment} {ln}".rstrip() + "\n" for ln in lines) + "\n")
        # Code cells of another language (a %%bash cell's shell, say) would be noise here.
    if comment and parts:
        parts.append(_separator(comment, False))
    prefix = "".join(parts)
    return CellView(prefix + me.text, len(prefix), prefix.count("\n"), me.language)
