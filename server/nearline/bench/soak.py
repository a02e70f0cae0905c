"""``nearline bench soak``: load and cancel storms against ``nearline serve``.

One server process, talked to over stdio pipes like an editor (no socket at all, so nothing
off this machine is involved), on a temporary copy of the sample project. Twenty documents are
open; a typist replays typing into them with one inline completion request per keystroke,
about ``rate`` requests per second on average: bursts of typing at twice that, with
pauses (only then can the model answer: every keystroke supersedes the request before it;
at the end the typist stops, so that at least one answer comes from the model),
switching documents now and then and sometimes typing what was suggested (so that answers
come from the typing-through cache); random ``$/cancelRequest``s go out too. It is bounded in time
(``seconds``, then at most ``drain_s`` for the answers still out) and in count
(``seconds * rate * 1.1`` requests).

It reports requests answered, cancelled and failed (an error that is not a cancellation, an
answer that never came, a traceback in the server's log), p50/p95 client-side latency of
answers from the typing-through cache, of answers from the model and of empty answers, the
server's resident memory after start-up, after warm-up and at the end, and its asyncio tasks
and pending requests before and after. The goals: no errors, RSS growth under 50 MB after
warm-up, no leaked tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcRequestCancelled

from nearline.tools.client import EditorSession
from nearline.tools.demo import sample_project

from .latency import pct

RSS_GOAL_MB = 50.0


@dataclass
class _Doc:
    uri: str
    plan: str  # what the typist will type next
    line: int
    col: int  # UTF-16 units
    pending: str | None = None  # id of the request in flight for this document


@dataclass
class _Tally:
    sent: int = 0
    answered: int = 0
    cancelled: int = 0
    paused: float = 0.0
    errors: list[str] = field(default_factory=list)
    latency: dict[str, list[float]] = field(
        default_factory=lambda: {"typing-through": [], "model": [], "empty": []}
    )


def _utf16(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


def _workspace(copies: int) -> tuple[Path, list[Path]]:
    """A private copy of the sample project, ``copies`` times over: 5 files each."""
    root = Path(tempfile.mkdtemp(prefix="nearline-soak-"))
    src = sample_project()
    files: list[Path] = []
    for k in range(copies):
        dest = root / f"pkg{k}"
        shutil.copytree(src / "inventory", dest / "inventory")
        files += sorted((dest / "inventory").glob("*.py"))
    shutil.copy(src / "README.md", root / "README.md")
    return root, files


async def run_soak(
    seconds: float = 60.0,
    model: str | None = None,
    rate: float = 50.0,
    docs: int = 20,
    cancel_fraction: float = 0.2,
    seed: int = 8,
    drain_s: float = 60.0,
    warmup_fraction: float = 0.2,
    pause_every: float = 80.0,
    settings: dict[str, Any] | None = None,
    out_json: str | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    rnd = random.Random(seed)
    root, files = _workspace(max(1, -(-docs // 5)))
    files = files[:docs]
    # The default debounce, as an editor user has it: keystrokes that follow each other within
    # it never reach the prompt builder.
    merged: dict[str, Any] = {}
    for key, value in (settings or {}).items():
        merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else value
    if model:
        merged["model"] = {**merged.get("model", {}), "id": model}
    settings = merged
    stderr_log = root / "server-stderr.log"
    session = EditorSession(root, settings, stderr_path=stderr_log)
    report: dict[str, Any] = {"seconds": seconds, "rate": rate, "documents": len(files)}
    try:
        engine = await session.start_ready()
        if engine is None:
            raise RuntimeError("the server's model did not load")
        report["model"] = engine.get("model")
        report["threads"] = engine.get("threads")
        tally, process = await _drive(
            session, files, seconds, rate, cancel_fraction, drain_s, warmup_fraction,
            pause_every, rnd,
        )  # fmt: skip
        report.update(process)
    finally:
        await session.stop()
        log = stderr_log.read_text(errors="replace") if stderr_log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
    tracebacks = log.count("Traceback (most recent call last)")
    if tracebacks:
        tally.errors.append(f"{tracebacks} traceback(s) in the server's log")
        report["log_tail"] = log[-4000:]
    report.update(
        sent=tally.sent,
        answered=tally.answered,
        cancelled=tally.cancelled,
        errors=len(tally.errors),
        error_samples=tally.errors[:10],
        latency_ms={
            k: {"n": len(v), "p50": pct(v, 50) * 1000, "p95": pct(v, 95) * 1000}
            for k, v in tally.latency.items()
        },
    )
    report["goals"] = {
        "no errors": report["errors"] == 0,
        f"RSS growth < {RSS_GOAL_MB:.0f} MB after warm-up": report["rss_growth_mb"] < RSS_GOAL_MB,
        "no leaked tasks": report["leaked_tasks"] <= 0 and report["leaked_requests"] <= 0,
    }
    if not quiet:
        _print(report)
    if out_json:
        Path(out_json).write_text(json.dumps(report, indent=2))
    return report


async def _drive(
    session: EditorSession,
    files: list[Path],
    seconds: float,
    rate: float,
    cancel_fraction: float,
    drain_s: float,
    warmup_fraction: float,
    pause_every: float,
    rnd: random.Random,
) -> tuple[_Tally, dict[str, Any]]:
    protocol = session.client.protocol
    docs: list[_Doc] = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        lines = text.split("\n")
        keep = max(1, len(lines) * 2 // 5)
        opened = "\n".join(lines[:keep]) + "\n"
        uri = session.open(path, opened)
        docs.append(_Doc(uri, "\n".join(lines[keep:]), keep, 0))
    # The index and the warm-ups of twenty opened files settle first: start-up is not the soak.
    await _settle(session)
    before = (await session.status())["process"]
    tally = _Tally()
    seen_ids: set[str] = set()
    inflight: set[asyncio.Task[None]] = set()
    max_requests = int(seconds * rate * 1.1)
    ids = iter(range(10**9))

    async def ask(doc: _Doc, msg_id: str, line: int, col: int) -> None:
        t0 = time.perf_counter()
        params = types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=doc.uri),
            position=types.Position(line=line, character=col),
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Automatic
            ),
        )
        # Never cancelled here: pygls's client then fails on the answer that still comes.
        request = asyncio.ensure_future(
            protocol.send_request_async(types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id)
        )
        done, _ = await asyncio.wait({request}, timeout=seconds + drain_s)
        try:
            if not done:
                raise TimeoutError
            res = request.result()
        except JsonRpcRequestCancelled:
            tally.cancelled += 1
            return
        except JsonRpcException as exc:
            if exc.code == types.LSPErrorCodes.RequestCancelled:
                tally.cancelled += 1
            else:
                tally.errors.append(f"{msg_id}: {exc}")
            return
        except TimeoutError:
            tally.errors.append(f"{msg_id}: no answer")
            return
        finally:
            if doc.pending == msg_id:
                doc.pending = None
        dt = time.perf_counter() - t0
        tally.answered += 1
        items = res.items if isinstance(res, types.InlineCompletionList) else (res or [])
        if not items:
            tally.latency["empty"].append(dt)
            return
        item = items[0]
        sid = str(item.command.arguments[0]) if item.command and item.command.arguments else ""
        tally.latency["typing-through" if sid in seen_ids else "model"].append(dt)
        seen_ids.add(sid)
        text = item.insert_text if isinstance(item.insert_text, str) else item.insert_text.value
        # Sometimes the typist types what was suggested (if still where it was asked).
        if (doc.line, doc.col) == (line, col) and rnd.random() < 0.5:
            doc.plan = text + doc.plan

    def cancel_later(msg_id: str, delay: float) -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(
            delay, lambda: protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))
        )

    current = rnd.randrange(len(docs))
    t_start = time.monotonic()
    warm_at = t_start + seconds * warmup_fraction
    after_warmup: dict[str, Any] | None = None
    # Typing at 2 x rate, with a pause after every `pause_every` keystrokes (on average): most
    # pauses are short (0.2-0.6 s), one in five is the typist reading (1-2.5 s), which is when
    # the model gets to answer: about `rate` requests per second overall.
    tick = 1.0 / (rate * 2.0)
    next_at = t_start
    while time.monotonic() - t_start < seconds and tally.sent < max_requests:
        if after_warmup is None and time.monotonic() >= warm_at:
            after_warmup = (await session.status())["process"]
        if rnd.random() < 0.03:
            current = rnd.randrange(len(docs))  # the user switches files
        doc = docs[current]
        if not doc.plan:
            doc.plan = "\n# more\n"
        ch, doc.plan = doc.plan[0], doc.plan[1:]
        session.insert(doc.uri, doc.line, doc.col, ch)
        if ch == "\n":
            doc.line, doc.col = doc.line + 1, 0
        else:
            doc.col += _utf16(ch)
        msg_id = f"soak-{next(ids)}"
        # An editor cancels the request a keystroke made obsolete, now and then at random.
        if doc.pending is not None and rnd.random() < 0.5:
            protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=doc.pending))
        if rnd.random() < cancel_fraction:
            cancel_later(msg_id, rnd.uniform(0.0, 0.3))
        doc.pending = msg_id
        task = asyncio.ensure_future(ask(doc, msg_id, doc.line, doc.col))
        inflight.add(task)
        task.add_done_callback(inflight.discard)
        tally.sent += 1
        next_at += tick
        if rnd.random() < 1.0 / pause_every:
            pause = rnd.uniform(0.2, 0.6) if rnd.random() < 0.8 else rnd.uniform(1.0, 2.5)
            tally.paused += pause
            next_at += pause
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    elapsed = time.monotonic() - t_start
    if inflight:
        _done, late = await asyncio.wait(set(inflight), timeout=drain_s)
        if late:
            tally.errors.append(f"{len(late)} requests unanswered {drain_s:.0f}s after the end")
    # The typist stops: a request nobody supersedes, at the start of a fresh line (never gated),
    # in up to five documents until the model has answered one. Typing at 100 keystrokes/s leaves
    # the model only the short pauses, and on a slow or busy CPU none of them may be long enough
    # for a model run; this makes sure the model's answers are measured at all.
    for k in range(5):
        if tally.latency["model"]:
            break
        doc = docs[(current + k) % len(docs)]
        # To the start of the next line of the plan, indentation included: a blank line's
        # column 0 mostly gets a blank line from a model, which cleaning drops.
        nl = doc.plan.find("\n")
        head = doc.plan[: nl + 1] if nl >= 0 else doc.plan + "\n"
        rest = doc.plan[len(head) :] if nl >= 0 else ""
        indent = rest[: len(rest) - len(rest.lstrip(" \t"))]
        typed = head + indent
        session.insert(doc.uri, doc.line, doc.col, typed)
        doc.line, doc.col, doc.plan = doc.line + 1, _utf16(indent), rest[len(indent) :]
        tally.sent += 1
        await ask(doc, f"soak-final-{k}", doc.line, doc.col)
    # Let the server finish what the last answers started (the next-line speculation after a
    # shown suggestion is a background task by design): a task still at work is not a leak.
    await _settle(session, timeout=min(drain_s, 120.0))
    end_status = await session.status()
    end = end_status["process"]
    after_warmup = after_warmup or before
    mb = 1024 * 1024
    # The status request being answered is itself one pending request and no task.
    return tally, {
        "elapsed_s": round(elapsed, 1),
        "achieved_rate": round(tally.sent / elapsed, 1) if elapsed else 0.0,
        "typing_rate": round(tally.sent / (elapsed - tally.paused), 1)
        if elapsed > tally.paused
        else 0.0,
        "paused_s": round(tally.paused, 1),
        "rss_start_mb": round((before["rss_bytes"] or 0) / mb, 1),
        "rss_after_warmup_mb": round((after_warmup["rss_bytes"] or 0) / mb, 1),
        "rss_end_mb": round((end["rss_bytes"] or 0) / mb, 1),
        "rss_growth_mb": round(
            ((end["rss_bytes"] or 0) - (after_warmup["rss_bytes"] or 0)) / mb, 1
        ),
        "asyncio_tasks_start": before["asyncio_tasks"],
        "asyncio_tasks_end": end["asyncio_tasks"],
        "leaked_tasks": end["asyncio_tasks"] - before["asyncio_tasks"],
        "task_names_end": end.get("asyncio_task_names", []),
        "pending_requests_end": end["pending_requests"],
        "leaked_requests": end["pending_requests"] - before["pending_requests"],
        "background_tasks_end": end["background_tasks"],
        "threads_start": before["threads"],
        "threads_end": end["threads"],
        # What the server did, by its own count: model runs that finished (an empty answer can
        # be one: the model's line was cleaned away), requests superseded or cancelled, ...
        "server_stats": dict(end_status.get("stats") or {}),
    }


async def _settle(session: EditorSession, timeout: float = 300.0) -> None:
    """Wait until the index is built and no warm-up or generation is running."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline and quiet < 3:
        st = await session.status()
        idx = await session.client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="nearline.index", arguments=[{"limit": 0}])
        )
        busy = (
            st["inflight"]
            or st["process"]["background_tasks"]
            or (idx or {}).get("state") != "ready"
        )
        quiet = 0 if busy else quiet + 1
        await asyncio.sleep(0.2)


