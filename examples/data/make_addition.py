"""Writes examples/data/addition/{train,valid,test}.jsonl: two-digit additions as chat
records ({"messages": [user "12+34", assistant "46"]}), disjoint between the splits.
Run from the repository root: python3 examples/data/make_addition.py"""
import json
import os
import random

rng = random.Random(1234)
pairs = [(a, b) for a in range(10, 100) for b in range(10, 100)]
rng.shuffle(pairs)
splits = {"train": pairs[:4000], "valid": pairs[4000:4200], "test": pairs[4200:4400]}
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "addition")
os.makedirs(out, exist_ok=True)
for name, rows in splits.items():
    with open(os.path.join(out, name + ".jsonl"), "w") as f:
        for a, b in rows:
            record = {"messages": [{"role": "user", "content": f"{a}+{b}"},
                                   {"role": "assistant", "content": str(a + b)}]}
            f.write(json.dumps(record) + "\n")
