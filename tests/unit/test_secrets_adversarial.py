"""Secrets, adversarially: a project planting every kind of secret the index rules cover, in
files never to be read, in gitignored files and inside ordinary source files; the prompt is
composed at the start, middle and end of every line of every file (the service's own
``build_prompt`` with a real index and the default model's prompt format), with the default
budget and with a tiny one whose window cuts through keys and tokens, and no piece of any
planted secret may ever appear. Tokens are estimated here (thousands of prompts; the
tokenizer does not decide what is redacted): tests/e2e/test_secrets_lsp.py runs the real one
through the server."""

from __future__ import annotations

from pathlib import Path

import pytest

from nearline.completion.service import CompletionService, Query
from nearline.config import IndexSettings, parse_settings
from nearline.workspace.index import WorkspaceIndex, language_for

from ..conftest import DEFAULT_ID
from ..secretfixture import leaks, make_project
from .fakes import approx_count


def _service(root: Path, budget: int | None, chars_per_token: int = 3) -> CompletionService:
    raw: dict[str, object] = {"model": {"id": DEFAULT_ID}, "completion": {"suffixLines": 2}}
    if budget is not None:
        raw["context"] = {"budgetTokens": budget}
    settings, problems = parse_settings(raw)
    assert not problems
    count = approx_count if chars_per_token == 3 else (lambda t: len(t) // chars_per_token)
    svc = CompletionService(settings, count_tokens=count)
    idx = WorkspaceIndex([root], IndexSettings(), count_tokens=svc.count_tokens)
    idx.scan()
    svc.index = idx
    return svc


@pytest.mark.parametrize(
    ("budget", "chars_per_token"),
    [
        (None, 3),
        (160, 3),
        # More characters per token than the prompt builder's window assumes: the prompt then
        # starts where the window does, cutting through keys and tokens.
        (160, 64),
    ],
)
def test_no_planted_secret_reaches_any_prompt(
    tmp_path: Path, budget: int | None, chars_per_token: int
) -> None:
    planted = make_project(tmp_path / "shop")
    root = planted.root
    needles = planted.needles
    svc = _service(root, budget, chars_per_token)
    idx = svc.index
    assert isinstance(idx, WorkspaceIndex)
    # The index itself holds no secret (and no secret file).
    indexed = {f.rel for f in idx.files()}
    assert "app/config.py" in indexed and "app/big_module.py" in indexed
    for rel in (".env", ".env.local", "id_rsa", "server.pem", ".netrc", "credentials.json", "local_settings.py", "build/out.js"):  # fmt: skip
        assert rel not in indexed, rel
    for f in idx.files():
        assert leaks(idx.text(f.path) or "", needles) == [], f.rel

    prompts = 0
    for path in planted.files:
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(root).as_posix()
        # What the LSP layer does for an open document: its text overlays the index.
        idx.set_overlay(path, text)
        idx.set_current(path)
        lines = text.split("\n")
        for n, line in enumerate(lines):
            for col in sorted({0, len(line) // 3, len(line) // 2, len(line)}):
                q = Query(
                    uri=path.as_uri(), text=text, line=n, col=col, path=path, rel=rel,
                    language=language_for(rel), root=root,
                )  # fmt: skip
                prompt = svc.build_prompt(q).text
                prompts += 1
                found = leaks(prompt, needles)
                assert not found, f"{rel}:{n + 1}:{col + 1} leaks {found}"
        idx.drop_overlay(path)
    assert prompts > 1000
    # Secret files get no completions at all.
    env = root / ".env"
    q = Query(
        uri=env.as_uri(), text=env.read_text(), line=0, col=3, path=env, rel=".env", root=root
    )
    assert svc.secret_document(q) and svc.build_prompt(q).text.count("AWS") == 0
