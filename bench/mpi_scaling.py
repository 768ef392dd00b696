#!/usr/bin/env python3
"""MPI scaling of ttt-perplexity on one machine: K ranks with one PoCL thread
each (POCL_MAX_PTHREAD_COUNT=1) against 1 rank with one thread, on the same
documents (a JSON Lines corpus cut from data/genesis-kjv.txt, the tiny preset).
Each configuration runs --repeat times, alternating, so that load from other
processes hits both alike; prints JSON with every run's wall time and the
ratio of each pair (one-rank time / K-rank time, from single runs).

Besides wall time it reports the CPU seconds each configuration used (the
children's rusage): on a machine shared with other work, wall-time ratios
measure the scheduler's share as much as the code. Linux's autogroup
scheduling gives one terminal session one share however many processes it
runs; --setsid starts every process in a session of its own (one share each).

usage: mpi_scaling.py BUILD_DIR [--ranks 2] [--docs 16] [--chars 1500] [--repeat 3] [--setsid]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ap = argparse.ArgumentParser()
ap.add_argument("build")
ap.add_argument("--ranks", type=int, default=2)
ap.add_argument("--docs", type=int, default=16)
ap.add_argument("--chars", type=int, default=1500)
ap.add_argument("--repeat", type=int, default=3)
ap.add_argument("--mpiexec", default="mpirun")
ap.add_argument("--setsid", action="store_true", help="each process in a session (autogroup) of its own")
a = ap.parse_args()

repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
tool = os.path.join(a.build, "apps", "ttt-perplexity")
tmp = tempfile.mkdtemp(prefix="ttt-scaling-")
model = os.path.join(tmp, "tiny")
subprocess.run([os.path.join(a.build, "apps", "ttt-make-model"), "--preset", "tiny", "--seed", "0", "--out", model],
               check=True, capture_output=True)
text = open(os.path.join(repo, "data", "genesis-kjv.txt"), encoding="utf-8").read()
corpus = os.path.join(tmp, "corpus.jsonl")
with open(corpus, "w") as f:
    for i in range(a.docs):
        # Lengths vary (0.5x..1.5x) so that dynamic assignment has something to balance.
        n = int(a.chars * (0.5 + (i * 7 % a.docs) / a.docs))
        f.write(json.dumps({"text": text[i * 997 % (len(text) - n):][:n]}) + "\n")

env = dict(os.environ, POCL_MAX_PTHREAD_COUNT="1")
env.setdefault("POCL_CACHE_DIR", os.path.join(a.build, "pocl-cache"))
env.setdefault("TTT_CACHE_DIR", os.path.join(a.build, "kernel-cache"))
args = (["setsid", "-w"] if a.setsid else []) + [tool, "-m", model, "--jsonl", corpus, "-q"]


def cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd):
    t0, c0 = time.monotonic(), cpu()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr}")
    return time.monotonic() - t0, p.stdout, cpu() - c0


runs = []
for r in range(a.repeat):
    one, rep1, cpu1 = timed(args)
    many, repk, cpuk = timed([a.mpiexec, "--allow-run-as-root", "--oversubscribe", "-np", str(a.ranks), *args])
    load = os.getloadavg()[0]
    runs.append({"one_rank_s": one, f"{a.ranks}_ranks_s": many, "ratio": one / many, "one_rank_cpu_s": cpu1,
                 f"{a.ranks}_ranks_cpu_s": cpuk, "loadavg_1min": load})
    print(f"run {r}: 1 rank {one:.2f} s ({cpu1:.2f} CPU s), {a.ranks} ranks {many:.2f} s ({cpuk:.2f} CPU s), "
          f"ratio {one / many:.2f} (load {load:.1f})", file=sys.stderr)
tokens = next(l for l in rep1.splitlines() if "tokens scored" in l)
print(json.dumps({"bench": "mpi_scaling", "ranks": a.ranks, "documents": a.docs, "corpus": tokens.strip(),
                  "threads_per_rank": 1, "cpus": os.cpu_count(), "setsid": a.setsid, "runs": runs}, indent=2))
