"""What users of completion plugins ask for most (#16), through the real server and model:
per-language control, manual trigger, notebook cells, and the "generating" signal."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.uris import from_fs_path
from pytest_lsp import ClientServerConfig, LanguageClient

from ..conftest import DEFAULT_ID, SERVER_CMD, SMALL_ID, server_env
from .conftest import capabilities, inline, open_doc, prompt_at, status, wait_ready

SHIPPING = "def compute_shipping_cost(weight_kg):\n    return 4.5 + 1.25 * weight_kg\n"


def _project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "util.py").write_text("def double(x):\n    return 2 * x\n")
    (root / "notes.md").write_text("# Notes\n\nSome prose.\n")
    (root / "analysis.ipynb").write_text('{"cells": [], "metadata": {}, "nbformat": 4}\n')
    return root


def _fixture(options: dict[str, Any], notebooks: bool = True) -> Any:
    @pytest_lsp.fixture(
        config=ClientServerConfig(server_command=SERVER_CMD, server_env=server_env())
    )
    async def fixture(lsp_client: LanguageClient, tmp_path: Path):
        root = _project(tmp_path)
        statuses: list[dict[str, Any]] = []

        @lsp_client.feature("nearline/status")
        def on_status(params: Any) -> None:
            get = params.get if isinstance(params, dict) else lambda k: getattr(params, k, None)
            statuses.append({"state": get("state"), "uri": get("uri")})

        caps = capabilities()
        caps.experimental = {"nearlineStatus": True}
        if notebooks:
            caps.notebook_document = types.NotebookDocumentClientCapabilities(
                synchronization=types.NotebookDocumentSyncClientCapabilities()
            )
        uri = from_fs_path(str(root)) or ""
        lsp_client.root = root  # type: ignore[attr-defined]
        lsp_client.statuses = statuses  # type: ignore[attr-defined]
        lsp_client.init_result = await lsp_client.initialize_session(  # type: ignore[attr-defined]
            types.InitializeParams(
                capabilities=caps,
                root_uri=uri,
                workspace_folders=[types.WorkspaceFolder(uri=uri, name="proj")],
                initialization_options=options,
            )
        )
        yield
        await lsp_client.shutdown_session()

    return fixture


BASE = {"model": {"id": SMALL_ID}, "completion": {"debounceMs": 0, "timeoutMs": 60000}}
client = _fixture(BASE)
manual = _fixture({**BASE, "completion": {**BASE["completion"], "trigger": "manual"}})
only_markdown = _fixture({**BASE, "completion": {**BASE["completion"], "languages": ["markdown"]}})
plain = _fixture(BASE, notebooks=False)
default_model = _fixture({"model": {"id": DEFAULT_ID}, "completion": {"debounceMs": 0}})


async def _auto(client: LanguageClient, uri: str, line: int, character: int) -> list[Any]:
    res = await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=line, character=character),
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Automatic
            ),
        )
    )
    return list(res.items) if isinstance(res, types.InlineCompletionList) else list(res or [])


async def _list(client: LanguageClient, uri: str, line: int, char: int, invoked: bool) -> Any:
    kind = (
        types.CompletionTriggerKind.Invoked
        if invoked
        else types.CompletionTriggerKind.TriggerCharacter
    )
    return await client.text_document_completion_async(
        types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=line, character=char),
            context=types.CompletionContext(
                trigger_kind=kind, trigger_character=None if invoked else "="
            ),
        )
    )


async def _stats(client: LanguageClient) -> dict[str, Any]:
    return dict((await status(client))["stats"])


# -- per-language control ---------------------------------------------------------------------
async def test_prose_costs_no_model_run_and_no_warm_up(client: LanguageClient) -> None:
    assert (await wait_ready(client))["state"] == "ready"
    root: Path = client.root  # type: ignore[attr-defined]
    before = await _stats(client)
    md = open_doc(client, root / "notes.md", "# Notes\n\nThe plan is to ", "markdown")
    txt = open_doc(client, root / "todo.txt", "buy milk and ", "plaintext")
    await asyncio.sleep(0.5)  # a warm-up would have started by now
    assert await inline(client, md, 2, 15) == []
    assert await inline(client, txt, 0, 13) == []
    after = await _stats(client)
    assert after["model"] == before["model"] and after["warmups"] == before["warmups"]
    assert after["language_off"] == before["language_off"] + 2
    # Code still completes.
    py = open_doc(client, root / "pkg" / "main.py", "from pkg.util import double\n\nvalue = ")
    await inline(client, py, 2, 8)
    assert (await _stats(client))["model"] == after["model"] + 1


async def test_an_allow_list_turns_a_language_on(only_markdown: LanguageClient) -> None:
    client = only_markdown
    assert (await wait_ready(client))["state"] == "ready"
    root: Path = client.root  # type: ignore[attr-defined]
    before = await _stats(client)
    py = open_doc(client, root / "pkg" / "main.py", "value = ")
    assert await inline(client, py, 0, 8) == []
    md = open_doc(client, root / "notes.md", "# Notes\n\nThe plan is to ", "markdown")
    await inline(client, md, 2, 15)
    after = await _stats(client)
    assert after["language_off"] == before["language_off"] + 1
    assert after["model"] == before["model"] + 1


# -- manual trigger ---------------------------------------------------------------------------
async def test_manual_mode_runs_the_model_only_when_asked(manual: LanguageClient) -> None:
    client = manual
    assert (await wait_ready(client))["state"] == "ready"
    root: Path = client.root  # type: ignore[attr-defined]
    text = "from pkg.util import double\n\n\ndef quadruple(x):\n    return "
    uri = open_doc(client, root / "pkg" / "main.py", text)
    before = await _stats(client)
    # Typing: automatic requests, list requests from trigger characters.
    for _ in range(3):
        assert await _auto(client, uri, 4, 11) == []
    listed = await _list(client, uri, 4, 11, invoked=False)
    assert listed is None or not listed.items
    mid = await _stats(client)
    assert mid["model"] == before["model"], "no model ran while typing"
    assert mid["untriggered"] == before["untriggered"] + 4
    # The trigger key: an Invoked request runs the model.
    await inline(client, uri, 4, 11)
    await _list(client, uri, 4, 11, invoked=True)
    after = await _stats(client)
    assert after["model"] + after["typing_through"] > mid["model"] + mid["typing_through"]
    assert after["model"] >= mid["model"] + 1


# -- notebook cells ---------------------------------------------------------------------------
def _open_notebook(
    client: LanguageClient, root: Path, cells: list[tuple[str, str, str]]
) -> list[str]:
    nb_uri = from_fs_path(str(root / "analysis.ipynb")) or ""
    items, nb_cells = [], []
    for n, (kind, lang, text) in enumerate(cells):
        cell_uri = f"vscode-notebook-cell:{root / 'analysis.ipynb'}#cell{n}"
        items.append(types.TextDocumentItem(uri=cell_uri, language_id=lang, version=1, text=text))
        nb_cells.append(
            types.NotebookCell(
                kind=types.NotebookCellKind.Code
                if kind == "code"
                else types.NotebookCellKind.Markup,
                document=cell_uri,
            )
        )
    client.notebook_document_did_open(
        types.DidOpenNotebookDocumentParams(
            notebook_document=types.NotebookDocument(
                uri=nb_uri, notebook_type="jupyter-notebook", version=1, cells=nb_cells
            ),
            cell_text_documents=items,
        )
    )
    return [i.uri for i in items]


async def test_a_cell_completes_after_the_cells_above_it(client: LanguageClient) -> None:
    assert (await wait_ready(client))["state"] == "ready"
    root: Path = client.root  # type: ignore[attr-defined]
    assert client.init_result.capabilities.notebook_document_sync is not None  # type: ignore[attr-defined]
    uris = _open_notebook(
        client,
        root,
        [("code", "python", "import math\n" + SHIPPING), ("markup", "markdown", "## Cost of a parcel"),
         ("code", "python", "cost = ")],
    )  # fmt: skip
    await asyncio.sleep(0.2)
    shown = await prompt_at(client, uris[2], 0, 7)
    prompt = shown["prompt"]
    # The first cell, the markdown as a comment, then the cell itself, in that order.
    assert prompt.index("def compute_shipping_cost") < prompt.index("# ## Cost of a parcel")
    assert prompt.index("# ## Cost of a parcel") < prompt.rindex("cost = ")
    # The notebook's JSON is never read as code, and the repository context is the workspace's.
    assert '"nbformat"' not in prompt and "def double" in prompt
    before = await _stats(client)
    await inline(client, uris[2], 0, 7)
    assert (await _stats(client))["model"] == before["model"] + 1


async def test_without_notebook_sync_a_cell_is_its_own_document(plain: LanguageClient) -> None:
    client = plain
    assert client.init_result.capabilities.notebook_document_sync is None  # type: ignore[attr-defined]
    assert (await wait_ready(client))["state"] == "ready"
    root: Path = client.root  # type: ignore[attr-defined]
    cell = f"vscode-notebook-cell:{root / 'analysis.ipynb'}#cell1"
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=cell, language_id="python", version=1, text="cost = "
            )
        )
    )
    shown = await prompt_at(client, cell, 0, 7)
    assert "compute_shipping_cost" not in shown["prompt"] and shown["prompt"].endswith("cost = ")


@pytest.mark.default_model
async def test_a_cell_uses_a_name_defined_in_the_first(default_model: LanguageClient) -> None:
    client = default_model
    assert (await wait_ready(client, timeout=300))["state"] == "ready"
    root: Path = client.root  # type: ignore[attr-defined]
    uris = _open_notebook(
        client, root, [("code", "python", SHIPPING), ("code", "python", "parcel_cost = compute_")]
    )
    items = await inline(client, uris[1], 0, 22)
    assert items and str(items[0].insert_text).startswith("shipping_cost("), items


# -- the "generating" signal ------------------------------------------------------------------
async def test_status_notifications_and_progress_for_a_model_run(client: LanguageClient) -> None:
    assert (await wait_ready(client))["state"] == "ready"
    root: Path = client.root  # type: ignore[attr-defined]
    statuses: list[dict[str, Any]] = client.statuses  # type: ignore[attr-defined]
    for _ in range(100):  # the scan's end is announced too
        if any(s["state"] == "ready" and s["uri"] is None for s in statuses):
            break
        await asyncio.sleep(0.05)
    seen = [s["state"] for s in statuses]
    assert "loading" in seen and seen.index("loading") < len(seen) - 1
    statuses.clear()
    uri = open_doc(client, root / "pkg" / "main.py", "from pkg.util import double\n\nvalue = ")
    await inline(client, uri, 2, 8)
    for _ in range(50):
        if len(statuses) >= 2:
            break
        await asyncio.sleep(0.05)
    assert [s["state"] for s in statuses[:2]] == ["generating", "ready"], statuses
    assert all(s["uri"] == uri for s in statuses[:2])
    run = [r for r in (await status(client))["recent"] if r.get("source") == "model"][-1]
    titles = [
        r.title for reports in client.progress_reports.values() for r in reports
        if isinstance(r, types.WorkDoneProgressBegin)
    ]  # fmt: skip
    # Shown only for a run long enough to notice (300 ms); the margin covers the round trips.
    if run["engine_ms"] > 600:
        assert "Nearline" in titles
    elif run["latency_ms"] < 250:
        assert "Nearline" not in titles
