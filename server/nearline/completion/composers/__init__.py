"""Which text goes into the prompt: the current file's prefix (and suffix) under a token budget,
and repository context chosen by a composer.

Composers (``context.composer``), each ``(ComposeRequest, RepoSource, count) -> [RepoFile]``
with the file to put nearest the current one last:

* ``file-level`` — the file prefix only (the research baseline);
* ``path-distance`` (the default) — the files the current file imports (Python ``import`` /
  ``from … import``, relative or absolute, found by path in the workspace; JS/TS relative
  imports) nearest of all: a stub of the names imported from a module (their signatures, bodies
  replaced by ``...``), a module imported whole goes in whole (or as its stub when it does not
  fit); then the other files by path distance, farthest first and nearest last;
* ``ring-buffer`` — llama.vim's extra context (autoload/llama.vim: ``s:pick_chunk``,
  ``s:chunk_sim``, ``s:ring_update``, defaults ``ring_n_chunks`` 16, ``ring_chunk_size`` 64): a
  ring of at most 16 chunks from the recently used documents (``ComposeRequest.recent``), the
  most recent nearest; a document shorter than 63 lines is one chunk, a longer one gives 33 lines
  (chunk_size/2 + 1, as llama.vim's inclusive slice); chunks more than 90% alike evict the older
  one, and chunks more than 50% alike the last 33 lines before the cursor are dropped (as
  llama.vim does before each request). llama.vim takes a chunk around the cursor, starting at a
  random line, when a buffer is entered, left or saved, on yanks and after completions; the
  server knows no cursors in other files, so a document's chunk is taken from its top;
* ``bm25`` — CrossCodeEval's retrieval setting: same-language files cut into windows of 20
  lines every 10, ranked by Okapi BM25 against the last 24 lines before the cursor; the top 5
  (windows of one file do not overlap), at most 512 tokens (the one that crosses the cap is cut
  to its end), the best nearest the current file.
  Its block changes with the lines before the cursor: it is recomposed once per line (the
  others only when the workspace, the imports or the recent documents change), so the KV cache
  is re-read more often.

Budget: ``budget`` tokens in all (the service's ``build_prompt``). While repository context is
available the prefix may take at most ``context.prefixShare`` of the budget (cut from the top at
a line boundary, in steps of ``PREFIX_CUT_STEP`` lines) while the composer fills the rest; what
the composer leaves goes back to the prefix (1.0, the default: the prefix first). Repository files
fill their room nearest-first; the last one that does not fit is cut at a line boundary,
keeping its end (the part nearest to what follows it in the prompt).

Model-free, at a 1K budget, on the lines of click, attrs and pluggy that use a name defined at
the top level of another project file (and not bound in their own), the share whose name is in
the repository part of the prompt is what these choices rest on: putting the imports first and
leaving the prefix only a share of the budget each raise it, the two together most; file-level
never has it; bm25 and ring-buffer have it more often than path-distance with the prefix first,
less often than with the imports first (the figures: CHANGELOG).

KV cache: the repository block is recomposed only when what it depends on changes (see the
service's ``_compose_key``): the workspace, the imports (path-distance), the recent documents
(ring-buffer), the lines before the cursor (bm25). Choices that look at the text before the
cursor beyond that (which imported names were used last, the ring buffer's eviction of chunks
like it) are made when the block is composed and kept until it is recomposed.

Where each part lives: ``base`` (the request, the workspace protocol, budget fitting and path
distance), ``imports`` (the import statements of a text), ``imports_py`` and ``imports_js``
(resolving them to workspace files, re-exports, stubs), one module per composer
(``path_distance_composer``, ``ring_buffer``, ``bm25``) and ``registry`` (names to functions).
This package re-exports what its callers use.
"""

from nearline.completion.composers.base import (
    PREFIX_CUT_STEP,
    Composer,
    ComposeRequest,
    CountTokens,
    FileLike,
    RepoSource,
    _candidates,
    cut_prefix,
    frame_cost,
    path_distance,
    tail_lines_within,
)
from nearline.completion.composers.bm25 import (
    BM25_B,
    BM25_K1,
    BM25_MAX_FILES,
    BM25_MAX_TOKENS,
    BM25_QUERY_LINES,
    BM25_STRIDE,
    BM25_TOP,
    BM25_WINDOW,
    Snippet,
    bm25_scores,
    code_tokens,
    compose_bm25,
    snippets_of,
)
from nearline.completion.composers.imports import JS_LANGUAGES, import_specs
from nearline.completion.composers.imports_js import (
    _js_stub,
    follow_js_reexports,
    is_require,
    js_declarations,
    js_defined_names,
    js_header,
    js_import_names,
    js_outline,
    parse_js,
    resolve_js_import,
    resolve_js_imports,
)
from nearline.completion.composers.imports_py import (
    defined_names,
    follow_reexports,
    python_outline,
    resolve_imports,
)
from nearline.completion.composers.path_distance_composer import compose_path_distance, outline
from nearline.completion.composers.registry import COMPOSERS, compose_file_level, composer_for
from nearline.completion.composers.ring_buffer import (
    RING_CHUNK_LINES,
    RING_CHUNKS,
    RING_PIECE,
    chunk_sim,
    compose_ring_buffer,
)

__all__ = [
    "BM25_B",
    "BM25_K1",
    "BM25_MAX_FILES",
    "BM25_MAX_TOKENS",
    "BM25_QUERY_LINES",
    "BM25_STRIDE",
    "BM25_TOP",
    "BM25_WINDOW",
    "COMPOSERS",
    "JS_LANGUAGES",
    "PREFIX_CUT_STEP",
    "RING_CHUNKS",
    "RING_CHUNK_LINES",
    "RING_PIECE",
    "ComposeRequest",
    "Composer",
    "CountTokens",
    "FileLike",
    "RepoSource",
    "Snippet",
    "_candidates",
    "_js_stub",
    "bm25_scores",
    "chunk_sim",
    "code_tokens",
    "compose_bm25",
    "compose_file_level",
    "compose_path_distance",
    "compose_ring_buffer",
    "composer_for",
    "cut_prefix",
    "defined_names",
    "follow_js_reexports",
    "follow_reexports",
    "frame_cost",
    "import_specs",
    "is_require",
    "js_declarations",
    "js_defined_names",
    "js_header",
    "js_import_names",
    "js_outline",
    "outline",
    "parse_js",
    "path_distance",
    "python_outline",
    "resolve_imports",
    "resolve_js_import",
    "resolve_js_imports",
    "snippets_of",
    "tail_lines_within",
]
