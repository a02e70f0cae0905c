"""Syntax awareness: when to complete, what to cut from a suggestion, what to reject.

Three steps around the model, none of which knows about models:

* gating (``gate``): no model run in the middle of a word, or when the rest of the line is more
  than closing brackets, quotes, ``:``/``,``/``;`` and whitespace; completions in comments and
  strings can be switched off;
* cleaning (``clean``): cut at the end of the line, drop what repeats the text after the cursor,
  drop trailing whitespace, reject empty, punctuation-only and repeated-line suggestions;
* checking (``check``): parse the enclosing statement's window with the suggestion applied,
  with tree-sitter, and reject it if it adds ERROR or MISSING nodes, closes a bracket it has no
  opener for, or ends the line leaving brackets it opened.

Beside them: ``lexer`` (brackets outside strings and comments, for all three), ``trees``
(grammars, parsers, what a tree says at an offset) and ``docs`` (per-document trees kept in
step with the editor). What each language gets is in ``nearline.languages``: Python is
first-class; JavaScript, TypeScript, Go, Rust, Java, C and C++ get gating, cleaning and the
check; every other language gets cleaning only. Everything here runs on the caller's thread; a
``SyntaxDocs`` belongs to one thread.
"""

from nearline.completion.syntax.check import Check, check_window, parses_in_window
from nearline.completion.syntax.clean import (
    Cleaned,
    clean,
    clean_suggestion,
    is_punctuation,
    neighbours,
    neighbours_at,
)
from nearline.completion.syntax.docs import MAX_TREE_BYTES, SyntaxDocs
from nearline.completion.syntax.gate import gate_reason, line_scope, should_complete
from nearline.completion.syntax.trees import UnsupportedLanguage, has_grammar, ts_language

__all__ = [
    "MAX_TREE_BYTES",
    "Check",
    "Cleaned",
    "SyntaxDocs",
    "UnsupportedLanguage",
    "check_window",
    "clean",
    "clean_suggestion",
    "gate_reason",
    "has_grammar",
    "is_punctuation",
    "line_scope",
    "neighbours",
    "neighbours_at",
    "parses_in_window",
    "should_complete",
    "ts_language",
]
