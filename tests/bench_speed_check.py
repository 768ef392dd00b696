"""ttt-bench's speed reports hold together on the tiny preset: the roofline
table sums, prefill prints the roofline keys with median and spread over
--repeat, the FMA peak beside them and the tuning record it ran with, train's device gradient agrees with the reference (pretrain, meta-fo,
meta; meta with two prime blocks a usage error), tune's seeds and
GEMM plans all reproduce CLBlast's default results, and compare (where
python3-torch exists) agrees with PyTorch."""
import json, os, subprocess, sys

bench = sys.argv[1]


def run(*args, env=None):
    return json.loads(subprocess.run([bench, *args], check=True, capture_output=True, text=True, env=env).stdout)


def check(cond, what):
    if not cond:
        sys.exit(f"FAIL: {what}")


r = run("roofline", "--preset", "125m")
total = sum(k["gflop"] for k in r["kernels"])
check(abs(total - r["total_gflop"]) < 1e-6 * total, f"roofline rows sum to {total}, total says {r['total_gflop']}")
check(r["ms_lower_bound"] > 0 and r["tokens_per_s_upper_bound"] > 0, "roofline bounds")

p = run("prefill", "--preset", "tiny", "--tokens", "200", "--repeat", "2")
for key in ("gemm_ceiling_gflops", "ttt_mfu", "no_ttt_mfu", "ttt_flops_per_token", "ttt_over_no_ttt_median"):
    check(key in p and p[key] > 0, f"prefill has a positive {key}")
check(p["ttt_seconds_summary"]["n"] == 2, "prefill --repeat 2 gives two runs")
share = p["ttt_profile"]["gemm_share"] + p["ttt_profile"]["non_gemm_share"]
check(abs(share - 1) < 1e-9, f"GEMM and non-GEMM shares sum to {share}")
check(p["ttt_flops_per_token"] > p["no_ttt_flops_per_token"], "the test-time step adds FLOPs")
# The FMA peak beside the achieved figures, and which tuning record the GEMMs ran with.
for key in ("fma_peak_gflops", "fma_peak_seconds", "ttt_over_fma_peak", "no_ttt_over_fma_peak",
            "gemm_ceiling_over_fma_peak"):
    check(key in p and p[key] > 0, f"prefill has a positive {key}")
check(abs(p["ttt_over_fma_peak"] - p["ttt_achieved_gflops"] / p["fma_peak_gflops"]) < 1e-9 * p["ttt_over_fma_peak"],
      "ttt_over_fma_peak is achieved over peak")
check(p["fma_peak_items"] > 0 and p["fma_peak_iters"] >= 64, "the probe's size")
check(p["tuning"]["record"] in ("none", "built-in", "file") and p["tuning"]["name"], f"prefill's tuning {p['tuning']}")
k = run("peak", "--repeat", "1")
check(k["bench"] == "peak" and k["fma_peak_gflops"] > 0 and k["compute_units"] > 0, "ttt-bench peak")
check(p["ttt_cpu_seconds"] > 0 and p["no_ttt_cpu_seconds"] > 0, "prefill reports the process CPU seconds")
# The copies probe: every GEMM of a mini-batch timed four ways, the copies named.
g = run("copies", "--preset", "tiny", "--repeat", "1", "--rounds", "1")
check(g["bench"] == "copies" and len(g["shapes"]) > 0, "ttt-bench copies lists the shapes")
for s in g["shapes"]:
    check(all(s[v + "_ms"] > 0 and s[v + "_cpu_ms"] >= 0 for v in ("passed", "views", "weight_laid", "laid")),
          f"copies times {s['shape']} four ways")
env = dict(os.environ, TTT_TUNING_FILE="off")
proc = subprocess.run([bench, "prefill", "--preset", "tiny", "--tokens", "40", "--no-ceiling", "--no-peak"],
                      check=True, capture_output=True, text=True, env=env)
q = json.loads(proc.stdout)
check(q["tuning"]["record"] == "none" and "fma_peak_gflops" not in q and "CLBlast tuning record: none" in proc.stderr,
      f"TTT_TUNING_FILE=off: no record, and --no-peak skips the probe: {q.get('tuning')}")

