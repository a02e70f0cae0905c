from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from nearline.completion.service import (
    CompletionService,
    OutOfRange,
    Query,
    clean_suggestion,
    split_at_cursor,
)
from nearline.config import parse_settings

from .fakes import FakeEngine, approx_count


def make_service(engine: FakeEngine, **settings: object) -> CompletionService:
    raw = {"completion": {"debounceMs": 0}, "context": {"composer": "file-level"}}
    for k, v in settings.items():
        sec, key = k.split("__")
        raw.setdefault(sec, {})[key] = v  # type: ignore[index]
    s, problems = parse_settings(raw)
    assert not problems
    return CompletionService(s, lambda _s: engine, count_tokens=approx_count)


async def engine_started(engine: FakeEngine) -> None:
    """Wait (off the event loop, at most 5 s) until the engine has begun a request."""
    await asyncio.get_running_loop().run_in_executor(None, engine.started.wait, 5)


def q(text: str, line: int, col: int, uri: str = "file:///w/a.py") -> Query:
    return Query(uri=uri, text=text, line=line, col=col, path=Path("/w/a.py"), rel="a.py")


@pytest.mark.parametrize(
    ("raw", "before", "after", "expected"),
    [
        ("a, b)", "foo(", ")", "a, b"),
        ("a, b))", "foo(", "))", "a, b"),
        ("x]", "y = [", "]", "x"),
        ("1 + 2   ", "z = ", "", "1 + 2"),
        ("print('hi')\nmore", "", "", "print('hi')"),
        ("   ", "x = ", "", ""),
        ("key': 1}", "d = {'", "'}", "key': 1"),
        ("value)", "f(", ")", "value"),
        ("", "f(", ")", ""),
        ("a)", "f(", "):", "a"),
        ("foo()", "print(", ")", "foo()"),
        ("a, b))", "foo(bar(", "))", "a, b"),
        ("x)", "", "", "x)"),
        # The model restarted the line (indentation included): keep the continuation...
        ("    return plan", "    ret", "", "urn plan"),
        ("  for item in items:", "  for it", "", "em in items:"),
        # ...and drop a restart that does not continue what was typed.
        ("    low = warehouse.low_stock()", "    pla", "", ""),
        # A leading space after a complete word is an ordinary continuation.
        (" in warehouse.items:", "    for item", "", " in warehouse.items:"),
        ("  # note", "x = 1", "", "  # note"),
        (" = 1", "x", "", " = 1"),
    ],
)
def test_clean_suggestion(raw: str, before: str, after: str, expected: str) -> None:
    assert clean_suggestion(raw, before, after) == expected


def test_split_at_cursor_and_out_of_range() -> None:
    text = "ab\ncd😀ef\n"
    assert split_at_cursor(text, 1, 3) == ("ab\ncd😀", "cd😀", "ef", "")
    with pytest.raises(OutOfRange):
        split_at_cursor(text, 5, 0)
    with pytest.raises(OutOfRange):
        split_at_cursor(text, 0, 9)
    # CRLF: the \r is not part of the line's text
    assert split_at_cursor("x\r\ny", 0, 1)[2] == ""


async def test_model_answer_and_typing_through() -> None:
    engine = FakeEngine(reply="total_value() * 2")
    svc = make_service(engine)
    await svc.start()
    text = "x = item.\n"
    out = await svc.complete(q(text, 0, 9))
    assert out.source == "model" and out.suggestions[0].text == "total_value() * 2"
    # The user types "tot": answered from the shown suggestion, no model run.
    text2 = "x = item.tot\n"
    out2 = await svc.complete(q(text2, 0, 12))
    assert out2.source == "typing-through"
    assert out2.suggestions[0].text == "al_value() * 2"
    assert len(engine.calls) == 1
    # Typing something else runs the model again.
    out3 = await svc.complete(q("x = item.q\n", 0, 10))
    assert out3.source == "model" and len(engine.calls) == 2
    svc.close()


async def test_gating_mid_identifier() -> None:
    engine = FakeEngine()
    svc = make_service(engine)
    await svc.start()
    out = await svc.complete(q("foo_bar = 1\n", 0, 3))
    assert out.source == "gated" and not engine.calls
    out = await svc.complete(q("f(x, y + z)\n", 0, 2))
    assert out.source == "gated"
    out = await svc.complete(q("f()\n", 0, 2))
    assert out.source == "model"
    svc.close()


