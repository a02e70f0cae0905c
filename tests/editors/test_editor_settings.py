"""The editor integrations name the server's settings the way the server reads them.

No editor and no model: editors/vscode/package.json's contributed settings and
editors/nvim/lsp/nearline.lua's init_options are checked against ``nearline.config``, so a
setting renamed, added or re-defaulted in the server shows up here.
"""

from __future__ import annotations

import json
import re
from typing import Any

from nearline.weights.catalog import load_catalog
from nearline.config import Settings, parse_settings, settings_to_dict

from ..conftest import ROOT

EDITORS = ROOT / "editors"
# Settings of the extension itself, not of the server ("enable": the language-scoped switch).
CLIENT_SECTIONS = {"server", "editor", "trace", "enable"}
# Server settings deliberately not offered in editor UIs (tuning knobs and internals).
INTERNAL = {"model.batchSize", "context.sameLanguage"}


def server_defaults() -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for section, values in settings_to_dict(Settings()).items():
        for key, value in values.items():
            flat[f"{section}.{key}"] = value
    flat["model.id"] = load_catalog().default_id  # None there means "the catalog's default"
    return flat


def vscode_settings() -> dict[str, dict[str, Any]]:
    pkg = json.loads((EDITORS / "vscode" / "package.json").read_text())
    props: dict[str, dict[str, Any]] = pkg["contributes"]["configuration"]["properties"]
    return {
        k.removeprefix("nearline."): v
        for k, v in props.items()
        if k.removeprefix("nearline.").split(".")[0] not in CLIENT_SECTIONS
    }


def test_vscode_contributes_every_server_setting() -> None:
    server = set(server_defaults()) - INTERNAL
    assert set(vscode_settings()) == server


def test_vscode_defaults_match_the_server() -> None:
    defaults = server_defaults()
    for key, prop in vscode_settings().items():
        # null in package.json = "unset": the server (or its catalog) decides.
        if prop.get("default") is not None:
            assert prop["default"] == defaults[key], key


def test_vscode_defaults_parse_cleanly() -> None:
    raw: dict[str, Any] = {}
    for key, prop in vscode_settings().items():
        if prop.get("default") is not None:
            section, name = key.split(".", 1)
            raw.setdefault(section, {})[name] = prop["default"]
    _, problems = parse_settings(raw)
    assert problems == []


def test_vscode_enums_match_the_server() -> None:
    from nearline.config import BACKENDS, COMPOSERS, ROPE_SCALING_TYPES

    props = vscode_settings()
    assert set(props["context.composer"]["enum"]) == set(COMPOSERS)
    assert set(props["engine.backend"]["enum"]) == set(BACKENDS)
    assert {v for v in props["model.ropeScaling"]["enum"] if v is not None} == set(
        ROPE_SCALING_TYPES
    )


def test_nvim_init_options_are_server_settings_with_server_defaults() -> None:
    lua = (EDITORS / "nvim" / "lsp" / "nearline.lua").read_text()
    # The table field (indented two spaces), not the usage example in the header comment.
    start = lua.index("\n  init_options = {")
    block = lua[start : lua.index("\n  },\n", start)]
    defaults = server_defaults()
    section = None
    seen: dict[str, Any] = {}
    for name, value in re.findall(r"(\w+) = (\{|'[^']*'|\d+|true|false)", block):
        if value == "{":
            section = name if name != "init_options" else None
            continue
        parsed: Any = json.loads(value.replace("'", '"'))
        seen[f"{section}.{name}"] = parsed
    assert seen, block
    for key, value in seen.items():
        assert key in defaults, key
        assert value == defaults[key], key