t = run("train", "--preset", "tiny-bytes", "--seq-len", "96", "--docs", "2", "--reference-docs", "2")
check(t["documents"] == 2 and t["device_tokens_per_s"] > 0 and t["reference_tokens_per_s"] > 0, "train speeds")
check(t["max_relative_gradient_difference"] < 1e-4,
      f"train: device and reference gradients differ by {t['max_relative_gradient_difference']}")
share = t["device_profile"]["gemm_share"] + t["device_profile"]["non_gemm_share"]
check(abs(share - 1) < 1e-9 and t["device_profile"]["gemm_ms"] > 0, f"train: GEMM and non-GEMM shares sum to {share}")
t = run("train", "--preset", "tiny-bytes", "--mode", "meta-fo", "--seq-len", "160", "--docs", "1")
check(t["objective"] == "meta-fo" and t["max_relative_gradient_difference"] < 1e-4,
      f"train meta-fo: device and reference gradients differ by {t['max_relative_gradient_difference']}")
t = run("train", "--preset", "tiny-bytes", "--mode", "meta", "--seq-len", "192", "--docs", "1")
check(t["objective"] == "meta" and t["inner_lr"] > 0 and t["max_relative_gradient_difference"] < 1e-4,
      f"train meta: device and reference gradients differ by {t['max_relative_gradient_difference']}")
golden_tiny = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data/golden/tiny")  # suffix_len 2
proc = subprocess.run([bench, "train", "-m", golden_tiny, "--mode", "meta", "--docs", "1"], capture_output=True,
                      text=True)
check(proc.returncode == 2 and "suffix_len 2" in proc.stderr and "see ttt-bench train --help" in proc.stderr
      and not proc.stdout,
      f"train --mode meta with two prime blocks is a usage error: {proc.returncode} {proc.stderr[-400:]}")

# No tuners, no file: the six seeds, then the best under the six plans, each
# checked against the defaults' C before it is timed (a wrong one is "rejected").
# A model whose GEMMs have K and N past the plans' panels (I 1100 and a
# vocabulary tile of 2100: K panels of 256 and 512, N panels of 1024 and 2048
# all split something) and few rows, so that it stays quick.
import tempfile
with tempfile.TemporaryDirectory() as d:
    cfg = json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "data/golden/tiny/config.json")))
    cfg.update(vocab_size=2100, hidden_size=64, intermediate_size=1100, mini_batch_size=32)
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    env = dict(os.environ, TTT_TUNING_FILE="off", TTT_TUNING_BUILTIN="off")  # the seeds alone
    proc = subprocess.run([bench, "tune", "-m", d, "--no-tuners", "--dry-run", "--plans", "1"], check=True,
                          capture_output=True, text=True, env=env)
u = json.loads(proc.stdout)
check("rejected" not in proc.stderr, f"tune rejected a candidate: {proc.stderr[-800:]}")
check(len(u["candidates"]) == 6 + 6, f"tune timed {len(u['candidates'])} candidates, wanted 6 seeds + 6 plans")
check(sum("column-major" in c["origin"] for c in u["candidates"]) == 5, "tune tried the five column-major plans")
check(u["mini_batch"]["tuned_gflops"] > 0 and "tuning_file" not in u, "tune --dry-run measures and writes nothing")
check(any(max(int(x) for x in r["shape"].split()[-1].split("x")[2:]) > 512 for r in u["shapes"]),
      "tune's shapes include a K past the 512 panel")

has_torch = subprocess.run(["/usr/bin/python3", "-c", "import torch"], capture_output=True).returncode == 0
if has_torch:
    c = run("compare", "--preset", "tiny", "--tokens", "200", "--threads", "1")
    check(c["max_abs_nll_diff"] < 1e-3, f"ttt-cl and PyTorch differ by {c['max_abs_nll_diff']}")
    check(c["ttt_cl"]["tokens_per_s"] > 0 and c["pytorch"]["tokens_per_s"] > 0, "compare speeds")
print("ok" + ("" if has_torch else " (compare skipped: no python3-torch)"))
