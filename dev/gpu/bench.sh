#!/usr/bin/env bash
# Run on the GPU machine after test.sh (same machine, build-gpu kept): ft bench beside
# transformers+PEFT (bench/compare_gpu.sh), and ft info's memory estimate next to the
# peak ft bench measures. Logs go to $OUT.
set -uo pipefail
export LD_LIBRARY_PATH=/root/ft-gpu/prefix/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
OUT=${OUT:-/tmp/ft-gpu-out}
mkdir -p "$OUT"
PYTHON=python3 bash bench/compare_gpu.sh 2>&1 | tee "$OUT/compare_gpu.log"
mkdir -p /tmp/llama1b && python3 - <<'PY'
import json, sys
sys.path.insert(0, "../shared/bench")
from hf_baseline import SHAPES
json.dump(SHAPES["llama1b"], open("/tmp/llama1b/config.json", "w"))
PY
./build-gpu/ft info /tmp/llama1b --dtype bfloat16 --batch-size 4 --max-seq-length 2048 \
  --lora-rank 16 --target-modules q_proj k_proj v_proj o_proj gate_proj up_proj down_proj \
  2>&1 | tee "$OUT/info_llama1b.log"
