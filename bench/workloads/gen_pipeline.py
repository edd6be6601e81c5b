#!/usr/bin/env python3
# Copied unchanged (but for this line) from the shared workloads: shared/bench/gen_pipeline.py
"""W3 generator: a pipeline of N small stages (default a 100-stage chain).

    python3 gen_pipeline.py --out DIR [--n 100] [--shape chain|layered] [--width 10]

Writes into DIR:
  input.txt      the pipeline's source data (a few lines)
  params.yaml    flat "pNNN: <int>" lines, one param per stage (all 0)
  dvc.yaml       one stage sNNN per node: deps = its upstream outputs (s000: input.txt),
                 params = [pNNN], outs = [out/sNNN.txt]
  pipeline.json  the same graph, tool-neutral: [{name, cmd, deps, outs, params}]
Each stage's cmd is a `python3 -c` one-liner that hashes its deps plus its own param
into out/sNNN.txt, so changing pNNN changes sNNN's output and everything downstream.
shape=chain: sNNN depends on s(NNN-1). shape=layered: layers of --width stages, each
depends on two stages of the previous layer (j and j+1 mod width).
Change one param with:  python3 gen_pipeline.py --out DIR --set p050=7  (only rewrites
params.yaml).
"""
import argparse
import json
import os
import sys

CMD = ("python3 -c \"import hashlib;"
       "p=dict(l.strip().split(': ',1) for l in open('params.yaml') if ': ' in l);"
       "h=hashlib.sha256(p['{param}'].encode());"
       "[h.update(open(d,'rb').read()) for d in {deps!r}];"
       "open('{out}','w').write(h.hexdigest()+chr(10))\"")


def build(n, shape, width):
    stages = []
    for i in range(n):
        name, param, out = f"s{i:03d}", f"p{i:03d}", f"out/s{i:03d}.txt"
        if shape == "chain":
            deps = ["input.txt"] if i == 0 else [f"out/s{i - 1:03d}.txt"]
        else:
            layer, j = divmod(i, width)
            if layer == 0:
                deps = ["input.txt"]
            else:
                base = (layer - 1) * width
                deps = sorted({f"out/s{base + j:03d}.txt",
                               f"out/s{base + (j + 1) % width:03d}.txt"})
        cmd = CMD.format(param=param, deps=deps, out=out)
        stages.append({"name": name, "cmd": cmd, "deps": deps, "outs": [out],
                       "params": [param]})
    return stages


def yaml_str(s):
    # JSON string literals are valid YAML double-quoted scalars (ASCII only here)
    return json.dumps(s)


def write_params(path, values):
    with open(path, "w") as f:
        for k, v in values.items():
            f.write(f"{k}: {v}\n")


def read_params(path):
    vals = {}
    with open(path) as f:
        for line in f:
            if ": " in line:
                k, v = line.strip().split(": ", 1)
                vals[k] = v
    return vals


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=100, help="number of stages (default 100)")
    ap.add_argument("--shape", choices=["chain", "layered"], default="chain")
    ap.add_argument("--width", type=int, default=10, help="layer width for --shape layered")
    ap.add_argument("--set", metavar="pNNN=V", action="append",
                    help="only rewrite params.yaml with these values")
    a = ap.parse_args(argv)

    if a.set:
        path = os.path.join(a.out, "params.yaml")
        vals = read_params(path)
        for kv in a.set:
            k, v = kv.split("=", 1)
            if k not in vals:
                sys.exit(f"unknown param {k}")
            vals[k] = v
        write_params(path, vals)
        return

    os.makedirs(os.path.join(a.out, "out"), exist_ok=True)
    stages = build(a.n, a.shape, a.width)
    with open(os.path.join(a.out, "input.txt"), "w") as f:
        for i in range(100):
            f.write(f"row {i} value {i * i % 97}\n")
    write_params(os.path.join(a.out, "params.yaml"), {s["params"][0]: 0 for s in stages})
    with open(os.path.join(a.out, "pipeline.json"), "w") as f:
        json.dump({"shape": a.shape, "stages": stages}, f, indent=1)
    lines = ["stages:"]
    for s in stages:
        lines.append(f"  {s['name']}:")
        lines.append(f"    cmd: {yaml_str(s['cmd'])}")
        lines.append("    deps:")
        lines += [f"      - {d}" for d in s["deps"]]
        lines.append("    params:")
        lines += [f"      - {p}" for p in s["params"]]
        lines.append("    outs:")
        lines += [f"      - {o}" for o in s["outs"]]
    with open(os.path.join(a.out, "dvc.yaml"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{a.out}: {a.n} stages ({a.shape})", file=sys.stderr)


if __name__ == "__main__":
    main()
