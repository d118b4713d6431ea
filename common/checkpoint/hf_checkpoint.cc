#include "common/checkpoint/hf_checkpoint.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status/status_macros.h"
#include "common/util/files.h"
#include "nlohmann/json.hpp"

namespace cmdistill::checkpoint {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

absl::StatusOr<std::string> ReadText(const std::string& path) {
  auto text = util::ReadFile(path);
  if (!text.ok())
    return absl::NotFoundError(absl::StrCat("cannot open '", path, "'"));
  return text;
}

absl::Status Bad(const std::string& file, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(file, ": ", what));
}

}  // namespace

absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& text,
                                             const std::string& file) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Bad(file, "not a JSON object");
  ModelConfig c;
  auto get_int = [&](const char* key, int64_t* out,
                     bool required) -> absl::Status {
    if (!j.contains(key) || j[key].is_null()) {
      return required ? Bad(file, absl::StrCat("missing '", key, "'"))
                      : absl::OkStatus();
    }
    if (!j[key].is_number_integer())
      return Bad(file, absl::StrCat("'", key, "' is not an integer"));
    *out = j[key].get<int64_t>();
    return absl::OkStatus();
  };
  auto get_num = [&](const char* key, double* out) -> absl::Status {
    if (!j.contains(key) || j[key].is_null()) return absl::OkStatus();
    if (!j[key].is_number())
      return Bad(file, absl::StrCat("'", key, "' is not a number"));
    *out = j[key].get<double>();
    return absl::OkStatus();
  };
  auto get_bool = [&](const char* key, bool* out) -> absl::Status {
    if (!j.contains(key) || j[key].is_null()) return absl::OkStatus();
    if (!j[key].is_boolean())
      return Bad(file, absl::StrCat("'", key, "' is not true/false"));
    *out = j[key].get<bool>();
    return absl::OkStatus();
  };
  if (!j.contains("model_type") || !j["model_type"].is_string()) {
    return Bad(file, "missing 'model_type'");
  }
  c.model_type = j["model_type"].get<std::string>();
  if (c.model_type != "llama" && c.model_type != "qwen2" &&
      c.model_type != "qwen3") {
    return Bad(file, absl::StrCat("model_type '", c.model_type,
                                  "' is not supported (llama, qwen2, qwen3)"));
  }
  for (auto [key, out] :
       {std::pair{"vocab_size", &c.vocab_size},
        std::pair{"hidden_size", &c.hidden_size},
        std::pair{"intermediate_size", &c.intermediate_size},
        std::pair{"num_hidden_layers", &c.num_hidden_layers},
        std::pair{"num_attention_heads", &c.num_attention_heads}}) {
    CMDISTILL_RETURN_IF_ERROR(get_int(key, out, true));
    if (*out <= 0)
      return Bad(file, absl::StrCat("'", key, "' must be positive"));
  }
  c.num_key_value_heads = c.num_attention_heads;
  CMDISTILL_RETURN_IF_ERROR(
      get_int("num_key_value_heads", &c.num_key_value_heads, false));
  c.head_dim = c.hidden_size / c.num_attention_heads;
  CMDISTILL_RETURN_IF_ERROR(get_int("head_dim", &c.head_dim, false));
  CMDISTILL_RETURN_IF_ERROR(
      get_int("max_position_embeddings", &c.max_position_embeddings, false));
  CMDISTILL_RETURN_IF_ERROR(get_num("rms_norm_eps", &c.rms_norm_eps));
  CMDISTILL_RETURN_IF_ERROR(get_num("rope_theta", &c.rope_theta));
  CMDISTILL_RETURN_IF_ERROR(
      get_bool("tie_word_embeddings", &c.tie_word_embeddings));
  c.attention_bias = c.model_type == "qwen2";
  if (c.model_type != "qwen2") {
    CMDISTILL_RETURN_IF_ERROR(get_bool("attention_bias", &c.attention_bias));
  }
  c.qk_norm = c.model_type == "qwen3";
  CMDISTILL_RETURN_IF_ERROR(get_int("bos_token_id", &c.bos_token_id, false));
  if (j.contains("eos_token_id") && !j["eos_token_id"].is_null()) {
    const auto& e = j["eos_token_id"];
    if (e.is_number_integer()) {
      c.eos_token_ids.push_back(e.get<int64_t>());
    } else if (e.is_array()) {
      for (const auto& x : e) {
        if (!x.is_number_integer())
          return Bad(file, "'eos_token_id' entries must be integers");
        c.eos_token_ids.push_back(x.get<int64_t>());
      }
    } else {
      return Bad(file, "'eos_token_id' must be an integer or a list");
    }
  }
  if (j.contains("torch_dtype") && j["torch_dtype"].is_string()) {
    c.torch_dtype = j["torch_dtype"].get<std::string>();
  }
  if (j.contains("hidden_act") && j["hidden_act"] != "silu") {
    return Bad(file, "'hidden_act' must be silu");
  }
  bool flag = false;
  CMDISTILL_RETURN_IF_ERROR(get_bool("mlp_bias", &flag));
  if (flag) return Bad(file, "'mlp_bias': true is not supported");
  flag = false;
  CMDISTILL_RETURN_IF_ERROR(get_bool("use_sliding_window", &flag));
  if (flag) return Bad(file, "'use_sliding_window': true is not supported");
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    const auto& r = j["rope_scaling"];
    if (!r.is_object()) return Bad(file, "'rope_scaling' must be an object");
    const std::string type =
        r.value("rope_type", r.value("type", std::string()));
    if (type == "default" || type.empty()) {
      // plain rope
    } else if (type == "llama3") {
      c.rope_scaling.type = "llama3";
      c.rope_scaling.factor = r.value("factor", 8.0);
      c.rope_scaling.low_freq_factor = r.value("low_freq_factor", 1.0);
      c.rope_scaling.high_freq_factor = r.value("high_freq_factor", 4.0);
      c.rope_scaling.original_max_position_embeddings =
          r.value("original_max_position_embeddings", int64_t{8192});
      if (!(c.rope_scaling.factor > 0) ||
          !(c.rope_scaling.high_freq_factor > c.rope_scaling.low_freq_factor)) {
        return Bad(file,
                   "'rope_scaling' llama3 needs factor > 0 and high > low freq "
                   "factor");
      }
    } else {
      return Bad(file, absl::StrCat("rope_scaling type '", type,
                                    "' is not supported (llama3)"));
    }
  }
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    return Bad(file,
               "num_attention_heads must be a multiple of num_key_value_heads");
  }
  if (c.head_dim <= 0 || c.head_dim % 2 != 0)
    return Bad(file, "head_dim must be even and > 0");
  if (!(c.rms_norm_eps > 0) || !(c.rope_theta > 0)) {
    return Bad(file, "rms_norm_eps and rope_theta must be positive");
  }
  return c;
}

