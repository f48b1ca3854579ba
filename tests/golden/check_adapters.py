"""Adapters that other tools wrote, and a check that they read the adapters ft writes.

Run from the repository root with a Python that has torch, transformers, peft,
safetensors and mlx-lm (mlx-lm runs on Linux with MLX's CPU backend; .golden-venv's mlx
lacks that backend's libmlx.so, so there prefix LD_LIBRARY_PATH=.venv/lib/python3.11/
site-packages/mlx/lib, ft's own MLX of the same version):

  python tests/golden/check_adapters.py           # make the fixtures tests/adapters reads
  python tests/golden/check_adapters.py --verify  # load ft's exports with PEFT and mlx-lm

Fixtures (all on the tiny random model tests/golden/models/llama):
  adapters/peft_lora/, adapters/peft_dora/        written by peft's save_pretrained
  adapters/mlx_lora/, adapters/mlx_dora/          written the way mlx-lm's trainer does
  adapters/<name>_expected.safetensors            ids (2, 12) int32, logits (2, 12, vocab)
                                                  of the base model with that adapter
Every adapter has random nonzero values (B and the DoRA magnitude too), so a wrong
transpose, scale or magnitude shows in the logits.

--verify: ft's exports adapters/ft_export_<kind>/{peft,mlx_lm}/ and the logits ft
computed with them, adapters/ft_export_<kind>_expected.safetensors, are written by
  FT_WRITE_ADAPTER_FIXTURES=1 ./build/tests/test_adapters --gtest_filter='*Export*'
  (tests/adapters/adapters_test.cpp: kinds lora and dora on models/llama, in both layouts;
  tests/adapters/family_export_test.cpp: one per family fixture, kind = the fixture's name
  (phi3, phi3_longrope, gpt2, mixtral_fused, lfm2, gemma2, phi), PEFT's layout only)
This loads each on the base model its adapter_config.json names (base_model_name_or_path,
relative to the repository root; float32, eager attention) with
peft.PeftModel.from_pretrained (which must take in every tensor of the file as saved), then
merged into the base weights with merge_and_unload, and with mlx_lm's load_adapters where
an mlx_lm/ folder exists; it prints OK per check when the logits match ft's (max relative
error 1e-4), else FAIL, and exits non-zero on any FAIL. tests/adapters checks that a fresh
export is byte-identical to the committed one, so any change to the exporter makes these two
commands be run again.
"""

import json
import os
import shutil
import sys

import numpy as np
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(HERE, "adapters")
MODEL = os.path.join(HERE, "models", "llama")


def ids_for(vocab):
    g = torch.Generator().manual_seed(7)
    return torch.randint(0, vocab, (2, 12), generator=g)


def hf_model(folder=MODEL):
    model = transformers.AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch.float32, attn_implementation="eager"
    )
    model.eval()
    return model


def save_expected(name, ids, logits):
    save_numpy(
        {"ids": ids.astype(np.int32), "logits": logits.astype(np.float32)},
        os.path.join(OUT, name + "_expected.safetensors"),
    )


def make_peft(name, **config):
    torch.manual_seed(11 if "dora" in name else 5)
    model = get_peft_model(hf_model(), LoraConfig(task_type="CAUSAL_LM", **config))
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "lora_" in pname:
                if "magnitude" in pname:
                    p.mul_(1.0 + 0.2 * torch.rand_like(p))
                else:
                    p.copy_(0.3 * torch.randn_like(p))
    model.eval()
    folder = os.path.join(OUT, name)
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder)
    os.remove(os.path.join(folder, "README.md"))  # peft's model card
    # The committed config should not name a path on this machine.
    cfg_file = os.path.join(folder, "adapter_config.json")
    cfg = json.load(open(cfg_file))
    cfg["base_model_name_or_path"] = "tests/golden/models/llama"
    json.dump(cfg, open(cfg_file, "w"), indent=2, sort_keys=True)
    ids = ids_for(model.config.vocab_size)
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    save_expected(name, ids.numpy(), logits.numpy())
    print("wrote", folder)


def mlx_model(folder=MODEL):
    from pathlib import Path

    from mlx_lm.utils import load_model

    model, _ = load_model(Path(folder))
    return model


