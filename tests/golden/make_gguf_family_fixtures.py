"""GGUF files of the tiny Qwen2, Qwen3 and Phi-3 (plain and longrope) models in
tests/golden/models/, and of
tiny Gemma 2 and Gemma 3 models made here, for ft's GGUF reader of those architectures
(tests/models/gguf_test.cpp).

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

Gemma: llama.cpp takes from the architecture what transformers reads from config.json (the
scores' scale is 1 / sqrt(head size) below 27B, Gemma 3 slides five layers of six with base
10000), and its converter stores each norm weight as 1 + w. The tiny Gemma models of
models/ differ there (query_pre_attn_scalar 16 against a head size of 8), so the script
makes two of its own with llama.cpp's settings (random weights, seed 0), writes their
logits on fixed ids to gguf/<name>_expected.safetensors, and writes the GGUF file with the
norms shifted. transformers' GGUF loader reads neither the scale nor the pattern, so these
files are checked against the models' own logits only (and against llama.cpp by
tests/golden/check_gguf_llama_cpp.py where llama-cpp-python is installed).

gguf/llama3_tied_f32.gguf holds models/llama3_tied, whose rotary embedding has Llama 3's
scaling, as llama.cpp's converter writes it: q/k rows permuted and the scaling as the
rope_freqs tensor of per-pair factors (llama3_rope_freqs below, written from the
converter's formula), checked against the folder's logits.
"""

import json
import math
import os

import gguf
import numpy as np
import torch
from safetensors.numpy import load_file
from safetensors.torch import load_file as load_torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "gguf")

FAMILIES = {"qwen2": "QWEN2", "qwen3": "QWEN3", "phi3": "PHI3", "phi3_longrope": "PHI3"}
IDS = [[(7 * i + 3) % 128 for i in range(12)], [(5 * i + 1) % 128 for i in range(12)]]


def gemma_models():
    """Tiny Gemma 2 and Gemma 3 models with the settings llama.cpp assumes."""
    from transformers import AutoModelForCausalLM, Gemma2Config, Gemma3TextConfig

    common = dict(vocab_size=128, hidden_size=32, intermediate_size=48, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=8, query_pre_attn_scalar=8, sliding_window=5,
                  max_position_embeddings=64, rms_norm_eps=1e-6)
    configs = {
        "gemma2": Gemma2Config(num_hidden_layers=2, **common),
        "gemma3": Gemma3TextConfig(
            num_hidden_layers=6, rope_parameters={
                "full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}},
            layer_types=["sliding_attention"] * 5 + ["full_attention"], **common),
    }
    out = {}
    for name, config in configs.items():
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
        # Norm weights away from zero, so that their shift by one is tested.
        with torch.no_grad():
            for key, value in model.named_parameters():
                if key.endswith("norm.weight"):
                    value.copy_(torch.randn_like(value) * 0.5)
        ids = torch.tensor(IDS)
        with torch.no_grad():
            logits = model(input_ids=ids).logits
        expected = os.path.join(OUT, name + "_expected.safetensors")
        from safetensors.torch import save_file
        save_file({"ids": ids.to(torch.int32), "logits": logits.contiguous()}, expected)
        print("wrote", expected)
        weights = {k: v.detach().numpy() for k, v in model.state_dict().items()}
        out[name] = (config.to_dict(), weights)
    return out


def write(name, arch_name, config=None, weights=None):
    if config is None:
        folder = os.path.join(HERE, "models", name)
        config = json.load(open(os.path.join(folder, "config.json")))
        weights = load_file(os.path.join(folder, "model.safetensors"))
    gemma = arch_name.startswith("GEMMA")
    llama = arch_name == "LLAMA"  # q/k rows permuted, Llama 3's scaling as rope_freqs
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    rope = config.get("rope_parameters") or {}
    rope = rope.get("full_attention", rope)  # Gemma 3: the full layers' (freq_base)
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
    if gemma:
        writer.add_sliding_window(config["sliding_window"])
        if config.get("attn_logit_softcapping"):
            writer.add_attn_logit_softcapping(config["attn_logit_softcapping"])
        if config.get("final_logit_softcapping"):
            writer.add_final_logit_softcapping(config["final_logit_softcapping"])
    if arch_name == "PHI3" and rope.get("rope_type") == "longrope":
        # As llama.cpp's converter writes longrope: the original context, the attention
        # factor from the context's growth, and the per-pair factors as tensors.
        original = rope["original_max_position_embeddings"]
        scale = config["max_position_embeddings"] / original
        writer.add_rope_scaling_orig_ctx_len(original)
        writer.add_rope_scaling_attn_factors(
            math.sqrt(1 + math.log(scale) / math.log(original)) if scale > 1 else 1.0)
        writer.add_tensor("rope_factors_long.weight", np.array(rope["long_factor"], np.float32))
        writer.add_tensor("rope_factors_short.weight", np.array(rope["short_factor"], np.float32))
    if llama and rope.get("rope_type") == "llama3":
        writer.add_tensor("rope_freqs.weight", llama3_rope_freqs(
            head_dim, rope["rope_theta"], rope["factor"], rope["low_freq_factor"],
            rope["high_freq_factor"], rope["original_max_position_embeddings"]))
    for hf, value in sorted(weights.items()):
        if config.get("tie_word_embeddings") and hf == "lm_head.weight":
            continue
        gguf_name = names.get_name(hf, try_suffixes=(".weight", ".bias"))
        assert gguf_name is not None, (name, hf)
        value = value.astype(np.float32)
        if llama and hf.endswith("self_attn.q_proj.weight"):
            value = permute(value, heads)
        elif llama and hf.endswith("self_attn.k_proj.weight"):
            value = permute(value, config["num_key_value_heads"])
        if gemma and hf.endswith("norm.weight"):
            value = value + np.float32(1)  # as llama.cpp's converter stores Gemma's norms
        writer.add_tensor(gguf_name, value)
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


def permute(w, heads):
    """llama.cpp's permutation of q/k rows: per head, the two rotary halves interleaved."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(
        w.shape)


def llama3_rope_freqs(head_dim, theta, factor, low, high, original):
    """The per-pair factors llama.cpp's converter writes for Llama 3's scaling (its
    rope_freqs tensor): 1 for short wavelengths, factor for long ones, between them
    1 / ((1 - smooth) / factor + smooth)."""
    out = []
    for i in range(0, head_dim, 2):
        wavelength = 2 * math.pi * theta ** (i / head_dim)
        if wavelength < original / high:
            out.append(1.0)
        elif wavelength > original / low:
            out.append(factor)
        else:
            smooth = (original / wavelength - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for name, arch_name in FAMILIES.items():
        path = write(name, arch_name)
        if name != "phi3_longrope":  # transformers' GGUF loader does not read longrope
            check_with_transformers(name, path)
    for name, (config, weights) in gemma_models().items():
        write(name, name.upper(), config, weights)
    # models/llama3_tied (Llama 3 rotary scaling) as llama.cpp's converter writes it: q/k
    # rows permuted and the scaling as a rope_freqs tensor.
    write("llama3_tied", "LLAMA")
