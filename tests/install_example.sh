#!/usr/bin/env bash
# Installs ttt-cl into a temporary prefix, builds docs/examples/score.cpp
# against it with CMake (find_package(tttcl)) and with pkg-config, runs both on
# a text and checks that they print the perplexity ttt-perplexity prints.
#   tests/install_example.sh BUILD_DIR SOURCE_DIR TEXT_FILE
set -euo pipefail
build=$1 src=$2 text=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

cmake --install "$build" --prefix "$prefix" >"$tmp/install.log"
for f in include/ttt/engine.hpp include/ttt/opencl.hpp bin/ttt-perplexity bin/ttt-generate bin/ttt-train bin/ttt-bench; do
  [ -e "$prefix/$f" ] || { echo "FAIL: $f not installed"; exit 1; }
done
# The README has users run `ttt-bench tune`: installed whenever it is built.
if [ -e "$build/bench/ttt-bench" ] && [ ! -e "$prefix/bin/ttt-bench" ]; then
  echo "FAIL: bin/ttt-bench not installed"; exit 1
fi
if grep -rlE '#include "(lib|host|apps)/' "$prefix/include"; then
  echo "FAIL: an installed header includes an internal one"; exit 1
fi
pc=$(find "$prefix" -name tttcl.pc)
config=$(find "$prefix" -name tttclConfig.cmake)
[ -n "$pc" ] && [ -n "$config" ] || { echo "FAIL: tttcl.pc or tttclConfig.cmake missing"; exit 1; }

# 1. CMake: find_package(tttcl) from the prefix alone.
cmake -S "$src/docs/examples" -B "$tmp/with-cmake" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
  >"$tmp/cmake.log" || { cat "$tmp/cmake.log"; exit 1; }
cmake --build "$tmp/with-cmake" >"$tmp/build.log" || { cat "$tmp/build.log"; exit 1; }
# 2. pkg-config.
export PKG_CONFIG_PATH=$(dirname "$pc")
c++ -std=c++20 "$src/docs/examples/score.cpp" $(pkg-config --cflags --libs tttcl) -o "$tmp/score-pc"

"$prefix/bin/ttt-make-model" --preset tiny --seed 3 --out "$tmp/model" >/dev/null
head -c 4000 "$text" >"$tmp/text.txt"
a=$("$tmp/with-cmake/score" "$tmp/model" "$tmp/text.txt")
b=$("$tmp/score-pc" "$tmp/model" "$tmp/text.txt")
ref=$("$prefix/bin/ttt-perplexity" -m "$tmp/model" -f "$tmp/text.txt" -q 2>/dev/null | sed -n 's/^PPL = \([0-9.]*\).*/\1/p' | tail -1)
echo "cmake build:      $a"
echo "pkg-config build: $b"
echo "ttt-perplexity:   PPL = $ref"
ppl() { sed -n 's/.*PPL = \([0-9.]*\).*/\1/p' <<<"$1"; }
[ -n "$ref" ] || { echo "FAIL: no PPL from ttt-perplexity"; exit 1; }
[ "$(ppl "$a")" = "$ref" ] && [ "$(ppl "$b")" = "$ref" ] || { echo "FAIL: the examples disagree with ttt-perplexity"; exit 1; }
echo "ok: installed library, headers, CMake package and pkg-config file work"
