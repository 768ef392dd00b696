#!/usr/bin/env python3
"""ttt-bench kernels walks exactly the kernel tests' cases (tests/cases.hpp):
every case of every family appears once, with a positive time."""
import json, re, subprocess, sys

bench, cases_hpp = sys.argv[1], sys.argv[2]
src = open(cases_hpp).read()
# Count the brace-initialised rows of each list in cases.hpp.
expected = {}
for fam, body in re.findall(r'inline const std::vector<(\w+)>& \w+\(\) \{\s*static const std::vector<\w+> c = \{(.*?)\};', src, re.S):
    expected[fam] = len(re.findall(r'\{[^{}]*\}', body))
out = json.loads(subprocess.run([bench, "kernels", "--repeat", "1"], check=True, capture_output=True, text=True).stdout)
rows = out["results"]
got = {}
for r in rows:
    assert r["ms"] > 0, r
    got[r["family"]] = got.get(r["family"], 0) + 1
want = {"attention_fwd": expected["Attention"], "attention_bwd": expected["Attention"], "xent": expected["Xent"],
        "rmsnorm_fwd_bwd": expected["RmsNorm"], "gemm": expected["Gemm"]}
print("cases per family:", got)
if got != want:
    sys.exit(f"FAIL: ttt-bench kernels ran {got}, tests/cases.hpp lists {want}")
print("ok")
