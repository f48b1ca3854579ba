#!/usr/bin/env bash
# Run on the GPU machine after install.sh and a build (dev/gpu/ab.sh build): a step's speed
# and peak under settings that move memory (Note [Memory on MLX's CUDA backend]). Each
# argument is one run: ft bench flags, commas for spaces, added to the Llama-3.2-1B shape,
# bf16, 4 x 2048 (e.g. --method,lora,--memory-limit,12 or --method,full,--head-chunk,1024;
# MLX_MAX_OPS_PER_BUFFER=N as a first field sets MLX's command-buffer size). The default
# runs compare MLX's memory limit (above it the host waits for the GPU), gradient
# checkpointing and the optimizer's state dtype. Prints and appends to $OUT/memory.jsonl
# one line per run: the flags and ft bench's JSON.
set -uo pipefail
export LD_LIBRARY_PATH=/root/ft-gpu/prefix/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
OUT=${OUT:-/tmp/ft-gpu-out}
mkdir -p "$OUT"
B="bench --shape llama1b --dtype bfloat16 --batch-size 4 --seq-length 2048"
B="$B --steps ${STEPS:-5} --warmup 2 --json"
RUNS=("$@")
[[ ${#RUNS[@]} -gt 0 ]] || RUNS=(
  --method,lora --method,lora,--memory-limit,14 --method,lora,--memory-limit,10
  --method,lora,--grad-checkpoint --method,lora,--grad-checkpoint,--memory-limit,8
  --method,full --method,full,--optimizer-state,bfloat16
  --method,full,--optimizer-state,bfloat16,--no-master-weights
  --method,full,--optimizer-state,bfloat16,--no-master-weights,--memory-limit,20)
for run in "${RUNS[@]}"; do
  flags=${run//,/ }
  env=()
  [[ $flags == MLX_* ]] && { env=("${flags%% *}"); flags=${flags#* }; }
  line=$(env "${env[@]}" ./build-gpu/ft $B $flags 2>&1 | tail -n 1)
  echo "{\"flags\": \"${env[*]} $flags\", \"run\": $line}" | tee -a "$OUT/memory.jsonl"
done
