#!/usr/bin/env bash
# ft against the other trainers on one GPU, one after the other, case by case: random
# token ids, AdamW at 1e-4, bfloat16, LoRA r16 (alpha 32) on every linear layer or full
# fine-tuning. MFU against 989 TFLOP/s (an H100's dense bf16) on every side.
#
#   PYTHON=/path/to/python [MLX_PYTHON=/path/to/python] bench/compare_gpu.sh
#
# Sides (SIDES, all by default): ft (`ft bench`); transformers+PEFT eager (hf), with
# torch.compile (hf-compile), with Liger kernels (hf-liger, hf-liger-compile; PYTHON needs
# the liger-kernel package), all through ../shared/bench/hf_baseline.py; mlx-lm's LoRA
# trainer on MLX's CUDA backend (mlx-lm, when MLX_PYTHON has mlx and mlx-lm).
# Cases (CASES, SHAPE:METHOD:BATCH:SEQ:GRAD_CKPT, space-separated, METHOD lora, dora,
# full or qlora (a 4-bit base: ft's MLX affine groups of 64 against transformers+PEFT over
# bitsandbytes NF4, bench/hf_qlora_baseline.py, as the hf side); by default the Llama-3.2-1B shape with LoRA and
# full fine-tuning at 4 x 2048, Qwen2.5-0.5B LoRA at 8 x 1024, Llama-3.1-8B LoRA at
# 2 x 2048 and QLoRA at 1 x 2048, and the 1B LoRA at batch 1 over 16k, 32k and 64k tokens
# with checkpointing, where the longest each side fits shows).
# Other settings: FT (build-gpu/ft when it exists, else build/ft), STEPS (10), HF_BASELINE
# (../shared/bench/hf_baseline.py, the transformers reference).
# Each case prints its JSON lines and a summary: per side tokens/s, peak memory and MFU,
# and ft's ratio to the fastest other side. A side that fails (out of memory, a missing
# package) prints an error line and the others still run.
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
FT=${FT:-}
[[ -z $FT && -x build-gpu/ft ]] && FT=build-gpu/ft
FT=${FT:-build/ft}
STEPS=${STEPS:-10}
SIDES=${SIDES:-ft hf hf-compile hf-liger hf-liger-compile mlx-lm}
CASES=${CASES:-llama1b:lora:4:2048:0 llama1b:full:4:2048:0 qwen05b:lora:8:1024:0 \
llama8b:lora:2:2048:0 llama8b:qlora:1:2048:0 llama1b:lora:1:16384:1 llama1b:lora:1:32768:1 llama1b:lora:1:65536:1}
export HF_BASELINE=${HF_BASELINE:-../shared/bench/hf_baseline.py}
RESULTS=$(mktemp)
trap 'rm -f "$RESULTS"' EXIT
source bench/compare_common.sh

command -v nvidia-smi >/dev/null &&
  echo "# GPU: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -n 1)" >&2
for c in $CASES; do
  IFS=: read -r shape method batch seq ckpt <<<"$c"
  checkpoint=()
  [[ $ckpt == 1 ]] && checkpoint=(--grad-checkpoint)
  # qlora: LoRA over a 4-bit base (MLX affine, groups of 64) on ft's side.
  ft_method=(--method "$method")
  [[ $method == qlora ]] && ft_method=(--method lora --quantize-bits 4 --quantize-group-size 64)
  echo "## $shape $method, batch $batch x $seq$([[ $ckpt == 1 ]] && echo ', gradient checkpointing')"
  : >"$RESULTS"
  for s in $SIDES; do
    hf_runs="$shape:$method:$batch:$seq:$ckpt"
    if [[ $method == qlora && $s != ft && $s != hf ]]; then
      echo "# $s: no quantized base in its script; skipped" >&2
      continue
    fi
    case $s in
      ft)
        side ft "$FT" bench --shape "$shape" "${ft_method[@]}" --dtype bfloat16 \
          --batch-size "$batch" --seq-length "$seq" --steps "$STEPS" --warmup 3 --json \
          "${checkpoint[@]}" ;;
      hf)
        if [[ $method == qlora ]]; then
          side hf-bnb-nf4 "$PYTHON" bench/hf_qlora_baseline.py --runs "$shape:$batch:$seq:$ckpt" \
            --steps "$STEPS"
        else
          side hf-eager "$PYTHON" "$HF_BASELINE" --runs "$hf_runs:0" --device cuda --dtype bf16 \
            --steps "$STEPS"
        fi ;;
      hf-compile) side hf-compile "$PYTHON" "$HF_BASELINE" --runs "$hf_runs:1" --device cuda \
                    --dtype bf16 --steps "$STEPS" ;;
      hf-liger) side hf-liger "$PYTHON" "$HF_BASELINE" --runs "$hf_runs:0:1" --device cuda \
                  --dtype bf16 --steps "$STEPS" ;;
      hf-liger-compile) side hf-liger-compile "$PYTHON" "$HF_BASELINE" --runs "$hf_runs:1:1" \
                          --device cuda --dtype bf16 --steps "$STEPS" ;;
      mlx-lm)
        [[ -n ${MLX_PYTHON:-} ]] &&
          side mlx-lm "$MLX_PYTHON" bench/mlx_lm_baseline.py --runs "$hf_runs" --dtype bf16 \
            --steps "$STEPS" --warmup 3 ;;
      *) echo "compare_gpu: unknown side '$s'" >&2; exit 2 ;;
    esac
  done
  summary
done
