"""The request lifecycle: gate, compose, generate, clean — for the LSP, the CLI and benchmarks.

``CompletionService`` knows nothing of pygls: callers hand it a document's text and a cursor
(0-based line, column in code points). One model worker thread owns the engine; requests await
it, and cancellation reaches the engine through a ``threading.Event`` checked between tokens.
Per document only the newest request runs (a newer one cancels the older), the debounce applies
only when the model would actually run, and a user typing the start of the shown suggestion is
answered from it without the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

from nearline.completion.composers import (
    Composer,
    CountTokens,
    RepoSource,
)
from nearline.completion.cursor import (
    LINE_CONTEXT,
    OutOfRange,
    Query,
    after_enter,
    locate,
    redacted_head,
    split_at_cursor,
)
from nearline.completion.prompting import PromptBuilding, RepoBlock
from nearline.completion.syntax import (
    SyntaxDocs,
    clean,
    clean_suggestion,
    gate_reason,
    neighbours_at,
)
from nearline.config import Settings
from nearline.engine.base import Engine, GenerationRequest, GenerationResult
from nearline.engine.factory import (
    EngineFactory,
    auto_choice,
    create_engine,
    is_auto,
    resolve_model,
)
from nearline.engine.formats import choose_format
from nearline.engine.worker import WorkerCrashed
from nearline.languages import language_info
from nearline.weights.catalog import ModelEntry, PromptFormat, load_catalog
from nearline.weights.download import ModelError
from nearline.workspace.index import language_for

__all__ = ["CompletionService", "OutOfRange", "Query", "clean_suggestion", "split_at_cursor"]

log = logging.getLogger(__name__)

MessageSink = Callable[[str, str], None]  # (level: "error"|"warning"|"info", text)
ServiceState = Literal["idle", "loading", "ready", "error"]
Source = Literal["none", "model", "typing-through", "gated", "unavailable", "cancelled", "error"]
"""Where an answer came from: the model; a suggestion already on screen (typed through, or the
next line computed ahead); nowhere: the request was gated, the model unavailable, the request
cancelled or superseded, or the engine failed."""


@dataclass
class Suggestion:
    text: str
    """Text to insert at the cursor; completes the line, never contains a newline."""
    id: str = ""
    """Stable while the user types through it: acceptance statistics count it once."""
    parses: bool | None = None
    """Whether it parses in its statement's window; None where that was not checked (no
    grammar for the language, a docstring, typing-through)."""


@dataclass
class Outcome:
    suggestions: list[Suggestion] = field(default_factory=list)
    source: Source = "none"
    result: GenerationResult | None = None
    prompt_tokens: int = 0
    latency_s: float = 0.0
    reason: str | None = None
    """Why the model did not run when ``source`` is "gated" (see ``syntax.gate_reason``)."""


@dataclass
class Counters:
    """What the service did since it started (``stats`` in ``nearline.status``)."""

    model: int = 0
    typing_through: int = 0
    cancelled: int = 0
    gated: int = 0
    warmups: int = 0
    # Suggestions from model runs: dropped by cleaning; looked at by the syntax check, found
    # broken, dropped for it (completion.syntaxCheck); shown, of which checked and parsing (the
    # parse-valid rate of shown suggestions is their ratio).
    clean_rejected: int = 0
    syntax_checked: int = 0
    syntax_invalid: int = 0
    syntax_rejected: int = 0
    shown: int = 0
    shown_checked: int = 0
    shown_parsed: int = 0
    speculated: int = 0
    """Answers from next-line speculation."""
    crashes: int = 0
    untriggered: int = 0
    """Requests not asked for by the user in ``completion.trigger: manual`` (no model run)."""
    language_off: int = 0
    """Requests in a language switched off (``completion.languages`` / ``disabledLanguages``)."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


# The short prompt is used while the full prompt has more than this many times the short
# prompt's tokens left to read. At 1, no first answer reads more than a cold short prompt
# would: the request that switches to the full prompt reads at most as much.
COLD_GAIN = 1
# The KV states of short prompts are kept apart from their document's full prompt (the engine
# keeps one state per key): answering from the short prompt then never discards what the
# background read of the full prompt has done so far.
SHORT_DOC = "#nearline-short"


