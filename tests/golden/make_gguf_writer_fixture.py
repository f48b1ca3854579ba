"""Fixture for tests/io/gguf_writer_test.cpp: a GGUF file written by the `gguf` package's
GGUFWriter, which ft's GgufWriter must reproduce byte for byte from the same content.

Run from the repo root with the golden venv (tests/golden/setup_venv.sh):
    .golden-venv/bin/python tests/golden/make_gguf_writer_fixture.py
Writes tests/golden/gguf/writer.gguf: general.architecture "llama", then one metadata value
of every type (arrays of strings and of int32 among them) and general.alignment 64; tensors
t.f32 (2, 3) float32 [0, 0.5, ..., 2.5], t.f16 (4,) float16 [1, -2, 3.5, 0.25] and t.q8_0
(2, 32) Q8_0 of (i - 20) / 8 for i = 0..63.
"""
import os

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter
from gguf.quants import quantize

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gguf", "writer.gguf")


def main():
    w = GGUFWriter(OUT, "llama")
    w.add_uint8("test.u8", 7)
    w.add_int8("test.i8", -3)
    w.add_uint16("test.u16", 65000)
    w.add_int16("test.i16", -12345)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_float32("test.f32", 1.5)
    w.add_bool("test.bool", True)
    w.add_string("test.string", "h\u00e9llo")
    w.add_array("test.strings", ["a", "bc", ""])
    w.add_array("test.ints", [1, -2, 3])
    w.add_uint64("test.u64", 2**40 + 3)
    w.add_int64("test.i64", -(2**40) - 5)
    w.add_float64("test.f64", 0.1)
    w.add_custom_alignment(64)
    w.add_tensor("t.f32", np.arange(6, dtype=np.float32).reshape(2, 3) / 2)
    w.add_tensor("t.f16", np.array([1, -2, 3.5, 0.25], dtype=np.float16))
    q = quantize((np.arange(64, dtype=np.float32).reshape(2, 32) - 20) / 8,
                 GGMLQuantizationType.Q8_0)
    w.add_tensor("t.q8_0", q, raw_dtype=GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print("wrote", OUT, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
