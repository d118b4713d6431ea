#include "app/tools/model_tools.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "common/checkpoint/hf_checkpoint.h"
#include "common/status/status_macros.h"
#include "common/tasks/dataset.h"
#include "common/util/files.h"
#include "nlohmann/json.hpp"

namespace cmdistill::tools {
namespace {

using json = nlohmann::json;

std::string Dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// One tokenize line: the output, or "" with `error` set.
json TokenizeOne(const tokenizer::Tokenizer& tok, const TokenizeOptions& o,
                 const json& in, std::string* error) {
  if (!o.decode) {
    if (!in.is_string()) {
      *error = "expected a JSON string";
      return {};
    }
    auto ids = tok.Encode(in.get<std::string>(), o.add_special_tokens);
    if (!ids.ok()) *error = std::string(ids.status().message());
    return ids.ok() ? json(*ids) : json();
  }
  if (!in.is_array()) {
    *error = "expected a JSON array of ids";
    return {};
  }
  std::vector<int32_t> ids;
  for (const json& x : in) {
    if (!x.is_number_integer()) {
      *error = "expected an array of integer ids";
      return {};
    }
    ids.push_back(x.get<int32_t>());
  }
  auto text = tok.Decode(ids, o.skip_special_tokens);
  if (!text.ok()) *error = std::string(text.status().message());
  return text.ok() ? json(*text) : json();
}

// {"ids": [...]} with every id in [0, V); "" or the reason.
std::string ParseIds(const json& in, int64_t V, std::vector<int32_t>* ids) {
  if (!in.is_object() || !in.contains("ids") || !in["ids"].is_array() ||
      in["ids"].empty()) {
    return "expected {\"ids\": [at least one id]}";
  }
  for (const json& x : in["ids"]) {
    if (!x.is_number_integer()) return "ids must be integers";
    const int64_t id = x.get<int64_t>();
    if (id < 0 || id >= V)
      return "token id " + std::to_string(id) + " is outside the vocabulary";
    ids->push_back(static_cast<int32_t>(id));
  }
  return "";
}

// The completion's text; ids the tokenizer does not have (padded
// embeddings) show as U+FFFD rather than failing the sample.
absl::StatusOr<std::string> ShownText(const tokenizer::Tokenizer& tok,
                                      const model::GenerationResult& r) {
  std::vector<int32_t> body = r.tokens;
  if (r.finished && !body.empty()) body.pop_back();
  std::string shown;
  std::vector<int32_t> run;
  auto flush = [&]() -> absl::Status {
    CMDISTILL_ASSIGN_OR_RETURN(auto piece, tok.Decode(run));
    shown += piece;
    run.clear();
    return absl::OkStatus();
  };
  for (int32_t id : body) {
    if (tok.IdToToken(id).empty()) {
      CMDISTILL_RETURN_IF_ERROR(flush());
      shown += "\xEF\xBF\xBD";
    } else {
      run.push_back(id);
    }
  }
  CMDISTILL_RETURN_IF_ERROR(flush());
  return shown;
}

}  // namespace

int64_t TokenizeLines(const tokenizer::Tokenizer& tok, const TokenizeOptions& o,
                      std::istream& in, std::ostream& out, std::ostream& err) {
  std::string line;
  int64_t line_no = 0, bad = 0;
  while (std::getline(in, line)) {
    ++line_no;
    std::string error;
    json result =
        TokenizeOne(tok, o, json::parse(line, nullptr, false), &error);
    if (!error.empty()) {
      ++bad;
      err << "cmdistill tokenize: line " << line_no << ": " << error << "\n";
      result = {{"error", error}};
    }
    out << Dump(result) << "\n";
  }
  return bad;
}

absl::StatusOr<int64_t> ScoreLines(model::LanguageModel& m,
                                   int64_t batch_tokens, std::istream& in,
                                   std::ostream& out, std::ostream& err) {
  const int64_t V = m.config().vocab_size;
  std::vector<std::vector<int32_t>> good;
  std::vector<std::string> errors;
  std::string line;
  while (std::getline(in, line)) {
    std::vector<int32_t> ids;
    errors.push_back(ParseIds(json::parse(line, nullptr, false), V, &ids));
    if (errors.back().empty()) good.push_back(std::move(ids));
  }
  CMDISTILL_ASSIGN_OR_RETURN(auto scores, m.TokenLogprobs(good, batch_tokens));
  size_t k = 0;
  int64_t bad = 0;
  for (size_t i = 0; i < errors.size(); ++i) {
    if (!errors[i].empty()) {
      ++bad;
      err << "cmdistill score: line " << i + 1 << ": " << errors[i] << "\n";
      out << Dump({{"error", errors[i]}}) << "\n";
    } else {
      out << Dump({{"logprobs", scores[k++]}}) << "\n";
    }
  }
  return bad;
}

absl::Status GenerateText(model::LanguageModel& m,
                          const tokenizer::Tokenizer& tok,
                          const std::string& prompt, int64_t samples,
                          model::SamplingOptions o, bool as_json,
                          std::ostream& out) {
  for (int64_t e : m.config().eos_token_ids)
    o.stop_token_ids.push_back(static_cast<int32_t>(e));
  if (tok.eos_id() >= 0) o.stop_token_ids.push_back(tok.eos_id());
  auto ids = tok.Encode(prompt);
  if (!ids.ok() || ids->empty())
    return absl::InvalidArgumentError(
        "the prompt must be non-empty UTF-8 text");
  CMDISTILL_ASSIGN_OR_RETURN(auto results,
                             m.Generate(std::vector<std::vector<int32_t>>(
                                            static_cast<size_t>(samples), *ids),
                                        o));
  for (const auto& r : results) {
    CMDISTILL_ASSIGN_OR_RETURN(auto text, ShownText(tok, r));
    if (as_json) {
      out << Dump({{"text", text},
                   {"ids", r.tokens},
                   {"logprobs", r.logprobs},
                   {"finished", r.finished}})
          << "\n";
    } else {
      out << text << "\n";
      if (samples > 1) out << "----\n";
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<InitializedModel> InitModelFolder(
    const std::string& config_json, const std::string& tokenizer_dir,
    uint64_t seed, const std::string& dtype, const std::string& out_dir) {
  CMDISTILL_ASSIGN_OR_RETURN(auto text, util::ReadFile(config_json));
  CMDISTILL_ASSIGN_OR_RETURN(auto cfg,
                             checkpoint::ParseModelConfig(text, config_json));
  if (!tokenizer_dir.empty()) {
    CMDISTILL_ASSIGN_OR_RETURN(auto tok,
                               tokenizer::Tokenizer::Load(tokenizer_dir));
    if (tok->vocab_size() > cfg.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("the tokenizer has ", tok->vocab_size(),
                       " ids but config.json vocab_size is ", cfg.vocab_size));
    }
  } else {
    if (cfg.vocab_size < 257) {
      return absl::InvalidArgumentError(
          "a generated byte-level tokenizer needs vocab_size >= 257");
    }
    if (cfg.eos_token_ids.empty()) cfg.eos_token_ids = {256};
  }
  CMDISTILL_ASSIGN_OR_RETURN(
      auto m, model::LanguageModel::InitRandom(cfg, seed, "cpu", dtype));
  checkpoint::WriteOptions wo;
  wo.copy_tokenizer_from = tokenizer_dir;
  CMDISTILL_RETURN_IF_ERROR(m->Save(out_dir, wo));
  if (tokenizer_dir.empty()) {
    CMDISTILL_RETURN_IF_ERROR(util::WriteFileAtomically(
        out_dir + "/tokenizer.json",
        tokenizer::MakeByteLevelTokenizerJson({}, {"<|endoftext|>"})));
    CMDISTILL_RETURN_IF_ERROR(util::WriteFileAtomically(
        out_dir + "/tokenizer_config.json",
        absl::StrCat(
            R"({"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", )",
            R"("clean_up_tokenization_spaces": false, )",
            R"("tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": )",
            cfg.max_position_embeddings, "}\n")));
  }
  return InitializedModel{m->num_parameters(), cfg.model_type};
}

namespace {

// One grade line: the output object, or `error` set.
json GradeOne(const std::string& line, tasks::Strictness strictness,
              std::string* error, bool* correct) {
  json in = json::parse(line, nullptr, false);
  if (in.is_discarded() || !in.is_object()) {
    *error = "not a JSON object";
  } else if (!in.contains("response") || !in["response"].is_string()) {
    *error = "missing string field 'response'";
  } else if (!in.contains("gold") ||
             !(in["gold"].is_string() || in["gold"].is_number())) {
    *error = "missing field 'gold'";
  }
  if (!error->empty())
    return {{"correct", false}, {"extracted", ""}, {"error", *error}};
  const std::string gold = in["gold"].is_string()
                               ? in["gold"].get<std::string>()
                               : in["gold"].dump();
  const tasks::Grade g =
      tasks::GradeResponse(in["response"].get<std::string>(), gold, strictness);
  *correct = g.correct;
  return {{"correct", g.correct}, {"extracted", g.extracted}};
}

}  // namespace

int64_t GradeLines(tasks::Strictness strictness, std::istream& in,
                   std::ostream& out, std::ostream& err) {
  std::string line;
  int64_t line_no = 0, bad = 0, correct = 0, total = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::string error;
    bool ok = false;
    const json result = GradeOne(line, strictness, &error, &ok);
    if (!error.empty()) {
      ++bad;
      err << "cmdistill grade: line " << line_no << ": " << error << "\n";
    }
    correct += ok ? 1 : 0;
    ++total;
    out << Dump(result) << "\n";
  }
  err << "graded " << total << " line(s): " << correct << " correct, " << bad
      << " malformed\n";
  return bad;
}

absl::StatusOr<tasks::GeneratedTask> WriteSyntheticTask(
    const tasks::DatagenOptions& o, size_t train, size_t test,
    const std::string& dir) {
  CMDISTILL_ASSIGN_OR_RETURN(auto task, tasks::GenerateTask(o, train, test));
  for (const auto& [name, examples] : {std::pair{"train.jsonl", &task.train},
                                       std::pair{"test.jsonl", &task.test}}) {
    CMDISTILL_RETURN_IF_ERROR(util::WriteFileAtomically(
        dir + "/" + name, tasks::ToGsm8kJsonl(*examples)));
  }
  return task;
}

}  // namespace cmdistill::tools
