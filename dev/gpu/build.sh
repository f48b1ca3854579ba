#!/usr/bin/env bash
# Run on the GPU machine after install.sh: builds ft against MLX's CUDA backend in
# build-gpu/ (kept between calls while the machine stays warm).
set -euo pipefail
SITE=$(python3 -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DMLX_ROOT="$SITE/mlx" \
      -DCMAKE_PREFIX_PATH=/root/ft-gpu/prefix/usr -DCUDNN_ROOT="$SITE/nvidia/cudnn" >/dev/null
cmake --build build-gpu -j "$(nproc)"
