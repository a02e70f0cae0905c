"""Completion handlers: ``textDocument/inlineCompletion`` (ghost text) and
``textDocument/completion`` (the same suggestions as list items, for clients without inline
completion). Both ask the service and only shape its answer for the client."""

from __future__ import annotations

from lsprotocol import types

from nearline.completion.service import Outcome, OutOfRange, Query
from nearline.completion.stats import ACCEPT_COMMAND
from nearline.lsp.server import NearlineServer


async def on_inline(
    ls: NearlineServer, params: types.InlineCompletionParams
) -> types.InlineCompletionList | None:
    q = ls.query(params.text_document.uri, params.position)
    if q is None or ls.service is None:
        return types.InlineCompletionList(items=[])
    if not _asked(ls, params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked):
        return types.InlineCompletionList(items=[])
    outcome = await _complete(ls, q)
    pos = params.position
    suggestions = outcome.suggestions if outcome else []
    ls.record_shown(suggestions, q.language)
    items = [
        types.InlineCompletionItem(
            insert_text=s.text,
            range=types.Range(start=pos, end=pos),
            # LSP 3.18: the client runs this on accept; it only bumps a local counter.
            command=_accept_command(s.id),
        )
        for s in suggestions
    ]
    return types.InlineCompletionList(items=items)


async def on_completion(ls: NearlineServer, params: types.CompletionParams) -> types.CompletionList:
    q = ls.query(params.text_document.uri, params.position)
    if q is None or ls.service is None:
        return types.CompletionList(is_incomplete=True, items=[])
    ctx = params.context
    if not _asked(ls, ctx is not None and ctx.trigger_kind == types.CompletionTriggerKind.Invoked):
        return types.CompletionList(is_incomplete=True, items=[])
    outcome = await _complete(ls, q)
    doc = ls.document(params.text_document.uri)
    before = q.text[q.offset - q.col : q.offset] if q.offset is not None else ""
    # Clients filter items by the word before the cursor: replace that word and start the
    # new text with it, so the item survives filtering and inserts the full suggestion.
    i = len(before)
    while i > 0 and (before[i - 1].isalnum() or before[i - 1] == "_"):
        i -= 1
    word = before[i:]
    pos = params.position
    start = types.Position(
        line=pos.line, character=pos.character - (doc.units(word) if doc else len(word))
    )
    items = []
    suggestions = outcome.suggestions if outcome else []
    ls.record_shown(suggestions, q.language)
    for n, s in enumerate(suggestions):
        new_text = word + s.text
        items.append(
            types.CompletionItem(
                label=new_text.strip() or s.text,
                kind=types.CompletionItemKind.Text,
                detail="Nearline",
                filter_text=new_text,
                sort_text=f"{n:04d}",
                preselect=n == 0,
                insert_text_format=types.InsertTextFormat.PlainText,
                text_edit=types.TextEdit(
                    range=types.Range(start=start, end=params.position), new_text=new_text
                ),
                command=_accept_command(s.id),
            )
        )
    # Incomplete: the client asks again as the user types, so it sees fresh suggestions.
    return types.CompletionList(is_incomplete=True, items=items)


def _asked(ls: NearlineServer, invoked: bool) -> bool:
    """Whether to answer: always while typing (``completion.trigger: automatic``); in manual
    mode only when the user asked (the editor's trigger key), counting the rest."""
    if ls.settings.completion.trigger != "manual" or invoked:
        return True
    assert ls.service is not None
    ls.service.untriggered()
    return False


async def _complete(ls: NearlineServer, q: Query) -> Outcome | None:
    assert ls.service is not None
    try:
        return await ls.service.complete(q)
    except OutOfRange:
        return None


def _accept_command(suggestion_id: str) -> types.Command:
    return types.Command(
        title="Nearline: suggestion accepted", command=ACCEPT_COMMAND, arguments=[suggestion_id]
    )