def wants_short_prompt(cached: int, total: int, short_tokens: int) -> bool:
    """Whether a request should be answered from the short prompt: the full prompt (``total``
    tokens) has more than COLD_GAIN x ``short_tokens`` tokens that no saved state holds
    (``cached``: its longest prefix in the KV cache, a saved document state or on disk)."""
    return short_tokens > 0 and total - cached > COLD_GAIN * short_tokens


# A background read of a full prompt after an answer from the short prompt (a warm-up, or a
# speculation, whose prompt is the full one) starts only once no request came for this long.
# While the user types on, each keystroke would otherwise switch the KV cache from the short
# prompt's state to the full prompt's and back, and start a batch only to abort it.
BACKGROUND_IDLE_S = 0.25

# Recently used documents remembered for the ring-buffer composer.
RECENT_DOCS = 32


class ShownAt(NamedTuple):
    """Where suggestions were shown: the cursor's line, and that line up to the cursor."""

    line: int
    before: str


class Shown(NamedTuple):
    text: str
    id: str


class NextLine(NamedTuple):
    """The line after a suggestion, computed ahead as if it were accepted (next-line
    speculation)."""

    above: str
    """The suggestion's line as it reads once the suggestion is accepted."""
    text: str
    """The line the model expects next."""
    id: str


@dataclass
class _DocState:
    seq: int = 0
    cancel: threading.Event | None = None
    # Typing-through: what the cursor's line looked like when suggestions were made.
    shown: OrderedDict[ShownAt, list[Shown]] = field(default_factory=OrderedDict)
    # Next-line speculation, by the line it completes.
    nextline: dict[int, NextLine] = field(default_factory=dict)


class _Turn(NamedTuple):
    """One request's place in its document: superseded once a newer request comes."""

    doc: _DocState
    seq: int
    cancel: threading.Event

    @property
    def superseded(self) -> bool:
        return self.doc.seq != self.seq


