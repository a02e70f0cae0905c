from __future__ import annotations

import pytest
from pytest_lsp import LanguageClient

from .conftest import open_doc, inline, wait_ready

pytestmark = pytest.mark.model


async def test_ready_and_inline(client: LanguageClient, small_model, tmp_path) -> None:
    st = await wait_ready(client)
    assert st["state"] == "ready", st
    uri = open_doc(client, tmp_path / "a.py", "def add(a, b):\n    return a")
    items = await inline(client, uri, 1, 12)
    assert isinstance(items, list)
