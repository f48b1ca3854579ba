#!/usr/bin/env bash
# Run here, once per machine: puts what the GPU machine lacks under .carry/ (ignored by git)
#   .carry/mlx1, .carry/mlx2  the mlx-cuda-13 wheel split in two (one call carries 64 MiB)
#   .carry/debs               Debian packages the build needs that the GPU image lacks
set -euo pipefail
cd "$(dirname "$0")/../.."
MLX_VERSION=$(sed -n 's/^MLX_VERSION=//p' setup.sh)
WHEEL=mlx_cuda_13-${MLX_VERSION}-py3-none-manylinux_2_35_x86_64.whl
mkdir -p .carry/wheel .carry/mlx1 .carry/mlx2 .carry/debs
if [[ ! -f .carry/wheel/$WHEEL ]]; then
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_35_x86_64 -d .carry/wheel "mlx-cuda-13==$MLX_VERSION"
fi
rm -f .carry/mlx1/* .carry/mlx2/*
split -n 2 -d ".carry/wheel/$WHEEL" ".carry/part."
mv .carry/part.00 .carry/mlx1/ && mv .carry/part.01 .carry/mlx2/
(cd .carry/mlx1 && sha256sum "../wheel/$WHEEL" | sed "s#../wheel/##" > wheel.sha256)
(cd .carry/debs && apt-get download libcli11-dev nlohmann-json3-dev libpcre2-dev libutf8proc-dev \
  zlib1g-dev libyaml-cpp-dev libyaml-cpp0.7 2>/dev/null)
ls -la .carry/mlx1 .carry/mlx2 .carry/debs
