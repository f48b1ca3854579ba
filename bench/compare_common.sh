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
  # The side's name goes into its line, so that two set-ups of one tool (transformers
  # eager and compiled) stay apart in the summary.
  [[ -n $line ]] && line="{\"side\": \"$name\", ${line#\{}"
  if [[ $status -ne 0 || -z $line || $line == *'"error"'* ]]; then
    local why
    why=$(grep -v '^{' "$log" | grep -v '^\s*$' | tail -n 1 | tr -d '"\\' | cut -c1-200)
    [[ -n $line && $line == *'"error"'* ]] && why=$(echo "$line" | tr -d '"\\{}' | cut -c1-200)
    [[ $status -ne 0 ]] && why="exit $status: ${why:-no output}"
    line="{\"side\": \"$name\", \"error\": \"${why:-no output}\"}"
    echo "#   failed; its output is in $log" >&2
  else
    rm -f "$log"
  fi
  echo "$line"
  echo "$line" >>"$RESULTS"
}

# summary: per side the median tokens/s of its runs (and each run's figure when there are
# several, as with ROUNDS), peak memory, the ratio of ft's median to each other median,
# and to the fastest other side.
summary() {
  "$PYTHON" - "$RESULTS" <<'PY' || echo "# no summary: $PYTHON could not read the results"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
systems = {}
for r in rows:
    systems.setdefault(r.get("side", r.get("system")), []).append(r)
def median(runs):
    return statistics.median(r["tokens_per_s"] for r in runs)
ft_runs = [r for r in systems.get("ft", []) if "tokens_per_s" in r]
for name, runs in systems.items():
    ok = [r for r in runs if "tokens_per_s" in r]
    if not ok:
        print(f"{name}: failed ({runs[-1].get('error', '')})")
        continue
    last = ok[-1]
    mem, mfu = last.get("peak_mem_gib"), last.get("mfu")
    line = (f"{name:>22}: {median(ok):>8.0f} tokens/s  {last['step_s']:.4f} s/step"
            f"  peak {mem if mem is not None else '-'} GiB  mfu {mfu if mfu is not None else '-'}"
            f"  loss {last['loss']:.3f}")
    if len(ok) > 1:
        line += "  runs " + " ".join(str(r["tokens_per_s"]) for r in ok)
    if ft_runs and name != "ft":
        line += f"  (ft is {median(ft_runs) / median(ok):.2f}x its tokens/s"
        if len(ok) == len(ft_runs) > 1:
            pairs = [f / o for f, o in zip((r["tokens_per_s"] for r in ft_runs),
                                            (r["tokens_per_s"] for r in ok))]
            line += f"; per round {min(pairs):.2f}x to {max(pairs):.2f}x"
        line += ")"
    print(line)
others = {n: median([r for r in runs if "tokens_per_s" in r]) for n, runs in systems.items()
          if n != "ft" and any("tokens_per_s" in r for r in runs)}
if ft_runs and others:
    best = max(others, key=others.get)
    ft_mem = ft_runs[-1].get("peak_mem_gib")
    mems = [r.get("peak_mem_gib") for n, runs in systems.items() if n != "ft" for r in runs
            if r.get("peak_mem_gib") is not None and "tokens_per_s" in r]
    line = f"ft against the fastest other side ({best}): {median(ft_runs) / others[best]:.2f}x tokens/s"
    if ft_mem is not None and mems:
        line += f"; peak {ft_mem / min(mems):.2f}x the smallest other peak ({min(mems)} GiB)"
    print(line)
PY
}
