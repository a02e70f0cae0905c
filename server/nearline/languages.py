"""Languages: the id of a file's language, and what the completion layer knows about each.

Language ids are LSP's where there is one (``python``, ``typescriptreact``, ``shellscript``).
``language_for`` names a file's language from its name (the index and the server use it);
``language_info`` says what gating, cleaning and the syntax check need to know about the
languages that get them, including which tree-sitter grammar package parses each. The grammars
are imported only when a tree is first needed, so this module stays a cheap leaf that every
layer may import; it imports nothing of Nearline.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CHECKED", "Language", "language_for", "language_info"]

# fmt: off
_EXT_LANG: dict[str, str] = {
    ".py": "python", ".pyi": "python", ".pyw": "python", ".pyx": "cython",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascriptreact",
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript", ".tsx": "typescriptreact",
    ".go": "go", ".rs": "rust", ".java": "java", ".kt": "kotlin", ".kts": "kotlin",
    ".scala": "scala", ".groovy": "groovy", ".gradle": "groovy",
    ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp",
    ".hh": "cpp", ".hxx": "cpp", ".ipp": "cpp", ".cu": "cuda", ".cuh": "cuda",
    ".m": "objective-c", ".mm": "objective-cpp", ".swift": "swift",
    ".cs": "csharp", ".fs": "fsharp", ".vb": "vb",
    ".rb": "ruby", ".php": "php", ".pl": "perl", ".pm": "perl", ".lua": "lua",
    ".r": "r", ".jl": "julia", ".dart": "dart", ".ex": "elixir", ".exs": "elixir",
    ".erl": "erlang", ".hrl": "erlang", ".hs": "haskell", ".ml": "ocaml", ".mli": "ocaml",
    ".clj": "clojure", ".cljs": "clojure", ".elm": "elm", ".zig": "zig", ".nim": "nim",
    ".v": "verilog", ".sv": "systemverilog", ".vhd": "vhdl", ".vhdl": "vhdl",
    ".sh": "shellscript", ".bash": "shellscript", ".zsh": "shellscript", ".fish": "fish",
    ".ps1": "powershell", ".bat": "bat", ".cmd": "bat",
    ".sql": "sql", ".graphql": "graphql", ".gql": "graphql", ".proto": "proto",
    ".html": "html", ".htm": "html", ".css": "css", ".scss": "scss", ".sass": "sass",
    ".less": "less", ".vue": "vue", ".svelte": "svelte", ".astro": "astro",
    ".json": "json", ".jsonc": "jsonc", ".json5": "json5", ".yaml": "yaml", ".yml": "yaml",
    ".toml": "toml", ".ini": "ini", ".cfg": "ini", ".conf": "ini", ".xml": "xml",
    ".ipynb": "jupyter", ".md": "markdown", ".markdown": "markdown", ".mdx": "mdx", ".rst": "restructuredtext",
    ".tex": "latex", ".txt": "text", ".csv": "csv", ".tf": "terraform", ".hcl": "hcl",
    ".nix": "nix", ".cmake": "cmake", ".mk": "makefile", ".dockerfile": "dockerfile",
}
_NAME_LANG: dict[str, str] = {
    "Makefile": "makefile", "makefile": "makefile", "GNUmakefile": "makefile",
    "Dockerfile": "dockerfile", "Containerfile": "dockerfile", "CMakeLists.txt": "cmake",
    "Jenkinsfile": "groovy", "Rakefile": "ruby", "Gemfile": "ruby", "BUILD": "starlark",
    "WORKSPACE": "starlark", "BUILD.bazel": "starlark", ".gitignore": "ignore",
}
# fmt: on


def language_for(name: str) -> str:
    """Language id for a file name (LSP ids where there is one), ``"text"``
    when unknown."""
    base = name.rsplit("/", 1)[-1]
    lang = _NAME_LANG.get(base)
    if lang is not None:
        return lang
    dot = base.rfind(".")
    if dot > 0:
        return _EXT_LANG.get(base[dot:].lower(), "text")
    return "text"


@dataclass(frozen=True)
class Language:
    """What gating, cleaning and the syntax check need to know about one language."""

    name: str
    grammar: tuple[str, str] | None
    """(module, function) giving the tree-sitter language, imported when first needed (see
    ``completion.syntax.trees``); None: cleaning only."""
    closers: str = ")]}\"':,;"
    """Besides whitespace, what may follow the cursor on its line for a model run."""
    quotes: str = "\"'"
    line_comment: tuple[str, ...] = ("//",)
    block_comment: tuple[str, str] | None = ("/*", "*/")
    word_extra: str = ""
    """Characters that continue an identifier besides letters, digits and ``_``."""
    newline_ends_statement: bool = False
    """A line ending in an operator outside brackets is broken (Python), not continued."""
    multiline_quotes: str = ""
    """Quotes whose strings may span lines (JS template literals, Go raw strings)."""
    trailing_comma: bool = True
    """``f(a,)`` parses; where it does not (C, C++, Java) a window ending in ``,`` gets a hole."""

    @property
    def checked(self) -> bool:
        return self.grammar is not None


# `>` closes generics and templates (and C's #include <...>).
_C_LIKE = ")]}>\"':,;"
CHECKED: dict[str, Language] = {
    "python": Language(
        "python",
        ("tree_sitter_python", "language"),
        line_comment=("#",),
        block_comment=None,
        newline_ends_statement=True,
    ),
    "javascript": Language(
        "javascript",
        ("tree_sitter_javascript", "language"),
        closers=")]}\"'`:,;",
        quotes="\"'`",
        word_extra="$",
        multiline_quotes="`",
    ),
    "typescript": Language(
        "typescript",
        ("tree_sitter_typescript", "language_typescript"),
        closers=")]}>\"'`:,;",
        quotes="\"'`",
        word_extra="$",
        multiline_quotes="`",
    ),
    "go": Language(
        "go",
        ("tree_sitter_go", "language"),
        closers=")]}\"'`:,;",
        quotes="\"'`",
        multiline_quotes="`",
    ),
    # Rust's ' starts lifetimes as well as characters: only " delimits strings on a line.
    "rust": Language("rust", ("tree_sitter_rust", "language"), quotes='"', closers=_C_LIKE),
    "java": Language(
        "java", ("tree_sitter_java", "language"), closers=_C_LIKE, trailing_comma=False
    ),
    "c": Language("c", ("tree_sitter_c", "language"), closers=_C_LIKE, trailing_comma=False),
    "cpp": Language("cpp", ("tree_sitter_cpp", "language"), closers=_C_LIKE, trailing_comma=False),
}
CHECKED["javascriptreact"] = CHECKED["javascript"]
CHECKED["typescriptreact"] = Language(
    "typescriptreact",
    ("tree_sitter_typescript", "language_tsx"),
    closers=")]}>\"'`:,;",
    quotes="\"'`",
    word_extra="$",
    multiline_quotes="`",
)


def language_info(language: str | None) -> Language | None:
    """What gating and the check know about a language id; None: cleaning only."""
    return CHECKED.get(language or "")
