#!/usr/bin/env python3
"""Scale-out tests of ttt-perplexity (stdlib only): --jsonl corpora, batched
sessions (--parallel), the results journal (SIGKILL mid-run, torn last line,
--resume) and MPI ranks (mpirun -np 2), each against a plain one-process,
one-document-at-a-time run of the same documents.

Reports are compared byte for byte except what is wall time: the "time"
line and the tok/s column of the document table.

usage: test_scale.py BIN_DIR REPO_DIR [MPIEXEC]
"""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

BIN, REPO = sys.argv[1], sys.argv[2]
MPIEXEC = sys.argv[3] if len(sys.argv) > 3 else ""
results = {"passed": 0, "failed": 0}


def exe(tool):
    return os.path.join(BIN, tool)


def run(*args, env=None):
    p = subprocess.run([exe("ttt-perplexity"), *args], capture_output=True, text=True, timeout=600, env=env)
    return p.returncode, p.stdout, p.stderr


def nll_values(text):
    """The numbers of a --nll-out file's text, after its "# written by ttt-perplexity ..." first line."""
    return [float(v) for line in text.splitlines() if not line.startswith("#") for v in line.split()]


def check(name, cond, detail=""):
    if cond:
        results["passed"] += 1
        print(f"ok    {name}")
    else:
        results["failed"] += 1
        print(f"FAIL  {name}\n      {detail}")


def untimed(report):
    """The report without wall time: no 'time' line, no tok/s column, no table rules."""
    out, in_docs = [], False
    for line in report.splitlines():
        if line.startswith("  time "):
            continue
        if line.startswith("document "):
            in_docs = True
        elif not line.strip():
            in_docs = False
        if in_docs:
            if set(line.strip()) == {"-"}:
                continue
            line = re.sub(r"\s+\S+$", "", line)
        out.append(line)
    return "\n".join(out)


def untimed_json(path):
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in ("timing", "seconds", "tokens_per_s")}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x
    with open(path) as f:
        return strip(json.load(f))


