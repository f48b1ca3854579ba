#!/usr/bin/env bash
# Run on the GPU machine after install.sh: where a training step's time goes, per kernel,
# for ft and for mlx-lm on the same shape (Llama-3.2-1B, bf16, LoRA r16 and full
# fine-tuning). Needs the mlx Python wheel and mlx-lm (carried in .carry/py) for mlx-lm's
# side. Each side's kernels come from Nsight Systems when it is installed, else from
# Nsight Compute (one metric, the kernel's duration); dev/gpu/kernel_summary.py groups
# them by kernel and divides by the profiled steps.
#
#   bash dev/gpu/profile.sh [CASE...]    CASE: lora or full (both by default)
# Settings: BATCH (4), SEQ (2048), OUT (logs and CSVs).
set -uo pipefail
export LD_LIBRARY_PATH=/root/ft-gpu/prefix/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
OUT=${OUT:-/tmp/ft-gpu-out}
BATCH=${BATCH:-4}
SEQ=${SEQ:-2048}
CASES=${*:-lora full}
mkdir -p "$OUT"
if compgen -G ".carry/py/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile .carry/py/*.whl || exit 1
fi
SITE=$(python3 -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
{ cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DMLX_ROOT="$SITE/mlx" \
    -DCMAKE_PREFIX_PATH=/root/ft-gpu/prefix/usr -DCUDNN_ROOT="$SITE/nvidia/cudnn" &&
  cmake --build build-gpu -j "$(nproc)" --target ft; } >"$OUT/build.log" 2>&1 ||
  { tail -30 "$OUT/build.log"; exit 1; }

NSYS=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -n 1)
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null | head -n 1)
echo "# nsys: ${NSYS:-none}; ncu: ${NCU:-none}"

# profile NAME STEPS COMMAND...: per-kernel times of COMMAND into $OUT/NAME.csv.
profile() {
  local name=$1 steps=$2
  shift 2
  if [[ -n $NSYS ]]; then
    "$NSYS" profile -t cuda -o "/tmp/$name" --force-overwrite true "$@" >"$OUT/$name.log" 2>&1
    "$NSYS" stats -q -r cuda_gpu_kern_sum -f csv -o "/tmp/$name" "/tmp/$name.nsys-rep" >/dev/null 2>&1
    python3 dev/gpu/kernel_summary.py nsys "/tmp/${name}_cuda_gpu_kern_sum.csv" "$steps" \
      | tee "$OUT/$name.txt"
  else
    "$NCU" --clock-control none --metrics gpu__time_duration.sum --csv \
      --log-file "/tmp/$name.csv" "$@" >"$OUT/$name.log" 2>&1
    python3 dev/gpu/kernel_summary.py ncu "/tmp/$name.csv" "$steps" | tee "$OUT/$name.txt"
  fi
}

for c in $CASES; do
  B="--shape llama1b --method $c --dtype bfloat16 --batch-size $BATCH --seq-length $SEQ"
  echo "## $c: timing, no profiler"
  ./build-gpu/ft bench $B --steps 10 --warmup 3 --json 2>&1 | tail -n 1 | tee -a "$OUT/timing.jsonl"
  python3 bench/mlx_lm_baseline.py --runs "llama1b:$c:$BATCH:$SEQ:0" --dtype bf16 --steps 10 \
    --warmup 3 2>&1 | tail -n 1 | tee -a "$OUT/timing.jsonl"
  # The profiled runs: the warmup steps (tracing, compiling) and 2 steps; the summary
  # divides by 4 so the first steps' extra kernels show as a small excess.
  echo "## $c: ft kernels"
  profile "ft_$c" 4 ./build-gpu/ft bench $B --steps 2 --warmup 2
  echo "## $c: mlx-lm kernels"
  profile "mlxlm_$c" 4 python3 bench/mlx_lm_baseline.py --runs "llama1b:$c:$BATCH:$SEQ:0" \
    --dtype bf16 --steps 2 --warmup 2
done
