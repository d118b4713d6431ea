# Sourced by tests/bench/peer/compare.sh and tests/bench/thread_scaling.sh: the two random
# qwen2 checkpoints both measure on. make_models BIN DIR writes DIR/small (4 layers, hidden 256,
# vocabulary 2048, 3.4M parameters) and DIR/medium (8 layers, hidden 512, vocabulary 8192,
# 24.3M), with `cmdistill init-model`.
make_models() {
  local bin=$1 dir=$2
  local common='"model_type": "qwen2", "num_attention_heads": 4, "num_key_value_heads": 2,
  "head_dim": 64, "max_position_embeddings": 1024, "tie_word_embeddings": true'
  echo "{\"vocab_size\": 2048, \"hidden_size\": 256, \"intermediate_size\": 688,
  \"num_hidden_layers\": 4, $common}" > "$dir/small.json"
  echo "{\"vocab_size\": 8192, \"hidden_size\": 512, \"intermediate_size\": 1376,
  \"num_hidden_layers\": 8, $common}" > "$dir/medium.json"
  local shape
  for shape in small medium; do
    "$bin" init-model --config "$dir/$shape.json" --out "$dir/$shape" >/dev/null
  done
}
