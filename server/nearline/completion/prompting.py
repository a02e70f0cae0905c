"""Prompt building: the file around the cursor within the budget (secrets redacted), the
repository block from the configured composer (recomposed only when its inputs change, so the
KV cache stays valid while typing), and the short prompt of a cold start.

A mixin of ``CompletionService``: it reads the service's settings, model entry, token counter,
index and recently used documents (``PromptSource`` lists them).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace
from typing import Any, NamedTuple

from nearline.completion.composers import (
    BM25_QUERY_LINES,
    COMPOSERS,
    Composer,
    ComposeRequest,
    RepoSource,
    cut_prefix,
    frame_cost,
    import_specs,
)
from nearline.completion.cursor import (
    CHARS_PER_TOKEN_BOUND,
    SECRET_MARGIN,
    Query,
    head_within,
    key_block_around,
    locate,
    window_start,
)
from nearline.completion.prompt import Prompt, PromptPart, RepoFile, file_parts, repo_parts
from nearline.config import Settings
from nearline.engine.options import context_window
from nearline.languages import language_for
from nearline.weights.catalog import ModelEntry, PromptFormat
from nearline.workspace.secrets import is_secret_path, redact_slice, secret_spans
from nearline.workspace.snapshot import replace_surrogates

# The repository block's room when the file's prefix alone overflows the budget: enough for
# the stubs of a few imported names.
CUT_REPO_TOKENS = 64


class RepoBlock(NamedTuple):
    """A document's repository block as last composed, and what it was composed for."""

    files: list[RepoFile]
    tokens: int
    key: Any


