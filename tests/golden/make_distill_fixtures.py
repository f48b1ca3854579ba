"""Reference values for ft::train::distillation_loss, computed with torch.nn.functional.

Run from the repository root:  python tests/golden/make_distill_fixtures.py
Writes tests/golden/losses/distill.safetensors: student and teacher logits (3, 5, 13),
targets (3, 5) with ignored (-100) positions, and for each (weight W, temperature T) case
the summed loss
    sum over trained tokens of (1 - W) * CE(student, target)
                               + W * T^2 * KL(softmax(teacher / T) || softmax(student / T))
and its gradient w.r.t. the student's logits. The teacher gets no gradient.
"""

import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "losses", "distill.safetensors")
CASES = [(0.5, 2.0), (0.25, 1.0), (1.0, 3.0), (0.0, 2.0)]


def tag(weight, temperature):
    return f"w{int(weight * 100)}_t{int(temperature)}"


def main():
    g = torch.Generator().manual_seed(4321)
    t = {}
    student = torch.randn(3, 5, 13, generator=g) * 2
    teacher = torch.randn(3, 5, 13, generator=g) * 2
    targets = torch.randint(0, 13, (3, 5), generator=g)
    targets[0, :2] = -100
    targets[2, 3:] = -100
    t["student"], t["teacher"], t["targets"] = student, teacher, targets.to(torch.int32)
    trained = (targets != -100).double()
    for weight, temperature in CASES:
        s = student.double().requires_grad_(True)
        q = teacher.double()
        ce = F.cross_entropy(s.reshape(-1, 13), targets.reshape(-1), reduction="sum",
                             ignore_index=-100)
        log_ps = F.log_softmax(s / temperature, -1)
        log_pt = F.log_softmax(q / temperature, -1)
        kl = F.kl_div(log_ps, log_pt, log_target=True, reduction="none").sum(-1)
        kl = (kl * trained).sum() * temperature**2
        loss = (1 - weight) * ce + weight * kl
        loss.backward()
        t[f"{tag(weight, temperature)}.loss"] = loss.detach().float()
        t[f"{tag(weight, temperature)}.grad"] = s.grad.float()
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    save_file({k: v.contiguous() for k, v in t.items()}, OUT,
              metadata={"made_by": "make_distill_fixtures.py"})
    print(f"wrote {OUT}: {len(t)} tensors")


if __name__ == "__main__":
    main()