def make_mlx(name, fine_tune_type, num_layers, parameters):
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.tuner.utils import linear_to_lora_layers

    model = mlx_model()
    model.freeze()
    linear_to_lora_layers(model, num_layers, parameters, use_dora=fine_tune_type == "dora")
    mx.random.seed(3 if fine_tune_type == "dora" else 2)
    updates = []
    for pname, p in tree_flatten(model.trainable_parameters()):
        if pname.endswith(".m"):
            updates.append((pname, p * (1.0 + 0.2 * mx.random.uniform(shape=p.shape))))
        else:
            updates.append((pname, 0.3 * mx.random.normal(p.shape)))
    from mlx.utils import tree_unflatten

    model.update(tree_unflatten(updates))
    model.eval()
    folder = os.path.join(OUT, name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    mx.save_safetensors(
        os.path.join(folder, "adapters.safetensors"), dict(tree_flatten(model.trainable_parameters()))
    )
    with open(os.path.join(folder, "adapter_config.json"), "w") as f:
        json.dump(
            {"fine_tune_type": fine_tune_type, "num_layers": num_layers, "lora_parameters": parameters},
            f,
            indent=2,
            sort_keys=True,
        )
    vocab = json.load(open(os.path.join(MODEL, "config.json")))["vocab_size"]
    ids = ids_for(vocab).numpy()
    logits = np.array(model(mx.array(ids)).astype(mx.float32))
    save_expected(name, ids, logits)
    print("wrote", folder)


def relative_error(got, want):
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def verify():
    failures = 0
    kinds = sorted(
        d[len("ft_export_"):]
        for d in os.listdir(OUT)
        if d.startswith("ft_export_") and os.path.isdir(os.path.join(OUT, d))
    )
    if not kinds:
        sys.exit("no adapters/ft_export_* folders: run the C++ exporter first (see the docstring)")
    for kind in kinds:
        base = os.path.join(OUT, "ft_export_" + kind)
        expected = load_numpy(base + "_expected.safetensors")
        ids, want = expected["ids"], expected["logits"]
        peft_dir = os.path.join(base, "peft")
        config = json.load(open(os.path.join(peft_dir, "adapter_config.json")))
        model_dir = os.path.join(ROOT, config["base_model_name_or_path"])

        model = PeftModel.from_pretrained(hf_model(model_dir), peft_dir)
        model.eval()
        # Every tensor of the file is in the model: PEFT only warns about the others.
        saved = load_numpy(os.path.join(peft_dir, "adapter_model.safetensors"))
        loaded = {k: v.detach().numpy() for k, v in get_peft_model_state_dict(model).items()}
        unused = sorted(set(saved) ^ set(loaded))
        unused += [k for k in set(saved) & set(loaded) if not np.array_equal(saved[k], loaded[k])]
        with torch.no_grad():
            got = model(input_ids=torch.from_numpy(ids.astype(np.int64))).logits.numpy()
        err = relative_error(got, want)
        ok = err < 1e-4 and not unused
        failures += not ok
        print(f"{'OK' if ok else 'FAIL'} peft   {kind}: max relative error {err:.2e}"
              + (f", not loaded as saved: {unused}" if unused else ""))
        # Merged into the base weights (fan_in_fan_out transposes the delta for Conv1D).
        merged = model.merge_and_unload()
        with torch.no_grad():
            got = merged(input_ids=torch.from_numpy(ids.astype(np.int64))).logits.numpy()
        err = relative_error(got, want)
        ok = err < 1e-4
        failures += not ok
        print(f"{'OK' if ok else 'FAIL'} merged {kind}: max relative error {err:.2e}")

        if not os.path.isdir(os.path.join(base, "mlx_lm")):
            continue
        import mlx.core as mx
        from mlx_lm.tuner.utils import load_adapters

        mlx = mlx_model(model_dir)
        load_adapters(mlx, os.path.join(base, "mlx_lm"))
        mlx.eval()
        got = np.array(mlx(mx.array(ids)).astype(mx.float32))
        err = relative_error(got, want)
        ok = err < 1e-4
        failures += not ok
        print(f"{'OK' if ok else 'FAIL'} mlx-lm {kind}: max relative error {err:.2e}")
    if failures:
        sys.exit(f"{failures} check(s) failed")
    print("OK")


def main():
    if "--verify" in sys.argv:
        verify()
        return
    os.makedirs(OUT, exist_ok=True)
    make_peft("peft_lora", r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"])
    make_peft(
        "peft_dora",
        r=2,
        lora_alpha=3,
        use_dora=True,
        use_rslora=True,
        target_modules=["k_proj", "o_proj", "gate_proj"],
        layers_to_transform=[1],
    )
    make_mlx("mlx_lora", "lora", 2, {"rank": 4, "scale": 1.5, "dropout": 0.0,
                                     "keys": ["self_attn.q_proj", "mlp.up_proj"]})
    make_mlx("mlx_dora", "dora", 1, {"rank": 2, "scale": 0.75, "dropout": 0.0,
                                     "keys": ["self_attn.v_proj", "mlp.down_proj"]})


if __name__ == "__main__":
    main()
