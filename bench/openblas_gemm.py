#!/usr/bin/env python3
"""CLBlast's GEMM GFLOP/s (from a `ttt-bench prefill` JSON) against OpenBLAS's
on the same shapes, through numpy (whose wheels bundle OpenBLAS): OpenBLAS is a
reference here, never a dependency of ttt-cl's tools or library.

    ttt-bench prefill --preset 125m --tokens 2049 --json prefill.json
    build/venv/bin/python bench/openblas_gemm.py prefill.json [--reps 2]

Reads `gemm_ceiling_shapes` ("gemm_w13 NN 1024x3328x768": {count, gflops}), or
a `ttt-bench tune` JSON's `shapes` (its chosen record's `tuned_gflops`),
times numpy.matmul on each shape (row-major, with the shape's transposes, the
best of --reps after one warm-up call), and prints JSON: per shape CLBlast and
OpenBLAS GFLOP/s and their ratio, and the same weighted by the shapes' counts
per mini-batch (`clblast_over_openblas`), with numpy's BLAS and the load average.
"""
import argparse
import json
import os
import re
import sys
import time

import numpy as np


def load_average():
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def blas_name():
    try:
        cfg = np.show_config(mode="dicts")
        b = cfg["Build Dependencies"]["blas"]
        return f"{b.get('name')} {b.get('version')}"
    except Exception:  # older numpy: no dict mode
        return "numpy's BLAS"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("prefill_json", help="a ttt-bench prefill (or tune) JSON with the GEMM shapes ('-': stdin)")
    ap.add_argument("--reps", type=int, default=2)
    a = ap.parse_args()
    doc = json.load(sys.stdin if a.prefill_json == "-" else open(a.prefill_json))
    shapes = doc.get("gemm_ceiling_shapes")
    if not shapes and isinstance(doc.get("shapes"), list):  # a ttt-bench tune JSON: its chosen record's figures
        shapes = {r["shape"]: {"count": r["count"], "gflops": r["tuned_gflops"]} for r in doc["shapes"]}
    if not shapes:
        sys.exit(f"openblas_gemm.py: {a.prefill_json} has no gemm_ceiling_shapes (run ttt-bench prefill without --no-ceiling)")
    rng = np.random.default_rng(0)
    rows, f_all, t_cl, t_blas = [], 0.0, 0.0, 0.0
    load_before = load_average()
    for name, v in shapes.items():
        m = re.fullmatch(r"(\S+) ([NT])([NT]) (\d+)x(\d+)x(\d+)", name)
        if not m:
            sys.exit(f"openblas_gemm.py: cannot read the shape '{name}'")
        ta, tb = m.group(2) == "T", m.group(3) == "T"
        M, N, K = (int(m.group(i)) for i in (4, 5, 6))
        A = rng.standard_normal((K, M) if ta else (M, K), dtype=np.float32)
        B = rng.standard_normal((N, K) if tb else (K, N), dtype=np.float32)
        opA, opB = (A.T if ta else A), (B.T if tb else B)
        C = np.empty((M, N), dtype=np.float32)
        np.matmul(opA, opB, out=C)
        best = 1e30
        for _ in range(max(1, a.reps)):
            t0 = time.perf_counter()
            np.matmul(opA, opB, out=C)
            best = min(best, time.perf_counter() - t0)
        flops = 2.0 * M * N * K
        cl = v["gflops"]
        ob = flops / best * 1e-9
        rows.append({"shape": name, "count": v["count"], "clblast_gflops": cl, "openblas_gflops": ob,
                     "clblast_over_openblas": cl / ob})
        f_all += flops * v["count"]
        t_cl += flops / (cl * 1e9) * v["count"]
        t_blas += best * v["count"]
    out = {"bench": "openblas_gemm", "device": doc.get("device"), "blas": blas_name(),
           "threads": os.environ.get("OPENBLAS_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "default")),
           "load_before": load_before, "load_after": load_average(), "shapes": rows,
           "mini_batch": {"clblast_gflops": f_all / t_cl * 1e-9, "openblas_gflops": f_all / t_blas * 1e-9,
                          "clblast_over_openblas": t_blas / t_cl}}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
