#!/usr/bin/env bash
# cmdistill against eager PyTorch on the same checkpoints, in one sitting: `cmdistill bench` and
# eager_bench.py (Debian's /usr/bin/python3 with python3-torch) do the same decode, score and
# train work on the same Hugging Face folder with the same thread count, and the ratio table is
# printed (docs/benchmarks.md records it).
#   tests/bench/peer/compare.sh [BUILD_DIR]     (default build/; THREADS=2, REPEATS=3)
# Checkpoints (random weights, made by `cmdistill init-model`): "small" (qwen2, 4 layers,
# hidden 256, vocabulary 2048) and "medium" (24M parameters: 8 layers, hidden 512).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
build=${1:-$root/build}
bin=$build/app/cli/cmdistill
py=${PYTHON:-/usr/bin/python3}
threads=${THREADS:-2}
repeats=${REPEATS:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
common='"model_type": "qwen2", "num_attention_heads": 4, "num_key_value_heads": 2,
  "head_dim": 64, "max_position_embeddings": 1024, "tie_word_embeddings": true'
echo "{\"vocab_size\": 2048, \"hidden_size\": 256, \"intermediate_size\": 688,
  \"num_hidden_layers\": 4, $common}" > "$work/small.json"
echo "{\"vocab_size\": 8192, \"hidden_size\": 512, \"intermediate_size\": 1376,
  \"num_hidden_layers\": 8, $common}" > "$work/medium.json"
ratio() { "$py" -c "import sys; print('%.2fx' % (float(sys.argv[1]) / float(sys.argv[2])))" "$@"; }
get() { "$py" -c "import json, sys; d = json.load(open(sys.argv[1]))
for k in sys.argv[2].split('.'): d = d[k]
print(d)" "$@"; }
echo "machine: $(nproc) cores, $threads threads each; $(date -u +%F)"
echo "gemm peak: $("$bin" bench gemm --threads "$threads" --gemm-size 1024 --json)" | tee "$work/gemm.txt"
peak=$("$py" -c "import json,sys; print(json.loads(open(sys.argv[1]).read().split(': ',1)[1])['flops_per_s'])" "$work/gemm.txt")
echo
echo "| model | work | cmdistill | eager PyTorch | ratio |"
echo "|---|---|---|---|---|"
for shape in small medium; do
  "$bin" init-model --config "$work/$shape.json" --out "$work/$shape" >/dev/null
  m=$work/$shape
  run_c() { "$bin" bench "$@" --model "$m" --threads "$threads" --repeats "$repeats" --json; }
  # The same thread budget on both sides: `cmdistill bench --threads` sizes LibTorch's pool and
  # OpenBLAS's; torch.set_num_threads does not reach Debian's OpenBLAS, its environment does.
  run_e() { OPENBLAS_NUM_THREADS=$threads "$py" "$root/tests/bench/peer/eager_bench.py" \
    --model "$m" --threads "$threads" --repeats "$repeats" "$@"; }
  run_c decode --batch 1,8,64 --new-tokens 128 > "$work/c_dec.json"
  run_c decode --batch 8 --new-tokens 32 > "$work/c_d32.json"
  run_c decode --batch 8 --new-tokens 256 > "$work/c_d256.json"
  run_c score --batch 64 --seq-len 256 > "$work/c_score.json"
  run_c train --batch 8 --seq-len 128 > "$work/c_train.json"
  run_e --batches 1,8,64 --new-tokens 128 --score-batch 64 --score-len 256 \
    --train-batch 8 --train-len 128 > "$work/e.json"
  for b in 1 8 64; do
    c=$(get "$work/c_dec.json" "tokens_per_s.$b.median")
    e=$(get "$work/e.json" "decode_tokens_per_s.$b.median")
    echo "| $shape | decode batch $b (tok/s) | $c | $e | $(ratio "$c" "$e") |"
  done
  c=$(get "$work/c_score.json" tokens_per_s.median); e=$(get "$work/e.json" score_tokens_per_s.median)
  echo "| $shape | score [64, 256] (tok/s) | $c | $e | $(ratio "$c" "$e") |"
  c=$(get "$work/c_train.json" tokens_per_s.median); e=$(get "$work/e.json" train_tokens_per_s.median)
  echo "| $shape | train step [8, 128] (tok/s) | $c | $e | $(ratio "$c" "$e") |"
  t32=$(get "$work/c_d32.json" tokens_per_s.8.median); t256=$(get "$work/c_d256.json" tokens_per_s.8.median)
  echo "| $shape | per-token cost, 256 vs 32 new tokens (batch 8) | $(ratio "$t32" "$t256") | | |"
  f=$(get "$work/c_score.json" model_flops_per_s)
  echo "| $shape | score model FLOP/s vs gemm peak | $(ratio "$f" "$peak") | | |"
done
