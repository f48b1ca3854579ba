#!/usr/bin/env bash
# Builds the fuzz targets (build-fuzz/, clang with libFuzzer, AddressSanitizer and
# UndefinedBehaviorSanitizer) and runs each for SECONDS (default 60) on a copy of its
# seed corpus, within a memory limit. Prints, per target, the executions, the time, the
# coverage libFuzzer reports (cov: edges, ft: features) and the findings; exits 1 when a
# target finds anything (a crash, a sanitizer report, a leak, a timeout or running out of
# memory), leaving the input under build-fuzz/findings/<target>/.
#   fuzz/run.sh [SECONDS] [TARGET...]
# FT_FUZZ_JOBS sets the build's parallelism (default 2), FT_FUZZ_RSS_MB the memory
# limit per target (default 2048). FT_FUZZ_RUNS=N stops each target after N executions
# (libFuzzer's -runs) or SECONDS, whichever comes first: give SECONDS room, e.g.
#   FT_FUZZ_RUNS=1000000 fuzz/run.sh 3600 yaml_config
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET=${1:-60}
shift || true
BUILD_DIR=build-fuzz
RSS_MB=${FT_FUZZ_RSS_MB:-2048}
RUNS=()
[[ -n "${FT_FUZZ_RUNS:-}" ]] && RUNS=(-runs="$FT_FUZZ_RUNS")

command -v clang++ >/dev/null || { echo "fuzz: clang++ is needed (apt-get install clang)" >&2; exit 2; }
cmake -S . -B "$BUILD_DIR" -G Ninja -DFT_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_CXX_COMPILER=clang++ >/dev/null
cmake --build "$BUILD_DIR" -j "${FT_FUZZ_JOBS:-2}" >/dev/null

if [[ $# -gt 0 ]]; then
  TARGETS=("$@")
else
  TARGETS=()
  for f in fuzz/*.cpp; do TARGETS+=("$(basename "$f" .cpp)"); done
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

printf "%-18s %12s %8s %8s %8s  %s\n" target executions seconds cov ft findings
failed=0
for t in "${TARGETS[@]}"; do
  corpus="$BUILD_DIR/corpus/$t" findings="$BUILD_DIR/findings/$t" log="$BUILD_DIR/logs/$t.log"
  mkdir -p "$corpus" "$findings" "$(dirname "$log")"
  rm -f "$findings"/*
  # The committed seeds, and what earlier runs added to the working corpus.
  [[ -d fuzz/corpus/$t ]] && cp -n fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null || true
  [[ -d fuzz/regressions/$t ]] && cp -n fuzz/regressions/"$t"/* "$corpus"/ 2>/dev/null || true
  rc=0
  "$BUILD_DIR/fuzz/fuzz_$t" "$corpus" -max_total_time="$SECONDS_PER_TARGET" \
      -rss_limit_mb="$RSS_MB" -timeout=20 -print_final_stats=1 "${RUNS[@]}" \
      -artifact_prefix="$findings/" >"$log" 2>&1 || rc=$?
  # A target stopped by a finding prints no totals: its counts show as "-".
  runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  secs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\2/p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2 || true)
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2 || true)
  found=$(find "$findings" -type f | wc -l)
  status="none"
  if [[ $rc -ne 0 || $found -ne 0 ]]; then
    failed=1
    status="$found input(s) in $findings (exit $rc; log $log)"
  fi
  printf "%-18s %12s %8s %8s %8s  %s\n" "$t" "${runs:--}" "${secs:--}" "${cov:--}" "${ft:--}" "$status"
done
exit $failed