std::string ModelConfigToJson(const ModelConfig& c) {
  json j;
  static const std::map<std::string, std::string> kArch = {
      {"llama", "LlamaForCausalLM"},
      {"qwen2", "Qwen2ForCausalLM"},
      {"qwen3", "Qwen3ForCausalLM"}};
  j["architectures"] = {kArch.at(c.model_type)};
  j["model_type"] = c.model_type;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["head_dim"] = c.head_dim;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["hidden_act"] = "silu";
  if (c.model_type != "qwen2") j["attention_bias"] = c.attention_bias;
  if (c.model_type == "qwen2") j["use_sliding_window"] = false;
  if (c.rope_scaling.type == "llama3") {
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", c.rope_scaling.factor},
                         {"low_freq_factor", c.rope_scaling.low_freq_factor},
                         {"high_freq_factor", c.rope_scaling.high_freq_factor},
                         {"original_max_position_embeddings",
                          c.rope_scaling.original_max_position_embeddings}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  // Unknown bos: the GPT-2 / Qwen convention, where the one end-of-text token
  // is both (our tokenizers never prepend it).
  if (c.bos_token_id >= 0) {
    j["bos_token_id"] = c.bos_token_id;
  } else if (!c.eos_token_ids.empty()) {
    j["bos_token_id"] = c.eos_token_ids[0];
  } else {
    j["bos_token_id"] = nullptr;
  }
  if (c.eos_token_ids.size() == 1) j["eos_token_id"] = c.eos_token_ids[0];
  if (c.eos_token_ids.size() > 1) j["eos_token_id"] = c.eos_token_ids;
  j["torch_dtype"] = c.torch_dtype;
  j["transformers_version"] = kTransformersVersion;
  return j.dump(2) + "\n";
}

std::vector<std::pair<std::string, std::vector<int64_t>>> ExpectedTensors(
    const ModelConfig& c) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> t;
  const int64_t H = c.hidden_size, q = c.num_attention_heads * c.head_dim,
                kv = c.num_key_value_heads * c.head_dim;
  t.push_back({"model.embed_tokens.weight", {c.vocab_size, H}});
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    t.push_back({p + "input_layernorm.weight", {H}});
    t.push_back({p + "post_attention_layernorm.weight", {H}});
    t.push_back({p + "self_attn.q_proj.weight", {q, H}});
    t.push_back({p + "self_attn.k_proj.weight", {kv, H}});
    t.push_back({p + "self_attn.v_proj.weight", {kv, H}});
    t.push_back({p + "self_attn.o_proj.weight", {H, q}});
    if (c.attention_bias) {
      t.push_back({p + "self_attn.q_proj.bias", {q}});
      t.push_back({p + "self_attn.k_proj.bias", {kv}});
      t.push_back({p + "self_attn.v_proj.bias", {kv}});
      if (c.model_type != "qwen2")
        t.push_back({p + "self_attn.o_proj.bias", {H}});
    }
    if (c.qk_norm) {
      t.push_back({p + "self_attn.q_norm.weight", {c.head_dim}});
      t.push_back({p + "self_attn.k_norm.weight", {c.head_dim}});
    }
    t.push_back({p + "mlp.gate_proj.weight", {c.intermediate_size, H}});
    t.push_back({p + "mlp.up_proj.weight", {c.intermediate_size, H}});
    t.push_back({p + "mlp.down_proj.weight", {H, c.intermediate_size}});
  }
  t.push_back({"model.norm.weight", {H}});
  if (!c.tie_word_embeddings)
    t.push_back({"lm_head.weight", {c.vocab_size, H}});
  return t;
}

