"""ttt-bench's speed reports hold together on the tiny preset: the roofline
table sums, prefill prints the roofline keys with median and spread over
--repeat, train's device gradient agrees with the reference, and compare (where python3-torch exists) agrees with PyTorch."""
import json, subprocess, sys

bench = sys.argv[1]


def run(*args):
    return json.loads(subprocess.run([bench, *args], check=True, capture_output=True, text=True).stdout)


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

t = run("train", "--preset", "tiny-bytes", "--seq-len", "96", "--docs", "2", "--reference-docs", "2")
check(t["documents"] == 2 and t["device_tokens_per_s"] > 0 and t["reference_tokens_per_s"] > 0, "train speeds")
check(t["max_relative_gradient_difference"] < 1e-4,
      f"train: device and reference gradients differ by {t['max_relative_gradient_difference']}")
share = t["device_profile"]["gemm_share"] + t["device_profile"]["non_gemm_share"]
check(abs(share - 1) < 1e-9 and t["device_profile"]["gemm_ms"] > 0, f"train: GEMM and non-GEMM shares sum to {share}")
t = run("train", "--preset", "tiny-bytes", "--mode", "meta-fo", "--seq-len", "160", "--docs", "1")
check(t["objective"] == "meta-fo" and t["max_relative_gradient_difference"] < 1e-4,
      f"train meta-fo: device and reference gradients differ by {t['max_relative_gradient_difference']}")

has_torch = subprocess.run(["/usr/bin/python3", "-c", "import torch"], capture_output=True).returncode == 0
if has_torch:
    c = run("compare", "--preset", "tiny", "--tokens", "200", "--threads", "1")
    check(c["max_abs_nll_diff"] < 1e-3, f"ttt-cl and PyTorch differ by {c['max_abs_nll_diff']}")
    check(c["ttt_cl"]["tokens_per_s"] > 0 and c["pytorch"]["tokens_per_s"] > 0, "compare speeds")
print("ok" + ("" if has_torch else " (compare skipped: no python3-torch)"))
