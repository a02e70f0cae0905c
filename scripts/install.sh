#!/usr/bin/env bash
# Install Nearline into ./.venv and pull + verify the default model. Idempotent: a second run
# only checks (llama.cpp builds are cached per set of build flags in ~/.cache/nearline/wheels).
#
#   NEARLINE_CUDA=1 bash scripts/install.sh   # build llama.cpp with CUDA (GPU offload)
#   NEARLINE_KERNELS=avx2|avx512 ...          # one build, no measuring (default auto: on a CPU
#                                             # with AVX-512 both are built, measured, the faster kept)
#   NEARLINE_SKIP_MODEL=1 ...                 # do not pull the default model
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
LLAMA_VERSION="0.3.36"
# Built llama.cpp wheels, one folder per set of build flags: a wheel built for another CPU's
# kernels is never picked up by accident (pip's own cache keys wheels by version only).
WHEELS=${NEARLINE_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nearline/wheels}

cpu_has() { grep -m1 -E '^flags[[:space:]]*:' /proc/cpuinfo 2>/dev/null | grep -qw -- "$1"; }

# The default native build enables Intel AMX, and on virtual machines whose CPUs advertise it
# every decode then segfaults in ggml_backend_amx_mul_mat (llama.cpp issue 20824). So x86 builds
# name their kernels: AVX2/FMA/F16C everywhere, and a second build with AVX-512 (plus VNNI, BF16
# and VBMI where the CPU has them) on CPUs that have it. AMX never.
if [[ "$(uname -m)" == "x86_64" ]]; then
  AVX2_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
  AVX2_ARGS="$AVX2_ARGS -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
  AVX512_ARGS=""
  if cpu_has avx512f && cpu_has avx512bw && cpu_has avx512vl && cpu_has avx512dq; then
    AVX512_ARGS="$AVX2_ARGS -DGGML_AVX512=ON"
    cpu_has avx512_vnni && AVX512_ARGS="$AVX512_ARGS -DGGML_AVX512_VNNI=ON"
    cpu_has avx512_bf16 && AVX512_ARGS="$AVX512_ARGS -DGGML_AVX512_BF16=ON"
    cpu_has avx512vbmi && AVX512_ARGS="$AVX512_ARGS -DGGML_AVX512_VBMI=ON"
  fi
else
  AVX2_ARGS="-DGGML_NATIVE=ON"   # no AMX outside x86; the native build is the fast one
  AVX512_ARGS=""
fi
case "${NEARLINE_KERNELS:-auto}" in
  auto) ;;
  avx2) AVX512_ARGS="" ;;
  avx512)
    [[ -n "$AVX512_ARGS" ]] || { echo "nearline: NEARLINE_KERNELS=avx512 but this CPU has no AVX-512" >&2; exit 1; } ;;
  *) echo "nearline: NEARLINE_KERNELS must be auto, avx2 or avx512" >&2; exit 1 ;;
esac
if [[ "${NEARLINE_CUDA:-0}" == "1" ]]; then
  AVX2_ARGS="-DGGML_CUDA=on $AVX2_ARGS"
  [[ -z "$AVX512_ARGS" ]] || AVX512_ARGS="-DGGML_CUDA=on $AVX512_ARGS"
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

wheel_dir() {  # the cache folder of one set of build flags
  echo "$WHEELS/llama-cpp-python-$LLAMA_VERSION-$(printf '%s' "$1" | sha256sum | cut -c1-16)"
}

build_wheel() {  # ARGS LABEL -> prints the wheel's path (built once per flags, then cached)
  local dir; dir=$(wheel_dir "$1")
  if ! compgen -G "$dir/llama_cpp_python-*.whl" >/dev/null; then
    echo "==> building llama-cpp-python $LLAMA_VERSION for $2 (from source, a few minutes)" >&2
    mkdir -p "$dir"
    CMAKE_ARGS="$1" "$VPY" -m pip wheel -q --disable-pip-version-check --no-deps --no-cache-dir \
      -w "$dir.tmp" "llama-cpp-python==$LLAMA_VERSION" >&2
    mv "$dir.tmp"/llama_cpp_python-*.whl "$dir/" && rm -rf "$dir.tmp"
    printf '%s\n' "$1" > "$dir/cmake-args"
  fi
  compgen -G "$dir/llama_cpp_python-*.whl" | head -n 1
}

