#!/usr/bin/env bash
# The VS Code extension's checks, from a clean checkout: install (exactly package-lock.json),
# compile, lint, unit tests, package. Needs Node >= 20 and npm; reaches only the npm registry.
# Leaves nearline.vsix here.
set -euo pipefail
cd "$(dirname "$0")"

step() { printf '\n== %s\n' "$*"; }
t0=$SECONDS

step "npm ci"
# --ignore-scripts: nothing here needs an install script, and @vscode/vsce-sign's postinstall
# would try to download a signing binary (only used to publish, never to package).
npm ci --ignore-scripts --no-audit --no-fund

step "compile"
npm run --silent compile

step "lint"
npm run --silent lint

step "test"
node --test out/test/

step "package"
rm -f nearline.vsix
npx --no-install vsce package --allow-missing-repository --out nearline.vsix
test -s nearline.vsix

printf '\nvscode extension: ok in %ss (nearline.vsix, %s bytes)\n' "$((SECONDS - t0))" "$(stat -c %s nearline.vsix)"
