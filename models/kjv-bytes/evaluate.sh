#!/usr/bin/env bash
# Scores held-out text (the Book of Genesis, data/genesis-kjv.txt: not in the training data) cut
# into 50 documents of 4,096 bytes, with and without test-time training, with each model given:
#   models/kjv-bytes/evaluate.sh BUILD OUTDIR NAME=MODEL_DIR...
# writes OUTDIR/genesis-4k.jsonl (the documents), OUTDIR/NAME.json (ttt-perplexity's report:
# per-document and per-position-bucket NLL), OUTDIR/NAME-compare.svg (loss against position, both
# curves) and prints a summary table.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:?usage: evaluate.sh BUILD OUTDIR NAME=MODEL_DIR...}
out=${2:?usage: evaluate.sh BUILD OUTDIR NAME=MODEL_DIR...}
shift 2
build=$(cd "$build" && pwd)
mkdir -p "$out"
cd "$out"
docs=genesis-4k.jsonl
python3 - "$root/data/genesis-kjv.txt" > "$docs" <<'PY'
import json, sys
text = open(sys.argv[1], "rb").read()
for i in range(0, len(text) - 4096 + 1, 4096):
    print(json.dumps({"text": text[i:i + 4096].decode("ascii")}))
PY
for spec in "$@"; do
  name=${spec%%=*} dir=${spec#*=}
  case $dir in /*) ;; *) dir=$OLDPWD/$dir ;; esac
  "$build/apps/ttt-perplexity" -m "$dir" --jsonl "$docs" --compare --parallel 10 -q \
      --json "$name.json" --plot "$name-compare.svg" --force > /dev/null
done
python3 - . "$@" <<'PY'
import json, sys
out, specs = sys.argv[1], sys.argv[2:]
print(f"{'model':10s} {'NLL TTT':>8s} {'no TTT':>8s} {'2nd half TTT':>13s} {'no TTT':>8s} {'delta':>8s}")
for s in specs:
    name = s.split("=", 1)[0]
    j = json.load(open(f"{out}/{name}.json"))
    t = j["total"]
    half = [b for b in j["buckets"] if b["lo"] == 2048][0]
    print(f"{name:10s} {t['mean_nll']:8.4f} {t['base']['mean_nll']:8.4f} {half['mean_nll']:13.4f} "
          f"{half['base']['mean_nll']:8.4f} {half['delta']['mean_nll']:+8.4f}")
PY
