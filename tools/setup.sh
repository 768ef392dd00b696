#!/usr/bin/env bash
# Set-up for a fresh Debian 12 machine (run as root): installs the Debian
# packages ttt-cl needs, builds it, then either runs the demo (perplexity of
# the bundled model on the bundled text) or the whole test suite.
#   tools/setup.sh demo    install, build, evaluate
#   tools/setup.sh test    install, build, ctest (Oclgrind included), the suite
#                          again under ASan+UBSan, each fuzzer briefly (what
#                          .ci/run runs; docs/checking.md)
set -euo pipefail
mode=${1:-demo}
root=$(cd "$(dirname "$0")/.." && pwd)
build=${TTT_BUILD_DIR:-$root/build}
jobs=$(nproc)

packages=(build-essential cmake pkg-config git ocl-icd-opencl-dev opencl-headers libclblast-dev pocl-opencl-icd
          libboost-program-options-dev libfmt-dev nlohmann-json3-dev libpcre2-dev libgtest-dev
          libopenmpi-dev openmpi-bin python3 python3-venv python3-dev librsvg2-bin)
# The test mode's extra checks (docs/checking.md): kernels under Oclgrind, libFuzzer from clang.
[ "$mode" = test ] && packages+=(oclgrind clang-14 libclang-rt-14-dev)
# Mesa's rusticl, the third OpenCL implementation: ctest's rusticl entries run the kernel tests and the
# golden cases on its llvmpipe device (RUSTICL_ENABLE=llvmpipe, tests/rusticl.sh); PoCL stays the default.
[ "$mode" = test ] && packages+=(mesa-opencl-icd)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# apt-get that waits up to 10 minutes for a lock another apt or dpkg holds:
# DPkg::Lock::Timeout covers the dpkg lock, and a failure on the lists lock
# (apt-get update) is retried.
apt_wait() {
  local deadline=$((SECONDS + 600)) err
  while :; do
    if err=$(apt-get -o DPkg::Lock::Timeout=600 "$@" 2>&1 1>&3); then return 0; fi
    if [[ $err == *"Could not get lock"* || $err == *"Unable to lock"* ]] && ((SECONDS < deadline)); then
      echo "== another apt holds its lock; waiting" >&2
      sleep 5
    else
      echo "$err" >&2
      return 1
    fi
  done 3>&1
}
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt_wait update -qq
  apt_wait install -y -qq --no-install-recommends "${missing[@]}"
fi

# Python is for the tests' reference encoders and the checkpoint converter, in a venv inside the build tree.
py=python3
if [ "$mode" = test ]; then
  venv=$build/venv
  if [ ! -x "$venv/bin/python" ]; then
    echo "== creating $venv (tokenizers, tiktoken: the tokenizer tests' oracles)"
    mkdir -p "$build"
    python3 -m venv "$venv"
  fi
  "$venv/bin/python" -c "import tokenizers, tiktoken" 2>/dev/null ||
    "$venv/bin/python" -m pip install -q --disable-pip-version-check tokenizers tiktoken
  # tools/convert_official.py and its test: the orbax checkpoint layout through tensorstore (no JAX needed).
  "$venv/bin/python" -c "import numpy, tensorstore, yaml" 2>/dev/null ||
    "$venv/bin/python" -m pip install -q --disable-pip-version-check numpy tensorstore PyYAML
  py=$venv/bin/python
fi

echo "== building in $build"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DPython3_EXECUTABLE="$(command -v "$py" || echo "$py")" >/dev/null
cmake --build "$build" -j "$jobs"

# Kernels are compiled once (PoCL: ~11 s a program) and cached where the tools
# always cache them, ~/.cache/ttt-cl and ~/.cache/pocl, so the demo and later
# runs by hand share one cache (ctest keeps its own under the build tree).

