#!/usr/bin/env bash
# Run on the GPU machine after install.sh: before and after on one GPU. Builds ft from this
# tree (build-gpu) and from a baseline source tree (BASE, default .carry/base, made here
# with `git archive REV CMakeLists.txt apps bench cmake examples ft | tar -x -C .carry/base`),
# then times both, alternating, with mlx-lm in the same run as the reference.
#
#   bash dev/gpu/ab.sh build         configure and build both (tests off)
#   bash dev/gpu/ab.sh run [CASE...]  CASE: METHOD:BATCH:SEQ[:EXTRA ft bench FLAGS, commas
#                                    for spaces]; default lora:4:2048 full:4:2048
# Settings: SHAPE (llama1b), ROUNDS (1), STEPS (10), OUT (logs, timing.jsonl).
set -uo pipefail
export LD_LIBRARY_PATH=/root/ft-gpu/prefix/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
OUT=${OUT:-/tmp/ft-gpu-out}
BASE=${BASE:-.carry/base}
SHAPE=${SHAPE:-llama1b}
ROUNDS=${ROUNDS:-1}
STEPS=${STEPS:-10}
mkdir -p "$OUT"
SITE=$(python3 -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")

if [[ ${1:-run} == build ]]; then
  conf() {
    cmake -S "$1" -B "$2" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMLX_ROOT="$SITE/mlx" \
      -DCMAKE_PREFIX_PATH=/root/ft-gpu/prefix/usr -DCUDNN_ROOT="$SITE/nvidia/cudnn" \
      -DFT_BUILD_TESTS=OFF >/dev/null
  }
  conf . build-gpu || exit 1
  [[ -d $BASE ]] && { conf "$BASE" build-base || exit 1; }
  start=$SECONDS
  (cmake --build build-gpu -j 8 --target ft >"$OUT/build-new.log" 2>&1; echo "new build: $?") &
  [[ -d $BASE ]] &&
    (cmake --build build-base -j 8 --target ft >"$OUT/build-base.log" 2>&1; echo "base build: $?") &
  wait
  echo "built in $((SECONDS - start)) s"
  exit 0
fi
shift
if compgen -G ".carry/py/*.whl" >/dev/null && ! python3 -c "import mlx_lm" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile .carry/py/*.whl || exit 1
fi
CASES=${*:-lora:4:2048 full:4:2048}
for c in $CASES; do
  IFS=: read -r method batch seq extra <<<"$c"
  extra=${extra//,/ }
  B="bench --shape $SHAPE --method $method --dtype bfloat16 --batch-size $batch --seq-length $seq"
  B="$B --steps $STEPS --warmup 3 --json $extra"
  for r in $(seq "$ROUNDS"); do
    for side in base new; do
      bin=build-gpu/ft
      [[ $side == base ]] && bin=build-base/ft
      [[ -x $bin ]] || continue
      echo "{\"side\": \"$side\", \"case\": \"$c\", \"run\": $($bin $B 2>&1 | tail -n 1)}" |
        tee -a "$OUT/timing.jsonl"
    done
  done
  if [[ -z $extra && ($method == lora || $method == full) ]] && python3 -c "import mlx_lm" 2>/dev/null; then
    echo "{\"side\": \"mlx-lm\", \"case\": \"$c\", \"run\": $(python3 bench/mlx_lm_baseline.py \
      --runs "$SHAPE:$method:$batch:$seq:0" --dtype bf16 --steps "$STEPS" --warmup 3 2>&1 |
      tail -n 1)}" | tee -a "$OUT/timing.jsonl"
  fi
done