llama_ok() {
  # Installed from WHEEL, the right version, not built with AMX, and no kernels this CPU lacks
  # (a .venv copied from another machine).
  [[ "$(cat .venv/.nearline-llama-wheel 2>/dev/null)" == "$1" ]] || return 1
  "$VPY" - "$LLAMA_VERSION" "$(cpu_has avx512f && echo 1 || echo 0)" <<'PYEOF' 2>/dev/null
import sys
import llama_cpp
if llama_cpp.__version__ != sys.argv[1]:
    sys.exit(1)
info = llama_cpp.llama_print_system_info().decode()
if "AMX_INT8 = 1" in info or ("AVX512 = 1" in info and sys.argv[2] != "1"):
    sys.exit(1)
PYEOF
}

install_wheel() {
  if ! llama_ok "$1"; then
    echo "==> installing $(basename "$(dirname "$1")")"
    "$VPY" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$1"
    printf '%s\n' "$1" > .venv/.nearline-llama-wheel
    llama_ok "$1" || { echo "nearline: llama-cpp-python build check failed ($1)" >&2; exit 1; }
  fi
}

AVX2_WHEEL=$(build_wheel "$AVX2_ARGS" "AVX2")
AVX512_WHEEL=""
[[ -z "$AVX512_ARGS" ]] || AVX512_WHEEL=$(build_wheel "$AVX512_ARGS" "AVX-512")
# The faster build measured earlier on this machine, if any (below); else AVX2 for now.
CHOICE_FILE="$WHEELS/choice-$(printf '%s|%s' "$AVX2_WHEEL" "$AVX512_WHEEL" | sha256sum | cut -c1-16)"
CHOSEN=$(cat "$CHOICE_FILE" 2>/dev/null || echo "$AVX2_WHEEL")
[[ -f "$CHOSEN" ]] || CHOSEN=$AVX2_WHEEL
# llama-cpp-python's own dependencies (numpy, diskcache, jinja2), which --no-deps skipped.
"$VPY" -m pip install -q --disable-pip-version-check "numpy>=1.20" "diskcache>=5.6.1" "jinja2>=2.11.3" "typing-extensions>=4.5"
install_wheel "$CHOSEN"

echo "==> installing nearline (editable) with dev tools"
"$VPY" -m pip install -q --disable-pip-version-check -e ".[dev]"

if [[ "${NEARLINE_SKIP_MODEL:-0}" != "1" ]]; then
  echo "==> default model"
  .venv/bin/nearline models pull
fi

# Two builds for this CPU: measure them once on the default model and keep the faster one
# (`nearline bench kernels`). Without the model there is nothing to measure with: AVX2 stays.
if [[ -n "$AVX512_WHEEL" && ! -f "$CHOICE_FILE" && "${NEARLINE_SKIP_MODEL:-0}" != "1" ]]; then
  echo "==> measuring the AVX2 and AVX-512 builds on this CPU (about a minute, once)"
  if .venv/bin/nearline bench kernels "$AVX2_WHEEL" "$AVX512_WHEEL" --tokens 256 --gen 16 \
      --rounds 3 --json "$CHOICE_FILE.json" --pick "$CHOICE_FILE"; then
    install_wheel "$(cat "$CHOICE_FILE")"
  else
    echo "nearline: could not measure the builds; keeping AVX2" >&2
  fi
fi
if [[ "${NEARLINE_SKIP_MODEL:-0}" != "1" ]]; then
  # model.id auto: measured here once (with more than one model pulled), not at the first start.
  .venv/bin/nearline models auto || echo "nearline: could not choose a model now; the server will" >&2
fi
echo "==> done: .venv/bin/nearline is ready"
