"""Writes arithmetic.txt: the demo's bundled corpus of two-digit additions, one per line.

Run from this folder: python3 make_arithmetic.py
"""
import random

rng = random.Random(1234)
with open("arithmetic.txt", "w") as out:
    for _ in range(4000):
        a, b = rng.randrange(100), rng.randrange(100)
        out.write(f"{a}+{b}={a + b}\n")