case "$mode" in
  demo)
    model=$root/models/kjv-bytes
    echo "== ttt-perplexity: the bundled kjv-bytes model (byte-level, meta-trained by ttt-train on KJV Exodus-Revelation)"
    echo "   on the held-out Book of Genesis (data/genesis-kjv.txt), with and without test-time training"
    # The demo's own two files: a build from before the tools signed their outputs wrote them unsigned, and
    # ttt-perplexity replaces no file it cannot tell for its own.
    rm -f "$build/demo.json" "$build/demo.svg"
    "$build/apps/ttt-perplexity" -m "$model" -f "$root/data/genesis-kjv.txt" --compare \
        --json "$build/demo.json" --plot "$build/demo.svg" --force
    echo "== report: $build/demo.json, plot: $build/demo.svg (models/kjv-bytes/README.md explains the model)"
    ;;
  test)
    # 1. The suite, kernels under Oclgrind included (label oclgrind).
    summary=()
    run_ctest() {  # ctest with its summary line kept for the end: "N% tests passed, F tests failed out of T"
      local dir=$1 label=$2 log line rerun
      log=$(mktemp)
      local rc=0
      ctest --test-dir "$dir" --output-on-failure -j "$jobs" --timeout 1200 --output-junit "$log.xml" 2>&1 | tee "$log" || rc=$?
      line=$(grep -E '^[0-9]+% tests passed' "$log" | tail -1)
      # LeakSanitizer's own tracer thread now and then segfaults at process exit
      # (google/sanitizers#1353): not a leak, not our fault. When that is the only way
      # any test failed, those tests run once more, and the summary says so.
      if [[ $rc -ne 0 ]] && rerun=$("$py" "$root/tools/lsan_tracer_crashes.py" "$log.xml"); then
        echo "== LSan's tracer crashed at exit in: $(echo $rerun) (not a leak report); running those once more"
        if ctest --test-dir "$dir" --output-on-failure --timeout 1200 \
             -R "^($(echo "$rerun" | sed 's/[.[\*^$()+?{|]/\\&/g' | paste -sd'|'))\$"; then
          local total=${line##* out of }
          line="100% tests passed, 0 tests failed out of $total (rerun after LSan's tracer crashed: $(echo $rerun))"
          rc=0
        fi
      fi
      summary+=("$label: $line")
      rm -f "$log" "$log.xml"
      return "$rc"
    }
    # The Python module into the test venv: ctest's python_module runs its pytest suite there.
    # Its CMake tree stays in $build/python-wheel, so a second run rebuilds only what changed.
    echo "== pip install $root into $venv (the Python module tttcl)"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check \
      --config-settings=build-dir="$build/python-wheel" "$root" pytest
    run_ctest "$build" "suite"
    # 2. The suite again with AddressSanitizer and UBSan, sharing build/'s kernel caches.
    asan=${TTT_ASAN_BUILD_DIR:-$root/build-asan}
    echo "== sanitizers: building in $asan (-DTTT_SANITIZE=address,undefined)"
    cmake -S "$root" -B "$asan" -DCMAKE_BUILD_TYPE=Release -DTTT_SANITIZE=address,undefined -DTTT_WITH_MPI=OFF \
          -DTTT_KERNEL_CACHE_ROOT="$build" -DPython3_EXECUTABLE="$(command -v "$py" || echo "$py")" >/dev/null
    cmake --build "$asan" -j "$jobs"
    # PoCL and CLBlast run clean under ASan and UBSan; LSan needs tests/lsan.supp. MPI is left
    # out of this tree (the plain suite runs mpirun): Open MPI's own allocations at exit are not ours.
    # tests/lsan.supp: the one suppression, PoCL's LLVM compiler state (see the file).
    # intercept_tls_get_addr=0: LSan's record of the dlopen'd OpenCL libraries' dynamic TLS goes bad
    # ("DTLS 7 at 0xd89-0x800001e8b") and its tracer segfaults scanning it at exit (docs/checking.md).
    # The OpenCL ICD loader opens every vendor's library in every process; Mesa's (rusticl, Clover)
    # leave allocations at exit that LSan reports in every test. This stage checks our code on PoCL
    # (its rusticl entries are left out of sanitizer builds), so the loader sees PoCL alone.
    pocl_icd=/etc/OpenCL/vendors/pocl.icd
    [ -f "$pocl_icd" ] && export OCL_ICD_VENDORS=$pocl_icd
    LSAN_OPTIONS=suppressions=$root/tests/lsan.supp:print_suppressions=0 \
    ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1:intercept_tls_get_addr=0 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      run_ctest "$asan" "sanitizers (ASan+UBSan)"
    unset OCL_ICD_VENDORS
    # 3. Every parser under libFuzzer for a short budget (TTT_FUZZ_SECONDS each).
    fuzz=${TTT_FUZZ_BUILD_DIR:-$root/build-fuzz}
    echo "== fuzzing: building in $fuzz (-DTTT_FUZZ=ON, clang)"
    CC=clang-14 CXX=clang++-14 cmake -S "$root" -B "$fuzz" -DCMAKE_BUILD_TYPE=Release -DTTT_FUZZ=ON \
          -DTTT_BUILD_TESTS=OFF -DTTT_BUILD_BENCH=OFF >/dev/null
    cmake --build "$fuzz" -j "$jobs" --target fuzz
    "$root/tools/fuzz.sh" "$fuzz" "${TTT_FUZZ_SECONDS:-40}"
    summary+=("fuzzing: every target ran ${TTT_FUZZ_SECONDS:-40} s with no crash")
    # The summaries last, ctest's totals in the closing line.
    echo "== summary"
    printf '%s\n' "${summary[@]}"
    passed=0 failed=0
    for line in "${summary[@]}"; do
      if [[ $line =~ ([0-9]+)\ tests\ failed\ out\ of\ ([0-9]+) ]]; then
        failed=$((failed + BASH_REMATCH[1])) passed=$((passed + BASH_REMATCH[2] - BASH_REMATCH[1]))
      fi
    done
    echo "ctest: $passed passed, $failed failed"
    ;;
  *)
    echo "usage: tools/setup.sh demo|test" >&2
    exit 2
    ;;
esac
