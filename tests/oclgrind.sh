#!/usr/bin/env bash
# Runs one test binary under Oclgrind and fails on any report (data races,
# out-of-bounds accesses, barrier divergence), even when every test passes:
# PoCL forgives missing global fences and stray reads that a GPU will not.
#   tests/oclgrind.sh TEST_BINARY [gtest arguments]
# TTT_OCLGRIND_UNINIT=1 adds --uninitialized, not part of the CI step because
# Oclgrind 21.10 reports false positives there: memory written by
# clEnqueueFillBuffer or clEnqueueCopyBufferRect counts as uninitialised, and
# its checker aborts on LLVM's 'freeze' unless kernels are built unoptimised
# (docs/checking.md).
set -uo pipefail
command -v oclgrind > /dev/null || { echo "oclgrind is not installed (Debian package oclgrind)"; exit 77; }
log=$(mktemp "${TMPDIR:-/tmp}/ttt-oclgrind.XXXXXX")
trap 'rm -f "$log"' EXIT
opts=(--data-races --log "$log")
if [ "${TTT_OCLGRIND_UNINIT:-0}" = 1 ]; then
  opts+=(--uninitialized --build-options -cl-opt-disable)
  export TTT_CACHE_DIR=off  # the cache key does not include Oclgrind's build options
fi
OCLGRIND_NUM_THREADS=${OCLGRIND_NUM_THREADS:-1} oclgrind "${opts[@]}" "$@"
rc=$?
if [ -s "$log" ]; then
  head -c 20000 "$log"
  echo
  echo "FAILED: Oclgrind reported errors (above)"
  exit 1
fi
exit $rc
