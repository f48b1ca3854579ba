"""Tiny random Hugging Face models and their expected outputs, for tests/models.

Run from the repository root with a Python that has torch, transformers and
safetensors:  python tests/golden/make_model_fixtures.py

For each architecture variant this writes tests/golden/models/<name>/ (config.json and
model.safetensors, as save_pretrained writes them) and
tests/golden/models/<name>_expected.safetensors holding:
  ids      (2, 12) int32   the input ids
  logits   (2, 12, vocab)  float32
  loss     ()              mean next-token cross-entropy with labels = ids
  grad.<parameter name>    gradients of that loss for a few chosen weights
and, with PEFT LoRA (rank 4, alpha 8) on every q_proj and v_proj with random nonzero
adapters:
  lora.<module>.lora_A / lora_B            the adapter values, PEFT's shapes
  lora_logits, lora_loss                   the adapted model's outputs
  lora_grad.<module>.lora_A / lora_B       gradients of lora_loss
"""

import os
import shutil

import torch
import transformers
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models")

COMMON = dict(
    vocab_size=128,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    rms_norm_eps=1e-5,
    max_position_embeddings=64,
)

GRADS = ["model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight"]

# name -> (config class, extra config fields, extra gradient names)
VARIANTS = {
    "llama": (transformers.LlamaConfig, dict(rope_theta=10000.0), []),
    # llama3 scaling with a short original context so every frequency band is hit;
    # tied embeddings.
    "llama3_tied": (
        transformers.LlamaConfig,
        dict(
            rope_theta=500000.0,
            tie_word_embeddings=True,
            rope_scaling=dict(
                rope_type="llama3",
                factor=8.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                original_max_position_embeddings=16,
            ),
        ),
        ["model.embed_tokens.weight"],
    ),
    "llama_linear": (
        transformers.LlamaConfig,
        dict(rope_theta=10000.0, rope_scaling=dict(rope_type="linear", factor=2.0)),
        [],
    ),
    # Dynamic NTK scaling takes effect past max_position_embeddings (8 < 12).
    "llama_dynamic": (
        transformers.LlamaConfig,
        dict(
            rope_theta=10000.0,
            max_position_embeddings=8,
            rope_scaling=dict(rope_type="dynamic", factor=2.0),
        ),
        [],
    ),
    # A window shorter than the 12-token test sequence.
    "mistral": (transformers.MistralConfig, dict(rope_theta=10000.0, sliding_window=5), []),
    "qwen2": (
        transformers.Qwen2Config,
        dict(rope_theta=10000.0),
        ["model.layers.0.self_attn.q_proj.bias"],
    ),
    "qwen3": (
        transformers.Qwen3Config,
        dict(rope_theta=10000.0, head_dim=8),
        ["model.layers.0.self_attn.q_norm.weight"],
    ),
}


def randomize(model, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if "norm" in name:
                p.copy_(1.0 + 0.1 * noise)  # norm scales near one
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            else:
                p.copy_(0.15 * noise)


def lora_outputs(model, ids, seed):
    config = LoraConfig(r=LORA_RANK, lora_alpha=LORA_ALPHA, lora_dropout=0.0,
                        target_modules=["q_proj", "v_proj"])
    peft_model = get_peft_model(model, config)
    gen = torch.Generator().manual_seed(seed)
    adapters = {}
    with torch.no_grad():
        for path, module in peft_model.base_model.model.named_modules():
            if hasattr(module, "lora_A") and "default" in module.lora_A:
                a = module.lora_A["default"].weight
                b = module.lora_B["default"].weight
                a.copy_(0.2 * torch.randn(a.shape, generator=gen))
                b.copy_(0.2 * torch.randn(b.shape, generator=gen))
                adapters[path] = (a, b)
    out = peft_model(input_ids=ids, labels=ids)
    out.loss.backward()
    tensors = {
        "lora_logits": out.logits.detach().float().contiguous(),
        "lora_loss": out.loss.detach().float(),
    }
    for path, (a, b) in adapters.items():
        tensors[f"lora.{path}.lora_A"] = a.detach().clone()
        tensors[f"lora.{path}.lora_B"] = b.detach().clone()
        tensors[f"lora_grad.{path}.lora_A"] = a.grad.detach().clone()
        tensors[f"lora_grad.{path}.lora_B"] = b.grad.detach().clone()
    return tensors


LORA_RANK, LORA_ALPHA = 4, 8.0


def main():
    torch.manual_seed(0)
    for index, (name, (cls, extra, extra_grads)) in enumerate(VARIANTS.items()):
        config = cls(**{**COMMON, **extra})
        config._attn_implementation = "eager"
        model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
        model = model.float()
        randomize(model, 1000 + index)
        folder = os.path.join(OUT, name)
        shutil.rmtree(folder, ignore_errors=True)
        model.save_pretrained(folder, safe_serialization=True)

        gen = torch.Generator().manual_seed(2000 + index)
        ids = torch.randint(0, COMMON["vocab_size"], (2, 12), generator=gen)
        model.train(False)
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        params = dict(model.named_parameters())
        tensors = {
            "ids": ids.to(torch.int32),
            "logits": out.logits.detach().float().contiguous(),
            "loss": out.loss.detach().float(),
        }
        for g in GRADS + extra_grads:
            tensors["grad." + g] = params[g].grad.detach().float().contiguous()
        model.zero_grad()
        tensors.update(lora_outputs(model, ids, 3000 + index))
        save_file(tensors, os.path.join(OUT, name + "_expected.safetensors"))
        print(name, "loss", float(out.loss.detach()))


if __name__ == "__main__":
    main()
