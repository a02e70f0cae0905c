#!/usr/bin/env bash
# The optional VS Code end-to-end check: setup (cached), build nearline.vsix, run e2e.mjs.
# NEARLINE_CMD (JSON list) defaults to the repository's .venv/bin/nearline serve.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
eval "$(bash "$here/setup.sh" | grep -E '^(CODE_SERVER|CODE_SERVER_NODE|CHROMIUM)=' | sed 's/^/export /')"
[ -s "$here/../nearline.vsix" ] && [ -z "${E2E_REBUILD:-}" ] || bash "$here/../ci.sh"
export NEARLINE_CMD="${NEARLINE_CMD:-[\"$repo/.venv/bin/nearline\", \"serve\"]}"
export E2E_OUT="${E2E_OUT:-$here/../e2e-out}"
node "$here/e2e.mjs"
