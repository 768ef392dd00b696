#!/usr/bin/env bash
# Tools on rusticl (label rusticl; run through tests/rusticl.sh for the skip):
# with rusticl's llvmpipe device present, the default device is still PoCL's
# CPU (a platform without devices, Mesa's Clover, troubles neither listing nor
# selection); llvmpipe is chosen by --device; and greedy generation on it is
# deterministic (two runs, the same text).
#   tests/rusticl_tools.sh APPS_DIR MODEL
set -euo pipefail
apps=$1 model=$2
info=$(env -u TTT_DEVICE "$apps/ttt-info")
echo "$info" | grep -E '^(Platform|  Device|Default)'
default=$(echo "$info" | grep '^Default device')
case $default in
  *llvmpipe*) echo "FAILED: rusticl's llvmpipe became the default device: $default"; exit 1 ;;
esac
if echo "$info" | grep -qi 'Portable Computing Language'; then
  echo "$default" | grep -qi 'Portable Computing Language' ||
    { echo "FAILED: PoCL is installed but not the default: $default"; exit 1; }
fi
spec=$(echo "$info" | awk '/^  Device .*llvmpipe/{print $2; exit}')
echo "llvmpipe is device $spec"
gen() { env -u TTT_DEVICE "$apps/ttt-generate" -m "$model" --device "$spec" -p "In the beginning" -n 24 2>/dev/null; }
a=$(gen)
b=$(gen)
echo "first:  $a"
echo "second: $b"
[ -n "$a" ] || { echo "FAILED: ttt-generate printed nothing on $spec"; exit 1; }
[ "$a" = "$b" ] || { echo "FAILED: two greedy runs on $spec differ"; exit 1; }
echo "ok"
