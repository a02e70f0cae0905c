"""The progress helper's protocol order, and command argument parsing, without a client."""

from __future__ import annotations

import asyncio
import contextlib
from types import SimpleNamespace
from typing import Any

import pytest
from lsprotocol import types

from nearline.lsp.commands import _uri_position, command_args
from nearline.lsp.progress import work_done


class FakeProgress:
    def __init__(self, create: Any) -> None:
        self.create = create
        self.sent: list[str] = []

    async def create_async(self, token: str) -> None:
        await self.create()

    def begin(self, token: str, value: Any) -> None:
        self.sent.append("begin")

    def report(self, token: str, value: Any) -> None:
        self.sent.append("report")

    def end(self, token: str, value: Any) -> None:
        self.sent.append("end")


def fake_server(create: Any, *, supports: bool = True) -> Any:
    return SimpleNamespace(
        client_capabilities=types.ClientCapabilities(
            window=types.WindowClientCapabilities(work_done_progress=supports)
        ),
        connected=True,
        work_done_progress=FakeProgress(create),
    )


async def _ok() -> None:
    return None


async def _refused() -> None:
    raise RuntimeError("refused")


async def _never() -> None:
    await asyncio.sleep(3600)


async def _run(ls: Any, *, fail: bool = False, disconnect: bool = False) -> list[str]:
    with pytest.raises(ValueError) if fail else contextlib.nullcontext():
        async with work_done(ls, "test", "Testing") as p:
            p.report("half", 50)
            if disconnect:
                ls.connected = False
                p.report("gone")
            if fail:
                raise ValueError("the work failed")
    return list(ls.work_done_progress.sent)


def test_begin_report_end_in_order_and_end_even_when_the_work_fails() -> None:
    assert asyncio.run(_run(fake_server(_ok))) == ["begin", "report", "end"]
    assert asyncio.run(_run(fake_server(_ok), fail=True)) == ["begin", "report", "end"]


def test_nothing_for_a_token_the_client_refused_or_never_created(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("nearline.lsp.progress.CREATE_TIMEOUT_S", 0.05)
    assert asyncio.run(_run(fake_server(_refused))) == []
    assert asyncio.run(_run(fake_server(_never))) == []
    assert asyncio.run(_run(fake_server(_ok, supports=False))) == []


def test_nothing_once_the_client_is_gone() -> None:
    assert asyncio.run(_run(fake_server(_ok), disconnect=True)) == ["begin", "report"]


def test_command_arguments_spread_out_or_as_one_list() -> None:
    assert command_args(("a", 1)) == ["a", 1]
    assert command_args((["a", 1],)) == ["a", 1]
    assert command_args(()) == []
    pos = {"line": 1, "character": 2}
    want = ("file:///x.py", types.Position(line=1, character=2))
    assert _uri_position(command_args(("file:///x.py", pos))) == want
    assert _uri_position(command_args((["file:///x.py", pos],))) == want
    assert _uri_position([{"textDocument": {"uri": "file:///x.py"}, "position": pos}]) == want
    assert _uri_position(["file:///x.py"]) == (None, None)
    assert _uri_position([{"textDocument": "x", "position": pos}]) == (None, None)
