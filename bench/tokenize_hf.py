"""The reference side of bench/tokenize.cpp: the Hugging Face tokenizers library on one
thread, the same text, the same passes and the same checksum.

  TOKENIZERS_PARALLELISM=false python bench/tokenize_hf.py DIR TEXT_FILE [PASSES]

DIR holds tokenizer.json or tokenizer.json.gz. Paragraphs go through encode_batch, which
with parallelism off is one Rust loop on one thread (no Python call per paragraph).
"""
import gzip
import os
import sys
import time

os.environ["TOKENIZERS_PARALLELISM"] = "false"
from tokenizers import Tokenizer  # noqa: E402


def checksum(ids, h):
    for i in ids:
        h = ((h * 1000003) & 0xFFFFFFFFFFFFFFFF) ^ i
    return h


def paragraphs(raw):
    out, start = [], 0
    while start < len(raw):
        end = raw.find(b"\n\n", start)
        end = len(raw) if end < 0 else end + 2
        out.append(raw[start:end])
        start = end
    return out


def main():
    directory, path = sys.argv[1], sys.argv[2]
    passes = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    t0 = time.perf_counter()
    plain = os.path.join(directory, "tokenizer.json")
    if os.path.exists(plain):
        tok = Tokenizer.from_file(plain)
    else:
        with gzip.open(plain + ".gz", "rb") as f:
            tok = Tokenizer.from_str(f.read().decode())
    print(f"load: {time.perf_counter() - t0} s")
    raw = open(path, "rb").read()
    text = raw.decode("utf-8", errors="replace")
    mb = len(raw) / 1e6
    for p in range(passes):
        t0 = time.perf_counter()
        ids = tok.encode(text, add_special_tokens=False).ids
        secs = time.perf_counter() - t0
        print(f"whole text pass {p}: {len(ids)} tokens, checksum {checksum(ids, 0)}, {secs} s, "
              f"{mb / secs} MB/s, {len(ids) / secs / 1e6} M tokens/s")
    # Paragraph boundaries are found in the bytes so they match the C++ side exactly.
    docs = [d.decode("utf-8", errors="replace") for d in paragraphs(raw)]
    for p in range(passes):
        t0 = time.perf_counter()
        encs = tok.encode_batch(docs, add_special_tokens=False)
        secs = time.perf_counter() - t0
        count, h = 0, 0
        for e in encs:
            count += len(e.ids)
            h = checksum(e.ids, h)
        print(f"paragraphs ({len(docs)}) pass {p}: {count} tokens, checksum {h}, {secs} s, "
              f"{mb / secs} MB/s, {count / secs / 1e6} M tokens/s")


if __name__ == "__main__":
    main()
