"""Per-kernel GPU time of a profiled run, grouped by kernel name, per step.

    python3 kernel_summary.py nsys|ncu FILE.csv STEPS [TOP]

nsys: the CSV of `nsys stats -r cuda_gpu_kern_sum -f csv` (total ns and instances per
kernel). ncu: the CSV of `ncu --metrics gpu__time_duration.sum --csv` (one row per launch).
Prints the TOP (40) kernels by time: ms per step, launches per step, share of the total,
then the total kernel time per step and the launches per step.
"""
import csv
import re
import sys
from collections import defaultdict


def short(name):
    # Template arguments and parameter lists make names unreadable; keep the head.
    name = re.sub(r"\(.*", "", name)
    name = re.sub(r"<.*", "<..>", name)
    return name[:110]


def read_nsys(path):
    out = defaultdict(lambda: [0.0, 0])
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            k = short(row["Name"])
            out[k][0] += float(row["Total Time (ns)"]) / 1e6
            out[k][1] += int(row["Instances"])
    return out


def read_ncu(path):
    out = defaultdict(lambda: [0.0, 0])
    with open(path, newline="") as f:
        lines = [l for l in f if l.startswith('"')]  # skip ncu's own log lines
    for row in csv.DictReader(lines):
        if row.get("Metric Name") != "gpu__time_duration.sum":
            continue
        value = float(row["Metric Value"].replace(",", ""))
        unit = row.get("Metric Unit", "nsecond")
        ms = value / {"nsecond": 1e6, "usecond": 1e3, "msecond": 1.0, "second": 1e-3}.get(unit, 1e6)
        k = short(row["Kernel Name"])
        out[k][0] += ms
        out[k][1] += 1
    return out


def main():
    kind, path, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    top = int(sys.argv[4]) if len(sys.argv) > 4 else 40
    kernels = read_nsys(path) if kind == "nsys" else read_ncu(path)
    total = sum(ms for ms, _ in kernels.values())
    launches = sum(n for _, n in kernels.values())
    print(f"{'ms/step':>9} {'calls/step':>10} {'share':>6}  kernel")
    for name, (ms, n) in sorted(kernels.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"{ms / steps:9.2f} {n / steps:10.1f} {100 * ms / total:5.1f}%  {name}")
    print(f"{total / steps:9.2f} {launches / steps:10.1f} 100.0%  total over {len(kernels)} kernels")


if __name__ == "__main__":
    main()