// Long on purpose: a folder's checks in order (config.json, single file or
// index, every shard mapped and validated, every expected tensor present
// with its shape and dtype), each with its own error.
absl::StatusOr<std::unique_ptr<HfCheckpoint>> HfCheckpoint::Open(
    const std::string& dir) {
  auto ck = std::make_unique<HfCheckpoint>();
  ck->dir_ = dir;
  if (!fs::is_directory(dir))
    return absl::NotFoundError(absl::StrCat("no model folder '", dir, "'"));
  const std::string config_path = dir + "/config.json";
  CMDISTILL_ASSIGN_OR_RETURN(auto text, ReadText(config_path));
  CMDISTILL_ASSIGN_OR_RETURN(auto config, ParseModelConfig(text, config_path));
  ck->config_ = config;
  std::vector<std::string> shard_paths;
  const std::string single = dir + "/model.safetensors";
  const std::string index_path = dir + "/model.safetensors.index.json";
  std::map<std::string, std::string> weight_map;
  if (fs::exists(index_path)) {
    CMDISTILL_ASSIGN_OR_RETURN(auto idx_text, ReadText(index_path));
    json idx = json::parse(idx_text, nullptr, false);
    if (idx.is_discarded() || !idx.is_object() || !idx.contains("weight_map") ||
        !idx["weight_map"].is_object()) {
      return Bad(index_path, "not an index (needs an object 'weight_map')");
    }
    std::set<std::string> files;
    for (auto it = idx["weight_map"].begin(); it != idx["weight_map"].end();
         ++it) {
      if (!it.value().is_string())
        return Bad(index_path, "weight_map values must be file names");
      const std::string f = it.value().get<std::string>();
      if (f.find('/') != std::string::npos || f.empty() || f[0] == '.') {
        return Bad(index_path, absl::StrCat("shard name '", f,
                                            "' must be a plain file name"));
      }
      weight_map[it.key()] = f;
      files.insert(f);
    }
    shard_paths.assign(files.begin(), files.end());
  } else if (fs::exists(single)) {
    shard_paths.push_back("model.safetensors");
  } else {
    return absl::NotFoundError(absl::StrCat(
        dir, ": neither model.safetensors nor model.safetensors.index.json"));
  }
  for (const std::string& name : shard_paths) {
    CMDISTILL_ASSIGN_OR_RETURN(auto f, SafetensorsFile::Open(dir + "/" + name));
    for (const TensorInfo& t : f->tensors()) {
      if (!weight_map.empty()) {
        auto it = weight_map.find(t.name);
        if (it == weight_map.end() || it->second != name)
          continue;  // not this shard's
      }
      if (ck->entries_.count(t.name)) {
        return Bad(f->path(),
                   absl::StrCat("tensor '", t.name, "' appears twice"));
      }
      ck->entries_[t.name] = {f.get(), &t};
    }
    ck->files_.push_back(std::move(f));
  }
  for (const auto& [name, file] : weight_map) {
    if (!ck->entries_.count(name)) {
      return Bad(
          dir + "/" + file,
          absl::StrCat("tensor '", name, "' listed in the index is missing"));
    }
  }
  for (const auto& [name, shape] : ExpectedTensors(ck->config_)) {
    const Entry e = ck->Find(name);
    if (e.file == nullptr) {
      return Bad(dir, absl::StrCat("tensor '", name, "' is missing"));
    }
    if (e.info->shape != shape) {
      std::string got, want;
      for (auto d : e.info->shape)
        absl::StrAppend(&got, got.empty() ? "" : ", ", d);
      for (auto d : shape) absl::StrAppend(&want, want.empty() ? "" : ", ", d);
      return Bad(e.file->path(),
                 absl::StrCat("tensor '", name, "' has shape [", got,
                              "], config.json needs [", want, "]"));
    }
    const DType dt = e.info->dtype;
    if (dt != DType::kF32 && dt != DType::kBF16 && dt != DType::kF16) {
      return Bad(e.file->path(),
                 absl::StrCat("tensor '", name, "' has dtype ", DTypeName(dt),
                              "; expected F32, BF16 or F16"));
    }
  }
  return ck;
}

