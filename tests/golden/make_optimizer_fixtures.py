"""Fixtures for tests/train/optimizer_test.cpp and schedule_test.cpp.

Runs each optimizer for a few steps on three small parameters (2-D, so Adafactor
factors them, and 1-D) with fixed gradients, and records the parameters after every
step. References: torch.optim.SGD / Adam / AdamW; transformers' Adafactor (the
algorithm ft follows); Lion written here with torch ops from the paper's algorithm
(PyTorch has none). Schedules: transformers' warmup schedules and torch's StepLR and
ExponentialLR.

Run from the repository root:  python tests/golden/make_optimizer_fixtures.py
Writes tests/golden/optimizers/{optimizers.safetensors, optimizers.json, schedules.json}.
"""

import json
import math
import os

import torch
from safetensors.torch import save_file
from transformers.optimization import (
    Adafactor,
    get_cosine_schedule_with_warmup,
    get_cosine_with_min_lr_schedule_with_warmup,
    get_linear_schedule_with_warmup,
)

OUT = os.path.join("tests", "golden", "optimizers")
STEPS = 5
# Two 2-D shapes check that one compiled (shapeless) rule serves several shapes.
SHAPES = {"model.layers.0.proj.weight": (3, 4), "model.norm.weight": (5,),
          "model.layers.0.gate.weight": (2, 6)}


class Lion(torch.optim.Optimizer):
    """Lion (Chen et al. 2023, Algorithm 2) with decoupled weight decay."""

    def __init__(self, params, lr, betas=(0.9, 0.99), weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, wd = group["lr"], group["weight_decay"]
            for p in group["params"]:
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                m = state["exp_avg"]
                p.mul_(1 - lr * wd)
                direction = (m * beta1 + p.grad * (1 - beta1)).sign()
                p.add_(direction, alpha=-lr)
                m.mul_(beta2).add_(p.grad, alpha=1 - beta2)


def make_torch_optimizer(params, cfg):
    name = cfg["name"]
    lr = cfg.get("learning_rate", 1e-5)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.get("momentum", 0.0),
                               dampening=cfg.get("dampening", 0.0),
                               nesterov=cfg.get("nesterov", False),
                               weight_decay=cfg.get("weight_decay", 0.0))
    if name in ("adam", "adamw"):
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return cls(params, lr=lr, betas=(cfg.get("beta1", 0.9), cfg.get("beta2", 0.999)),
                   eps=cfg.get("eps", 1e-8),
                   weight_decay=cfg.get("weight_decay", 0.0 if name == "adam" else 0.01))
    if name == "adafactor":
        relative = cfg.get("relative_step", False)
        return Adafactor(params, lr=None if relative else lr,
                         eps=(cfg.get("eps_sq", 1e-30), cfg.get("eps_scale", 1e-3)),
                         clip_threshold=cfg.get("clip_threshold", 1.0),
                         decay_rate=cfg.get("decay_rate", -0.8), beta1=cfg.get("beta1"),
                         weight_decay=cfg.get("weight_decay", 0.0),
                         scale_parameter=cfg.get("scale_parameter", True),
                         relative_step=relative, warmup_init=cfg.get("warmup_init", False))
    if name == "lion":
        return Lion(params, lr=lr, betas=(cfg.get("beta1", 0.9), cfg.get("beta2", 0.99)),
                    weight_decay=cfg.get("weight_decay", 0.0))
    raise ValueError(name)


# Each case: an id, the ft OptimizerConfig fields, and optionally a warmup+cosine
# schedule (transformers' get_cosine_schedule_with_warmup on top of learning_rate).
CASES = [
    ("sgd_plain", dict(name="sgd", learning_rate=0.1)),
    ("sgd_momentum_wd", dict(name="sgd", learning_rate=0.05, momentum=0.9, dampening=0.1,
                             weight_decay=0.01)),
    ("sgd_nesterov", dict(name="sgd", learning_rate=0.05, momentum=0.8, nesterov=True,
                          weight_decay=0.02)),
    ("adam", dict(name="adam", learning_rate=1e-2)),
    ("adam_l2", dict(name="adam", learning_rate=3e-3, beta1=0.8, beta2=0.99, eps=1e-6,
                     weight_decay=0.1)),
    ("adamw", dict(name="adamw", learning_rate=1e-2, weight_decay=0.1)),
    ("adamw_no_wd", dict(name="adamw", learning_rate=2e-2, weight_decay=0.0)),
    ("adamw_schedule", dict(name="adamw", learning_rate=1e-2, weight_decay=0.05),
     dict(warmup_steps=2, total_steps=6)),
    ("adafactor_lr", dict(name="adafactor", learning_rate=1e-2, scale_parameter=False)),
    ("adafactor_scaled_beta1_wd", dict(name="adafactor", learning_rate=5e-2, beta1=0.9,
                                       weight_decay=0.1, clip_threshold=0.5)),
    ("adafactor_relative", dict(name="adafactor", relative_step=True)),
    ("adafactor_relative_warmup", dict(name="adafactor", relative_step=True,
                                       warmup_init=True, scale_parameter=False)),
    ("lion", dict(name="lion", learning_rate=1e-2)),
    ("lion_wd", dict(name="lion", learning_rate=3e-3, beta1=0.95, beta2=0.98,
                     weight_decay=0.5)),
]


