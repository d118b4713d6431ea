#!/usr/bin/env bash
# Thread scaling of `cmdistill bench` at 1 and 2 threads, on an idle machine and beside a busy
# neighbour (a second process spinning on one core), on the small and medium checkpoints of
# compare.sh: decode at batch 1/8/64, score [16, 256], train [8, 128]. docs/benchmarks.md,
# "Thread scaling", records it.
#   tests/bench/thread_scaling.sh [BUILD_DIR] [ENV=VALUE...]     (SHAPES="small medium", THREADS="1 2"; N threads: THREADS="1 2 4 8")
# ENV=VALUE pairs go to every bench run, e.g. the code before 2026-12-08:
#   tests/bench/thread_scaling.sh build LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-pthread \
#     CMDISTILL_THREADS_POLICY=always
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${1:-$root/build}
shift || true
bin=$build/app/cli/cmdistill
py=${PYTHON:-/usr/bin/python3}
work=$(mktemp -d)
spin=
trap '[[ -n $spin ]] && kill $spin 2>/dev/null; rm -rf "$work"' EXIT
source "$root/tests/bench/peer/models.sh"
make_models "$bin" "$work"
for shape in ${SHAPES:-small medium}; do
  for busy in 0 1; do
    if [[ $busy == 1 ]]; then (while :; do :; done) & spin=$!; fi
    for t in ${THREADS:-1 2}; do
      run() { env "$@" "$bin" bench "${args[@]}" --model "$work/$shape" --threads "$t" \
        --repeats 3 --json; }
      args=(decode --batch 1,8,64 --new-tokens 64); d=$(run "${@:-X=}")
      args=(score --batch 16 --seq-len 256); s=$(run "${@:-X=}")
      args=(train --batch 8 --seq-len 128); tr=$(run "${@:-X=}")
      "$py" - "$shape" "$busy" "$t" "$d" "$s" "$tr" <<'P'
import json, sys
shape, busy, t, d, s, tr = sys.argv[1:]
d, s, tr = json.loads(d), json.loads(s), json.loads(tr)
dec = " ".join(f"b{k}={round(v['median'])}" for k, v in d["tokens_per_s"].items())
print(f"{shape} {'busy' if busy == '1' else 'idle'} threads={t} blas={d['blas']} "
      f"policy={d['threads_policy']} decode {dec} score={round(s['tokens_per_s']['median'])} "
      f"train={round(tr['tokens_per_s']['median'])}")
P
    done
    if [[ $busy == 1 ]]; then kill $spin; spin=; fi
  done
done