HfCheckpoint::Entry HfCheckpoint::Find(const std::string& name) const {
  auto it = entries_.find(name);
  return it == entries_.end() ? Entry{nullptr, nullptr} : it->second;
}

std::vector<std::string> HfCheckpoint::TensorNames() const {
  std::vector<std::string> n;
  for (const auto& [name, e] : entries_) n.push_back(name);
  return n;
}

uint64_t HfCheckpoint::total_bytes() const {
  uint64_t b = 0;
  for (const auto& [name, e] : entries_) b += e.info->end - e.info->begin;
  return b;
}

namespace {

absl::Status WriteText(const std::string& path, const std::string& text) {
  return util::WriteFileAtomically(path, text);
}

// generation_config.json and tokenizer_config.json's loading keys, where the
// folder has none.
absl::Status CompleteLoadingFiles(const std::string& dir,
                                  const ModelConfig& config,
                                  const GenerationDefaults& g) {
  const std::string gen_path = dir + "/generation_config.json";
  if (!fs::exists(gen_path)) {
    json j;
    j["bos_token_id"] = config.bos_token_id >= 0 ? json(config.bos_token_id)
                        : config.eos_token_ids.empty()
                            ? json(nullptr)
                            : json(config.eos_token_ids[0]);
    if (config.eos_token_ids.size() == 1) {
      j["eos_token_id"] = config.eos_token_ids[0];
      j["pad_token_id"] = config.eos_token_ids[0];
    } else if (config.eos_token_ids.size() > 1) {
      j["eos_token_id"] = config.eos_token_ids;
      j["pad_token_id"] = config.eos_token_ids[0];
    }
    j["do_sample"] = g.temperature > 0;
    if (g.temperature > 0) j["temperature"] = g.temperature;
    j["top_p"] = g.top_p;
    j["top_k"] = g.top_k;
    if (g.max_new_tokens > 0) j["max_new_tokens"] = g.max_new_tokens;
    j["transformers_version"] = kTransformersVersion;
    CMDISTILL_RETURN_IF_ERROR(WriteText(gen_path, j.dump(2) + "\n"));
  }
  const std::string tok_config = dir + "/tokenizer_config.json";
  if (!fs::exists(dir + "/tokenizer.json")) return absl::OkStatus();
  json t = json::object();
  if (fs::exists(tok_config)) {
    CMDISTILL_ASSIGN_OR_RETURN(auto text, ReadText(tok_config));
    t = json::parse(text, nullptr, false);
    if (!t.is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(tok_config, ": not a JSON object"));
    }
  }
  bool changed = false;
  if (!t.contains("tokenizer_class")) {
    t["tokenizer_class"] = "PreTrainedTokenizerFast";  // tokenizer.json only
    changed = true;
  }
  if (!t.contains("model_max_length")) {
    t["model_max_length"] = config.max_position_embeddings;
    changed = true;
  }
  if (!changed) return absl::OkStatus();
  return WriteText(tok_config, t.dump(2) + "\n");
}

}  // namespace