def optimizer_fixtures():
    gen = torch.Generator().manual_seed(0)
    init = {n: torch.randn(s, generator=gen) for n, s in SHAPES.items()}
    grads = [{n: torch.randn(s, generator=gen) * (0.5 + k) for n, s in SHAPES.items()}
             for k in range(STEPS)]
    tensors = {f"params.{n}": t for n, t in init.items()}
    for k, g in enumerate(grads):
        tensors.update({f"grads.{k + 1}.{n}": t for n, t in g.items()})
    cases = []
    for case in CASES:
        cid, cfg = case[0], case[1]
        sched = case[2] if len(case) > 2 else None
        params = {n: torch.nn.Parameter(t.clone()) for n, t in init.items()}
        opt = make_torch_optimizer(list(params.values()), cfg)
        scheduler = None
        if sched:
            scheduler = get_cosine_schedule_with_warmup(opt, sched["warmup_steps"],
                                                        sched["total_steps"])
        for k in range(STEPS):
            for n, p in params.items():
                p.grad = grads[k][n].clone()
            opt.step()
            if scheduler:
                scheduler.step()
            for n, p in params.items():
                tensors[f"{cid}.{k + 1}.{n}"] = p.detach().clone()
        cases.append(dict(id=cid, config=cfg, **({"schedule": sched} if sched else {})))
    save_file({k: v.contiguous() for k, v in tensors.items()},
              os.path.join(OUT, "optimizers.safetensors"))
    with open(os.path.join(OUT, "optimizers.json"), "w") as f:
        json.dump(dict(steps=STEPS, params=list(SHAPES), cases=cases), f, indent=1)


def lambda_values(make, steps, base_lr):
    """Rates a torch LR scheduler gives for updates 0..steps-1."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base_lr)
    sched = make(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def schedule_fixtures():
    # transformers' cosine schedules rise again after total_steps, where ft's stay at
    # the floor: record the cosine ones only up to total_steps.
    n = 40
    cases = [
        dict(id="warmup_cosine", config=dict(name="cosine_decay", learning_rate=3e-4,
                                             warmup_steps=5, decay_steps=25),
             values=lambda_values(lambda o: get_cosine_schedule_with_warmup(o, 5, 30), 31, 3e-4)),
        dict(id="warmup_cosine_min_lr",
             config=dict(name="cosine_decay", learning_rate=1e-3, warmup_steps=4,
                         decay_steps=16, end_value=1e-4),
             values=lambda_values(lambda o: get_cosine_with_min_lr_schedule_with_warmup(
                 o, 4, 20, min_lr=1e-4), 21, 1e-3)),
        dict(id="warmup_linear", config=dict(name="linear_decay", learning_rate=2e-4,
                                             warmup_steps=3, decay_steps=27),
             values=lambda_values(lambda o: get_linear_schedule_with_warmup(o, 3, 30), n, 2e-4)),
        dict(id="step_decay", config=dict(name="step_decay", learning_rate=0.1, decay_rate=0.5,
                                          step_size=7),
             values=lambda_values(lambda o: torch.optim.lr_scheduler.StepLR(o, 7, 0.5), n, 0.1)),
        dict(id="exponential_decay", config=dict(name="exponential_decay", learning_rate=0.1,
                                                 decay_rate=0.9),
             values=lambda_values(lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.9), n,
                                  0.1)),
    ]
    with open(os.path.join(OUT, "schedules.json"), "w") as f:
        json.dump(dict(cases=cases), f, indent=1)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    optimizer_fixtures()
    schedule_fixtures()
    print("wrote", OUT)
