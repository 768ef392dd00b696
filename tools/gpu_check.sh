#!/usr/bin/env bash
# Measures a GPU machine in minutes and writes one JSON: the kernel and golden
# tests, `ttt-bench tune` on a bounded budget, prefill with and without
# test-time training (125m at 16K tokens, 1b at 8K), attention alone in each
# kernel form (`ttt-bench attention --form all`), decode at 1K, 8K and 64K
# of context, and `ttt-bench compare --torch-device cuda` when PyTorch is
# there. Each step runs under its own time limit (about 8 minutes in all), and
# a step that fails or times out is recorded as such; the others still run.
# Needs no package registry: on the GPU machine, unpack tools/gpu_bundle.sh's
# bundle and source its setup.sh first (it links build/ and finds NVIDIA's ICD).
#   tools/gpu_check.sh [--out FILE] [--build DIR] [--device SPEC] [--scale N]
# --scale N (or $TTT_GPU_CHECK_SCALE) divides every token count and context by
# N and shrinks each step's time limit with it; $TTT_GPU_CHECK_PRESETS
# ("125m,1b" by default) names the two prefill presets. A dry run on a CPU:
#   TTT_GPU_CHECK_PRESETS=tiny,tiny tools/gpu_check.sh --scale 64 --out /tmp/check.json
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=gpu_check.json build=$root/build device= scale=${TTT_GPU_CHECK_SCALE:-1}
while [ $# -gt 0 ]; do
  case $1 in
    --out) out=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --scale) scale=$2; shift 2 ;;
    -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ $scale =~ ^[1-9][0-9]*$ ]] || { echo "gpu_check: --scale takes a positive integer, not '$scale'" >&2; exit 2; }
