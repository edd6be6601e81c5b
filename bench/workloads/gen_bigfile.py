#!/usr/bin/env python3
# Copied unchanged (but for this line) from the shared workloads: shared/bench/gen_bigfile.py
"""W1 generator: one big file of pseudo-random (incompressible) bytes.

    python3 gen_bigfile.py --out DIR [--n MIB] [--seed S] [--name big.bin]

Writes DIR/<name> of N MiB (default 1024 = 1 GiB). Same seed -> same bytes
(random.Random(seed).randbytes, stable on CPython >= 3.9).
"""
import argparse
import os
import random
import sys

MIB = 1 << 20


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output directory (created)")
    ap.add_argument("--n", type=int, default=1024, help="size in MiB (default 1024)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--name", default="big.bin")
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, a.name)
    rng = random.Random(a.seed)
    with open(path, "wb") as f:
        for _ in range(a.n):
            f.write(rng.randbytes(MIB))
    print(f"{path}: {a.n} MiB ({a.n * MIB} bytes), seed {a.seed}", file=sys.stderr)


if __name__ == "__main__":
    main()
