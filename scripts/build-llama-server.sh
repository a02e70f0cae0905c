#!/usr/bin/env bash
# Build llama.cpp's own C++ `llama-server` from the llama.cpp sources vendored inside the
# llama-cpp-python sdist Nearline pins, so benchmarks and the remote-engine tests compare against
# exactly the runtime Nearline embeds. Cached: a second run only prints the path.
#
#   bash scripts/build-llama-server.sh      # prints the binary's path on the last line
set -euo pipefail
cd "$(dirname "$0")/.."
LLAMA_VERSION="0.3.36"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/nearline/llama-server/$LLAMA_VERSION"
BIN="$CACHE/bin/llama-server"
if [[ -x "$BIN" ]]; then
  echo "$BIN"
  exit 0
fi
command -v cmake >/dev/null 2>&1 || { echo "nearline: cmake is needed (pip install cmake, or apt-get install cmake)" >&2; exit 1; }
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
echo "==> downloading the llama-cpp-python $LLAMA_VERSION sdist" >&2
PY=${PYTHON:-.venv/bin/python}
[[ -x "$PY" ]] || PY=python3
"$PY" -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
  -d "$WORK" "llama-cpp-python==$LLAMA_VERSION" >&2
tar -xzf "$WORK"/llama_cpp_python-*.tar.gz -C "$WORK"
SRC=$(echo "$WORK"/llama_cpp_python-*/vendor/llama.cpp)
# Same CPU flags as the Python build (scripts/install.sh): no AMX, which crashes on these VMs.
echo "==> building llama-server (a few minutes)" >&2
cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
  -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_TOOLS=ON >&2
cmake --build "$WORK/build" --target llama-server -j "$(nproc)" >&2
mkdir -p "$CACHE/bin"
cp "$WORK/build/bin/llama-server" "$BIN"
echo "$BIN"
