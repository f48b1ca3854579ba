#!/usr/bin/env bash
# ft against transformers+PEFT and mlx-lm on this machine's CPU, one after the other,
# with the same thread count: the tiny Llama shape, LoRA r16 (alpha 32) on every linear
# layer, float32, AdamW at 1e-4, random token ids.
#
#   PYTHON=/path/to/python bench/compare_cpu.sh
#
# PYTHON must have torch, transformers, peft, mlx and mlx-lm (default python3). Settings
# through the environment: FT (build/ft), THREADS (all cores), BATCH (4), SEQ (256),
# STEPS (10; hf_baseline.py adds 3 warmup steps, and so do the others), ROUNDS (1: how many
# times ft and transformers+PEFT run, one after the other and in turns first, before mlx-lm
# runs once; a shared machine's speed wanders, and alternating rounds see the same swings).
# Prints the JSON lines and a summary: median tokens/s per system and the ratios.
#
# Threads: torch takes --threads; MLX (under ft and under mlx-lm) sends its matrix
# products to BLAS, whose threads follow OPENBLAS_NUM_THREADS, and runs its other CPU
# kernels on one thread. The mlx[cpu] wheel ships the reference BLAS; setup.sh points
# ft's copy at OpenBLAS (Note [OpenBLAS under mlx[cpu]]), and the mlx-lm side gets the
# same OpenBLAS through LD_PRELOAD, so that both MLX sides use one BLAS.
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
FT=${FT:-build/ft}
CORES=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
THREADS=${THREADS:-$CORES}
BATCH=${BATCH:-4}
SEQ=${SEQ:-256}
STEPS=${STEPS:-10}
ROUNDS=${ROUNDS:-1}
HF_BASELINE=../shared/bench/hf_baseline.py
OPENBLAS=/usr/lib/$(uname -m)-linux-gnu/openblas-pthread/libblas.so.3
export OPENBLAS_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS FT_DEVICE=cpu
RESULTS=$(mktemp)
trap 'rm -f "$RESULTS"' EXIT
source bench/compare_common.sh

preload=()
[[ -f $OPENBLAS ]] && preload=(env "LD_PRELOAD=$OPENBLAS")

echo "# CPU: $CORES cores, $THREADS threads each; batch $BATCH x $SEQ, $STEPS steps" >&2
load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)
if awk -v l="$load" -v c="$CORES" 'BEGIN { exit !(l >= c) }'; then
  echo "# warning: load average $load on $CORES cores: other work shares the CPU and the" \
    "timings move with it (torch's threads suffer most; THREADS=1 is steadier)" >&2
fi
ft_side() {
  side ft "$FT" bench --shape tiny --method lora --dtype float32 --batch-size "$BATCH" \
    --seq-length "$SEQ" --steps "$STEPS" --warmup 3 --threads "$THREADS" --json
}
hf_side() {
  side hf-transformers+peft "$PYTHON" "$HF_BASELINE" --runs "tiny:lora:$BATCH:$SEQ:0:0" \
    --device cpu --dtype f32 --threads "$THREADS" --steps "$STEPS"
}
# Odd rounds run ft first, even rounds transformers+PEFT first, so that neither side always
# follows the other.
for ((round = 1; round <= ROUNDS; ++round)); do
  if ((round % 2)); then
    ft_side
    hf_side
  else
    hf_side
    ft_side
  fi
done
side mlx-lm "${preload[@]}" "$PYTHON" bench/mlx_lm_baseline.py --runs "tiny:lora:$BATCH:$SEQ:0" \
  --dtype f32 --steps "$STEPS" --warmup 3
summary
