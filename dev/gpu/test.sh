#!/usr/bin/env bash
# Run on the GPU machine after install.sh: build, the whole test suite, the CUDA
# kernel tests verbosely, a short demo and the fused-loss benchmark. Logs go to $OUT.
set -uo pipefail
# Real tokenizer files and the reference benchmark travel in .carry/shared; tests and
# bench/ read them from ../shared.
if [[ -d .carry/shared ]]; then
  mkdir -p ../shared
  for d in .carry/shared/*; do [[ -e ../shared/$(basename "$d") ]] || cp -r "$d" ../shared/; done
fi
# yaml-cpp is a shared library unpacked beside the other .debs.
export LD_LIBRARY_PATH=/root/ft-gpu/prefix/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
OUT=${OUT:-/tmp/ft-gpu-out}
mkdir -p "$OUT"
nvidia-smi -L | tee "$OUT/device.txt"
bash dev/gpu/build.sh > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
grep -c "warning" "$OUT/build.log" | sed 's/^/build warnings: /'
./build-gpu/ft info | tee "$OUT/info.txt"
ctest --test-dir build-gpu --output-on-failure -j 8 > "$OUT/ctest.log" 2>&1
status=$?
tail -15 "$OUT/ctest.log"
./build-gpu/tests/test_kernels 2>&1 | tee "$OUT/kernels.log" | grep -E "ft tests on|Swiglu|PASSED|FAILED" | head -30
./build-gpu/ft demo --steps 100 --log-every 25 2>&1 | tee "$OUT/demo.log" | tail -7
./build-gpu/bench/bench_linear_cross_entropy 4096 512 32000 2>&1 | tee "$OUT/bench_lce.log" | tail -6
exit $status
