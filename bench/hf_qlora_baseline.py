"""Reference for QLoRA: transformers + PEFT over a bitsandbytes 4-bit (NF4) base.

The set-up of the QLoRA recipe people run with transformers: every linear layer of the
decoder blocks quantized by bitsandbytes to NF4 with bfloat16 compute (double
quantization on), embeddings, norms and the output head in bfloat16, LoRA r16 (alpha 32,
no dropout) on every linear layer of the blocks, torch's fused AdamW at lr 1e-4. The model
is a random-init shape of ../shared/bench/hf_baseline.py (no hub access). Prints one JSON
line per run with hf_baseline.py's keys.

Usage: python3 bench/hf_qlora_baseline.py --runs SHAPE:BATCH:SEQ:GRAD_CKPT[,...] [--steps N]
Needs a CUDA GPU and the bitsandbytes and peft packages.
"""
import argparse
import json
import os
import sys
import time

import torch

# hf_baseline.py: where HF_BASELINE names it, else ../shared/bench beside the repository.
sys.path.insert(0, os.path.dirname(os.path.abspath(os.environ["HF_BASELINE"]))
                if os.environ.get("HF_BASELINE")
                else os.path.join(os.path.dirname(__file__), "..", "..", "shared", "bench"))
from hf_baseline import PEAK, SHAPES, flops_per_token  # noqa: E402

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def quantize_blocks(model):
    """Replaces every nn.Linear of the decoder blocks by a bitsandbytes NF4 Linear4bit."""
    import bitsandbytes as bnb

    for layer in model.model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name, child in list(parent.named_children()):
                if not isinstance(child, torch.nn.Linear):
                    continue
                q = bnb.nn.Linear4bit(child.in_features, child.out_features,
                                      bias=child.bias is not None, compute_dtype=torch.bfloat16,
                                      compress_statistics=True, quant_type="nf4",
                                      device="meta")
                q.weight = bnb.nn.Params4bit(child.weight.data.cpu(), requires_grad=False,
                                             compress_statistics=True, quant_type="nf4")
                if child.bias is not None:
                    q.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
                setattr(parent, name, q.cuda())  # quantizes on the move to the GPU
                del child
    torch.cuda.empty_cache()


def run(shape, batch, seq, steps, ckpt):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    kw = dict(SHAPES[shape])
    cfg = AutoConfig.for_model(kw.pop("model_type"), **kw)
    cfg._attn_implementation = "sdpa"
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.bfloat16)
    n_nonembed = sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n)
    quantize_blocks(model)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
                                             target_modules=TARGETS))
    if ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, fused=True)
    ids = torch.randint(0, cfg.vocab_size, (batch, seq), device="cuda")
    torch.cuda.reset_peak_memory_stats()

    def step():
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return out.loss

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        loss = step()
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / steps
    tok = batch * seq / dt
    fpt = flops_per_token(cfg, n_nonembed, True, seq)
    print(json.dumps(dict(system="hf-transformers+peft+bnb-nf4", shape=shape, mode="qlora",
                          batch=batch, seq=seq, grad_ckpt=ckpt, compile=False,
                          tokens_per_s=round(tok), step_s=round(dt, 4), device="cuda",
                          peak_mem_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2),
                          mfu=round(tok * fpt / PEAK, 3), loss=float(loss))), flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default="llama8b:1:2048:0")
    ap.add_argument("--steps", type=int, default=10)
    a = ap.parse_args()
    for r in a.runs.split(","):
        shape, b, s, ck = r.split(":")[:4]
        try:
            run(shape, int(b), int(s), a.steps, ck == "1")
        except Exception as e:  # out of memory, a missing package, ...
            print(json.dumps(dict(shape=shape, mode="qlora", batch=b, seq=s,
                                  error=str(e)[:200])), flush=True)
        torch.cuda.empty_cache()
