"""Document sync never desyncs: a Hypothesis state machine drives random incremental edits
through a real LSP client against the real server, in UTF-16 and UTF-8 position encodings,
and after every step reads the server's text back (``nearline.documentText``) and compares it
with the client's."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from lsprotocol import types
from pygls.uris import from_fs_path
from pytest_lsp import LanguageClient

from ..conftest import SMALL_ID
from ..docmodel import ClientDoc, texts
from .conftest import client_fixture

OPTIONS = {"model": {"id": SMALL_ID}, "completion": {"debounceMs": 0, "warmUp": False}}


def _empty(tmp: Path) -> Path:
    root = tmp / "ws"
    root.mkdir()
    return root


utf16_client = client_fixture(OPTIONS, encodings=["utf-16"], root=_empty)
utf8_client = client_fixture(OPTIONS, encodings=["utf-8", "utf-16"], root=_empty)

FUZZ = settings(
    max_examples=20,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
_names = itertools.count()


def machine_for(client: LanguageClient, loop: asyncio.AbstractEventLoop, encoding: str) -> type:
    root: Path = client.root  # type: ignore[attr-defined]

    def call(make: Callable[[], Awaitable[Any]]) -> Any:
        """Run on the client's loop (the machine runs in a thread); notifications are sent
        the same way, so they keep their order with the requests."""

        async def run() -> Any:
            return await make()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout=60)

    def notify(send: Callable[[], None]) -> None:
        async def run() -> None:
            send()

        asyncio.run_coroutine_threadsafe(run(), loop).result(timeout=60)

    class DocSync(RuleBasedStateMachine):
        model: ClientDoc
        uri: str
        version: int

        @initialize(text=texts)
        def open(self, text: str) -> None:
            # Names with a space and non-ASCII: their URIs are percent-encoded.
            self.uri = from_fs_path(str(root / f"doc {next(_names)} é.py")) or ""
            self.model = ClientDoc(text, encoding)
            self.version = 1
            notify(
                lambda: client.text_document_did_open(
                    types.DidOpenTextDocumentParams(
                        text_document=types.TextDocumentItem(
                            uri=self.uri, language_id="python", version=1, text=text
                        )
                    )
                )
            )

        def _send(self, changes: list[types.TextDocumentContentChangeEvent]) -> None:
            self.version += 1
            params = types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(
                    uri=self.uri, version=self.version
                ),
                content_changes=changes,
            )
            notify(lambda: client.text_document_did_change(params))

        def _range(self, data: st.DataObject) -> tuple[tuple[int, int], tuple[int, int]]:
            offsets = self.model.valid_offsets()
            a, b = sorted(data.draw(st.sampled_from(offsets)) for _ in range(2))
            start, end = self.model.position(a), self.model.position(b)
            if data.draw(st.integers(0, 9)) == 0:
                # Past the end of the line: the specification says the line's end.
                end = (end[0], self.model.line_end_units(end[0]) + data.draw(st.integers(1, 3)))
            return start, end

        def _partial(
            self, start: tuple[int, int], end: tuple[int, int], new: str
        ) -> types.TextDocumentContentChangePartial:
            self.model.apply(start, end, new)
            return types.TextDocumentContentChangePartial(
                range=types.Range(
                    start=types.Position(line=start[0], character=start[1]),
                    end=types.Position(line=end[0], character=end[1]),
                ),
                text=new,
            )

        @rule(data=st.data(), new=texts.filter(bool))
        def insert(self, data: st.DataObject, new: str) -> None:
            start, _ = self._range(data)
            self._send([self._partial(start, start, new)])

        @rule(data=st.data())
        def delete(self, data: st.DataObject) -> None:
            start, end = self._range(data)
            self._send([self._partial(start, end, "")])

        @rule(data=st.data(), new=texts)
        def replace(self, data: st.DataObject, new: str) -> None:
            start, end = self._range(data)
            self._send([self._partial(start, end, new)])

        @rule(data=st.data(), n=st.integers(2, 5))
        def several_changes_in_one_notification(self, data: st.DataObject, n: int) -> None:
            # Each change applies to the text the previous one left.
            changes: list[types.TextDocumentContentChangeEvent] = []
            for _ in range(n):
                start, end = self._range(data)
                changes.append(self._partial(start, end, data.draw(texts)))
            self._send(changes)

        @rule(new=texts)
        def replace_everything(self, new: str) -> None:
            self.model.text = new
            self._send([types.TextDocumentContentChangeWholeDocument(text=new)])

        @invariant()
        def server_text_equals_client_text(self) -> None:
            if not hasattr(self, "uri"):
                return
            res = call(
                lambda: client.workspace_execute_command_async(
                    types.ExecuteCommandParams(
                        command="nearline.documentText", arguments=[self.uri]
                    )
                )
            )
            assert "error" not in res, res
            assert res["encoding"] == encoding
            assert res["version"] == self.version
            assert res["text"] == self.model.text

        def teardown(self) -> None:
            if hasattr(self, "uri"):
                notify(
                    lambda: client.text_document_did_close(
                        types.DidCloseTextDocumentParams(
                            text_document=types.TextDocumentIdentifier(uri=self.uri)
                        )
                    )
                )

    DocSync.TestCase.settings = FUZZ
    return DocSync


async def _fuzz(client: LanguageClient, encoding: str) -> None:
    from hypothesis.stateful import run_state_machine_as_test

    machine = machine_for(client, asyncio.get_running_loop(), encoding)
    await asyncio.to_thread(run_state_machine_as_test, machine, settings=FUZZ)


async def test_sync_never_desyncs_utf16(utf16_client: LanguageClient) -> None:
    assert utf16_client.init_result.capabilities.position_encoding == "utf-16"  # type: ignore[attr-defined]
    await _fuzz(utf16_client, "utf-16")


async def test_sync_never_desyncs_utf8(utf8_client: LanguageClient) -> None:
    assert utf8_client.init_result.capabilities.position_encoding == "utf-8"  # type: ignore[attr-defined]
    await _fuzz(utf8_client, "utf-8")