async def test_latest_request_wins() -> None:
    engine = FakeEngine(reply="slow", delay_s=2.0)
    svc = make_service(engine)
    await svc.start()
    first = asyncio.ensure_future(svc.complete(q("a = \n", 0, 4)))
    await engine_started(engine)
    engine.delay_s = 0.0
    engine.reply = "fast"
    second = await svc.complete(q("a = b\n", 0, 5))
    res1 = await first
    assert res1.source == "cancelled" and not res1.suggestions
    assert second.suggestions[0].text == "fast"
    svc.close()


async def test_asyncio_cancel_reaches_engine() -> None:
    engine = FakeEngine(reply="never", delay_s=5.0)
    svc = make_service(engine)
    await svc.start()
    task = asyncio.ensure_future(svc.complete(q("a = \n", 0, 4)))
    await engine_started(engine)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The worker is free again quickly: the engine saw the flag.
    engine.delay_s = 0.0
    engine.reply = "next"
    out = await asyncio.wait_for(svc.complete(q("a = \n", 0, 4)), 2.0)
    assert out.suggestions[0].text == "next"
    svc.close()


async def test_unavailable_model_gives_empty_answers() -> None:
    from nearline.weights.download import ModelError

    def broken(_s: object) -> FakeEngine:
        raise ModelError("model x is not downloaded; run: nearline models pull x")

    s, _ = parse_settings({"completion": {"debounceMs": 0}})
    messages: list[tuple[str, str]] = []
    svc = CompletionService(
        s, broken, count_tokens=approx_count, on_message=lambda *m: messages.append(m)
    )
    await svc.start()
    assert svc.state == "error"
    out = await svc.complete(q("a = \n", 0, 4))
    assert out.source == "unavailable" and not out.suggestions
    assert messages == [
        ("error", "Nearline: model x is not downloaded; run: nearline models pull x")
    ]
    svc.close()


def test_prompt_is_fim_with_suffix_for_qwen() -> None:
    engine = FakeEngine()
    svc = make_service(engine)
    prompt = svc.build_prompt(q("def f(x):\n    return g(x)\n", 1, 13))
    text = prompt.text
    assert text.startswith("<|file_sep|>a.py\n<|fim_prefix|>def f(x):\n    return g(")
    assert text.endswith("<|fim_suffix|>x)<|fim_middle|>")
    # Control strings are their own segments; file text never is special.
    assert ("<|fim_prefix|>", True) in prompt.segments()
    assert all(not special for t, special in prompt.segments() if "return" in t)


def test_prefix_budget_cuts_from_the_top_at_line_boundaries() -> None:
    engine = FakeEngine()
    svc = make_service(engine, context__budgetTokens=200, completion__maxTokens=16)
    lines = [f"value_{i} = compute({i})" for i in range(400)]
    text = "\n".join(lines) + "\n"
    prompt = svc.build_prompt(q(text, 399, len(lines[399])))
    prefix = next(p for p in prompt.parts if p.kind == "prefix")
    assert prefix.text.endswith(lines[399])
    assert prefix.text.startswith("value_")  # starts at a line boundary
    assert svc.prompt_tokens(prompt) <= svc.budget()


async def test_warm_up_reads_the_prompt_and_yields_to_requests() -> None:
    engine = FakeEngine(reply="y")
    svc = make_service(engine)
    await svc.start()
    assert await svc.warm(q("a = 1\nb = ", 1, 4)) > 0
    assert svc.stats.warmups == 1 and engine.warms
    # A long warm-up is preempted by a real request, which then runs at once.
    engine.warm_s = 5.0
    engine.started.clear()
    warming = asyncio.ensure_future(svc.warm(q("a = 1\nb = ", 1, 4)))
    await engine_started(engine)
    out = await asyncio.wait_for(svc.complete(q("a = 1\nb = a", 1, 5)), 3.0)
    assert out.suggestions[0].text == "y"
    assert await warming == -1  # it saw the cancel
    assert svc.recent[-2]["source"] == "warm-up" or svc.recent[-1]["source"] == "warm-up"
    svc.close()


async def test_latest_request_wins_across_documents() -> None:
    """The model serves the newest request: one still waiting or running in another document
    is cancelled (else requests from documents the user left queue up behind each other)."""
    engine = FakeEngine(reply="slow", delay_s=2.0)
    svc = make_service(engine)
    await svc.start()
    first = asyncio.ensure_future(svc.complete(q("a = \n", 0, 4, uri="file:///w/one.py")))
    await engine_started(engine)
    queued = asyncio.ensure_future(svc.complete(q("b = \n", 0, 4, uri="file:///w/two.py")))
    await asyncio.sleep(0.05)
    engine.delay_s = 0.0
    engine.reply = "fast"
    last = await svc.complete(q("c = \n", 0, 4, uri="file:///w/three.py"))
    assert last.suggestions[0].text == "fast"
    for older in (await first, await queued):
        assert older.source == "cancelled" and not older.suggestions
    svc.close()


