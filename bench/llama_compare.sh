#!/usr/bin/env bash
# Decode and prefill of llama.cpp against ttt-cl on the same shapes, on this
# machine (docs/performance.md, "Comparing with llama.cpp"). llama.cpp is not
# a dependency of ttt-cl: this script builds its `llama-bench` from the tree
# vendored in the llama-cpp-python sdist (PyPI), in a scratch directory.
#
#   bench/llama_compare.sh [--build-dir build] [--work /tmp/ttt-llama-compare] [--runs 3]
#
# Steps (each skipped when its output is already in the work directory):
#  1. a venv with gguf and numpy; the llama-cpp-python sdist, unpacked;
#  2. llama-bench built from its vendored llama.cpp with CMake, CPU only
#     (-j$JOBS, default 2, under nice);
#  3. GGUFs with exactly the 125m shapes and random weights, f32 and f16
#     (bench/make_gguf.py: 12 layers, D 768, 12 heads, I 1664, V 128256, tied embedding);
#  4. --runs rounds, each alternating: llama-bench decode (-p 0 -n 32) at
#     depths 1K and 8K for f32 and f16, ttt-bench decode --no-step at 1K and 8K
#     (weights f32 with keys/values f32 and f16, f16 and bf16 weights with f16 keys/values),
#     llama-bench prompt processing of 2048 tokens (-p 2048 -n 0), ttt-bench
#     prefill --only no-ttt of 2049 tokens. Every run's JSON lands in the work
#     directory, with the load average before it; a summary table ends the output.
# A quiet machine matters more than the number of runs: compare ratios within one round. On a
# machine shared with other work, `chrt -f 10 bench/llama_compare.sh ...` (root) gives every run
# the cores first; memory bandwidth stays shared.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build
work=/tmp/ttt-llama-compare
runs=3
threads=${THREADS:-$(nproc)}
jobs=${JOBS:-2}
version=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
steps=all
while [ $# -gt 0 ]; do
  case $1 in
    --build-dir) build=$(cd "$2" && pwd); shift 2 ;;
    --work) work=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --only-build) steps=build; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "llama_compare.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
bench=$build/bench/ttt-bench
[ -x "$bench" ] || { echo "llama_compare.sh: no $bench (build ttt-cl first, or give --build-dir)" >&2; exit 1; }
mkdir -p "$work"
cd "$work"
say() { echo "== $*" >&2; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

# 1. Python tools and the sdist.
if [ ! -x venv/bin/python ]; then
  say "venv with gguf and numpy in $work/venv"
  python3 -m venv venv
  venv/bin/python -m pip install -q --disable-pip-version-check gguf numpy
fi
src=$(ls -d llama_cpp_python-"$version"/vendor/llama.cpp 2>/dev/null || true)
if [ -z "$src" ]; then
  say "llama-cpp-python $version sdist (PyPI)"
  venv/bin/python -m pip download -q --disable-pip-version-check --no-binary :all: --no-deps --no-build-isolation \
    "llama-cpp-python==$version" -d . ||
    venv/bin/python -m pip download -q --disable-pip-version-check --no-binary :all: --no-deps \
      "llama-cpp-python==$version" -d .
  tar xzf "llama_cpp_python-$version.tar.gz"
  src=llama_cpp_python-$version/vendor/llama.cpp
fi

# 2. llama-bench, CPU only.
lb=$work/llama-build/bin/llama-bench
if [ ! -x "$lb" ]; then
  say "building llama-bench from $src (-j$jobs; a few minutes on 2 cores)"
  t0=$(date +%s)
  nice cmake -S "$src" -B llama-build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=ON \
    -DGGML_METAL=OFF -DGGML_CUDA=OFF -DGGML_VULKAN=OFF -DGGML_OPENCL=OFF -DBUILD_SHARED_LIBS=OFF >llama-cmake.log
  nice cmake --build llama-build --target llama-bench -j"$jobs" >llama-build.log
  say "llama-bench built in $(( $(date +%s) - t0 )) s"
fi
[ "$steps" = build ] && exit 0

# 3. The GGUFs.
for dt in f32 f16; do
  [ -s "125m-$dt.gguf" ] || venv/bin/python "$root/bench/make_gguf.py" --preset 125m --dtype "$dt" --out "125m-$dt.gguf"
done

# 4. Alternating runs.
have_depth=0  # -d (context depth) appeared in llama-bench in 2025
help=$("$lb" --help 2>&1 || true)
case $help in *--n-depth*) have_depth=1 ;; esac
run() {  # name, command...: JSON to $name.r$round.json, the load before it in the file's name list
  local name=$1; shift
  echo "$name r$round load $(load)" >>loads.txt
  say "$name (round $round, load $(load))"
  "$@" >"$name.r$round.json" 2>"$name.r$round.err" || { echo "   failed: see $work/$name.r$round.err" >&2; return 0; }
}
: >loads.txt
for round in $(seq 1 "$runs"); do
  for dt in f32 f16; do
    if [ $have_depth = 1 ]; then
      run llama-decode-$dt "$lb" -m "125m-$dt.gguf" -p 0 -n 32 -d 1024,8192 -t "$threads" -r 3 -o json
    else  # an older llama-bench: empty context only
      run llama-decode-$dt "$lb" -m "125m-$dt.gguf" -p 0 -n 32 -t "$threads" -r 3 -o json
    fi
  done
  # ttt-cl in each storage llama.cpp is run in: f32 and f16 weights, keys and values in f32 and, as
  # llama.cpp keeps them by default, in f16; and bf16 weights (the official checkpoints' type).
  for w in f32 f16 bf16; do
    for kv in f32 f16; do
      [ "$w" != f32 ] && [ "$kv" = f32 ] && continue
      run "ttt-decode-$w-kv$kv" "$bench" decode --preset 125m --no-step --contexts 1024,8192 --modes ttt,swa \
        --tokens 16 --no-bandwidth --weight-dtype "$w" --kv-dtype "$kv"
    done
  done
  run llama-pp-f32 "$lb" -m 125m-f32.gguf -p 2048 -n 0 -t "$threads" -r 2 -o json
  run ttt-prefill "$bench" prefill --preset 125m --tokens 2049 --only no-ttt --no-ceiling