def _print(r: dict[str, Any]) -> None:
    print(
        f"\nnearline bench soak — model {r.get('model')}, {r.get('threads')} threads, "
        f"{r['documents']} documents, {r['elapsed_s']}s: {r['achieved_rate']} requests/s "
        f"(target {r['rate']:.0f}; {r['typing_rate']}/s while typing, {r['paused_s']}s of "
        "pauses)"
    )
    print(
        f"requests: {r['sent']} sent, {r['answered']} answered, {r['cancelled']} cancelled, "
        f"{r['errors']} errors"
    )
    print(f"{'latency (client side)':28}{'n':>6}{'p50':>10}{'p95':>10}")
    for name, v in r["latency_ms"].items():
        print(f"{name + ' answers':28}{v['n']:>6}{v['p50']:>8.0f}ms{v['p95']:>8.0f}ms")
    print(
        f"server RSS: {r['rss_start_mb']} MB at start, {r['rss_after_warmup_mb']} MB after "
        f"warm-up, {r['rss_end_mb']} MB at the end (growth {r['rss_growth_mb']} MB)"
    )
    print(
        f"server asyncio tasks: {r['asyncio_tasks_start']} at start, {r['asyncio_tasks_end']} "
        f"at the end; pending requests at the end {r['pending_requests_end']}; threads "
        f"{r['threads_start']} -> {r['threads_end']}"
    )
    ss = r.get("server_stats") or {}
    if ss:
        print(
            f"server: {ss.get('model', 0)} model runs finished, {ss.get('cancelled', 0)} "
            f"superseded or cancelled, {ss.get('typing_through', 0)} typing-through answers, "
            f"{ss.get('clean_rejected', 0) + ss.get('syntax_rejected', 0)} lines rejected by "
            "cleaning or the syntax check"
        )
    for goal, ok in r["goals"].items():
        print(f"  {'PASS' if ok else 'FAIL'}  {goal}")
    for e in r["error_samples"]:
        print(f"  error: {e}")


def main_soak(seconds: float, model: str | None, rate: float, out_json: str | None) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        report = asyncio.run(run_soak(seconds=seconds, model=model, rate=rate, out_json=out_json))
        return 0 if all(report["goals"].values()) else 1
    return 130
