"""Quantized model folders made by mlx-lm, and mlx-lm's logits on them, for
tests/models/quantized_model_test.cpp.

Run from the repository root with a Python that has mlx and mlx-lm:
  python tests/golden/quantized/make_quantized.py

Each variant takes a tiny float32 Hugging Face model of tests/golden/models/, loads it
with mlx_lm.utils.load_model, quantizes it with mlx_lm.utils.quantize_model (MLX affine
quantization, as `mlx_lm.convert -q` does) and writes it with mlx_lm's save_model and
save_config into tests/golden/quantized/<name>/. mlx-lm then loads that folder back, as
a user of it would, and <name>_expected.safetensors holds
  ids     (2, 12) int32         a fixed input
  logits  (2, 12, vocab) f32    mlx-lm's logits for it
and, for the Llama variants (whose mlx-lm names are transformers'),
<name>_dequantized.safetensors the parameters of that reloaded model after
mlx_lm.utils.dequantize_model (mx.dequantize of every quantized layer): what `ft convert`
of the folder must write.

Variants (hidden 32, intermediate 48, so groups of 32 divide every input size except
down_proj's 48, which mlx-lm leaves in floats without a config entry):
  llama_q4_g32        models/llama (separate lm_head), 4 bits, groups of 32
  llama3_tied_mixed   models/llama3_tied (tied embeddings, quantized embedding used as
                      the output head), 4 bits, groups of 32, with per-module settings:
                      layer 0's q_proj at 8 bits (a config entry) and layer 1's v_proj
                      left in floats
  llama_recipe        models/llama quantized as recipe_predicate says, which makes the
                      same choices as the recipe file llama_recipe.yaml (`ft quantize
                      --recipe`): defaults 4 bits in groups of 32; layer 0's attention at
                      8 bits, the embedding at 6, lm_head in floats, layer 1's gate and
                      up projections at 2 bits, the other o_proj at 3
  mixtral_q4_g32      models/mixtral (the older per-expert layout, which mlx-lm stacks
                      into its switch_mlp.{gate_proj, up_proj, down_proj}), 4 bits,
                      groups of 32: the router and the experts' gate and up projections
                      quantized, their down projection (48 wide) left in floats
"""

import json
import os
import re
import shutil
from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten
from mlx_lm.utils import dequantize_model, load_model, quantize_model, save_config, save_model

HERE = Path(os.path.dirname(os.path.abspath(__file__)))
MODELS = HERE.parent / "models"


def mixed_predicate(path, module):
    if path == "model.layers.0.self_attn.q_proj":
        return {"group_size": 32, "bits": 8}
    if path == "model.layers.1.self_attn.v_proj":
        return False
    return True


def recipe_predicate(path, module):
    """llama_recipe.yaml's rules, first match wins, written out by hand."""
    parts = path.split(".")
    layer = int(parts[2]) if path.startswith("model.layers.") else None
    if layer == 0 and "self_attn" in parts:
        return {"group_size": 32, "bits": 8}
    if path == "model.embed_tokens":
        return {"group_size": 32, "bits": 6}
    if path == "lm_head":
        return False
    if layer == 1 and re.search(r"mlp\.(gate|up)_proj$", path):
        return {"group_size": 32, "bits": 2}
    if parts[-1] == "o_proj":
        return {"group_size": 32, "bits": 3}
    return True


VARIANTS = {
    "llama_q4_g32": ("llama", 4, 32, None),
    "llama3_tied_mixed": ("llama3_tied", 4, 32, mixed_predicate),
    "llama_recipe": ("llama", 4, 32, recipe_predicate),
    "mixtral_q4_g32": ("mixtral", 4, 32, None),
}


def legacy_rope(folder):
    """mlx-lm 0.32 reads rope_theta and rope_scaling, not transformers 5's
    rope_parameters: hand it the same settings under the older keys."""
    with open(folder / "config.json") as f:
        rope = json.load(f).get("rope_parameters")
    if not rope:
        return None
    scaling = {k: v for k, v in rope.items() if k != "rope_theta"}
    extra = {"rope_theta": rope["rope_theta"]}
    if scaling.get("rope_type", "default") != "default":
        extra["rope_scaling"] = scaling
    return extra


def make(name, source, bits, group_size, predicate):
    out = HERE / name
    shutil.rmtree(out, ignore_errors=True)
    model, config = load_model(MODELS / source, model_config=legacy_rope(MODELS / source))
    # Before quantizing, mlx-lm's model must be transformers' (make_model_fixtures.py).
    reference = mx.load(str(MODELS / f"{source}_expected.safetensors"))
    logits = model(reference["ids"])
    error = mx.abs(logits - reference["logits"]).max() / mx.abs(reference["logits"]).max()
    assert error.item() < 1e-4, (source, error.item())
    model, config = quantize_model(
        model, config, group_size, bits, quant_predicate=predicate
    )
    save_model(out, model)
    save_config(config, out / "config.json")

    reloaded, _ = load_model(out, model_config=legacy_rope(MODELS / source))
    rng = np.random.default_rng(7)
    ids = mx.array(rng.integers(0, config["vocab_size"], size=(2, 12)).astype(np.int32))
    logits = reloaded(ids).astype(mx.float32)
    mx.save_safetensors(
        str(HERE / f"{name}_expected.safetensors"),
        {"ids": ids, "logits": logits},
        metadata={"format": "mlx"},
    )
    if source.startswith("llama"):
        dequantized = dict(tree_flatten(dequantize_model(reloaded).parameters()))
        mx.save_safetensors(
            str(HERE / f"{name}_dequantized.safetensors"), dequantized, metadata={"format": "mlx"}
        )
    print(name, sorted(os.listdir(out)))


if __name__ == "__main__":
    for name, (source, bits, group_size, predicate) in VARIANTS.items():
        make(name, source, bits, group_size, predicate)
