#!/usr/bin/env bash
# Quickstart: make a tiny random Llama-architecture model, measure it on held-out
# two-digit additions, fine-tune it on the bundled data, and measure it again.
# Usage: examples/quickstart.sh [FT_BINARY] [WORK_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ft=${1:-$here/../build/ft}
work=${2:-$(mktemp -d)}
data=$here/data/addition

"$ft" init --arch llama --size tiny --out "$work/model" --seed 0
echo "before training:"
"$ft" eval "$work/model" "$data/test.jsonl" --mask-prompt
"$ft" train "$work/model" "$data" --method full --learning-rate 3e-3 --warmup-steps 20 \
  --epochs 3 --batch-size 16 --mask-prompt --eval-every 250 --output-dir "$work/run"
echo "after training:"
"$ft" eval "$work/run/model" "$data/test.jsonl" --mask-prompt
echo "answers of the fine-tuned model (greedy):"
for question in "12+34" "61+27" "45+39"; do
  printf '%s = ' "$question"
  "$ft" generate "$work/run/model" --prompt "$question" --max-tokens 6 --json |
    sed -n 's/.*"text": *"\([^"]*\)".*/\1/p'
done
