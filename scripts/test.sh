#!/usr/bin/env bash
# The whole test suite, from a fresh clone: install (idempotent), lint, type-check, test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/nearline models pull smollm2-135m-instruct-q4_1
.venv/bin/ruff check server tests
.venv/bin/ruff format --check server tests
.venv/bin/mypy
# The VS Code extension: npm ci, compile, lint, unit tests, package (.vsix); then the end-to-end
# test's setup (Node 24, code-server, chromium, playwright-core; cached in
# ~/.cache/nearline-vscode-e2e, seconds when warm) so that tests/e2e/test_vscode.py only runs it.
if command -v npm >/dev/null 2>&1; then
  bash editors/vscode/ci.sh
  PYTHON=.venv/bin/python bash editors/vscode/e2e/setup.sh
else
  echo "WARNING: npm not found: the VS Code extension was not built or tested" >&2
fi
.venv/bin/python -m pytest -q "$@"
