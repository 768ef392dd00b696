#!/usr/bin/env bash
# Set-up for a fresh Debian 12 machine (run as root): installs the Debian
# packages ttt-cl needs, builds it, then either runs the demo (perplexity of
# the bundled model on the bundled text) or the whole test suite.
#   tools/setup.sh demo    install, build, evaluate
#   tools/setup.sh test    install, build, ctest (what .ci/run runs)
set -euo pipefail
mode=${1:-demo}
root=$(cd "$(dirname "$0")/.." && pwd)
build=${TTT_BUILD_DIR:-$root/build}
jobs=$(nproc)

packages=(build-essential cmake pkg-config git ocl-icd-opencl-dev opencl-headers libclblast-dev pocl-opencl-icd
          libboost-program-options-dev libfmt-dev nlohmann-json3-dev libpcre2-dev libgtest-dev
          libopenmpi-dev openmpi-bin python3 python3-venv librsvg2-bin)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
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
    model=$build/models/tiny
    [ -f "$model/model.safetensors" ] || "$build/apps/ttt-make-model" --preset tiny --seed 0 --out "$model"
    echo "== ttt-perplexity on data/genesis-kjv.txt with the bundled tiny model"
    echo "   (it is UNTRAINED: random weights, so the perplexity is near the vocabulary size of 256;"
    echo "    what the demo shows is the pipeline, test-time training included, running end to end)"
    "$build/apps/ttt-perplexity" -m "$model" -f "$root/data/genesis-kjv.txt" --json "$build/demo.json"
    ;;
  test)
    cd "$build"
    ctest --output-on-failure -j "$jobs" --timeout 1200
    ;;
  *)
    echo "usage: tools/setup.sh demo|test" >&2
    exit 2
    ;;
esac
