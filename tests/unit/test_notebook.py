"""A notebook cell's virtual document: earlier cells as its prefix (completion/notebook.py)."""

from __future__ import annotations

from nearline.completion.notebook import CODE, MARKUP, Cell, cell_view


def _nb(*cells: tuple[str, str, str]) -> list[Cell]:
    return [Cell(f"cell:{i}", kind, lang, text) for i, (kind, lang, text) in enumerate(cells)]


def test_earlier_code_cells_come_first_markdown_as_comments() -> None:
    cells = _nb(
        (CODE, "python", "import pandas as pd\nframe = pd.read_csv('x.csv')"),
        (MARKUP, "markdown", "## Totals\nSum the *amount* column."),
        (CODE, "python", "total = frame["),
        (CODE, "python", "print(total)"),
    )
    view = cell_view(cells, "cell:2")
    assert view is not None
    assert view.text == (
        "# %%\nimport pandas as pd\nframe = pd.read_csv('x.csv')\n\n"
        "# %% [markdown]\n# ## Totals\n# Sum the *amount* column.\n\n"
        "# %%\ntotal = frame["
    )
    assert view.text[view.start :] == "total = frame["
    assert view.text.split("\n")[view.start_line] == "total = frame["
    # Later cells are not part of the prefix.
    assert "print(total)" not in view.text


def test_the_first_cell_is_its_own_text() -> None:
    view = cell_view(_nb((CODE, "python", "x = 1")), "cell:0")
    assert view is not None and (view.text, view.start, view.start_line) == ("x = 1", 0, 0)


def test_cells_of_another_language_and_empty_markdown_are_left_out() -> None:
    cells = _nb(
        (CODE, "shellscript", "ls -la"),
        (MARKUP, "markdown", "   \n"),
        (CODE, "python", "y = 2"),
        (CODE, "python", "y"),
    )
    view = cell_view(cells, "cell:3")
    assert view is not None
    assert "ls -la" not in view.text and "[markdown]" not in view.text
    assert view.text == "# %%\ny = 2\n\n# %%\ny"


def test_javascript_cells_use_its_comment() -> None:
    cells = _nb((MARKUP, "markdown", "Note"), (CODE, "javascript", "const a = 1"))
    view = cell_view(cells, "cell:1")
    assert view is not None and view.text == "// %% [markdown]\n// Note\n\n// %%\nconst a = 1"


def test_a_markup_cell_or_an_unknown_uri_has_no_view() -> None:
    cells = _nb((MARKUP, "markdown", "# Title"), (CODE, "python", "x"))
    assert cell_view(cells, "cell:0") is None
    assert cell_view(cells, "cell:9") is None