done

# Summary: medians over the rounds.
venv/bin/python - "$runs" <<'EOF'
import glob, json, statistics, sys
def med(v): return statistics.median(v) if v else float("nan")
def load(pattern):
    out = []
    for f in sorted(glob.glob(pattern)):
        try:
            out.append(json.load(open(f)))
        except (OSError, ValueError):
            pass
    return out
print("| engine | what | figure (median of rounds) |")
print("|---|---|---:|")
for dt in ("f32", "f16"):
    rows = {}
    for doc in load(f"llama-decode-{dt}.r*.json"):
        for r in doc:
            rows.setdefault(r.get("n_depth", 0), []).append(1e3 / r["avg_ts"])
    for depth, ms in sorted(rows.items()):
        print(f"| llama.cpp {dt} | decode ms/token at depth {depth} | {med(ms):.1f} |")
for w, kv in (("f32", "f32"), ("f32", "f16"), ("f16", "f16"), ("bf16", "f16")):
    pts = {}
    for doc in load(f"ttt-decode-{w}-kv{kv}.r*.json"):
        for r in doc.get("results", []):
            pts.setdefault((r["mode"], r["context"]), []).append(r["latency_ms_median"])
    for (mode, ctx), ms in sorted(pts.items()):
        print(f"| ttt-cl {w}, keys/values {kv} ({mode}) | decode ms/token at context {ctx} | {med(ms):.1f} |")
pp = [r["avg_ts"] for doc in load("llama-pp-f32.r*.json") for r in doc]
if pp:
    # FLOPs per token counted as ttt-bench prefill counts them (bench/model_flops.cpp): the 125m body's
    # products, causal attention over the 2048 tokens, and the logits of one token (llama-bench's).
    L, D, I, V, n = 12, 768, 1664, 128256, 2048
    flops = 2 * L * (4 * D * D + 3 * D * I) + 4 * L * D * (n + 1) / 2 + 2 * V * D / n
    print(f"| llama.cpp f32 | prompt processing tok/s, 2048 | {med(pp):.1f} |")
    print(f"| llama.cpp f32 | prompt processing GFLOP/s (body, logits of one token) | {med(pp) * flops * 1e-9:.1f} |")
pf = load("ttt-prefill.r*.json")
if pf:
    print(f"| ttt-cl f32 | prefill without TTT tok/s, 2049 | {med([d['no_ttt_tokens_per_s'] for d in pf]):.1f} |")
    print(f"| ttt-cl f32 | no_ttt_achieved_gflops | {med([d['no_ttt_achieved_gflops'] for d in pf]):.1f} |")
EOF
echo "loads before each run: $work/loads.txt" >&2