absl::Status WriteHfCheckpoint(const std::string& dir,
                               const ModelConfig& config,
                               const std::vector<TensorToWrite>& tensors,
                               const WriteOptions& options) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create '", dir, "': ", ec.message()));
  const std::string cfg = ModelConfigToJson(config);
  CMDISTILL_RETURN_IF_ERROR(
      util::WriteFileAtomically(dir + "/config.json", cfg));
  uint64_t total = 0;
  for (const auto& t : tensors) total += t.data.size();
  std::set<std::string> written;
  if (total <= options.max_shard_bytes) {
    CMDISTILL_RETURN_IF_ERROR(WriteSafetensors(dir + "/model.safetensors",
                                               tensors, {{"format", "pt"}}));
    written.insert("model.safetensors");
  } else {
    std::vector<std::vector<TensorToWrite>> shards(1);
    uint64_t in_shard = 0;
    for (const auto& t : tensors) {
      if (in_shard > 0 && in_shard + t.data.size() > options.max_shard_bytes) {
        shards.emplace_back();
        in_shard = 0;
      }
      shards.back().push_back(t);
      in_shard += t.data.size();
    }
    json index;
    index["metadata"] = {{"total_size", total}};
    index["weight_map"] = json::object();
    for (size_t i = 0; i < shards.size(); ++i) {
      const std::string name = absl::StrFormat("model-%05d-of-%05d.safetensors",
                                               i + 1, shards.size());
      CMDISTILL_RETURN_IF_ERROR(
          WriteSafetensors(dir + "/" + name, shards[i], {{"format", "pt"}}));
      for (const auto& t : shards[i]) index["weight_map"][t.name] = name;
      written.insert(name);
    }
    const std::string text = index.dump(2) + "\n";
    CMDISTILL_RETURN_IF_ERROR(
        util::WriteFileAtomically(dir + "/model.safetensors.index.json", text));
    written.insert("model.safetensors.index.json");
  }
  // Only now, with the new weights complete, remove weights of an earlier save
  // in another layout, so that the folder is never without weights and never
  // ambiguous.
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string n = entry.path().filename().string();
    if (n.rfind("model", 0) == 0 &&
        n.find(".safetensors") != std::string::npos &&
        n.find(".tmp.") == std::string::npos && !written.count(n)) {
      fs::remove(entry.path(), ec);
    }
  }
  if (!options.copy_tokenizer_from.empty() &&
      options.copy_tokenizer_from != dir) {
    for (const char* f :
         {"tokenizer.json", "tokenizer_config.json", "generation_config.json",
          "special_tokens_map.json"}) {
      const std::string src = options.copy_tokenizer_from + "/" + f;
      if (!fs::exists(src)) continue;
      CMDISTILL_ASSIGN_OR_RETURN(auto text, ReadText(src));
      CMDISTILL_RETURN_IF_ERROR(util::WriteFileAtomically(dir + "/" + f, text));
    }
  }
  return CompleteLoadingFiles(dir, config, options.generation);
}

}  // namespace cmdistill::checkpoint
