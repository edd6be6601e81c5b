#!/usr/bin/env python3
# Copied unchanged (but for this line) from the shared workloads: shared/bench/stat_all.py
"""W2 reference: walk a tree and os.stat() every file (lower bound for a
"has anything changed?" scan written in Python).

    python3 stat_all.py DIR
"""
import os
import sys


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "data"
    n = total = 0
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                else:
                    st = os.stat(e.path)
                    n += 1
                    total += st.st_size
    print(f"{n} files, {total} bytes")


if __name__ == "__main__":
    main()
