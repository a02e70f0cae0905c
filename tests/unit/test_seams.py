"""The package's seams (../shared/DESIGN.md, README "Architecture"), enforced.

A module's place says what it may import. The walk reads every import statement of every
module under ``server/nearline`` — at the top, inside functions, under ``TYPE_CHECKING`` —
so a lazy import cannot slip across a seam either.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "server" / "nearline"

OURS = ("lsp", "completion", "engine", "workspace", "weights", "tools", "bench", "cli")
LSP_LIBS = ("pygls", "lsprotocol")
MODEL_RUNTIME = ("llama_cpp",)

# Where a module lives -> what it must never import. Names are dotted prefixes: ``nearline.lsp``
# forbids the package and everything under it.
NEVER: dict[str, tuple[str, ...]] = {
    "lsp": ("nearline.tools", "nearline.bench", "nearline.cli", *MODEL_RUNTIME),
    "completion": (
        "nearline.lsp",
        "nearline.tools",
        "nearline.bench",
        "nearline.cli",
        *LSP_LIBS,
        *MODEL_RUNTIME,
    ),
    "engine": (
        "nearline.lsp",
        "nearline.completion",
        "nearline.workspace",
        "nearline.tools",
        "nearline.bench",
        "nearline.cli",
        *LSP_LIBS,
    ),
    "workspace": (
        "nearline.lsp",
        "nearline.completion",
        "nearline.engine",
        "nearline.weights",
        "nearline.tools",
        "nearline.bench",
        "nearline.cli",
        *LSP_LIBS,
        *MODEL_RUNTIME,
        "tokenizers",
    ),
    "weights": (*tuple(f"nearline.{p}" for p in OURS if p != "weights"), *LSP_LIBS, *MODEL_RUNTIME),
    # The shared leaves every layer may use must not pull a layer in with them.
    "config.py": (*tuple(f"nearline.{p}" for p in OURS), *LSP_LIBS, *MODEL_RUNTIME),
    "languages.py": (*tuple(f"nearline.{p}" for p in OURS), *LSP_LIBS, *MODEL_RUNTIME),
    "tools": ("nearline.bench", *MODEL_RUNTIME),
}


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """Every module ``path`` imports, as absolute dotted names, with its line."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    me = _module_name(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            found.append((node.lineno, mod))
            # ``from nearline import completion`` imports the subpackage too.
            found.extend((node.lineno, f"{mod}.{alias.name}") for alias in node.names)
    return found


def violations(root: Path = PACKAGE) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        rules = NEVER.get(path.relative_to(root).parts[0], ())
        seen: set[tuple[int, str]] = set()  # one report per statement and rule
        for line, mod in imports_of(path, root):
            for banned in rules:
                if (mod == banned or mod.startswith(banned + ".")) and (line, banned) not in seen:
                    seen.add((line, banned))
                    out.append(f"{path.relative_to(root)}:{line} imports {mod} ({banned})")
    return out


def test_no_import_crosses_a_seam_the_wrong_way() -> None:
    assert violations() == []


def test_every_module_lives_in_a_known_place() -> None:
    # A new top-level module or package must be given its rules here, not slip past them.
    known = {*NEVER, "bench", "cli.py", "__init__.py", "__main__.py", "py.typed", "_data"}
    places = {p.name for p in PACKAGE.iterdir() if not p.name.startswith((".", "__pycache__"))}
    assert places <= known, places - known


@pytest.mark.parametrize(
    ("place", "source", "expected"),
    [
        ("engine", "from nearline.completion.service import Query\n", "nearline.completion"),
        ("engine", "def f():\n    from ..lsp import server\n", "nearline.lsp"),
        ("workspace", "import llama_cpp\n", "llama_cpp"),
        ("workspace", "from nearline import engine\n", "nearline.engine"),
        ("completion", "from pygls.workspace import TextDocument\n", "pygls"),
        ("weights", "from nearline.config import Settings\n", None),
    ],
)
def test_the_walk_sees_a_crossing(
    tmp_path: Path, place: str, source: str, expected: str | None
) -> None:
    """The checker itself can fail: a planted import in a copy of the layout is caught."""
    root = tmp_path / "nearline"
    (root / place).mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / place / "__init__.py").write_text("")
    (root / place / "planted.py").write_text(source)
    found = violations(root)
    if expected is None:
        assert found == []
    else:
        assert len(found) == 1 and found[0].endswith(f"({expected})"), found
