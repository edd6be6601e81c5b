#!/usr/bin/env python3
# Copied unchanged (but for this line) from the shared workloads: shared/bench/gen_manyfiles.py
"""W2 generator: many small files of random bytes in nested folders.

    python3 gen_manyfiles.py --out DIR [--n 50000] [--dirs 100] [--seed S]
                             [--min-bytes 1024] [--max-bytes 8192]

Writes DIR/data/dNNN/fNNNNNN.bin: N files spread evenly over --dirs folders,
each of a uniform random size in [min, max] bytes (default 1-8 KiB, mean 4.5 KiB,
so 50,000 files ~ 230 MB / 220 MiB). Every file has distinct content (no dedup).
Same seed -> identical tree. Prints file count and total bytes.
"""
import argparse
import os
import random
import sys


def file_paths(root, n, dirs):
    per = -(-n // dirs)  # ceil
    for i in range(n):
        yield os.path.join(root, f"d{i // per:03d}", f"f{i:06d}.bin")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output directory; files go to OUT/data/")
    ap.add_argument("--n", type=int, default=50000, help="number of files (default 50000)")
    ap.add_argument("--dirs", type=int, default=100, help="number of folders (default 100)")
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--min-bytes", type=int, default=1024)
    ap.add_argument("--max-bytes", type=int, default=8192)
    a = ap.parse_args(argv)
    root = os.path.join(a.out, "data")
    rng = random.Random(a.seed)
    total = 0
    made = set()
    for p in file_paths(root, a.n, a.dirs):
        d = os.path.dirname(p)
        if d not in made:
            os.makedirs(d, exist_ok=True)
            made.add(d)
        size = rng.randint(a.min_bytes, a.max_bytes)
        with open(p, "wb") as f:
            f.write(rng.randbytes(size))
        total += size
    print(f"{root}: {a.n} files in {len(made)} folders, {total} bytes "
          f"({total / 1e6:.1f} MB), seed {a.seed}", file=sys.stderr)


if __name__ == "__main__":
    main()