def main():
    tmp = tempfile.mkdtemp(prefix="ttt-scale-")
    model = os.path.join(tmp, "tiny")
    subprocess.run([exe("ttt-make-model"), "--preset", "tiny", "--seed", "3", "--out", model], check=True,
                   capture_output=True)
    with open(os.path.join(REPO, "data", "genesis-kjv.txt"), encoding="utf-8") as f:
        text = f.read()
    # B = 64 for the tiny preset: documents shorter than B, exactly B + 1, and several mini-batches.
    lengths = [300, 20, 700, 64, 65, 150, 9, 500, 230, 90, 400, 33]
    corpus = os.path.join(tmp, "corpus.jsonl")
    at = 0
    with open(corpus, "w", encoding="utf-8") as f:
        for i, n in enumerate(lengths):
            f.write(json.dumps({"id": i, "body": text[at:at + n]}) + "\n")
            if i == 3:
                f.write("\n")  # blank lines are skipped
            at += n
    base = ["-m", model, "--jsonl", corpus, "--field", "body", "-q"]

    def out(name):
        return os.path.join(tmp, name)

    rc, ref, err = run(*base, "--nll-out", out("ref.nll"), "--json", out("ref.json"), "--plot", out("ref.svg"))
    check("jsonl: one document per line", rc == 0 and f"{len(lengths)} documents" in err, err)

    # Corpus errors name the file and line.
    bad = out("bad.jsonl")
    with open(bad, "w") as f:
        f.write('{"body": "fine"}\n{"body": 3}\n')
    rc, _, err = run("-m", model, "--jsonl", bad, "--field", "body")
    check("jsonl: a non-string field is an error naming file:line", rc == 1 and "bad.jsonl:2" in err, err)
    rc, _, err = run("-m", model, "--jsonl", bad, "--field", "text")
    check("jsonl: a missing field is an error naming it", rc == 1 and 'no field "text"' in err, err)

    # Batched sessions: the same NLLs (1e-5) and the same report.
    for n in (2, 5):
        rc, rep, err = run(*base, "--parallel", str(n), "--nll-out", out(f"par{n}.nll"))
        with open(out("ref.nll")) as a, open(out(f"par{n}.nll")) as b:
            x, y = nll_values(a.read()), nll_values(b.read())
        diff = max(abs(p - q) for p, q in zip(x, y)) if len(x) == len(y) else float("inf")
        check(f"--parallel {n}: NLLs equal one-at-a-time to 1e-5", rc == 0 and diff <= 1e-5, f"{err} max diff {diff}")
        check(f"--parallel {n}: report identical but for timing", untimed(rep) == untimed(ref),
              f"\n{untimed(rep)}\nvs\n{untimed(ref)}")

    # The journal: killed with SIGKILL mid-run, a torn last line, resumed: the same final report.
    journal = out("run.journal")
    # The kill races the run: on a loaded machine this poll may wake only after the last document.
    # Then the run is simply repeated (a fresh journal), up to 5 times.
    for attempt in range(5):
        if os.path.exists(journal):
            os.remove(journal)
        p = subprocess.Popen([exe("ttt-perplexity"), *base, "--journal", journal], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        killed_at = -1
        deadline = time.time() + 300
        while time.time() < deadline and p.poll() is None:
            if os.path.exists(journal):
                with open(journal) as f:
                    lines = f.read().count("\n")
                if lines >= 3:  # the header and at least two documents
                    p.send_signal(signal.SIGKILL)
                    killed_at = lines - 1
                    break
            time.sleep(0.005)
        p.wait()
        if 0 < killed_at < len(lengths) and p.returncode == -signal.SIGKILL:
            break
    check("journal: run killed with SIGKILL after some documents", p.returncode == -signal.SIGKILL and
          0 < killed_at < len(lengths), f"exit {p.returncode}, {killed_at} documents journaled")
    with open(journal, "a") as f:
        f.write('{"base":false,"doc":11,"name":"torn')  # a write cut short by the kill
    rc, _, err = run(*base, "--journal", journal)
    check("journal: an existing journal without --resume is an error", rc == 1 and "--resume" in err, err)
    rc, _, err = run(*base, "--inner-lr", "0.5", "--journal", journal, "--resume")
    check("journal: other options are refused (fingerprint)", rc == 1 and "fingerprint" in err, err)
    rc, rep, err = run(*base, "--journal", journal, "--resume", "--nll-out", out("res.nll"), "--json", out("res.json"),
                       "--plot", out("res.svg"))
    check("journal: the torn last line is reported and ignored", rc == 0 and "torn" in err, err)
    check("journal: killed + resumed report equals the uninterrupted one", untimed(rep) == untimed(ref),
          f"\n{untimed(rep)}\nvs\n{untimed(ref)}")
    with open(out("ref.nll")) as a, open(out("res.nll")) as b:
        check("journal: resumed NLLs are byte-identical", a.read() == b.read())
    check("journal: resumed JSON equals the uninterrupted one (timing aside)",
          untimed_json(out("res.json")) == untimed_json(out("ref.json")))
    with open(journal) as f:
        recs = [json.loads(l) for l in f][1:]
    check("journal: every document once after resuming", sorted(r["doc"] for r in recs) == list(range(len(lengths))),
          str([r["doc"] for r in recs]))
    rc, rep, err = run(*base, "--journal", journal, "--resume")
    check("journal: resuming a complete journal evaluates nothing and reports the same", rc == 0 and
          untimed(rep) == untimed(ref), err)

    # MPI: two ranks, documents handed out dynamically, rank 0 reports.
    if not MPIEXEC:
        print("skip  MPI (ttt-cl built without MPI)")
    else:
        for extra in ([], ["--parallel", "2"]):
            cmd = [MPIEXEC, "--allow-run-as-root", "--oversubscribe", "-np", "2", exe("ttt-perplexity"), *base, *extra,
                   "--nll-out", out("mpi.nll"), "--json", out("mpi.json"), "--plot", out("mpi.svg")]
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            name = "mpirun -np 2" + (" --parallel 2" if extra else "")
            check(f"{name}: exit 0", p.returncode == 0, p.stderr[-2000:])
            check(f"{name}: report identical but for timing", untimed(p.stdout) == untimed(ref),
                  f"\n{p.stdout}\nvs\n{ref}")
            with open(out("ref.nll")) as a, open(out("mpi.nll")) as b:
                x, y = a.read(), b.read()
            if extra:
                xs, ys = nll_values(x), nll_values(y)
                ok = len(xs) == len(ys) and max(abs(p - q) for p, q in zip(xs, ys)) <= 1e-5
            else:
                ok = x == y
            check(f"{name}: NLLs {'to 1e-5' if extra else 'byte-identical'}", ok)
            check(f"{name}: JSON equal (timing aside)", untimed_json(out("mpi.json")) == untimed_json(out("ref.json")))
            with open(out("ref.svg")) as a, open(out("mpi.svg")) as b:
                check(f"{name}: plot identical", a.read() == b.read() or bool(extra))

    # Every option on every path: sequential, batched and two MPI ranks give the same NLLs (1e-5) under each,
    # and each option changes the numbers (tests/test_paths.cpp crosses them with decode too).
    def nlls(path):
        with open(path) as f:
            return nll_values(f.read())

    def max_diff(x, y):
        return max(abs(p - q) for p, q in zip(x, y)) if len(x) == len(y) else float("inf")

    default = nlls(out("ref.nll"))
    for opt in (["--no-ttt"], ["--full-attention"], ["--inner-lr", "0.1"]):
        tag = " ".join(opt)
        rc, _, err = run(*base, *opt, "--nll-out", out("opt.nll"))
        check(f"{tag}: sequential run", rc == 0, err)
        seq = nlls(out("opt.nll"))
        check(f"{tag}: changes the NLLs", max_diff(seq, default) > 1e-3, f"max diff {max_diff(seq, default)}")
        rc, _, err = run(*base, *opt, "--parallel", "3", "--nll-out", out("opt3.nll"))
        d = max_diff(nlls(out("opt3.nll")), seq) if rc == 0 else float("inf")
        check(f"{tag} --parallel 3: NLLs equal sequential to 1e-5", d <= 1e-5, f"{err} max diff {d}")
        if MPIEXEC:
            cmd = [MPIEXEC, "--allow-run-as-root", "--oversubscribe", "-np", "2", exe("ttt-perplexity"), *base, *opt,
                   "--nll-out", out("optmpi.nll")]
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            d = max_diff(nlls(out("optmpi.nll")), seq) if p.returncode == 0 else float("inf")
            check(f"{tag} mpirun -np 2: NLLs equal sequential to 1e-5", d <= 1e-5, f"{p.stderr[-2000:]} max diff {d}")

    print(f"{results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
