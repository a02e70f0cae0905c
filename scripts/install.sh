#!/usr/bin/env bash
# Install Nearline into ./.venv and pull + verify the default model. Idempotent: a second run
# only checks (pip caches the llama-cpp-python wheel it built the first time).
#
#   NEARLINE_CUDA=1 bash scripts/install.sh   # build llama.cpp with CUDA (GPU offload)
#   NEARLINE_SKIP_MODEL=1 ...                 # do not pull the default model
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
LLAMA_VERSION="0.3.36"

# The default native build enables Intel AMX, and on virtual machines whose CPUs advertise it
# every decode then segfaults in ggml_backend_amx_mul_mat (llama.cpp issue 20824). Build for
# AVX2/FMA/F16C explicitly instead: portable and still fast.
if [[ "${NEARLINE_CUDA:-0}" == "1" ]]; then
  export CMAKE_ARGS="-DGGML_CUDA=on -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
else
  export CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
fi

if ! command -v c++ >/dev/null 2>&1 && ! command -v g++ >/dev/null 2>&1; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing a C++ compiler (build-essential) to build llama.cpp"
    apt-get update -qq && apt-get install -y -qq build-essential >/dev/null
  else
    echo "nearline: a C++ compiler is needed to build llama.cpp (apt-get install build-essential)" >&2
    exit 1
  fi
fi

if [[ ! -x .venv/bin/python ]]; then
  echo "==> creating .venv"
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
"$VPY" -m pip install -q --disable-pip-version-check --upgrade pip wheel

llama_ok() {
  # Installed, the right version, and not built with AMX (see above).
  "$VPY" - "$LLAMA_VERSION" <<'PYEOF' 2>/dev/null
import sys
import llama_cpp
if llama_cpp.__version__ != sys.argv[1]:
    sys.exit(1)
info = llama_cpp.llama_print_system_info().decode()
sys.exit(1 if "AMX_INT8 = 1" in info else 0)
PYEOF
}

if ! llama_ok; then
  echo "==> installing llama-cpp-python $LLAMA_VERSION (built from source, a few minutes the first time)"
  "$VPY" -m pip install -q --disable-pip-version-check "llama-cpp-python==$LLAMA_VERSION"
  if ! llama_ok; then
    echo "==> cached llama-cpp-python wheel has AMX or the wrong version; rebuilding"
    "$VPY" -m pip install -q --disable-pip-version-check --no-cache-dir --force-reinstall --no-deps \
      "llama-cpp-python==$LLAMA_VERSION"
    llama_ok || { echo "nearline: llama-cpp-python build check failed" >&2; exit 1; }
  fi
fi

echo "==> installing nearline (editable) with dev tools"
"$VPY" -m pip install -q --disable-pip-version-check -e ".[dev]"

if [[ "${NEARLINE_SKIP_MODEL:-0}" != "1" ]]; then
  echo "==> default model"
  .venv/bin/nearline models pull
fi
echo "==> done: .venv/bin/nearline is ready"
