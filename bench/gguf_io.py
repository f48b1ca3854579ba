"""The GGUF reader and writer of the gguf package and of llama.cpp, for bench/gguf_io.sh.

  python bench/gguf_io.py gguf-load FILE          every tensor read and dequantized to floats
  python bench/gguf_io.py gguf-export FILE OUT    that, requantized to Q4_1 (F32 where the
                                                  rows are not whole blocks, as ft does) and written
  python bench/gguf_io.py llama-load FILE         llama.cpp loads the model and evaluates one token
  python bench/gguf_io.py llama-export FILE OUT   llama.cpp's quantizer requantizes to Q4_1

Prints one JSON line: the operation and its seconds (the process's own peak memory is
measured around it by the caller).
"""
import json
import sys
import time


def gguf_load(path):
    import gguf
    reader = gguf.GGUFReader(path)
    return reader, {t.name: gguf.dequantize(t.data, t.tensor_type) for t in reader.tensors}


def main():
    op, path = sys.argv[1], sys.argv[2]
    start = time.perf_counter()
    if op == "gguf-load":
        gguf_load(path)
    elif op == "gguf-export":
        import gguf
        import numpy as np
        reader, tensors = gguf_load(path)
        arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
        writer = gguf.GGUFWriter(sys.argv[3], arch)
        for key, field in reader.fields.items():
            if key.startswith("GGUF.") or key == "general.architecture":
                continue
            kind = field.types[0]
            if kind == gguf.GGUFValueType.ARRAY:
                writer.add_key_value(key, field.contents(), kind, sub_type=field.types[-1])
            else:
                writer.add_key_value(key, field.contents(), kind)
        q41 = gguf.GGMLQuantizationType.Q4_1
        for name, value in tensors.items():
            value = value.astype(np.float32)
            if value.ndim == 2 and value.shape[1] % 32 == 0:
                writer.add_tensor(name, gguf.quantize(value, q41), raw_dtype=q41)
            else:
                writer.add_tensor(name, value)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    elif op == "llama-load":
        import llama_cpp
        llm = llama_cpp.Llama(path, n_ctx=64, verbose=False, n_threads=2)
        llm.eval([1])
    elif op == "llama-export":
        import llama_cpp
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_1
        params.allow_requantize = True
        params.nthread = 2
        rc = llama_cpp.llama_model_quantize(path.encode(), sys.argv[3].encode(), params)
        if rc != 0:
            sys.exit(f"llama_model_quantize returned {rc}")
    else:
        sys.exit(f"unknown operation {op}")
    print(json.dumps({"op": op, "seconds": round(time.perf_counter() - start, 3)}))


if __name__ == "__main__":
    main()
