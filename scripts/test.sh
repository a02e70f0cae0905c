#!/usr/bin/env bash
# The whole test suite, from a fresh clone: install (idempotent), lint, type-check, test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/nearline models pull smollm2-135m-instruct-q4_1
.venv/bin/ruff check server tests
.venv/bin/ruff format --check server tests
.venv/bin/mypy
.venv/bin/python -m pytest -q "$@"
