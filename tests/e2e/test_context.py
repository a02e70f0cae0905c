"""Repository context through the real server: the workspace index, the watcher, progress,
unsaved buffers, secrets, and a completion that needs a name defined only in another file."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from ..conftest import DEFAULT_ID, ROOT, SMALL_ID
from .conftest import client_fixture, inline, open_doc, wait_ready

pytestmark = pytest.mark.model

ZORB = ROOT / "tests" / "fixtures" / "zorb_project"


async def prompt_for(client: LanguageClient, uri: str, line: int, character: int) -> dict[str, Any]:
    res = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(
            command="nearline.prompt", arguments=[uri, {"line": line, "character": character}]
        )
    )
    return dict(res)


async def index_state(client: LanguageClient) -> dict[str, Any]:
    return dict(
        await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="nearline.index", arguments=[])
        )
    )


async def wait_indexed(client: LanguageClient) -> dict[str, Any]:
    for _ in range(600):
        st = await index_state(client)
        if st["state"] == "ready":
            return st
        await asyncio.sleep(0.05)
    raise AssertionError(f"index not ready: {st}")


def copy_zorb(tmp_path: Path) -> Path:
    dest = tmp_path / "zorb"
    shutil.copytree(ZORB, dest)
    return dest


def _opts(model: str, composer: str) -> dict[str, Any]:
    return {
        "model": {"id": model},
        "context": {"composer": composer},
        "completion": {"debounceMs": 0, "timeoutMs": 120000},
    }


zorb_path_distance = client_fixture(_opts(DEFAULT_ID, "path-distance"), root=copy_zorb)
zorb_file_level = client_fixture(_opts(DEFAULT_ID, "file-level"), root=copy_zorb)
small_project = client_fixture(_opts(SMALL_ID, "path-distance"), root=copy_zorb)


async def _complete_zorb(client: LanguageClient) -> str:
    st = await wait_ready(client, timeout=300)
    assert st["state"] == "ready", st
    await wait_indexed(client)
    root: Path = client.root  # type: ignore[attr-defined]
    main = root / "main.py"
    uri = open_doc(client, main, main.read_text())
    items = await inline(client, uri, 4, 13)
    return items[0].insert_text if items else ""  # type: ignore[return-value]


@pytest.mark.default_model
async def test_cross_file_name_needs_path_distance(
    zorb_path_distance: LanguageClient, default_model: Path
) -> None:
    text = await _complete_zorb(zorb_path_distance)
    assert "qrx_fold_digest_v7" in text, text


@pytest.mark.default_model
async def test_file_level_cannot_know_the_name(
    zorb_file_level: LanguageClient, default_model: Path
) -> None:
    text = await _complete_zorb(zorb_file_level)
    assert "qrx_fold_digest_v7" not in text, text


async def test_index_progress_prompt_order_and_watcher(
    small_project: LanguageClient, small_model: Path
) -> None:
    client = small_project
    root: Path = client.root  # type: ignore[attr-defined]
    st = await wait_indexed(client)
    assert set(st["files"]) >= {"main.py", "helpers/zorb.py", "helpers/__init__.py"}
    # Work-done progress for the scan: begin ... end.
    kinds = [
        [type(v).__name__ for v in reports]
        for token, reports in client.progress_reports.items()
        if str(token).startswith("nearline-index")
    ]
    assert (
        kinds and kinds[0][0] == "WorkDoneProgressBegin" and kinds[0][-1] == "WorkDoneProgressEnd"
    )

    main = root / "main.py"
    uri = open_doc(client, main, main.read_text())
    res = await prompt_for(client, uri, 4, 13)
    paths = [p["path"] for p in res["parts"] if p["kind"] == "repo-file"]
    # Imported files nearest, the others farthest first, and the current file after them all.
    # Empty files (helpers/__init__.py) carry nothing and are left out.
    assert paths == ["helpers/zorb.py"]
    assert res["prompt"].index("qrx_fold_digest_v7") < res["prompt"].index("def send_frame")
    assert res["total_tokens"] == sum(p["tokens"] for p in res["parts"])

    # A file created while the server runs shows up in the next prompt.
    (root / "codec.py").write_text("def brand_new_codec_fn(data):\n    return data[::-1]\n")
    for _ in range(100):
        res = await prompt_for(client, uri, 4, 13)
        if "brand_new_codec_fn" in res["prompt"]:
            break
        await asyncio.sleep(0.1)
    assert "brand_new_codec_fn" in res["prompt"]
    paths = [p["path"] for p in res["parts"] if p["kind"] == "repo-file"]
    # Distance 0 from main.py: nearest of the others, after them; the file main.py imports
    # (helpers/zorb.py) stays nearest of all.
    assert paths == ["codec.py", "helpers/zorb.py"]

    # Deleting it takes it out again.
    (root / "codec.py").unlink()
    for _ in range(100):
        res = await prompt_for(client, uri, 4, 13)
        if "brand_new_codec_fn" not in res["prompt"]:
            break
        await asyncio.sleep(0.1)
    assert "brand_new_codec_fn" not in res["prompt"]


async def test_unsaved_buffers_win_and_secrets_stay_out(
    small_project: LanguageClient, small_model: Path
) -> None:
    client = small_project
    root: Path = client.root  # type: ignore[attr-defined]
    token = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    (root / ".env").write_text(f"GITHUB_TOKEN={token}\n")
    (root / "settings.py").write_text(f'GITHUB_TOKEN = "{token}"\nTIMEOUT = 30\n')
    await wait_indexed(client)
    # The helper file is open with unsaved edits: those are what gets composed.
    zorb = root / "helpers" / "zorb.py"
    open_doc(client, zorb, zorb.read_text() + "\n\ndef unsaved_only_helper():\n    return 42\n")
    main = root / "main.py"
    uri = open_doc(client, main, main.read_text() + f"\nSECRET = '{token}'\n")
    for _ in range(100):
        res = await prompt_for(client, uri, 4, 13)
        if "unsaved_only_helper" in res["prompt"] and "TIMEOUT = 30" in res["prompt"]:
            break
        await asyncio.sleep(0.1)
    assert "unsaved_only_helper" in res["prompt"]
    assert "TIMEOUT = 30" in res["prompt"]
    assert token not in res["prompt"]
    assert ".env" not in [p["path"] for p in res["parts"]]
    # The secret in the current file itself is redacted as well (cursor after it).
    res = await prompt_for(client, uri, 6, 0)
    assert token not in res["prompt"]
    items = await inline(client, uri, 4, 13)
    assert all(token not in (i.insert_text or "") for i in items)  # type: ignore[operator]
