"""Reference values for ft::train losses, computed with torch.nn.functional.

Run from the repository root:  python tests/golden/make_loss_fixtures.py
Writes tests/golden/losses/losses.safetensors (inputs and expected outputs, all small).
"""

import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "losses", "losses.safetensors")


def main():
    g = torch.Generator().manual_seed(1234)
    t = {}

    # Cross-entropy: logits (3, 5, 11), targets (3, 5) with some ignored (-100) and some 3s
    # (ignored in the custom ignore_index case).
    logits = torch.randn(3, 5, 11, generator=g, dtype=torch.float64) * 3
    targets = torch.randint(0, 11, (3, 5), generator=g)
    targets[0, 1] = -100
    targets[2, 4] = -100
    targets[1, 2] = 3
    t["ce.logits"] = logits.float()
    t["ce.targets"] = targets
    x = logits.float().double()  # the f32 values the C++ side sees, in f64
    for s in (0.0, 0.1):
        name = "ce" if s == 0 else "ce_ls"
        for red in ("mean", "sum", "none"):
            t[f"{name}.{red}"] = F.cross_entropy(
                x.reshape(-1, 11), targets.reshape(-1), label_smoothing=s, reduction=red
            ).reshape(() if red != "none" else (3, 5)).float()
    # ignore_index = 3: the -100s become real classes there.
    targets3 = torch.where(targets == -100, torch.zeros_like(targets), targets)
    t["ce_ignore3.targets"] = targets3
    t["ce_ignore3.mean"] = F.cross_entropy(
        x.reshape(-1, 11), targets3.reshape(-1), ignore_index=3
    ).float()
    # Gradient of the smoothed mean loss w.r.t. the logits (checks the autodiff path).
    xg = x.clone().requires_grad_(True)
    F.cross_entropy(xg.reshape(-1, 11), targets.reshape(-1), label_smoothing=0.1).backward()
    t["ce_ls.mean.grad"] = xg.grad.float()
    # Token accuracy over non-ignored tokens.
    valid = targets != -100
    t["accuracy"] = ((x.argmax(-1) == targets) & valid).sum().double().div(valid.sum()).float()

    # Distillation KL: student/teacher (4, 6, 9), mask (4, 6), temperature 2.
    student = torch.randn(4, 6, 9, generator=g) * 2
    teacher = torch.randn(4, 6, 9, generator=g) * 2
    mask = torch.rand(4, 6, generator=g) > 0.3
    t["kl.student"], t["kl.teacher"], t["kl.mask"] = student, teacher, mask
    for temp in (1.0, 2.0):
        s = F.log_softmax(student.double() / temp, -1)
        q = F.log_softmax(teacher.double() / temp, -1)
        per_token = F.kl_div(s, q, log_target=True, reduction="none").sum(-1) * temp**2
        tag = f"kl_t{int(temp)}"
        t[f"{tag}.none"] = per_token.float()
        t[f"{tag}.masked_mean"] = ((per_token * mask).sum() / mask.sum()).float()
        t[f"{tag}.mean"] = per_token.mean().float()

    # MSE.
    pred = torch.randn(4, 3, generator=g)
    target = torch.randn(4, 3, generator=g)
    t["mse.pred"], t["mse.target"] = pred, target
    for red in ("mean", "sum"):
        t[f"mse.{red}"] = F.mse_loss(pred.double(), target.double(), reduction=red).float()

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    tensors = {k: v.contiguous() for k, v in t.items()}
    save_file(tensors, OUT, metadata={"made_by": "make_loss_fixtures.py"})
    print(f"wrote {OUT}: {len(t)} tensors")


if __name__ == "__main__":
    main()