async def test_candidates_are_cleaned_checked_distinct_and_ranked() -> None:
    engine = FakeEngine(
        reply="compute(a, b)",
        alternatives=[
            ("compute(a, b)", -1.0),  # the same line again
            ("compute(b, a))", -1.5),  # breaks the statement
            ("   ", -2.0),  # nothing
            ("max(a, b)", -2.5),
        ],
    )
    svc = make_service(engine, completion__candidates=5)
    await svc.start()
    out = await svc.complete(q("x = \n", 0, 4))
    assert engine.calls[-1].candidates == 5
    assert [s.text for s in out.suggestions] == ["compute(a, b)", "max(a, b)"]
    assert all(s.parses for s in out.suggestions)
    assert len({s.id for s in out.suggestions}) == 2
    st = svc.stats
    assert st.syntax_rejected == 1 and st.clean_rejected == 1
    assert st.shown == st.shown_checked == st.shown_parsed == 2
    svc.close()


async def test_typing_through_keeps_every_matching_candidate() -> None:
    engine = FakeEngine(reply="max(a)", alternatives=[("maxi(b)", -1.0), ("min(c)", -2.0)])
    svc = make_service(engine, completion__candidates=3)
    await svc.start()
    out = await svc.complete(q("y = \n", 0, 4))
    assert [s.text for s in out.suggestions] == ["max(a)", "maxi(b)", "min(c)"]
    out2 = await svc.complete(q("y = ma\n", 0, 6))
    assert out2.source == "typing-through"
    assert [s.text for s in out2.suggestions] == ["x(a)", "xi(b)"]
    assert [s.id for s in out2.suggestions] == [s.id for s in out.suggestions[:2]]
    svc.close()


async def test_candidates_setting_caps_the_suggestions() -> None:
    engine = FakeEngine(reply="a + 1", alternatives=[("a + 2", -1.0), ("a + 3", -2.0)])
    svc = make_service(engine, completion__candidates=2)
    await svc.start()
    out = await svc.complete(q("x = \n", 0, 4))
    assert [s.text for s in out.suggestions] == ["a + 1", "a + 2"]
    assert engine.calls[-1].candidates == 2
    svc.close()


async def test_syntax_check_setting() -> None:
    engine = FakeEngine(reply="compute(a, b))")
    svc = make_service(engine)
    await svc.start()
    out = await svc.complete(q("x = \n", 0, 4))
    assert out.source == "model" and not out.suggestions
    assert svc.stats.syntax_checked == svc.stats.syntax_rejected == 1
    # Switched off, the same suggestion is shown, marked as not parsing (for the benchmark).
    svc.settings.completion.syntax_check = False
    out = await svc.complete(q("x = \n", 0, 4))
    assert [(s.text, s.parses) for s in out.suggestions] == [("compute(a, b))", False)]
    assert svc.stats.shown_checked == 1 and svc.stats.shown_parsed == 0
    # Languages without a grammar are cleaned, not checked.
    out = await svc.complete(
        Query(uri="file:///w/n.toml", text="x = \n", line=0, col=4, rel="n.toml", language="toml")
    )
    assert [(s.text, s.parses) for s in out.suggestions] == [("compute(a, b))", None)]
    svc.close()


async def test_gating_reasons_and_comment_and_string_switches() -> None:
    engine = FakeEngine(reply="more words")
    svc = make_service(engine)
    await svc.start()
    doc = 'def f():\n    """Docs\n    \n    """\n    s = "x"\n'
    out = await svc.complete(q("foo_bar = 1\n", 0, 3))
    assert (out.source, out.reason) == ("gated", "mid-identifier")
    # Docstrings are allowed by default...
    out = await svc.complete(q(doc, 2, 4))
    assert out.source == "model"
    # ...and not when strings are switched off (the tree knows the docstring spans lines).
    svc.settings.completion.in_strings = False
    out = await svc.complete(q(doc, 2, 4))
    assert (out.source, out.reason) == ("gated", "in-string")
    svc.settings.completion.in_comments = False
    out = await svc.complete(q("x = 1  # note \n", 0, 14))
    assert (out.source, out.reason) == ("gated", "in-comment")
    out = await svc.complete(q("x = f'{na}'\n", 0, 9))  # an f-string's substitution is code
    assert out.source == "model"
    svc.close()


