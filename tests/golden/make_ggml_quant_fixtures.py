"""Fixture for tests/io/ggml_quants_test.cpp: GGUF tensor blocks and their values, from the
`gguf` package (llama.cpp's Python reference for its formats).

Run from the repo root with the golden venv (tests/golden/setup_venv.sh):
    .golden-venv/bin/python tests/golden/make_ggml_quant_fixtures.py
Writes tests/golden/io/ggml_quants.safetensors:
  input                 (4, 256) f32: values with a spread of scales per row, a zero block and
                        a block of equal values
  quant.<T>             uint8: gguf.quants.quantize(input, T) for T in Q8_0, Q4_0, Q4_1
  raw.<T>               uint8: blocks of T (quantized from `input` where gguf quantizes T,
                        else random bytes with finite float16 scales)
  dequant.<T>           f32: gguf.quants.dequantize(raw.<T>, T)
for T in Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q4_K, Q5_K, Q6_K; and
  input.k               (8, 1024) f32: rows of other spreads and shapes (normal at several
                        scales, all positive, heavy tails, sparse, a zero super-block, tiny
                        values, equal values)
  quant.<T>             uint8: Q5_0 and Q5_1 of `input` by the gguf package, and
  ggml.<T>              uint8: for T in Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, ggml's reference quantizers
                        (quantize_row_<t>_ref, those llama.cpp's quantizer runs without an
                        importance matrix) on input.k, called in the libggml-base library of
                        the llama-cpp-python package (`pip install llama-cpp-python`), which
                        the gguf package lacks for the K types.
"""
import ctypes
import glob
import os

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "io", "ggml_quants.safetensors")


def make_input(rng):
    x = rng.standard_normal((4, 256)).astype(np.float32)
    x *= np.array([1e-3, 0.1, 1.0, 30.0], dtype=np.float32)[:, None]
    x[1, 32:64] = 0.0  # an all-zero block: d = 0
    x[2, 64:96] = 0.25  # equal values: Q4_1's d = 0
    x[3, 0] = -200.0  # the largest magnitude negative (Q4_0 keeps its sign)
    return x


def random_blocks(rng, qtype, n_blocks):
    block, size = GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, (n_blocks, size), dtype=np.uint8)
    # Where each format keeps its float16 scales (d, and dmin or m).
    halves = {T.Q2_K: [80, 82], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208]}[qtype]
    for off in halves:
        values = (rng.uniform(0.5, 2.0, n_blocks) * 1e-2).astype(np.float16)
        raw[:, off:off + 2] = values.view(np.uint8).reshape(n_blocks, 2)
    return raw.reshape(-1)


def make_k_input(rng):
    x = rng.standard_normal((8, 1024)).astype(np.float32)
    x[0] *= 0.02  # a weight matrix's spread
    x[1] = np.abs(x[1]) + 0.5  # all positive: the minimum is not held at 0
    x[2] = rng.standard_t(2, 1024).astype(np.float32)  # heavy tails
    x[3] *= (rng.random(1024) < 0.1)  # sparse
    x[4, 256:512] = 0.0  # a zero super-block
    x[5] *= 1e-6  # tiny values
    x[6, :512] = -0.75  # equal values
    x[7] *= np.linspace(0.01, 10.0, 1024, dtype=np.float32)  # scales varying along the row
    return x


def ggml_reference(x, qtype):
    """ggml's quantize_row_<type>_ref over the rows of x, from llama-cpp-python's libggml-base."""
    import llama_cpp

    lib_dir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    lib = ctypes.CDLL(sorted(glob.glob(os.path.join(lib_dir, "libggml-base.so*")))[0])
    fn = getattr(lib, f"quantize_row_{qtype.name.lower().replace('_k', '_K')}_ref")
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    block, size = GGML_QUANT_SIZES[qtype]
    src = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    out = np.zeros(src.size // block * size, dtype=np.uint8)
    fn(src.ctypes.data, out.ctypes.data, src.size)
    return out


def main():
    rng = np.random.default_rng(0)
    x = make_input(rng)
    tensors = {"input": x}
    for qtype in (T.Q8_0, T.Q4_0, T.Q4_1):
        tensors[f"quant.{qtype.name}"] = np.ascontiguousarray(quantize(x, qtype)).reshape(-1)
    for qtype in (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0):
        raw = np.ascontiguousarray(quantize(x, qtype))
        tensors[f"raw.{qtype.name}"] = raw.reshape(-1)
        tensors[f"dequant.{qtype.name}"] = dequantize(raw, qtype).astype(np.float32).reshape(-1)
    for qtype in (T.Q2_K, T.Q4_K, T.Q5_K, T.Q6_K):
        raw = random_blocks(rng, qtype, 6)
        tensors[f"raw.{qtype.name}"] = raw
        values = dequantize(raw.reshape(1, -1), qtype).astype(np.float32).reshape(-1)
        assert np.all(np.isfinite(values)), qtype.name
        tensors[f"dequant.{qtype.name}"] = values
    for qtype in (T.Q5_0, T.Q5_1):
        tensors[f"quant.{qtype.name}"] = np.ascontiguousarray(quantize(x, qtype)).reshape(-1)
    xk = make_k_input(rng)
    tensors["input.k"] = xk
    for qtype in (T.Q5_0, T.Q5_1, T.Q4_K, T.Q5_K, T.Q6_K):
        tensors[f"ggml.{qtype.name}"] = ggml_reference(xk, qtype)
    save_file(tensors, OUT)
    print("wrote", OUT, sorted(tensors))


if __name__ == "__main__":
    main()
