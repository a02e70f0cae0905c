"""The import statements of the current file's text, as written: the modules (Python) and
relative paths (JavaScript/TypeScript) it imports, in order, and where its code after the
imports begins. Resolving them to workspace files is ``imports_py`` and ``imports_js``."""

from __future__ import annotations

import re

_PY_FROM = re.compile(
    r"^[ \t]*from[ \t]+(\.*)([\w.]*)[ \t]+import[ \t]+(?:\(([^)]*)\)|([^#\n]*))", re.M
)
_PY_IMPORT = re.compile(r"^[ \t]*import[ \t]+([\w. \t,]+)", re.M)
_JS_FROM = re.compile(
    r"""(?:\bfrom[ \t]*|\bimport[ \t]*\(?[ \t]*|\brequire[ \t]*\([ \t]*)['"](\.{1,2}/[^'"]*)['"]"""
)
JS_LANGUAGES = frozenset({"javascript", "typescript", "javascriptreact", "typescriptreact"})
_NAME = re.compile(r"[A-Za-z_]\w*")


def import_specs(query: str, language: str) -> tuple[str, ...]:
    """The modules the text imports, as written, in order: ``.a.b`` / ``pkg.mod`` (Python;
    ``from m import x`` gives ``m`` and ``m.x``, since ``x`` may be a submodule), ``./x``
    (JavaScript/TypeScript relative imports)."""
    found: list[tuple[int, str]] = []
    if language == "python":
        for m in _PY_FROM.finditer(query):
            dots, mod, group, line = m.groups()
            base = dots + mod
            found.append((m.start(), base))
            sep = "" if base.endswith(".") else "."
            names = re.sub(r"#[^\n]*", "", group) if group is not None else line
            for name in names.split(","):
                name = name.split()[0] if name.strip() else ""
                if _NAME.fullmatch(name):
                    found.append((m.start(), base + sep + name))
        for m in _PY_IMPORT.finditer(query):
            for part in m.group(1).split(","):
                words_ = part.split()
                if words_ and all(_NAME.fullmatch(w) for w in words_[0].split(".")):
                    found.append((m.start(), words_[0]))
    elif language in JS_LANGUAGES:
        found.extend((m.start(), m.group(1)) for m in _JS_FROM.finditer(query))
    found.sort(key=lambda x: x[0])  # stable: names stay after their module
    return tuple(dict.fromkeys(spec for _, spec in found))


def _past_imports(text: str) -> int:
    """Where the text after its last unindented import statement begins (0 if none)."""
    end = 0
    for pattern in (_PY_FROM, _PY_IMPORT):
        for m in pattern.finditer(text):
            if text[m.start()] not in " \t":
                end = max(end, m.end())
    return end
