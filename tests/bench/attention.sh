#!/usr/bin/env bash
# The two attention paths of the model (docs/gpu.md) on the same random checkpoints, in one
# sitting: `cmdistill bench` with CMDISTILL_ATTENTION=explicit and =sdpa (LibTorch >= 2.1) for
# decode at batch 1/8/64, scoring [64, 256] and a training step [8, 128]; prints the table
# docs/benchmarks.md records ("Attention on LibTorch 2.6").
#   tests/bench/attention.sh [BUILD_DIR]   (default build/; THREADS=1, REPEATS=3, DEVICE=cpu,
#                                           DTYPE=float32, SHAPES="small medium")
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bin=${1:-$root/build}/app/cli/cmdistill
threads=${THREADS:-1} repeats=${REPEATS:-3} device=${DEVICE:-cpu} dtype=${DTYPE:-float32}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
py=${PYTHON:-python3}
get() { "$py" -c "import json, sys; d = json.load(open(sys.argv[1]))
for k in sys.argv[2].split('.'): d = d[k]
print(round(float(d), 1))" "$@"; }
ratio() { "$py" -c "import sys; print('%.2fx' % (float(sys.argv[1]) / float(sys.argv[2])))" "$@"; }
echo "$("$bin" --version 2>/dev/null | head -1); $device $dtype, $threads threads; $(date -u +%F)"
echo
echo "| shape | work (tokens/s) | explicit | sdpa | sdpa / explicit |"
echo "|---|---|---|---|---|"
for shape in ${SHAPES:-small medium}; do
  for a in explicit sdpa; do
    run() { CMDISTILL_ATTENTION=$a "$bin" bench "$@" --shape "$shape" --device "$device" \
      --dtype "$dtype" --threads "$threads" --repeats "$repeats" --json; }
    run decode --batch 1,8,64 --new-tokens 128 >"$work/$a.decode.json"
    run score --batch 64 --seq-len 256 >"$work/$a.score.json"
    run train --batch 8 --seq-len 128 >"$work/$a.train.json"
    grep -q "\"attention\": \"$a\"" "$work/$a.decode.json" ||
      { echo "attention.sh: $a is not available in this build" >&2; exit 1; }
  done
  for b in 1 8 64; do
    e=$(get "$work/explicit.decode.json" "tokens_per_s.$b.median")
    s=$(get "$work/sdpa.decode.json" "tokens_per_s.$b.median")
    echo "| $shape | decode batch $b | $e | $s | $(ratio "$s" "$e") |"
  done
  for w in score train; do
    e=$(get "$work/explicit.$w.json" tokens_per_s.median)
    s=$(get "$work/sdpa.$w.json" tokens_per_s.median)
    echo "| $shape | $w | $e | $s | $(ratio "$s" "$e") |"
  done
done
