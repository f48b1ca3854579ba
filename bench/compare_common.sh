# Shared by compare_cpu.sh and compare_gpu.sh (sourced, not run): each side runs in
# turn, its JSON line is kept, and a failing side leaves an error line instead of
# stopping the others.

# side NAME COMMAND...: runs COMMAND, prints its last JSON line (or an error line) and
# appends it to $RESULTS.
side() {
  local name=$1
  shift
  local log
  log=$(mktemp)
  echo "# $name: $*" >&2
  [[ -r /proc/loadavg ]] && echo "#   load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  "$@" >"$log" 2>&1
  local status=$?
  local line
  line=$(grep '^{' "$log" | tail -n 1)
  if [[ $status -ne 0 || -z $line || $line == *'"error"'* ]]; then
    local why
    why=$(grep -v '^{' "$log" | grep -v '^\s*$' | tail -n 1 | tr -d '"\\' | cut -c1-200)
    [[ -n $line && $line == *'"error"'* ]] && why=$(echo "$line" | tr -d '"\\{}' | cut -c1-200)
    [[ $status -ne 0 ]] && why="exit $status: ${why:-no output}"
    line="{\"system\": \"$name\", \"error\": \"${why:-no output}\"}"
    echo "#   failed; its output is in $log" >&2
  else
    rm -f "$log"
  fi
  echo "$line"
  echo "$line" >>"$RESULTS"
}

# summary: ratios of tokens/s (and peak memory where both have it) against ft's line.
summary() {
  "$PYTHON" - "$RESULTS" <<'PY' || echo "# no summary: $PYTHON could not read the results"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ft = next((r for r in rows if r.get("system") == "ft" and "tokens_per_s" in r), None)
for r in rows:
    if "tokens_per_s" not in r:
        print(f"{r.get('system')}: failed ({r.get('error', '')})")
        continue
    mem = r.get("peak_mem_gib")
    mfu = r.get("mfu")
    line = (f"{r['system']:>22}: {r['tokens_per_s']:>8} tokens/s  {r['step_s']:.4f} s/step"
            f"  peak {mem if mem is not None else '-'} GiB  mfu {mfu if mfu is not None else '-'}"
            f"  loss {r['loss']:.3f}")
    if ft is not None and r is not ft and r["tokens_per_s"] > 0:
        line += f"  (ft is {ft['tokens_per_s'] / r['tokens_per_s']:.2f}x its tokens/s)"
    print(line)
PY
}