async def test_secret_file_is_gated_before_any_parse() -> None:
    """The secret-file check looks at the name only: it goes before the syntax gate, which
    would parse the document (with comments off, the gate's parse would say "in-comment")."""
    engine = FakeEngine(reply="more words")
    svc = make_service(engine, completion__inComments=False)
    await svc.start()
    secret = Query(
        uri="file:///w/credentials.py",
        text="x = 1  # note \n",
        line=0,
        col=14,
        path=Path("/w/credentials.py"),
        rel="credentials.py",
    )
    out = await svc.complete(secret)
    assert (out.source, out.reason) == ("gated", "secret file")
    assert svc.syntax.stats["full_parses"] == 0 and not engine.calls
    svc.close()


async def test_repeat_of_the_line_above_is_not_shown() -> None:
    engine = FakeEngine(reply="total += price")
    svc = make_service(engine)
    await svc.start()
    out = await svc.complete(q("for price in prices:\n    total += price\n    \n", 2, 4))
    assert out.source == "model" and not out.suggestions
    assert svc.stats.clean_rejected == 1
    svc.close()


def _next_line_script(prompt: str) -> str:
    prefix = prompt.split("<|fim_suffix|>")[0]
    return "    return total" if prefix.endswith("total = a + b\n") else "a + b"


async def _speculation_done(svc: CompletionService) -> dict[str, object]:
    for _ in range(200):
        done = [r for r in svc.recent if r["source"] == "speculation"]
        if done:
            return done[-1]
        await asyncio.sleep(0.01)
    raise AssertionError("no speculation ran")


async def test_next_line_is_speculated_and_served_after_accepting() -> None:
    engine = FakeEngine(script=_next_line_script)
    svc = make_service(engine)
    await svc.start()
    head = "def f(a, b):\n    total = "
    out = await svc.complete(q(head, 1, 12))
    assert out.suggestions[0].text == "a + b"
    spec = await _speculation_done(svc)
    assert not spec["preempted"]
    calls = len(engine.calls)
    # The user accepts and presses Enter: the next line is on screen without a model run.
    accepted = head + "a + b\n"
    nxt = await svc.complete(q(accepted, 2, 0))
    assert nxt.source == "typing-through" and nxt.suggestions[0].text == "    return total"
    # The editor indented the new line: the rest of the speculated line.
    indented = await svc.complete(q(accepted + "    ", 2, 4))
    assert indented.suggestions[0].text == "return total"
    # The first answer came from the speculation, the second by typing through it.
    assert len(engine.calls) == calls and svc.stats.speculated == 1
    svc.close()


async def test_speculation_is_not_used_when_the_suggestion_was_not_accepted() -> None:
    engine = FakeEngine(script=_next_line_script)
    svc = make_service(engine)
    await svc.start()
    head = "def f(a, b):\n    total = "
    await svc.complete(q(head, 1, 12))
    await _speculation_done(svc)
    calls = len(engine.calls)
    other = await svc.complete(q(head + "a - b\n", 2, 0))
    assert other.source == "model" and len(engine.calls) == calls + 1
    assert svc.stats.speculated == 0
    svc.close()


async def test_speculation_can_be_switched_off() -> None:
    engine = FakeEngine(script=_next_line_script)
    svc = make_service(engine, completion__speculate=False)
    await svc.start()
    await svc.complete(q("def f(a, b):\n    total = ", 1, 12))
    await asyncio.sleep(0.1)
    assert len(engine.calls) == 1
    assert not [r for r in svc.recent if r["source"] == "speculation"]
    svc.close()


def test_suffix_cut_ends_at_a_line_break() -> None:
    from nearline.completion.cursor import head_within

    # A FIM model given a suffix cut mid-line continues that line instead of the middle.
    text, n = head_within("abc)\nline two\nline three\n", 12, len)
    assert (text, n) == ("abc)\n", 5)
    # Whole, when it fits.
    assert head_within("abc)\nx\n", 12, len) == ("abc)\nx\n", 7)
    # The rest of the cursor's line alone may be cut inside it: there is no earlier break.
    text, n = head_within("abcdefgh\nx\n", 4, len)
    assert n <= 4 and "abcdefgh".startswith(text) and text
