"""GGUF files for ft's GGUF reader (tests/io/gguf_file_test.cpp) and for GGUF models
(tests/models/gguf_test.cpp), each with a JSON of what the gguf package's reader reports
for it (version, alignment, data offset, metadata, tensors), which ft's reader must match.

Run from the repository root with a Python that has the gguf package, safetensors and numpy:
  python tests/golden/make_gguf_fixtures.py

gguf/llama_f32.gguf holds models/llama (transformers' tiny random Llama) with the `gguf`
package's writer: llama.cpp's metadata keys (general.architecture = llama,
llama.block_count, llama.embedding_length, ...), its tensor names (token_embd,
blk.N.attn_q, ..., output_norm, output) and the row permutation llama.cpp applies to
attn_q and attn_k (each head's rotary halves interleaved). Its weights are the Hugging Face
model's, so ft loading it must give models/llama_expected.safetensors's logits. It has no
tokenizer metadata: the test compares logits on ids. gguf/llama_f16.gguf is the same model
with its matrices in float16, as llama.cpp's converter writes with --outtype f16.
gguf/llama_q.gguf holds its matrices in Q8_0, Q4_0 and Q4_1 (QUANT_TYPES), with
llama_q_expected.safetensors: transformers' logits for it (its own dequantization) on
fixed ids.

gguf/types.gguf holds one metadata value of every GGUF value type (arrays of numbers, of
strings and of arrays among them), general.alignment 64, and small tensors of every
ggml type ft sizes except Q8_1 (the gguf package's block size for it, 40 bytes, is an older
ggml's; ggml's block_q8_1 is 36): float and integer tensors with the values
arange(n) / 8 (integers: arange(n) - n / 2), quantized ones with random bytes (their size
and place are what is checked).

The seeds of the gguf_file fuzz target (fuzz/corpus/gguf_file/) are both files and a few
small ones: one tensor, quantized tensors, metadata without tensors.
"""

import json
import os
import shutil

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


# gguf/llama_q.gguf: models/llama with its matrices in llama.cpp's block types, mixed as
# llama.cpp's quantizer mixes them; down_proj (rows of 48) stays float32, as llama.cpp
# leaves matrices whose rows are not whole blocks.
QUANT_TYPES = {
    "token_embd": "Q8_0", "attn_q": "Q4_0", "attn_k": "Q4_1", "attn_v": "Q8_0",
    "attn_output": "Q4_1", "ffn_gate": "Q4_0", "ffn_up": "Q8_0", "output": "Q4_1",
}


