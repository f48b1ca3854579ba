#!/usr/bin/env bash
# ft against transformers+PEFT on one GPU, one after the other: the Llama-3.2-1B shape,
# LoRA r16 (alpha 32) on every linear layer, bfloat16, batch 4 x 2048 tokens, AdamW at
# 1e-4, random token ids. MFU against 989 TFLOP/s (an H100's dense bf16) on both sides.
#
#   PYTHON=/path/to/python bench/compare_gpu.sh
#
# PYTHON needs torch (CUDA), transformers and peft (default python3). Settings through the
# environment: FT (build/ft; build-gpu/ft when that exists), SHAPE (llama1b), BATCH (4),
# SEQ (2048), STEPS (10). MLX_PYTHON, when set, is a python with mlx (CUDA) and mlx-lm
# that adds mlx-lm's LoRA trainer as a third side. A side that fails (out of memory, no
# GPU) prints an error line and the others still run.
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
FT=${FT:-}
[[ -z $FT && -x build-gpu/ft ]] && FT=build-gpu/ft
FT=${FT:-build/ft}
SHAPE=${SHAPE:-llama1b}
BATCH=${BATCH:-4}
SEQ=${SEQ:-2048}
STEPS=${STEPS:-10}
HF_BASELINE=../shared/bench/hf_baseline.py
RESULTS=$(mktemp)
trap 'rm -f "$RESULTS"' EXIT
source bench/compare_common.sh

command -v nvidia-smi >/dev/null &&
  echo "# GPU: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -n 1)" >&2
side ft "$FT" bench --shape "$SHAPE" --method lora --dtype bfloat16 --batch-size "$BATCH" \
  --seq-length "$SEQ" --steps "$STEPS" --warmup 3 --json
side hf-transformers+peft "$PYTHON" "$HF_BASELINE" --runs "$SHAPE:lora:$BATCH:$SEQ:0:0" \
  --device cuda --dtype bf16 --steps "$STEPS"
if [[ -n ${MLX_PYTHON:-} ]]; then
  side mlx-lm "$MLX_PYTHON" bench/mlx_lm_baseline.py --runs "$SHAPE:lora:$BATCH:$SEQ:0" \
    --dtype bf16 --steps "$STEPS" --warmup 3
fi
summary
