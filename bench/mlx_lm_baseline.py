"""Reference: mlx-lm's LoRA trainer, step for step, on a random-init model shape.

Builds the model with mlx_lm.models.<model_type>.Model (ModelArgs of the shapes of
../shared/bench/hf_baseline.py), freezes it and puts LoRA (rank 16, scale 2.0 = alpha 32 /
16, no dropout) on every linear layer of every block with mlx_lm.tuner.utils
.linear_to_lora_layers, as `mlx_lm.lora` does; then times the training step the way
mlx_lm.tuner.trainer.train runs it: default_loss through nn.value_and_grad, then
optimizer.update, inside one mx.compile over the model, optimizer and random state, and
mx.eval of that state each step. Random token ids, AdamW at lr 1e-4.

Prints one JSON line per run with hf_baseline.py's keys (peak_mem_gib is MLX's allocator's
peak, on the CPU too; threads is OPENBLAS_NUM_THREADS when set, since MLX's CPU matmuls go
to BLAS).
Usage: python bench/mlx_lm_baseline.py --runs SHAPE:MODE:BATCH:SEQ:GRAD_CKPT[,...]
       [--dtype f32|bf16] [--steps N] [--warmup N] [--peak-tflops T]
MODE: lora, dora or full.
"""
import argparse
import importlib
import json
import os
import time
from functools import partial

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten
from mlx_lm.tuner.trainer import default_loss, grad_checkpoint
from mlx_lm.tuner.utils import linear_to_lora_layers

# hf_baseline.py's SHAPES, in mlx_lm's ModelArgs terms.
SHAPES = {
    "llama1b": dict(model_type="llama", hidden_size=2048, intermediate_size=8192,
                    num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                    vocab_size=128256, rope_theta=500000.0, tie_word_embeddings=True,
                    max_position_embeddings=8192, rms_norm_eps=1e-5),
    "qwen05b": dict(model_type="qwen2", hidden_size=896, intermediate_size=4864,
                    num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                    vocab_size=151936, rope_theta=1000000.0, tie_word_embeddings=True,
                    max_position_embeddings=8192, rms_norm_eps=1e-6),
    "tiny": dict(model_type="llama", hidden_size=256, intermediate_size=688,
                 num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4,
                 vocab_size=32000, rope_theta=10000.0, tie_word_embeddings=True,
                 max_position_embeddings=2048, rms_norm_eps=1e-5),
    "llama8b": dict(model_type="llama", hidden_size=4096, intermediate_size=14336,
                    num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                    vocab_size=128256, rope_theta=500000.0, tie_word_embeddings=False,
                    max_position_embeddings=8192, rms_norm_eps=1e-5),
}
LORA_KEYS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
             "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def build(shape, dtype):
    kw = dict(SHAPES[shape])
    module = importlib.import_module(f"mlx_lm.models.{kw['model_type']}")
    args = module.ModelArgs.from_dict(kw)
    model = module.Model(args)
    model.set_dtype(dtype)
    mx.eval(model.parameters())
    return model, args


def flops_per_token(args, n_params_nonembed, lora, seq):
    # hf_baseline.py's formula (ft's bench.cpp, Note [Model FLOPs per token]).
    h, L, V = args.hidden_size, args.num_hidden_layers, args.vocab_size
    head = 2 * h * V
    attn = 2 * 2 * L * seq * h / 2
    fwd = 2 * n_params_nonembed + head + attn
    return fwd * 2 + attn if lora else fwd * 3


def run(shape, mode, batch, seq, ckpt, dtype, steps, warmup, peak_tflops):
    mx.random.seed(0)
    model, args = build(shape, dtype)
    n_nonembed = sum(v.size for k, v in tree_flatten(model.parameters())
                     if "embed_tokens" not in k)
    lora = mode != "full"
    if lora:
        # mlx_lm.lora: freeze, then the LoRA layers unfreeze their own A and B.
        model.freeze()
        linear_to_lora_layers(model, len(model.layers),
                              {"rank": 16, "scale": 2.0, "dropout": 0.0, "keys": LORA_KEYS},
                              use_dora=(mode == "dora"))
    if ckpt:
        grad_checkpoint(model.layers[0])  # patches the block class, as the trainer does
    model.train()
    opt = optim.AdamW(learning_rate=1e-4)
    loss_value_and_grad = nn.value_and_grad(model, default_loss)
    state = [model.state, opt.state, mx.random.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(tokens, lengths):
        (lvalue, toks), grad = loss_value_and_grad(model, tokens, lengths)
        opt.update(model, grad)
        return lvalue, toks

    # seq + 1 ids per row: default_loss reads the first seq and predicts the last seq.
    tokens = mx.random.randint(0, args.vocab_size, (batch, seq + 1))
    lengths = mx.array([[0, seq + 1]] * batch)

    def one():
        lvalue, toks = step(tokens, lengths)
        mx.eval(state, lvalue, toks)
        return lvalue

    for _ in range(warmup):
        one()
    mx.reset_peak_memory()
    cpu = time.process_time()
    t = time.perf_counter()
    for _ in range(steps):
        loss = one()
    dt = (time.perf_counter() - t) / steps
    cpu_step = (time.process_time() - cpu) / steps  # every thread's CPU time, as ft bench's
    tok = batch * seq / dt
    fpt = flops_per_token(args, n_nonembed, lora, seq)
    on_gpu = mx.default_device() == mx.gpu
    peak = peak_tflops or (989.0 if on_gpu and mx.cuda.is_available() else 0.0)
    threads = os.environ.get("OPENBLAS_NUM_THREADS")
    res = dict(system="mlx-lm", shape=shape, mode=mode, batch=batch, seq=seq, grad_ckpt=ckpt,
               compile=True, dtype={mx.float32: "float32", mx.bfloat16: "bfloat16"}[dtype],
               tokens_per_s=round(tok), step_s=round(dt, 4),
               device="gpu" if on_gpu else "cpu",
               threads=int(threads) if threads else None,
               peak_mem_gib=round(mx.get_peak_memory() / 2**30, 2),
               mfu=round(tok * fpt / (peak * 1e12), 4) if peak else None,
               loss=loss.item(), flops_per_token=fpt, cpu_s_per_step=round(cpu_step, 4))
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default="tiny:lora:4:256:0")
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--peak-tflops", type=float, default=0.0)
    a = ap.parse_args()
    dtype = {"f32": mx.float32, "bf16": mx.bfloat16}[a.dtype]
    for r in a.runs.split(","):
        shape, mode, b, s, ck = r.split(":")[:5]
        try:
            run(shape, mode, int(b), int(s), ck == "1", dtype, a.steps, a.warmup, a.peak_tflops)
        except Exception as e:  # an unknown shape, out of memory, ...
            print(json.dumps(dict(system="mlx-lm", shape=shape, mode=mode, batch=b, seq=s,
                                  error=str(e)[:200])), flush=True)
