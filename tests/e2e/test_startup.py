"""The first moments of a session, through the real server and the small model: a request
before the model has begun to load, and a client that refuses progress tokens (issue 13,
bugs 1 and 3)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from ..conftest import SERVER_CMD, SMALL_ID, server_env
from .conftest import init_params, inline, open_doc, wait_indexed, wait_ready

pytestmark = pytest.mark.model

SMALL = {"model": {"id": SMALL_ID}, "completion": {"debounceMs": 0, "timeoutMs": 60000}}
# How long the client takes to answer workspace/configuration: the model load waits for it.
CONFIG_DELAY_S = 1.5


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER_CMD, server_env=server_env()))
async def slow_config_client(lsp_client: LanguageClient):
    async def configuration(params: types.ConfigurationParams) -> list[Any]:
        await asyncio.sleep(CONFIG_DELAY_S)
        return [None for _ in params.items]

    lsp_client.protocol.fm.features[types.WORKSPACE_CONFIGURATION] = configuration
    await lsp_client.initialize_session(init_params(options=SMALL))
    yield
    await lsp_client.shutdown_session()


async def test_a_request_before_the_model_load_begins_waits_for_it(
    slow_config_client: LanguageClient, small_model: Path, tmp_path: Path
) -> None:
    # Asked at once after `initialized`, while the server still waits for the client's
    # settings (so the model load has not even begun): the answer waits for the model, as
    # one asked while it loads does, instead of coming back empty.
    client = slow_config_client
    uri = open_doc(client, tmp_path / "add.py", "def add(a, b):\n    return a\n")
    t0 = time.perf_counter()
    items = await inline(client, uri, 1, 12)
    took = time.perf_counter() - t0
    assert items, f"empty answer after {took:.2f}s"
    assert took > CONFIG_DELAY_S / 2  # it did start inside the window


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER_CMD, server_env=server_env()))
async def no_progress_client(lsp_client: LanguageClient):
    async def refuse(params: types.WorkDoneProgressCreateParams) -> None:
        # Answered with an error (RequestCancelled); a handler that raises anything else
        # would fail the test on the client's side.
        raise asyncio.CancelledError

    lsp_client.protocol.fm.features[types.WINDOW_WORK_DONE_PROGRESS_CREATE] = refuse
    await lsp_client.initialize_session(init_params(options=SMALL))
    yield
    await lsp_client.shutdown_session()


async def test_no_progress_for_a_token_the_client_refused(
    no_progress_client: LanguageClient, small_model: Path
) -> None:
    client = no_progress_client
    assert (await wait_ready(client))["state"] == "ready"
    assert (await wait_indexed(client))["state"] == "ready"
    await asyncio.sleep(0.2)  # an end sent after the load would be here by now
    # pytest-lsp files every $/progress under its token, known to it or not.
    assert client.progress_reports == {}
