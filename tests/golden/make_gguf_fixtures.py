"""GGUF files of the tiny random models, written as llama.cpp's convert_hf_to_gguf.py lays
them out, for the GGUF reader's tests (written with it: nothing reads them yet).

Run from the repository root with a Python that has the gguf package, safetensors and numpy:
  python tests/golden/make_gguf_fixtures.py

gguf/llama_f32.gguf holds models/llama (transformers' tiny random Llama) with the `gguf`
package's writer: llama.cpp's metadata keys (general.architecture = llama,
llama.block_count, llama.embedding_length, ...), its tensor names (token_embd,
blk.N.attn_q, ..., output_norm, output) and the row permutation llama.cpp applies to
attn_q and attn_k (each head's rotary halves interleaved). Its weights are the Hugging Face
model's, so ft loading it must give models/llama_expected.safetensors's logits. It has no
tokenizer metadata: the test compares logits on ids.
"""

import json
import os

import gguf
import numpy as np
from safetensors.numpy import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "gguf")

NAMES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}


def permute(w, heads):
    """llama.cpp's permutation of q/k rows: per head, the two rotary halves interleaved."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(
        w.shape)


def gguf_name(hf):
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    parts = hf.split(".")  # model.layers.N.<module>.weight
    assert parts[:2] == ["model", "layers"], hf
    module = ".".join(parts[3:-1])
    return f"blk.{parts[2]}.{NAMES[module]}.{parts[-1]}"


def make_llama(name, source):
    folder = os.path.join(HERE, "models", source)
    config = json.load(open(os.path.join(folder, "config.json")))
    weights = load_file(os.path.join(folder, "model.safetensors"))
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads

    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, name + ".gguf")
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name(source)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(config["rope_parameters"]["rope_theta"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    for hf, value in sorted(weights.items()):
        value = value.astype(np.float32)
        if hf.endswith("self_attn.q_proj.weight"):
            value = permute(value, heads)
        elif hf.endswith("self_attn.k_proj.weight"):
            value = permute(value, kv_heads)
        writer.add_tensor(gguf_name(hf), value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    # Read back with the gguf package: every tensor there, as written.
    reader = gguf.GGUFReader(path)
    assert len(reader.tensors) == len(weights), (len(reader.tensors), len(weights))
    print("wrote", path, os.path.getsize(path), "bytes,", len(reader.tensors), "tensors")


if __name__ == "__main__":
    make_llama("llama_f32", "llama")
