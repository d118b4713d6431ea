#!/usr/bin/env bash
# cmdistill against eager PyTorch on the same checkpoints, in one sitting: `cmdistill bench` and
# eager_bench.py (Debian's /usr/bin/python3 with python3-torch) do the same decode, score and
# train work on the same Hugging Face folder with the same thread count, and the ratio table is
# printed at each thread count of THREADS, with the machine's read bandwidth and the batch-1
# decode's weight reads as a fraction of it (docs/benchmarks.md records it).
#   tests/bench/peer/compare.sh [BUILD_DIR]     (default build/; THREADS="1 2", REPEATS=3)
# Checkpoints (random weights, made by `cmdistill init-model`): "small" (qwen2, 4 layers,
# hidden 256, vocabulary 2048) and "medium" (24M parameters: 8 layers, hidden 512).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
build=${1:-$root/build}
bin=$build/app/cli/cmdistill
py=${PYTHON:-/usr/bin/python3}
thread_counts=${THREADS:-1 2}
repeats=${REPEATS:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
source "$root/tests/bench/peer/models.sh"
make_models "$bin" "$work"
fmt() { "$py" -c "import sys; print('%.1f' % (float(sys.argv[1]) / float(sys.argv[2])))" "$@"; }
frac() { "$py" -c "import sys; t, p, bw = map(float, sys.argv[1:]); print('%.2f (%.1f GB/s)' % (t * 4 * p / bw, t * 4 * p / 1e9))" "$@"; }
ratio() { "$py" -c "import sys; print('%.2fx' % (float(sys.argv[1]) / float(sys.argv[2])))" "$@"; }
get() { "$py" -c "import json, sys; d = json.load(open(sys.argv[1]))
for k in sys.argv[2].split('.'): d = d[k]
print(d)" "$@"; }
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'); thread counts: $thread_counts;" \
  "OpenBLAS: $("$bin" bench decode --shape small --batch 1 --new-tokens 1 --repeats 1 --json |
    "$py" -c 'import json,sys; print(json.load(sys.stdin)["blas"])'); $(date -u +%F)"
echo
echo "| threads | model | work | cmdistill | eager PyTorch | ratio |"
echo "|---|---|---|---|---|---|"
for threads in $thread_counts; do
  "$bin" bench gemm --threads "$threads" --gemm-size 1024 --json > "$work/gemm.json"
  "$bin" bench memory --threads "$threads" --memory-mib 1024 --json > "$work/mem.json"
  peak=$(get "$work/gemm.json" flops_per_s)
  bw=$(get "$work/mem.json" read_bytes_per_s)
  for shape in small medium; do
    m=$work/$shape
    run_c() { "$bin" bench "$@" --model "$m" --threads "$threads" --repeats "$repeats" --json; }
    # The same thread budget on both sides: `cmdistill bench --threads` sizes LibTorch's pool and
    # OpenBLAS's; with the OpenMP OpenBLAS (scripts/setup.sh) torch.set_num_threads reaches both,
    # with the pthreads one only OPENBLAS_NUM_THREADS does (set for either).
    run_e() { OPENBLAS_NUM_THREADS=$threads "$py" "$root/tests/bench/peer/eager_bench.py" \
      --model "$m" --threads "$threads" --repeats "$repeats" "$@"; }
    run_c decode --batch 1,8,64 --new-tokens 128 > "$work/c_dec.json"
    run_c score --batch 64 --seq-len 256 > "$work/c_score.json"
    run_c train --batch 8 --seq-len 128 > "$work/c_train.json"
    run_e --batches 1,8,64 --new-tokens 128 --score-batch 64 --score-len 256 \
      --train-batch 8 --train-len 128 > "$work/e.json"
    row() { echo "| $threads | $shape | $1 | $2 | $3 | $(ratio "$2" "$3") |"; }
    for b in 1 8 64; do
      row "decode batch $b (tok/s)" "$(get "$work/c_dec.json" "tokens_per_s.$b.median")" \
        "$(get "$work/e.json" "decode_tokens_per_s.$b.median")"
    done
    row "score [64, 256] (tok/s)" "$(get "$work/c_score.json" tokens_per_s.median)" \
      "$(get "$work/e.json" score_tokens_per_s.median)"
    row "train step [8, 128] (tok/s)" "$(get "$work/c_train.json" tokens_per_s.median)" \
      "$(get "$work/e.json" train_tokens_per_s.median)"
    f=$(get "$work/c_score.json" model_flops_per_s)
    echo "| $threads | $shape | score model FLOP/s vs gemm peak ($(fmt "$peak" 1e9) GFLOP/s) | $(ratio "$f" "$peak") | | |"
    # Batch-1 decode reads every weight once per token (float32; the tied head once).
    p=$(get "$work/c_dec.json" parameters)
    t1=$(get "$work/c_dec.json" tokens_per_s.1.median)
    e1=$(get "$work/e.json" decode_tokens_per_s.1.median)
    echo "| $threads | $shape | batch-1 decode weight reads vs read bandwidth ($(fmt "$bw" 1e9) GB/s) |" \
      "$(frac "$t1" "$p" "$bw") | $(frac "$e1" "$p" "$bw") | |"
  done
done