IFS=, read -r p_small p_large <<< "${TTT_GPU_CHECK_PRESETS:-125m,1b}"
[ -n "${p_large:-}" ] || { echo "gpu_check: TTT_GPU_CHECK_PRESETS takes two presets, e.g. 125m,1b" >&2; exit 2; }
bench=$build/bench/ttt-bench
[ -x "$bench" ] || { echo "gpu_check: no $bench (build first, or --build DIR)" >&2; exit 2; }
[ -n "$device" ] && export TTT_DEVICE=$device
work=$(mktemp -d "${TMPDIR:-/tmp}/ttt-gpu-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
tokens() { local n=$(($1 / scale)); echo $((n < 64 ? 64 : n)); }

# step NAME LIMIT_SECONDS JSON_FILE COMMAND...: runs COMMAND under its limit
# and records its exit status, seconds, the end of its output and JSON_FILE's
# contents (- when the command writes none).
steps=()
step() {
  local name=$1 limit=$2 json=$3 rc t0 t1 result=null
  shift 3
  limit=$(((limit + scale - 1) / scale + 30))
  echo "== $name (at most ${limit} s): $*" >&2
  t0=$(date +%s.%N)
  timeout --kill-after=10 "$limit" "$@" > "$work/$name.log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  tail -n 5 "$work/$name.log" >&2
  if [ "$json" != - ] && [ -s "$json" ]; then result=$(cat "$json"); fi
  local tail_json
  tail_json=$(tail -c 1500 "$work/$name.log" | sed 's/\\/\\\\/g; s/"/\\"/g; s/\t/\\t/g; s/\r//g' | awk '{printf "%s\\n", $0}')
  steps+=("$(printf '"%s": {"rc": %d, "timed_out": %s, "seconds": %.1f, "command": "%s", "log_tail": "%s", "result": %s}' \
    "$name" "$rc" "$([ $rc = 124 ] || [ $rc = 137 ] && echo true || echo false)" "$(awk "BEGIN{print $t1 - $t0}")" \
    "$(echo "$*" | sed 's/"/\\"/g')" "$tail_json" "$result")")
}

# The kernel and golden tests: the binaries themselves (no ctest there), one
# gtest JSON report each, merged into one object.
tests() {
  local t rc=0
  for t in test_host test_rmsnorm test_elementwise test_attention test_xent test_sgd test_tangent test_matvec \
           test_gpu_limits test_model test_ttt; do
    [ -x "$build/tests/$t" ] || { echo "$t: not built"; rc=1; continue; }
    (cd "$build/tests" && "./$t" --gtest_brief=1 --gtest_output="json:$work/gtest-$t.json") || rc=1
  done
  { echo "{"; local first=1
    for t in "$work"/gtest-*.json; do
      [ -e "$t" ] || continue
      local n=${t##*/gtest-}
      [ $first = 1 ] || echo ","
      first=0
      # gtest writes its counts one to a line: joined before matching (an empty match would break the JSON).
      local counts
      counts=$(tr -d ' \n' < "$t" | grep -o '"tests":[0-9]*,"failures":[0-9]*,"disabled":[0-9]*,"errors":[0-9]*' | head -n 1)
      printf '"%s": %s' "${n%.json}" "{${counts:-\"unreadable\":true}}"
    done
    echo "}"; } > "$work/tests.json"
  return $rc
}
# timeout runs programs, not shell functions: the function goes to a child bash.
export build work
export -f tests
step tests $((150 * scale)) "$work/tests.json" bash -c tests  # not shrunk by --scale: the tests are what they are

# CLBlast's SGEMM tuned on the 125m shapes, one minute of tuner runs; a
# scaled-down run (a dry run on a CPU) measures but writes no tuning file.
tune_args=(--budget-min "$(awk "BEGIN{print 1 / $scale}")" --tuner-shapes 1)
[ "$scale" = 1 ] || tune_args+=(--dry-run --no-tuners)
step tune 90 "$work/tune.json" "$bench" tune --preset "$p_small" "${tune_args[@]}" --json "$work/tune.json"

# Prefill, test-time training on and off.
step "prefill_${p_small}" 75 "$work/prefill_small.json" "$bench" prefill --preset "$p_small" \
  --tokens "$(tokens 16384)" --json "$work/prefill_small.json"
step "prefill_${p_large}" 90 "$work/prefill_large.json" "$bench" prefill --preset "$p_large" \
  --tokens "$(tokens 8192)" --no-ceiling --json "$work/prefill_large.json"

# Attention alone in each kernel form (the flash GPU forms against the one-query-per-item tiles and the
# CPU sweeps; test_attention above checks every form against its twin), 125m's shape: a 1K-token
# chunk at 8K of context with an 8K window.
step attention_forms 60 "$work/attention.json" bash -c "\"$bench\" attention --form all --T $(tokens 1024) \
  --W $(tokens 8192) --pos $(tokens 8192) --H 12 --E 64 > \"$work/attention.json\""

# Decode latency at three contexts (keys/values filled at random: no prefill).
step decode 75 "$work/decode.json" "$bench" decode --preset "$p_small" \
  --contexts "$(tokens 1024),$(tokens 8192),$(tokens 65536)" --tokens 8 --json "$work/decode.json"

# Against PyTorch on CUDA, when there is a Python with torch and CUDA.
py=$(command -v python3 || true)
if [ -n "$py" ] && "$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  step compare 90 "$work/compare.json" "$bench" compare --preset "$p_small" --tokens "$(tokens 8192)" \
    --python "$py" --torch-device cuda --json "$work/compare.json"
else
  steps+=('"compare": {"skipped": "no python3 with torch and CUDA"}')
fi

info=$("$build/apps/ttt-info" 2>&1 | grep -m1 '^Default device' | sed 's/"/\\"/g')
{
  printf '{"tool": "gpu_check", "scale": %d, "presets": ["%s", "%s"], "device": "%s", "date": "%s",\n "steps": {\n' \
    "$scale" "$p_small" "$p_large" "$info" "$(date -u +%FT%TZ)"
  for i in "${!steps[@]}"; do
    [ "$i" = 0 ] || printf ',\n'
    printf '  %s' "${steps[$i]}"
  done
  printf '\n }\n}\n'
} > "$out"
echo "== wrote $out" >&2
failed=$(grep -c '"rc": [1-9]' "$out" || true)
[ "$failed" = 0 ]
