#!/usr/bin/env bash
# Runs every libFuzzer target of a -DTTT_FUZZ=ON build for a time budget each,
# one after the other, starting from the seeds in tests/fuzz/<target>/ plus
# what earlier runs found (kept in BUILD/fuzz-corpus). Fails on the first
# crash, leak, timeout or sanitizer report; the input is left in BUILD/fuzz-artifacts.
#   tools/fuzz.sh BUILD [SECONDS_PER_TARGET] [TARGET...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:?usage: tools/fuzz.sh BUILD [SECONDS] [TARGET...]}
secs=${2:-60}
shift $(( $# >= 2 ? 2 : 1 ))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(safetensors config token_npy token_text tokenizer_file tokenizer_encode session)
status=0
for t in "${targets[@]}"; do
  corpus=$build/fuzz-corpus/$t artifacts=$build/fuzz-artifacts/$t
  mkdir -p "$corpus" "$artifacts"
  log=$build/fuzz-artifacts/$t.log
  start=$(date +%s)
  # -timeout: one input may take 10 s (the first loads the real vocabularies);
  # -rss_limit_mb: a parser must not allocate what the input only claims to hold.
  if "$build/tests/fuzz/fuzz_$t" "$corpus" "$root/tests/fuzz/$t" -max_total_time="$secs" -timeout=10 \
       -rss_limit_mb=2048 -max_len=65536 -artifact_prefix="$artifacts/" -print_final_stats=1 > "$log" 2>&1; then
    echo "fuzz_$t: ok, $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$') runs in $(( $(date +%s) - start )) s"
  else
    echo "fuzz_$t: FAILED after $(( $(date +%s) - start )) s; input in $artifacts; log $log:"
    grep -m1 -A25 -E '^==[0-9]+==ERROR|runtime error|deadly signal|uncaught exception|ALARM' "$log" || tail -30 "$log"
    status=1
  fi
done
exit $status
