"""Fixtures for tests/io: model folders in the formats ft reads.

Run from the repo root: python tests/golden/make_io_fixtures.py
Writes tests/golden/io/:
  torch_bin/pytorch_model.bin   torch.save of a state dict (f32, f16, bf16, a transposed
                                view, two tensors sharing one storage, an int64 tensor,
                                a scalar, an nn.Parameter; OrderedDict with _metadata)
  torch_bin_expected.safetensors  the same tensors, made contiguous, for comparison
  llama_sharded/                save_pretrained of a tiny random LlamaForCausalLM, sharded
  llama_expected.safetensors    its state dict in one file
  arrays.npz, arrays_compressed.npz (deflated), arrays_expected.safetensors
  truncated_pickle.bin          a zip whose data.pkl stops mid-way
  llama_bin_sharded/            the same model as sharded pytorch_model-*.bin with an index
  torch_bad/pytorch_model.bin   a zip whose data.pkl calls os.system (bytes only, never loaded)
  stack_global_eval.bin         the same with a protocol-4 pickle calling builtins.eval
"""
import collections
import json
import os
import pickle
import shutil
import zipfile

import numpy as np
import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "io")


def contiguous(sd):
    return {k: v.detach().contiguous().clone() for k, v in sd.items()}


def torch_bin():
    d = os.path.join(OUT, "torch_bin")
    os.makedirs(d, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    base = torch.randn(4, 6, generator=g)
    shared = torch.randn(10, generator=g)
    sd = {
        "a.weight": base,
        "a.weight_t": base.t(),  # a non-contiguous view of the same storage
        "b.half": torch.randn(3, 5, generator=g).half(),
        "c.bf16": torch.randn(2, 3, 4, generator=g).bfloat16(),
        "d.first": shared[:4],  # shares a storage with d.second, at an offset
        "d.second": shared[4:].view(2, 3),
        "e.index": torch.arange(7, dtype=torch.int64) * 3 - 5,
        "f.scalar": torch.tensor(2.5),
        "g.param": torch.nn.Parameter(torch.randn(2, 2, generator=g), requires_grad=False),
    }
    # Like nn.Module.state_dict(): an OrderedDict carrying _metadata (pickled with BUILD).
    sd = collections.OrderedDict(sd)
    sd._metadata = collections.OrderedDict({"": {"version": 1}})
    torch.save(sd, os.path.join(d, "pytorch_model.bin"))
    # Beside the folder, not in it: a folder with safetensors files loads those first.
    save_file(contiguous(sd), os.path.join(OUT, "torch_bin_expected.safetensors"))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"model_type": "toy", "hidden_size": 6}, f)


def llama_sharded():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, vocab_size=64,
                      max_position_embeddings=64, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg)
    d = os.path.join(OUT, "llama_sharded")
    shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(d, max_shard_size="4KB", safe_serialization=True)
    for name in ("generation_config.json",):
        p = os.path.join(d, name)
        if os.path.exists(p):
            os.remove(p)
    save_file(contiguous(model.state_dict()), os.path.join(d, "..", "llama_expected.safetensors"))
    # The same model as sharded pytorch_model-*.bin files with pytorch_model.bin.index.json.
    d = os.path.join(OUT, "llama_bin_sharded")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    # transformers 5 writes only safetensors, so the shards are made the way older
    # versions did: torch.save of each part of the state dict, plus the index.
    sd = model.state_dict()
    names = list(sd)
    parts = [names[: len(names) // 2], names[len(names) // 2:]]
    weight_map = {}
    for k, part in enumerate(parts):
        file = f"pytorch_model-{k + 1:05d}-of-{len(parts):05d}.bin"
        torch.save(collections.OrderedDict((n, sd[n]) for n in part), os.path.join(d, file))
        weight_map.update({n: file for n in part})
    total = sum(v.numel() * v.element_size() for v in sd.values())
    with open(os.path.join(d, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def npz():
    rng = np.random.default_rng(0)
    arrays = {
        "w": rng.standard_normal((3, 4)).astype(np.float32),
        "h": rng.standard_normal((5,)).astype(np.float16),
        "i": np.arange(6, dtype=np.int32).reshape(2, 3),
        "f": np.asfortranarray(rng.standard_normal((2, 3)).astype(np.float32)),
    }
    np.savez(os.path.join(OUT, "arrays.npz"), **arrays)
    np.savez_compressed(os.path.join(OUT, "arrays_compressed.npz"), **arrays)  # deflated members
    save_file({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()},
              os.path.join(OUT, "arrays_expected.safetensors"))


def forbidden_pickle():
    # PROTO 2, GLOBAL 'os system', BINUNICODE 'echo hi', TUPLE1, REDUCE, STOP.
    cmd = b"echo hi"
    data = (b"\x80\x02" + b"cos\nsystem\n" + b"X" + len(cmd).to_bytes(4, "little") + cmd
            + b"\x85" + b"R" + b".")
    # Put it where torch puts its pickle, inside a zip, as torch_bad/pytorch_model.bin.
    d = os.path.join(OUT, "torch_bad")
    os.makedirs(d, exist_ok=True)
    with zipfile.ZipFile(os.path.join(d, "pytorch_model.bin"), "w", zipfile.ZIP_STORED) as z:
        z.writestr(zipfile.ZipInfo("archive/data.pkl", date_time=(2020, 1, 1, 0, 0, 0)), data)
        z.writestr(zipfile.ZipInfo("archive/version", date_time=(2020, 1, 1, 0, 0, 0)), "3\n")
    # Protocol 4 style: STACK_GLOBAL of 'builtins' 'eval' from two SHORT_BINUNICODE strings.
    data = (b"\x80\x04" + b"\x8c\x08builtins" + b"\x8c\x04eval" + b"\x93" + b"\x8c\x011"
            + b"\x85" + b"R" + b".")
    with zipfile.ZipFile(os.path.join(OUT, "stack_global_eval.bin"), "w", zipfile.ZIP_STORED) as z:
        z.writestr(zipfile.ZipInfo("archive/data.pkl", date_time=(2020, 1, 1, 0, 0, 0)), data)


def truncated_pickle():
    # torch_bin's data.pkl cut after 150 bytes, in an otherwise valid zip.
    with zipfile.ZipFile(os.path.join(OUT, "torch_bin", "pytorch_model.bin")) as z:
        data = z.read("pytorch_model/data.pkl")[:150]
    with zipfile.ZipFile(os.path.join(OUT, "truncated_pickle.bin"), "w", zipfile.ZIP_STORED) as z:
        z.writestr(zipfile.ZipInfo("archive/data.pkl", date_time=(2020, 1, 1, 0, 0, 0)), data)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    torch_bin()
    llama_sharded()
    npz()
    forbidden_pickle()
    truncated_pickle()
