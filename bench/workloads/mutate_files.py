#!/usr/bin/env python3
# Copied unchanged (but for this line) from the shared workloads: shared/bench/mutate_files.py
"""W2 helper: change the CONTENT of N files of a gen_manyfiles.py tree.

    python3 mutate_files.py --out DIR [--n 10] [--seed S]

DIR is the same --out given to gen_manyfiles.py (files under DIR/data/).
Picks N files spread evenly over the tree (always the same files for a given
tree) and overwrites each with new random bytes of a new size (1-8 KiB).
--seed defaults to the current time in ns, so repeated calls always produce a
real change; pass a fixed seed for a reproducible change.
"""
import argparse
import os
import random
import sys
import time


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args(argv)
    root = os.path.join(a.out, "data")
    dirs = sorted(e.name for e in os.scandir(root) if e.is_dir())
    if not dirs:
        sys.exit(f"no folders under {root}")
    rng = random.Random(a.seed if a.seed is not None else time.time_ns())
    changed = []
    for k in range(a.n):
        d = os.path.join(root, dirs[(k * len(dirs)) // a.n])
        files = sorted(os.listdir(d))
        p = os.path.join(d, files[(k * 7919) % len(files)])
        with open(p, "wb") as f:
            f.write(rng.randbytes(rng.randint(1024, 8192)))
        changed.append(p)
    print(f"changed {len(changed)} files", file=sys.stderr)


if __name__ == "__main__":
    main()