class PromptBuilding:
    """The prompt side of ``CompletionService``."""

    settings: Settings
    index: RepoSource | None
    compose_override: Composer | None
    recent_docs: OrderedDict[str, None]
    _repo_blocks: dict[str, RepoBlock]

    def model_entry(self) -> ModelEntry:
        raise NotImplementedError

    def prompt_format(self) -> PromptFormat:
        raise NotImplementedError

    def count_tokens(self, text: str) -> int:
        raise NotImplementedError

    def budget(self) -> int:
        entry = self.model_entry()
        total = self.settings.context.budget_tokens or entry.budget_tokens
        n_ctx = context_window(entry, self.settings)
        max_tokens = self.settings.completion.max_tokens
        return max(64, min(total, n_ctx - 1) - max_tokens)

    @staticmethod
    def secret_document(q: Query) -> bool:
        """The document is a secret file (``.env``, a key, credentials): nothing of it may
        reach a prompt, and it gets no completions."""
        names = [q.rel or ""]
        if q.path is not None:
            names += [q.path.name, q.path.as_posix()]
        else:
            names.append(q.uri.rsplit("/", 1)[-1])
        return any(n and is_secret_path(n) for n in names)

    def _file_window(self, q: Query, fmt: PromptFormat, budget: int) -> tuple[str, str | None]:
        """The prefix (and for FIM models the suffix) the prompt may use: a window around the
        cursor bounded by the budget, secrets redacted with context beyond its edges."""
        text = q.text
        cur = locate(text, q.line, q.col, q.offset)
        if self.secret_document(q):
            return "", ("" if fmt.has_fim else None)
        chars = budget * CHARS_PER_TOKEN_BOUND
        start = window_start(text, cur, chars)
        end = cur.offset
        if fmt.has_fim:
            end = cur.line_end
            for _ in range(self.settings.completion.suffix_lines):
                nl = text.find("\n", end)
                if nl < 0:
                    break
                nxt = text.find("\n", nl + 1)
                end = len(text) if nxt < 0 else nxt
            end = min(end, cur.offset + chars // 4)
        lo, hi = max(0, start - SECRET_MARGIN), min(len(text), end + SECRET_MARGIN)
        if (key := key_block_around(text, lo)) is not None:
            lo = key
        spans = [(a + lo, b + lo) for a, b in secret_spans(text[lo:hi])]
        # A lone surrogate (a client may send one) cannot be tokenized: one U+FFFD each keeps
        # every length the same.
        prefix = replace_surrogates(redact_slice(text, spans, start, cur.offset))
        if not fmt.has_fim:
            return prefix, None
        suffix = replace_surrogates(redact_slice(text, spans, cur.offset, end))
        return prefix, suffix

    def build_prompt(self, q: Query) -> Prompt:
        fmt = self.prompt_format()
        count = self.count_tokens
        budget = self.budget()
        # Secrets never reach a prompt, not even from the file being edited.
        prefix, suffix = self._file_window(q, fmt, budget)
        suffix_tokens = 0
        if suffix is not None:
            suffix, suffix_tokens = head_within(suffix, budget // 4, count)
        rel = q.rel or (q.path.name if q.path else q.uri.rsplit("/", 1)[-1])
        header_tokens = 2 + count(rel + "\n") + (3 if suffix is not None else 0)
        avail = max(16, budget - suffix_tokens - header_tokens)
        repo: list[RepoFile] = []
        if self._wants_repo(q):
            # The prefix may take at most its share while the composer chooses (so repository
            # files always get room), then whatever the composer left. Both cuts are stable
            # while typing: the share is fixed and the repository block is cached.
            cap = min(avail, max(16, int(budget * self.settings.context.prefix_share)))
            total = count(prefix)
            query = prefix[: prefix.rfind("\n") + 1]
            if total > cap:
                # The prefix must be cut: the block gets a fixed room (the share's, at least
                # CUT_REPO_TOKENS), whatever the history. What the prefix's cut would leave
                # varies with the cursor, and a block composed for one place and kept made
                # the same place's prompt differ between sessions: a state saved before a
                # restart then matched the new prompt in its first few tokens only.
                room = min(avail - 16, max(avail - cap, CUT_REPO_TOKENS))
                repo, used = self._repo_context(q, rel, room, room, query, exact=True)
                prefix_text, prefix_tokens, _ = cut_prefix(prefix, avail - used, count, total)
            else:
                prefix_text, prefix_tokens = prefix, total
                repo, used = self._repo_context(q, rel, avail - total, avail - cap, query)
        else:
            prefix_text, prefix_tokens, _ = cut_prefix(prefix, avail, count)
        fparts, fim = file_parts(
            fmt, rel, prefix_text, suffix, prefix_tokens=prefix_tokens, suffix_tokens=suffix_tokens
        )
        parts: list[PromptPart] = repo_parts(fmt, self._repo_name(q), repo) + fparts
        return Prompt(parts=self._counted(parts), fim=fim)

    def build_short_prompt(self, q: Query) -> Prompt:
        """The short prompt for a cold start: the same format as ``build_prompt`` (file header,
        FIM markers) with only the file around the cursor, within
        ``completion.coldPromptTokens`` (a quarter of that at most for the suffix)."""
        fmt = self.prompt_format()
        count = self.count_tokens
        budget = max(16, self.settings.completion.cold_prompt_tokens)
        prefix, suffix = self._file_window(q, fmt, budget)
        suffix_tokens = 0
        if suffix is not None:
            suffix, suffix_tokens = head_within(suffix, budget // 4, count)
        rel = q.rel or (q.path.name if q.path else q.uri.rsplit("/", 1)[-1])
        prefix_text, prefix_tokens, _ = cut_prefix(prefix, max(16, budget - suffix_tokens), count)
        parts, fim = file_parts(
            fmt, rel, prefix_text, suffix, prefix_tokens=prefix_tokens, suffix_tokens=suffix_tokens
        )
        return Prompt(parts=self._counted(parts), fim=fim)

    def _counted(self, parts: list[PromptPart]) -> list[PromptPart]:
        """Every part with its exact token count (specials are one token each)."""
        return [
            p
            if p.tokens is not None
            else replace(p, tokens=1 if p.special else self.count_tokens(p.text))
            for p in parts
        ]

    def _repo_name(self, q: Query) -> str:
        return q.root.name if q.root else "workspace"

    def _wants_repo(self, q: Query) -> bool:
        return (
            self.settings.context.composer != "file-level"
            and self.index is not None
            and q.path is not None
        )

    def _compose_key(self, composer: str, req: ComposeRequest) -> Any:
        """What the composition depends on beyond the workspace and the file: imports for
        path-distance, recent documents for ring-buffer, the lines before the cursor for bm25
        (so bm25 recomposes once per line; the others only when that input changes)."""
        if composer == "path-distance":
            return import_specs(req.query, req.language)
        if composer == "ring-buffer":
            return req.recent
        if composer == "bm25":
            return "".join(req.query.splitlines(keepends=True)[-BM25_QUERY_LINES:])
        return None

    def _repo_context(
        self, q: Query, rel: str, left: int, guaranteed: int, query: str, exact: bool = False
    ) -> tuple[list[RepoFile], int]:
        """Repository context and the tokens it takes (framing included), recomposed only when
        its inputs change (``_compose_key``) or the cached block no longer fits ``left``: never
        per keystroke, so the KV cache stays valid. ``guaranteed``: room the prefix share
        leaves however long the prefix grows. ``exact``: a block kept from another ``left`` is
        not reused, so the block depends on ``left`` alone (pass ``guaranteed`` = ``left``)."""
        composer = self.settings.context.composer
        if not self._wants_repo(q) or self.index is None or q.path is None:
            return [], 0
        cached = self._repo_blocks.get(q.uri)
        version = getattr(self.index, "version", 0)
        c = self.settings.context
        req = ComposeRequest(
            current_rel=rel,
            current_path=q.path,
            language=q.language or language_for(rel),
            budget=0,
            same_language=c.same_language,
            layout=c.layout,
            query=query,
            recent=tuple(r for r in self.recent_docs if r != rel),
        )
        key: tuple[Any, ...] = (
            composer, version, rel, c.same_language, c.prefix_share, c.layout, self.budget(),
            self._compose_key(composer, req), self.compose_override,
        )  # fmt: skip
        framing = 2 + self.count_tokens(self._repo_name(q) + "\n")
        if exact:
            key = (*key, "exact", left)
        if cached is not None and cached.key == key and cached.tokens <= left:
            return cached.files, cached.tokens
        # Leave the prefix room to grow (a few lines) before the block must be recomposed;
        # never less than the share guarantees (the block then fits however the prefix grows;
        # an exact block's whole room is guaranteed).
        headroom = 256
        room = (
            max(0, left - headroom - framing)
            if left > headroom + framing
            else max(0, left - framing)
        )
        room = max(room, min(left, guaranteed) - framing)
        compose = self.compose_override or COMPOSERS[composer]
        files = compose(replace(req, budget=room), self.index, self.count_tokens)
        used = sum(f.tokens + frame_cost(f.path, self.count_tokens) for f in files)
        block = self._repo_blocks[q.uri] = RepoBlock(files, used + (framing if files else 0), key)
        return files, block.tokens

    def prompt_tokens(self, prompt: Prompt) -> int:
        """Exact token count of the whole prompt (specials are one token each)."""
        return sum(
            (p.tokens if p.tokens is not None else self.count_tokens(p.text))
            for p in prompt.parts
            if p.text
        )
