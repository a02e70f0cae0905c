#!/usr/bin/env bash
# The VS Code end-to-end check: setup (cached), nearline.vsix (rebuilt by ci.sh when missing or
# older than the extension's sources), then e2e.mjs. Screenshots and result.json go to
# $E2E_OUT (default: bench-results/vscode-e2e, not committed).
# NEARLINE_CMD (JSON list) defaults to the repository's .venv/bin/nearline serve.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
ext="$(cd "$here/.." && pwd)"
repo="$(cd "$ext/../.." && pwd)"
t0=$SECONDS
eval "$(bash "$here/setup.sh" | grep -E '^(CODE_SERVER|CODE_SERVER_NODE|CHROMIUM)=' | sed 's/^/export /')"
echo "e2e setup: $((SECONDS - t0))s"
vsix="$ext/nearline.vsix"
if [ -n "${E2E_REBUILD:-}" ] || [ ! -s "$vsix" ] \
  || [ -n "$(find "$ext/src" "$ext/package.json" -newer "$vsix" -print -quit)" ]; then
  bash "$ext/ci.sh"
fi
export NEARLINE_CMD="${NEARLINE_CMD:-[\"$repo/.venv/bin/nearline\", \"serve\"]}"
export E2E_OUT="${E2E_OUT:-$repo/bench-results/vscode-e2e}"
node "$here/e2e.mjs"
