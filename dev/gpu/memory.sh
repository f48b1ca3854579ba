#!/usr/bin/env bash
# Run on the GPU machine after install.sh and a build (dev/gpu/ab.sh build): where the
# peak of a LoRA step goes on MLX's CUDA backend (Note [Memory on MLX's CUDA backend]).
# Times the Llama-3.2-1B shape, LoRA r16, bf16, 4 x 2048, with the head's chunk at its
# automatic size and at 1024 and 512 tokens, each with MLX's command buffers at their
# default size and at 20 and 5 operations; prints tokens/s, peak, memory kept between steps
# and the estimate. OUT collects the JSON lines (memory.jsonl).
set -uo pipefail
export LD_LIBRARY_PATH=/root/ft-gpu/prefix/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
OUT=${OUT:-/tmp/ft-gpu-out}
mkdir -p "$OUT"
B="bench --shape llama1b --method lora --dtype bfloat16 --batch-size 4 --seq-length 2048"
B="$B --steps 6 --warmup 2 --json ${EXTRA:-}"
for chunk in 0 1024 512; do
  for ops in "" 20 5; do
    line=$(env ${ops:+MLX_MAX_OPS_PER_BUFFER=$ops} ./build-gpu/ft $B --head-chunk "$chunk" 2>&1 |
      tail -n 1)
    echo "{\"head_chunk\": $chunk, \"max_ops_per_buffer\": \"${ops:-default}\", \"run\": $line}" |
      tee -a "$OUT/memory.jsonl"
  done
done
