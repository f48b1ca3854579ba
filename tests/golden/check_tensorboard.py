"""The tensorboard package reads the event files ft writes (`ft train --tensorboard DIR`).
Run from the repository root after a build, with a Python that has tensorboard (the golden
venv):

  .golden-venv/bin/python tests/golden/check_tensorboard.py [build/ft]

It trains ft init's tiny Llama for a few steps with validation, then loads the folder with
TensorBoard's own EventAccumulator (what the TensorBoard server runs) and checks that every
scalar of metrics.jsonl is there, at its step, with its value as a float32: the training
loss, learning rate, gradient norm and tokens/s of each step, and the validation loss,
perplexity and accuracy of each evaluation. Prints what it compared; exits 1 on a mismatch.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main():
    ft = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build/ft")
    work = tempfile.mkdtemp(prefix="ft-tensorboard-")
    model, out, logs = (os.path.join(work, n) for n in ("model", "out", "logs"))
    subprocess.run([ft, "init", "--arch", "llama", "--size", "tiny", "--out", model], check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run([ft, "train", model, "examples/data/addition", "--iterations", "12",
                    "--eval-every", "4", "--batch-size", "4", "--output-dir", out,
                    "--tensorboard", logs], check=True, stdout=subprocess.DEVNULL)
    records = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    acc = EventAccumulator(logs, size_guidance={"scalars": 0})
    acc.Reload()
    expected = {
        "train/loss": ("loss", False), "train/learning_rate": ("learning_rate", False),
        "train/grad_norm": ("grad_norm", False), "train/tokens_per_second": ("tokens_per_second", False),
        "val/loss": ("val_loss", True), "val/perplexity": ("val_ppl", True),
        "val/accuracy": ("val_accuracy", True),
    }
    failed = 0
    for tag, (key, is_eval) in expected.items():
        want = [(r["step"], np.float32(r[key])) for r in records
                if (("val_loss" in r) == is_eval) and key in r]
        got = [(e.step, np.float32(e.value)) for e in acc.Scalars(tag)]
        ok = got == want
        failed += not ok
        print(f"{tag:26s} {len(got):3d} scalars, steps {got[0][0]}..{got[-1][0]}: "
              f"{'equal to metrics.jsonl' if ok else 'DIFFERENT'}")
        if not ok:
            print("  tensorboard:", got[:5], "\n  metrics.jsonl:", want[:5])
    print(f"{failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
