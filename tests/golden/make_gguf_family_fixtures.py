"""GGUF files of the tiny Qwen2, Qwen3 and Phi-3 models in tests/golden/models/, for ft's
GGUF reader of those architectures (tests/models/gguf_test.cpp).

Run from the repository root with the golden venv (gguf, transformers, torch, safetensors):
  .golden-venv/bin/python tests/golden/make_gguf_family_fixtures.py

Each file is written with the `gguf` package: llama.cpp's metadata keys for the
architecture and the tensor names of the package's own TensorNameMap (llama.cpp's names,
not ft's table), float32 tensors as the Hugging Face model holds them (none of these
architectures has its q/k rows permuted by llama.cpp's converter). The script then loads
each file with transformers' GGUF loader and checks that its logits equal the Hugging Face
model's (models/<name>_expected.safetensors, which ft's test compares with): the file
means to transformers what it means to ft. transformers' loader does not read
qwen3.attention.key_length (it takes Qwen3's default head size of 128), so for qwen3 it is
given the model's config.json and checks the tensors; llama.cpp reads the head size from
that key (n_embd_head_k), as ft does. phi3 is given it too: without a tokenizer in the file
transformers takes Phi3Config's default pad id, 32000, outside the tiny vocabulary.
"""

import json
import os

import gguf
import numpy as np
import torch
from safetensors.numpy import load_file
from safetensors.torch import load_file as load_torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "gguf")

FAMILIES = {"qwen2": "QWEN2", "qwen3": "QWEN3", "phi3": "PHI3"}


def write(name, arch_name):
    folder = os.path.join(HERE, "models", name)
    config = json.load(open(os.path.join(folder, "config.json")))
    weights = load_file(os.path.join(folder, "model.safetensors"))
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    rope = config.get("rope_parameters") or {}
    rotary = int(head_dim * rope.get("partial_rotary_factor",
                                     config.get("partial_rotary_factor", 1.0)))

    arch = gguf.MODEL_ARCH[arch_name]
    names = gguf.get_tensor_name_map(arch, config["num_hidden_layers"])
    path = os.path.join(OUT, name + "_f32.gguf")
    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[arch])
    writer.add_name(name)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(rotary)
    writer.add_rope_freq_base(rope.get("rope_theta", config.get("rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    for hf, value in sorted(weights.items()):
        if config.get("tie_word_embeddings") and hf == "lm_head.weight":
            continue
        gguf_name = names.get_name(hf, try_suffixes=(".weight", ".bias"))
        assert gguf_name is not None, (name, hf)
        writer.add_tensor(gguf_name, value.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print("wrote", path, os.path.getsize(path), "bytes")
    return path


def check_with_transformers(name, path):
    from transformers import AutoConfig, AutoModelForCausalLM

    expected = load_torch(os.path.join(HERE, "models", name + "_expected.safetensors"))
    extra = {}
    if name in ("qwen3", "phi3"):
        extra["config"] = AutoConfig.from_pretrained(os.path.join(HERE, "models", name))
    model = AutoModelForCausalLM.from_pretrained(OUT, gguf_file=os.path.basename(path),
                                                 dtype=torch.float32, **extra)
    with torch.no_grad():
        logits = model(input_ids=expected["ids"].long()).logits
    error = (logits - expected["logits"]).abs().max().item()
    scale = expected["logits"].abs().max().item()
    print(f"{name}: transformers' GGUF logits against the model's: max error {error:.2e} "
          f"of {scale:.2e}")
    assert error <= 1e-4 * scale, name


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for name, arch_name in FAMILIES.items():
        check_with_transformers(name, write(name, arch_name))