def make_llama(name, source, dtype=np.float32, quantized=False):
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
    writer.add_file_type(gguf.LlamaFileType.ALL_F32 if dtype == np.float32 else
                         gguf.LlamaFileType.MOSTLY_F16)
    for hf, value in sorted(weights.items()):
        # As llama.cpp's converter does for a float16 file: matrices in float16, the
        # norms' vectors in float32.
        value = value.astype(dtype if value.ndim == 2 else np.float32)
        if hf.endswith("self_attn.q_proj.weight"):
            value = permute(value, heads)
        elif hf.endswith("self_attn.k_proj.weight"):
            value = permute(value, kv_heads)
        kind = gguf_name(hf).split(".")[-2]
        if quantized and kind in QUANT_TYPES and value.shape[-1] % 32 == 0:
            qtype = gguf.GGMLQuantizationType[QUANT_TYPES[kind]]
            writer.add_tensor(gguf_name(hf), gguf.quants.quantize(value, qtype), raw_dtype=qtype)
            continue
        writer.add_tensor(gguf_name(hf), value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    # Read back with the gguf package: every tensor there, as written.
    reader = gguf.GGUFReader(path)
    assert len(reader.tensors) == len(weights), (len(reader.tensors), len(weights))
    print("wrote", path, os.path.getsize(path), "bytes,", len(reader.tensors), "tensors")
    describe(path)
    if quantized:
        expected_logits(path, config["vocab_size"])


def expected_logits(path, vocab_size):
    """transformers' logits for the GGUF file (its own dequantization) on fixed ids."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(OUT, gguf_file=os.path.basename(path),
                                                 dtype=torch.float32)
    ids = torch.tensor([[(7 * i + 3) % vocab_size for i in range(12)],
                        [(5 * i + 1) % vocab_size for i in range(12)]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    out = path[: -len(".gguf")] + "_expected.safetensors"
    save_file({"input_ids": ids.to(torch.int32), "logits": logits.contiguous()}, out)
    print("wrote", out)


def make_types(name):
    path = os.path.join(OUT, name + ".gguf")
    writer = gguf.GGUFWriter(path, "test")
    writer.add_custom_alignment(64)
    writer.add_uint8("test.uint8", 200)
    writer.add_int8("test.int8", -100)
    writer.add_uint16("test.uint16", 60000)
    writer.add_int16("test.int16", -30000)
    writer.add_uint32("test.uint32", 4000000000)
    writer.add_int32("test.int32", -2000000000)
    writer.add_float32("test.float32", 0.25)
    writer.add_bool("test.bool", True)
    writer.add_string("test.string", "h\u00e9llo")
    writer.add_uint64("test.uint64", 2**64 - 1)
    writer.add_int64("test.int64", -(2**62))
    writer.add_float64("test.float64", -1.5e300)
    writer.add_array("test.array.int32", [1, -2, 3])
    writer.add_array("test.array.float32", [0.5, 1.5])
    writer.add_array("test.array.string", ["a", "", "bcd"])
    writer.add_array("test.array.nested", [[1, 2], [3], [4, 5, 6]])
    writer.add_key_value("test.array.uint8", [1, 2, 255], gguf.GGUFValueType.ARRAY,
                         gguf.GGUFValueType.UINT8)

    def values(shape, dtype):
        n = int(np.prod(shape))
        if np.issubdtype(dtype, np.integer):
            return (np.arange(n) - n // 2).astype(dtype).reshape(shape)
        return (np.arange(n) / 8).astype(dtype).reshape(shape)

    writer.add_tensor("f32", values((3, 5), np.float32))
    writer.add_tensor("f16", values((2, 3, 4), np.float16))
    bf16 = (values((4, 6), np.float32).view(np.uint32) >> 16).astype(np.uint16)
    writer.add_tensor("bf16", bf16, raw_dtype=gguf.GGMLQuantizationType.BF16)
    writer.add_tensor("f64", values((7,), np.float64))
    writer.add_tensor("i8", values((2, 2, 2, 3), np.int8))
    writer.add_tensor("i16", values((5, 2), np.int16))
    writer.add_tensor("i32", values((9,), np.int32))
    writer.add_tensor("i64", values((2, 3), np.int64))
    rng = np.random.default_rng(0)
    Q = gguf.GGMLQuantizationType
    for qtype in [Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0, Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K,
                  Q.Q8_K]:
        block, nbytes = gguf.GGML_QUANT_SIZES[qtype]
        rows, row_blocks = 3, 2
        raw = rng.integers(0, 256, size=(rows, row_blocks * nbytes), dtype=np.uint8)
        writer.add_tensor(qtype.name.lower(), raw, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print("wrote", path, os.path.getsize(path), "bytes")
    describe(path)


def field_value(field):
    """A metadata value as the gguf package reads it; nested arrays as nested lists."""
    main = field.types[0]
    if main != gguf.GGUFValueType.ARRAY:
        value = field.contents()
        return value.item() if hasattr(value, "item") else value
    if len(field.types) == 2:
        return [v.item() if hasattr(v, "item") else v for v in field.contents()]
    # Nested: the reader keeps each inner array's parts flat; rebuild them by walking the
    # parts after the outer type and count.
    parts = iter(field.parts[5:])
    def walk(types):
        if types[0] == gguf.GGUFValueType.ARRAY:
            next(parts)  # element type
            count = int(next(parts)[0])
            return [walk(types[1:]) for _ in range(count)]
        if types[0] == gguf.GGUFValueType.STRING:
            next(parts)
            return str(next(parts).tobytes(), "utf-8")
        return next(parts)[0].item()
    count = int(field.parts[4][0])
    return [walk(field.types[1:]) for _ in range(count)]


def describe(path):
    """What the gguf package's reader sees, written next to the file as JSON."""
    reader = gguf.GGUFReader(path)
    metadata = []
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):  # the reader's own entries for the header fields
            continue
        types = [t.name for t in field.types]
        metadata.append({"key": key, "types": types, "value": field_value(field)})
    tensors = [{
        "name": t.name,
        "type": t.tensor_type.name,
        "type_id": int(t.tensor_type),
        "dims": [int(d) for d in t.shape],  # GGUF's order: the row length first
        "n_bytes": int(t.n_bytes),
        "offset": int(t.data_offset),  # from the start of the file
    } for t in reader.tensors]
    out = {
        "version": int(reader.fields["GGUF.version"].parts[0][0]),
        "alignment": int(reader.alignment),
        "data_offset": int(reader.data_offset),
        "metadata": metadata,
        "tensors": tensors,
    }
    with open(path[:-len(".gguf")] + ".json", "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")


def make_fuzz_seeds():
    seeds = os.path.join(HERE, "..", "..", "fuzz", "corpus", "gguf_file")
    os.makedirs(seeds, exist_ok=True)
    for name in ["llama_f32.gguf", "types.gguf"]:
        shutil.copyfile(os.path.join(OUT, name), os.path.join(seeds, name))

    def write(name, fill):
        writer = gguf.GGUFWriter(os.path.join(seeds, name), "llama")
        fill(writer)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

    def one_tensor(w):
        w.add_block_count(1)
        w.add_tensor("token_embd.weight", np.arange(8, dtype=np.float32).reshape(2, 4))

    def quantized(w):
        w.add_custom_alignment(16)
        Q = gguf.GGMLQuantizationType
        w.add_tensor("q8_0", np.full((2, 34), 7, dtype=np.uint8), raw_dtype=Q.Q8_0)
        w.add_tensor("q4_k", np.full((1, 144), 9, dtype=np.uint8), raw_dtype=Q.Q4_K)
        w.add_tensor("f16", np.ones((3,), dtype=np.float16))

    def metadata(w):
        w.add_bool("x.bool", False)
        w.add_array("x.strings", ["<s>", "</s>", "a b"])
        w.add_array("x.nested", [[1.5], [2.5, 3.5]])
        w.add_int64("x.int64", -7)

    write("one_tensor.gguf", one_tensor)
    write("quantized.gguf", quantized)
    write("metadata.gguf", metadata)
    print("wrote the fuzz seeds in", os.path.normpath(seeds))


if __name__ == "__main__":
    make_llama("llama_f32", "llama")
    make_llama("llama_f16", "llama", np.float16)
    make_llama("llama_q", "llama", quantized=True)
    make_types("types")
    make_fuzz_seeds()