class CompletionService(PromptBuilding):
    def __init__(
        self,
        settings: Settings,
        engine_factory: EngineFactory | None = None,
        *,
        index: RepoSource | None = None,
        count_tokens: CountTokens | None = None,
        on_message: MessageSink | None = None,
        on_generating: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.settings = settings
        # (uri, True) when a model run starts for a request, (uri, False) when it ends: the
        # LSP layer shows it ("generating").
        self._on_generating = on_generating or (lambda uri, running: None)
        self._engine_factory = engine_factory or create_engine
        self.index = index
        self._count_override = count_tokens
        self._count: CountTokens | None = count_tokens
        self._on_message = on_message or (lambda level, text: None)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.exact_tokens = count_tokens is not None  # an injected counter is taken as exact
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nearline-model")
        self.engine: Engine | None = None
        self.state: ServiceState = "idle"
        self.error: str | None = None
        self._load_task: asyncio.Future[None] | None = None
        self._docs: dict[str, _DocState] = {}
        self._repo_blocks: dict[str, RepoBlock] = {}
        self._reported: set[str] = set()
        self.inflight = 0  # generations submitted to the model worker and not finished
        # Warm-up runs at the lowest priority: every real request sets this to preempt it.
        self._warm_cancel = threading.Event()
        # The model request submitted last, in any document (see complete()).
        self._model_cancel: threading.Event | None = None
        self._next_id = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self.stats = Counters()
        # Per-document syntax trees, kept in step with the editor's changes (see lsp.py).
        self.syntax = SyntaxDocs()
        # Recent answers, for benchmarks and the status command.
        self.recent: deque[dict[str, Any]] = deque(maxlen=2000)
        # Workspace-relative paths of recently used documents, most recent last (note_used).
        self.recent_docs: OrderedDict[str, None] = OrderedDict()
        # A composer that replaces the configured one (the quality benchmark's oracle, which
        # knows the line to be completed); None in the server.
        self.compose_override: Composer | None = None
        # Every request answered from the cold-start short prompt (the quality benchmark's
        # short-N variants, which measure what it costs); False in the server.
        self.short_prompt_only = False
        # When the last completion request came (monotonic), and the newest background read
        # waiting for a pause in the typing (BACKGROUND_IDLE_S): an older one gives way.
        self._last_request = 0.0
        self._background_seq = 0
        # What the model thread is running ("request", "speculation", "warm-up"), for the
        # record of a request that had to wait for it.
        self._running: str | None = None

    # -- model lifecycle ----------------------------------------------------------------
    def model_entry(self) -> ModelEntry:
        return load_catalog().get(self.settings.model.id)

    def model_choice(self) -> dict[str, Any] | None:
        """What ``model.id: auto`` chose and why; None when a model was named."""
        if not is_auto(self.settings.model) or self.settings.engine.backend != "local":
            return None
        return auto_choice(self.settings).as_dict()

    def prompt_format(self) -> PromptFormat:
        ms = self.settings.model
        return choose_format(self.model_entry(), ms.path, ms.format)[0]

    def _report_once(self, level: str, text: str) -> None:
        if text not in self._reported:
            self._reported.add(text)
            self._notify(level, text)

    def _notify(self, level: str, text: str) -> None:
        """Tell the user, from any thread: the message sink writes to the client, which belongs
        to the event loop's thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            self._on_message(level, text)
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._on_message(level, text)
        else:
            loop.call_soon_threadsafe(self._on_message, level, text)

    def expect_start(self) -> None:
        """``start()`` follows soon (the server asks the client for its settings first):
        requests meanwhile wait for the model as they do while it loads."""
        self.state = "loading"
        self._load_task = asyncio.get_running_loop().create_future()

    async def start(self) -> None:
        """Load the model in the worker; safe to call again after settings change."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.state, self.error = "loading", None
        expected, self._load_task = (
            self._load_task,
            loop.run_in_executor(self._worker, self._load_blocking),
        )
        try:
            await self._load_task
        finally:
            if expected is not None and not expected.done():
                expected.set_result(None)  # what waited for expect_start waits no longer

    def _load_blocking(self) -> None:
        old, self.engine = self.engine, None
        if old is not None:
            old.close()
        try:
            self.engine = self._engine_factory(self.settings)
            self.state = "ready"
            self._reported.clear()
            if self._count_override is None:
                # The model may have changed with the settings: count with its vocabulary.
                self._count = self._make_counter()
                self._note_estimated_budgets()
        except ModelError as exc:
            self.state, self.error = "error", str(exc)
            self._report_once("error", f"Nearline: {exc}")
        except Exception as exc:  # a broken GGUF makes llama.cpp raise ValueError and the like
            self.state = "error"
            self.error = f"could not load the model: {exc}"
            log.exception("model load failed")
            self._report_once("error", f"Nearline: {self.error}")

    def _make_counter(self) -> CountTokens:
        """Exact counts with the model's own vocabulary through HF tokenizers, built from the
        GGUF without loading the model (so the index and the composer can count before the model
        is ready). An over-estimate when the file is unusable: budgets stay safe."""
        from nearline.engine.tokens import ApproxCounter, load_counter

        try:
            path: Path | None = resolve_model(self.settings)[1]
        except KeyError:
            path = None  # an unknown model id is reported when the model loads
        self.exact_tokens = not isinstance(counter := load_counter(path), ApproxCounter)
        return counter.count

    def _note_estimated_budgets(self) -> None:
        """With a remote engine the model's GGUF need not be here, and without it budgets are
        estimated (on the safe side): say once how to make them exact."""
        if self.settings.engine.backend == "local" or self.exact_tokens:
            return
        if self.settings.model.path:
            how = f"model.path ({self.settings.model.path}) is not a readable GGUF file"
        else:
            entry = self.model_entry()
            how = (
                f"run `nearline models pull {entry.id}`, or point model.path at a GGUF of the same "
                "model family (only its vocabulary is read; generation stays on the server)"
            )
        self._report_once(
            "info",
            "Nearline: prompt budgets are estimated because the model's vocabulary is not on "
            f"this machine. For exact budgets {how}.",
        )

    def count_tokens(self, text: str) -> int:
        if self._count is None:
            self._count = self._count_override or self._make_counter()
        return self._count(text)

    async def wait_ready(self) -> bool:
        if self._load_task is not None:
            await asyncio.shield(self._load_task)
        return self.state == "ready"

    def close(self) -> None:
        # Nothing running on the model thread may hold up the engine's close (and exit).
        self._warm_cancel.set()
        for st in self._docs.values():
            if st.cancel is not None:
                st.cancel.set()
        engine, self.engine = self.engine, None
        if engine is not None:
            self._worker.submit(engine.close)
        self._worker.shutdown(wait=False, cancel_futures=True)

    def forget(self, uri: str) -> None:
        self.syntax.forget(uri)
        self._repo_blocks.pop(uri, None)
        st = self._docs.pop(uri, None)
        if st is not None and st.cancel is not None:
            st.cancel.set()

    def note_used(self, rel: str | None) -> None:
        """A document was opened, focused or completed in: the most recently used goes last
        (the ring-buffer composer takes its chunks from these)."""
        if not rel:
            return
        self.recent_docs.pop(rel, None)
        self.recent_docs[rel] = None
        while len(self.recent_docs) > RECENT_DOCS:
            self.recent_docs.popitem(last=False)

    # -- completion ----------------------------------------------------------------------
    async def complete(self, q: Query) -> Outcome:
        """Answer ``q`` from a suggestion on screen (typed through, or the next line computed
        ahead of its acceptance); else, unless gated, from the model once it is loaded, its
        lines cleaned and checked."""
        t0 = time.perf_counter()
        self._last_request = time.monotonic()
        if not self.settings.completion.enabled:
            return Outcome(source="gated")
        if not self.language_enabled(q):
            self.stats.language_off += 1
            return Outcome(source="gated", reason="language off")
        cur = locate(q.text, q.line, q.col, q.offset)
        self.note_used(q.rel)
        # Cleaning and typing-through need only the cursor's surroundings, not a 2 MB line.
        before = q.text[max(cur.line_start, cur.offset - LINE_CONTEXT) : cur.offset]
        after = q.text[cur.offset : min(cur.line_end, cur.offset + LINE_CONTEXT)]
        turn = self._take_turn(q.uri)
        if hits := self._from_screen(turn.doc, q, before, after):
            self.stats.typing_through += 1
            self.recent.append({"source": "typing-through", "evaluated": 0})
            return Outcome(hits, "typing-through", latency_s=time.perf_counter() - t0)
        language = q.language or language_for(q.rel or q.uri)
        if (reason := self._gate(q, language, before, after)) is not None:
            self.stats.gated += 1
            return Outcome(source="gated", reason=reason)
        if not await self._model_ready():
            return Outcome(source="unavailable")
        result = await self._generate(q, turn)
        if result is None:
            return Outcome(source="cancelled")
        latency_s = time.perf_counter() - t0
        return self._conclude(q, turn, language, before, after, result, latency_s)

    def _take_turn(self, uri: str) -> _Turn:
        """Start a request in document ``uri``: the newest request per document wins, so the
        one in flight there is ended."""
        st = self._docs.setdefault(uri, _DocState())
        if st.cancel is not None:
            st.cancel.set()
        st.seq += 1
        st.cancel = threading.Event()
        return _Turn(st, st.seq, st.cancel)

    def _from_screen(self, st: _DocState, q: Query, before: str, after: str) -> list[Suggestion]:
        """An answer without the model: the rest of a suggestion the user is typing through, or
        the next line computed ahead for an accepted one."""
        hits = self._typing_through(st, q, before, after)
        if not hits and (nextline := self._next_line(st, q, before, after)) is not None:
            hits = [nextline]
        return hits

    def _typing_through(self, st: _DocState, q: Query, before: str, after: str) -> list[Suggestion]:
        for (line, shown_before), shown in reversed(st.shown.items()):
            if line != q.line or not before.startswith(shown_before):
                continue
            typed = before[len(shown_before) :]
            if not typed:
                continue
            hits = []
            for suggestion, sid in shown:
                if suggestion.startswith(typed) and len(typed) < len(suggestion):
                    rest = clean_suggestion(suggestion[len(typed) :], before, after)
                    if rest:
                        hits.append(Suggestion(rest, sid))
            if hits:
                return hits
        return []

    def _remember(
        self, st: _DocState, q: Query, before: str, suggestions: list[Suggestion]
    ) -> None:
        key = ShownAt(q.line, before)
        st.shown[key] = [Shown(s.text, s.id) for s in suggestions]
        st.shown.move_to_end(key)
        while len(st.shown) > 32:
            st.shown.popitem(last=False)

    def _next_line(self, st: _DocState, q: Query, before: str, after: str) -> Suggestion | None:
        """The line after an accepted suggestion, computed while the user was reading it."""
        ahead = st.nextline.get(q.line)
        if ahead is None or q.line == 0 or after.strip():
            return None
        cur = locate(q.text, q.line, q.col, q.offset)
        prev_start = q.text.rfind("\n", 0, cur.line_start - 1) + 1
        prev = q.text[prev_start : cur.line_start - 1].rstrip("\r")
        if prev != ahead.above or not ahead.text.startswith(before):
            return None
        rest = clean_suggestion(ahead.text[len(before) :], before, after)
        if not rest:
            return None
        suggestion = Suggestion(rest, ahead.id)
        # From here on it is an ordinary suggestion on screen: typing through it works as usual.
        self._remember(st, q, before, [Suggestion(ahead.text[len(before) :], ahead.id)])
        self.stats.speculated += 1
        return suggestion

    def _gate(self, q: Query, language: str, before: str, after: str) -> str | None:
        """Why the model should not run here, or None: a secret file (a cheap look at the name,
        so it goes first), else ``syntax.gate_reason`` (which may parse the document)."""
        if self.secret_document(q):
            return "secret file"
        c = self.settings.completion
        scope = None
        if language_info(language) is not None and not (c.in_comments and c.in_strings):
            try:
                scope = self.syntax.scope(q.uri, language, q.text, q.line, q.col)
            except Exception:
                log.exception("syntax scope failed")
        return gate_reason(
            language,
            before,
            after,
            scope=scope,
            in_comments=c.in_comments,
            in_strings=c.in_strings,
        )

    async def _model_ready(self) -> bool:
        """Whether the model can run, once a load in progress has finished."""
        if self.state == "loading":
            await self.wait_ready()
        return self.state == "ready" and self.engine is not None

    def _request(self, q: Query, candidates: int = 1, short: bool = False) -> GenerationRequest:
        """The model request for ``q``'s prompt, or its short prompt (raises OutOfRange)."""
        c = self.settings.completion
        prompt = self.build_short_prompt(q) if short else self.build_prompt(q)
        return GenerationRequest(
            segments=prompt.segments(),
            max_tokens=c.max_tokens,
            timeout_s=c.timeout_ms / 1000,
            doc=q.uri + SHORT_DOC if short else q.uri,
            candidates=candidates,
        )

    def _short_candidate(
        self, q: Query, engine: Engine | None
    ) -> Callable[[], GenerationRequest] | None:
        """What builds the short-prompt request to fall back on when the full prompt turns out
        cold (only then: composing it costs milliseconds), or None: the setting is off, or the
        engine cannot tell what it holds (a remote server)."""
        if self.settings.completion.cold_prompt_tokens <= 0:
            return None
        if getattr(engine, "cached_prefix", None) is None:
            return None
        candidates = self.settings.completion.candidates
        return lambda: self._request(q, candidates, short=True)

    def _cold_start(
        self,
        engine: Engine,
        full: GenerationRequest,
        short: Callable[[], GenerationRequest] | None,
    ) -> GenerationRequest:
        """The cold-start step, on the model thread (the engine's KV cache is only known
        there, after a preempted warm-up stopped): the short prompt when no saved state holds
        most of the full one (``wants_short_prompt``), else the full prompt."""
        if short is None:
            return full
        if self.short_prompt_only:
            return short()
        try:
            held = engine.cached_prefix(full.segments, full.doc)  # type: ignore[attr-defined]
        except (WorkerCrashed, ModelError):
            raise
        except Exception:
            log.exception("asking the engine what it holds failed")
            return full
        if held is None:
            return full
        cached, total = held
        if wants_short_prompt(cached, total, self.settings.completion.cold_prompt_tokens):
            try:
                return short()
            except OutOfRange:
                return full
        return full

    async def _generate(self, q: Query, turn: _Turn) -> GenerationResult | None:
        """After the debounce, run the model on ``q``'s prompt; None when a newer request in
        the document came meanwhile."""
        debounce = self.settings.completion.debounce_ms / 1000
        try:
            if debounce > 0:
                await asyncio.sleep(debounce)
            if turn.superseded:
                return None
            req = self._request(q, self.settings.completion.candidates)
            engine = self.engine
            short = self._short_candidate(q, engine)
            loop = asyncio.get_running_loop()
            self._warm_cancel.set()
            # One person types in one place: a model request supersedes the older ones in
            # every document, not just its own. Otherwise requests from documents the user has
            # left queue up on the single model worker, each behind the others (the soak
            # benchmark had answers waiting minutes, and some forever).
            if self._model_cancel is not None:
                self._model_cancel.set()
            self._model_cancel = turn.cancel
            submitted = time.perf_counter()
            waited_on = self._running
            fut = loop.run_in_executor(
                self._worker, self._run_engine, engine, req, turn.cancel, short
            )
            self.inflight += 1
            self._on_generating(q.uri, True)
            try:
                result = await fut
            finally:
                self.inflight -= 1
                self._on_generating(q.uri, False)
            # Time spent before the engine started on it: the model thread was finishing a
            # warm-up, a speculation or an older request (bench latency's breakdown reads it).
            result.extra.setdefault(
                "wait_s", max(0.0, time.perf_counter() - submitted - result.total_s)
            )
            if waited_on is not None:
                result.extra.setdefault("waited_on", waited_on)
            return result
        except asyncio.CancelledError:
            # $/cancelRequest: pygls cancels this task; the flag stops the engine within a token.
            turn.cancel.set()
            self.stats.cancelled += 1
            self.recent.append({"source": "cancelled", "stop": "cancelRequest"})
            raise

    def _conclude(
        self,
        q: Query,
        turn: _Turn,
        language: str,
        before: str,
        after: str,
        result: GenerationResult,
        latency_s: float,
    ) -> Outcome:
        """The model's answer, cleaned and checked, and recorded (or why there is none)."""
        out = Outcome(result=result, prompt_tokens=result.prompt_tokens, latency_s=latency_s)
        if result.stop_reason == "cancelled" or turn.superseded:
            out.source = "cancelled"
        elif result.stop_reason == "error":
            out.source = "error"
            # The engine says when a failure is news (once per outage of a remote server).
            if notice := result.extra.get("notice"):
                self._on_message("error", str(notice))
        else:
            out.source = "model"
            out.suggestions = self._suggestions(q, language, before, after, result)
            if out.suggestions:
                self._remember(turn.doc, q, before, out.suggestions)
        self._record(out, result)
        speculate = (
            out.suggestions
            and self.settings.completion.speculate
            and result.stop_reason in ("eol", "eog")
            and not after.strip()
        )
        short = bool(result.extra.get("short_prompt"))
        if speculate and not self.short_prompt_only:
            # The next line's prompt is the full prompt plus the accepted line: computing it
            # also reads the full prompt when this answer came from the short one.
            self._spawn(
                self._speculate(q, turn.doc, before + out.suggestions[0].text, after_pause=short)
            )
        elif short and out.source == "model" and not self.short_prompt_only:
            # Answered from the short prompt: read the full one at the lowest priority, in the
            # user's next pause, so the requests after it use it.
            self._spawn(self.warm(q, after_pause=True))
        return out

    async def _pause(self) -> bool:
        """Wait until no request came for BACKGROUND_IDLE_S; False when a newer background read
        was queued meanwhile (it takes this one's place)."""
        self._background_seq += 1
        mine = self._background_seq
        while (left := self._last_request + BACKGROUND_IDLE_S - time.monotonic()) > 0:
            await asyncio.sleep(left)
            if mine != self._background_seq:
                return False
        return mine == self._background_seq

    def _record(self, out: Outcome, result: GenerationResult) -> None:
        """Count a model run's outcome and keep it in ``recent`` (benchmarks and the status
        command read it)."""
        if out.source == "cancelled":
            self.stats.cancelled += 1
            self.recent.append({
                "source": "cancelled", "evaluated": result.evaluated_tokens,
                "generated": result.generated_tokens, "stop": result.stop_reason,
            })  # fmt: skip
        elif out.source == "error":
            self.recent.append({"source": "error", "error": result.extra.get("error")})
        else:
            self.stats.model += 1
            self.recent.append({
                "source": "model", "prompt": result.prompt_tokens,
                "evaluated": result.evaluated_tokens, "generated": result.generated_tokens,
                "stop": result.stop_reason, "latency_ms": round(out.latency_s * 1000, 1),
                "read_ms": round(result.prompt_s * 1000, 1),
                "engine_ms": round(result.total_s * 1000, 1),
                "wait_ms": round(float(result.extra.get("wait_s", 0.0)) * 1000, 1),
                "waited_on": result.extra.get("waited_on"),
                "switch_ms": result.extra.get("switch_ms", 0.0),
                "alternatives": len(result.alternatives), "shown": len(out.suggestions),
                "short": bool(result.extra.get("short_prompt")),
                "parses": [s.parses for s in out.suggestions],
            })  # fmt: skip

    def _suggestions(
        self, q: Query, language: str, before: str, after: str, result: GenerationResult
    ) -> list[Suggestion]:
        """Clean and check the model's line and its alternatives; keep the distinct survivors,
        most probable first, up to ``completion.candidates``."""
        c = self.settings.completion
        above, below = neighbours_at(q.text, locate(q.text, q.line, q.col, q.offset).offset)
        ended = result.stop_reason in ("eol", "eog", "stop")
        raws = [(result.text, ended)] + [(t, True) for t, _ in result.alternatives]
        out: list[Suggestion] = []
        seen: set[str] = set()
        for raw, line_ends in raws:
            if len(out) >= c.candidates:
                break
            text = clean(raw, before, after, above=above, below=below).text
            if not text:
                self.stats.clean_rejected += 1
                continue
            if text in seen:
                continue
            seen.add(text)
            try:
                check = self.syntax.check(
                    q.uri, language, q.text, q.line, q.col, text, line_ends=line_ends
                )
            except Exception:
                log.exception("syntax check failed")
                check = None
            if check is not None:
                self.stats.syntax_checked += 1
                if not check.ok:
                    self.stats.syntax_invalid += 1
                    if c.syntax_check:
                        self.stats.syntax_rejected += 1
                        continue
            self._next_id += 1
            out.append(Suggestion(text, f"s{self._next_id}", None if check is None else check.ok))
        self.stats.shown += len(out)
        self.stats.shown_checked += sum(s.parses is not None for s in out)
        self.stats.shown_parsed += sum(s.parses is True for s in out)
        return out

    @property
    def background(self) -> int:
        """Warm-ups and speculations queued or running (their tasks end on their own)."""
        return len(self._tasks)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _speculate(
        self, q: Query, st: _DocState, accepted: str, after_pause: bool = False
    ) -> None:
        """Next-line speculation: while a suggestion is on screen, compute the next line as if
        it were accepted and Enter pressed, at the lowest priority (any request preempts it):
        accepting and going on then costs nothing. ``after_pause``: only once the user paused
        (its prompt is cold, see BACKGROUND_IDLE_S)."""
        if after_pause and not await self._pause():
            return
        if self.state != "ready" or self.engine is None or self.inflight:
            return
        self._warm_cancel.set()
        cancel = self._warm_cancel = threading.Event()
        try:
            req = self._request(after_enter(q, redacted_head(q, accepted)))
        except OutOfRange:
            return
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(
            self._worker, self._run_engine, self.engine, req, cancel, None, "speculation"
        )
        if notice := result.extra.get("notice"):
            # A remote server's failure is news wherever it is first seen.
            self._on_message("error", str(notice))
        preempted = cancel.is_set() or result.stop_reason in ("cancelled", "error")
        self.recent.append({
            "source": "speculation", "evaluated": result.evaluated_tokens,
            "generated": result.generated_tokens, "preempted": preempted,
        })  # fmt: skip
        if preempted:
            return
        text = result.text.split("\n", 1)[0].rstrip()
        if text.strip():
            self._next_id += 1
            st.nextline = {q.line + 1: NextLine(accepted, text, f"s{self._next_id}")}

    def language_enabled(self, q: Query) -> bool:
        """Whether completions run in ``q``'s language (``completion.languages`` and
        ``completion.disabledLanguages``)."""
        return self.settings.completion.enabled_for(q.language or language_for(q.rel or q.uri))

    def untriggered(self) -> None:
        """A request the user did not ask for, in manual trigger mode: counted, not run."""
        self.stats.untriggered += 1

    async def warm(self, q: Query, after_pause: bool = False) -> int:
        """Read ``q``'s prompt into the KV cache in the background (a document was opened), so
        the first real request there pays only for what differs. Preempted by any request.
        ``after_pause``: only once the user paused (see BACKGROUND_IDLE_S)."""
        if after_pause and not await self._pause():
            return 0
        if self.state != "ready" or self.engine is None or self.inflight:
            return 0
        if not self.language_enabled(q):
            return 0
        self._warm_cancel.set()
        cancel = self._warm_cancel = threading.Event()
        try:
            segments = self.build_prompt(q).segments()
        except OutOfRange:
            return 0
        engine = self.engine
        loop = asyncio.get_running_loop()

        def run() -> int:
            if cancel.is_set():
                return 0
            self._running = "warm-up"
            try:
                return engine.warm(segments, cancel, q.uri)
            except WorkerCrashed as exc:
                self._worker_crashed(engine, exc)
                return 0
            except ModelError as exc:
                self._engine_failed(engine, exc)
                return 0
            except Exception:
                log.exception("warm-up failed")
                return 0
            finally:
                self._running = None

        n = await loop.run_in_executor(self._worker, run)
        self.stats.warmups += 1
        self.recent.append({"source": "warm-up", "evaluated": n, "preempted": cancel.is_set()})
        return n

    def _run_engine(
        self,
        engine: Engine | None,
        req: GenerationRequest,
        cancel: threading.Event,
        short: Callable[[], GenerationRequest] | None = None,
        kind: str = "request",
    ) -> GenerationResult:
        self._running = kind
        try:
            return self._run_engine_as(engine, req, cancel, short)
        finally:
            self._running = None

    def _run_engine_as(
        self,
        engine: Engine | None,
        req: GenerationRequest,
        cancel: threading.Event,
        short: Callable[[], GenerationRequest] | None,
    ) -> GenerationResult:
        if engine is None or cancel.is_set():
            return GenerationResult(text="", stop_reason="cancelled")
        if self.state == "error":
            # Queued before a restart that gave up: the engine is unusable.
            return GenerationResult(text="", stop_reason="error")
        try:
            chosen = self._cold_start(engine, req, short)
            result = engine.generate(chosen, cancel)
            if chosen is not req:
                result.extra["short_prompt"] = True
            return result
        except WorkerCrashed as exc:
            self._worker_crashed(engine, exc)
            return GenerationResult(text="", stop_reason="error")
        except ModelError as exc:  # the model process could not be restarted
            self._engine_failed(engine, exc)
            return GenerationResult(text="", stop_reason="error")
        except Exception:
            log.exception("generation failed")
            return GenerationResult(text="", stop_reason="error")

    # -- a crashed model process (engine.isolation: process) --------------------------------
    def _worker_crashed(self, engine: Engine, exc: WorkerCrashed) -> None:
        """On the model thread, once per death of the model process: tell the user, and queue
        the restart ahead of the next request so that one gets a real answer."""
        self.stats.crashes += 1
        self.recent.append({"source": "crash", "error": str(exc)})
        self._notify("warning", f"Nearline: {exc}; restarting it.")
        with contextlib.suppress(RuntimeError):  # the service is closing
            self._worker.submit(self._restart_engine, engine)

    def _restart_engine(self, engine: Engine) -> None:
        if self.engine is not engine:
            return  # replaced meanwhile (settings changed)
        restart = getattr(engine, "restart", None)
        if restart is None:
            return
        try:
            restart()
        except ModelError as exc:
            self._engine_failed(engine, exc)
        except Exception as exc:
            log.exception("restarting the model process failed")
            self._engine_failed(engine, ModelError(str(exc)))

    def _engine_failed(self, engine: Engine, exc: ModelError) -> None:
        """The engine gave up (it kept crashing): no more requests reach it until the settings
        change (``start()`` builds a new one)."""
        if self.engine is not engine:
            return
        self.state, self.error = "error", str(exc)
        self._report_once("error", f"Nearline: {exc}")
