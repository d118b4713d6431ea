// `cmdistill tokenize`, `score`, `generate` and `init-model`: the model and
// tokenizer libraries from the command line (for people and for checks; the
// formats are stable).
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "common/checkpoint/hf_checkpoint.h"
#include "common/model/language_model.h"
#include "common/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"
#include "services/cli/commands.h"
#include "services/cli/flags.h"
#include "services/cli/run_config_flags.h"

namespace cmdistill::cli {
namespace {

using json = nlohmann::json;

std::string Dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

int RunTokenize(const std::vector<std::string>& args, Io io) {
  FlagSet flags(
      "cmdistill tokenize",
      "--tokenizer PATH [--add-special-tokens] [--decode] < in > out",
      "Encodes (or decodes) JSON Lines with a Hugging Face tokenizer.json.\n"
      "encode: each input line one JSON string -> one JSON array of ids\n"
      "decode: each input line one JSON array of ids -> one JSON string\n"
      "No special tokens are added unless --add-special-tokens is given. A bad "
      "line\n"
      "gets {\"error\": \"...\"} on its output line and the exit code is 1.");
  flags.AddString("tokenizer", "PATH",
                  "tokenizer.json, or a model folder holding one");
  flags.AddBool("add-special-tokens",
                "add the post-processor's special tokens (encode)");
  flags.AddBool("skip-special-tokens", "leave special tokens out (decode)");
  flags.AddBool("decode", "decode ids to text instead of encoding");
  if (auto code = ParseOrExit(&flags, args, io)) return *code;
  if (!flags.IsSet("tokenizer")) {
    io.err << "cmdistill tokenize: --tokenizer PATH is required\n";
    return kExitUsage;
  }
  auto tok = tokenizer::Tokenizer::Load(flags.Get("tokenizer"));
  if (!tok.ok()) {
    return Fail(io, "tokenize", tok.status());
  }
  const bool decode = flags.GetBool("decode");
  std::string line;
  int64_t line_no = 0, bad = 0;
  while (std::getline(std::cin, line)) {
    ++line_no;
    json in = json::parse(line, nullptr, false);
    std::string error;
    json out;
    if (decode) {
      std::vector<int32_t> ids;
      if (in.is_array()) {
        for (const json& x : in) {
          if (!x.is_number_integer()) {
            error = "expected an array of integer ids";
            break;
          }
          ids.push_back(x.get<int32_t>());
        }
      } else {
        error = "expected a JSON array of ids";
      }
      if (error.empty()) {
        auto text = (*tok)->Decode(ids, flags.GetBool("skip-special-tokens"));
        if (text.ok()) {
          out = *text;
        } else {
          error = std::string(text.status().message());
        }
      }
    } else if (!in.is_string()) {
      error = "expected a JSON string";
    } else {
      auto ids = (*tok)->Encode(in.get<std::string>(),
                                flags.GetBool("add-special-tokens"));
      if (ids.ok()) {
        out = *ids;
      } else {
        error = std::string(ids.status().message());
      }
    }
    if (!error.empty()) {
      ++bad;
      io.err << "cmdistill tokenize: line " << line_no << ": " << error << "\n";
      out = {{"error", error}};
    }
    io.out << Dump(out) << "\n";
  }
  return bad > 0 ? kExitFailure : kExitOk;
}

void AddDeviceFlags(FlagSet* flags) {
  flags->AddString("device", "D", "auto, cpu, cuda or cuda:N", "auto");
  flags->AddString("dtype", "T", "float32 or bfloat16", "float32");
}

int RunScore(const std::vector<std::string>& args, Io io) {
  FlagSet flags("cmdistill score",
                "--model DIR [--device D] [--dtype T] < in > out",
                "Per-token log-probabilities. Each input line {\"ids\": [...]} "
                "(at least one id);\n"
                "each output line {\"logprobs\": [...]} with len(ids) - 1 "
                "values, value t-1\n"
                "being log p(ids[t] | ids[<t]). A bad line gets {\"error\": "
                "\"...\"} and exit 1.");
  flags.AddString("model", "DIR", "Hugging Face model folder");
  AddDeviceFlags(&flags);
  flags.AddString("batch-tokens", "N", "padded tokens per forward pass",
                  "8192");
  if (auto code = ParseOrExit(&flags, args, io)) return *code;
  if (!flags.IsSet("model")) {
    io.err << "cmdistill score: --model DIR is required\n";
    return kExitUsage;
  }
  int64_t batch_tokens = 0;
  if (!ParseInt64(flags, "batch-tokens", &batch_tokens, io)) return kExitUsage;
  auto model = model::LanguageModel::Load(
      flags.Get("model"), flags.Get("device"), flags.Get("dtype"));
  if (!model.ok()) {
    return Fail(io, "score", model.status());
  }
  const int64_t V = (*model)->config().vocab_size;
  std::vector<std::vector<int32_t>> seqs;
  std::vector<std::string> errors;
  std::string line;
  while (std::getline(std::cin, line)) {
    json in = json::parse(line, nullptr, false);
    std::vector<int32_t> ids;
    std::string error;
    if (!in.is_object() || !in.contains("ids") || !in["ids"].is_array() ||
        in["ids"].empty()) {
      error = "expected {\"ids\": [at least one id]}";
    } else {
      for (const json& x : in["ids"]) {
        if (!x.is_number_integer()) {
          error = "ids must be integers";
          break;
        }
        const int64_t id = x.get<int64_t>();
        if (id < 0 || id >= V) {
          error =
              "token id " + std::to_string(id) + " is outside the vocabulary";
          break;
        }
        ids.push_back(static_cast<int32_t>(id));
      }
    }
    seqs.push_back(error.empty() ? ids : std::vector<int32_t>{});
    errors.push_back(error);
  }
  std::vector<std::vector<int32_t>> good;
  for (size_t i = 0; i < seqs.size(); ++i) {
    if (errors[i].empty()) good.push_back(seqs[i]);
  }
  auto scores = (*model)->TokenLogprobs(good, batch_tokens);
  if (!scores.ok()) {
    return Fail(io, "score", scores.status());
  }
  size_t k = 0;
  int bad = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    if (!errors[i].empty()) {
      ++bad;
      io.err << "cmdistill score: line " << i + 1 << ": " << errors[i] << "\n";
      io.out << Dump({{"error", errors[i]}}) << "\n";
    } else {
      io.out << Dump({{"logprobs", (*scores)[k++]}}) << "\n";
    }
  }
  return bad > 0 ? kExitFailure : kExitOk;
}

int RunGenerate(const std::vector<std::string>& args, Io io) {
  FlagSet flags("cmdistill generate",
                "--model DIR --prompt TEXT [sampling flags]",
                "Samples completions of a text prompt (the model folder's "
                "tokenizer.json encodes\n"
                "it; generation stops at the model's end-of-sequence tokens).");
  flags.AddString("model", "DIR",
                  "Hugging Face model folder with tokenizer.json");
  flags.AddString("prompt", "TEXT", "the prompt text");
  AddDeviceFlags(&flags);
  flags.AddString("max-new-tokens", "N", "tokens to generate at most", "128");
  flags.AddString("temperature", "T", "sampling temperature; 0 = greedy",
                  "1.0");
  flags.AddString("top-p", "P", "nucleus sampling mass", "1.0");
  flags.AddString("top-k", "K",
                  "sample among the K most likely tokens; 0 = off", "0");
  flags.AddString("num-samples", "N", "completions to sample", "1");
  flags.AddString("seed", "S", "random seed", "0");
  flags.AddBool(
      "json", "print one JSON line per sample (text, ids, logprobs, finished)");
  if (auto code = ParseOrExit(&flags, args, io)) return *code;
  if (!flags.IsSet("model") || !flags.IsSet("prompt")) {
    io.err
        << "cmdistill generate: --model DIR and --prompt TEXT are required\n";
    return kExitUsage;
  }
  model::SamplingOptions o;
  int64_t samples = 0, seed = 0;
  if (!ParseInt64(flags, "max-new-tokens", &o.max_new_tokens, io) ||
      !ParseDouble(flags, "temperature", &o.temperature, io) ||
      !ParseDouble(flags, "top-p", &o.top_p, io) ||
      !ParseInt64(flags, "top-k", &o.top_k, io) ||
      !ParseInt64(flags, "num-samples", &samples, io) ||
      !ParseInt64(flags, "seed", &seed, io)) {
    return kExitUsage;
  }
  if (samples < 1 || samples > 1024) {
    io.err << "--num-samples must be in [1, 1024]\n";
    return kExitUsage;
  }
  o.seed = static_cast<uint64_t>(seed);
  auto tok = tokenizer::Tokenizer::Load(flags.Get("model"));
  if (!tok.ok()) {
    return Fail(io, "generate", tok.status());
  }
  auto model = model::LanguageModel::Load(
      flags.Get("model"), flags.Get("device"), flags.Get("dtype"));
  if (!model.ok()) {
    return Fail(io, "generate", model.status());
  }
  for (int64_t e : (*model)->config().eos_token_ids) {
    o.stop_token_ids.push_back(static_cast<int32_t>(e));
  }
  if ((*tok)->eos_id() >= 0) o.stop_token_ids.push_back((*tok)->eos_id());
  auto ids = (*tok)->Encode(flags.Get("prompt"));
  if (!ids.ok() || ids->empty()) {
    io.err << "cmdistill generate: the prompt must be non-empty UTF-8 text\n";
    return kExitUsage;
  }
  auto out = (*model)->Generate(
      std::vector<std::vector<int32_t>>(static_cast<size_t>(samples), *ids), o);
  if (!out.ok()) {
    return Fail(io, "generate", out.status());
  }
  for (const auto& r : *out) {
    std::vector<int32_t> body = r.tokens;
    if (r.finished && !body.empty()) body.pop_back();
    // Models often have more ids than their tokenizer (padded embeddings); an
    // id with no token shows as U+FFFD rather than failing the whole sample.
    std::string shown;
    std::vector<int32_t> run;
    auto flush = [&]() -> absl::Status {
      auto piece = (*tok)->Decode(run);
      if (!piece.ok()) return piece.status();
      shown += *piece;
      run.clear();
      return absl::OkStatus();
    };
    for (int32_t id : body) {
      if ((*tok)->IdToToken(id).empty()) {
        if (auto s = flush(); !s.ok()) return kExitFailure;
        shown += "\xEF\xBF\xBD";
      } else {
        run.push_back(id);
      }
    }
    if (auto s = flush(); !s.ok()) {
      return Fail(io, "generate", s);
    }
    const std::string* text = &shown;
    if (flags.GetBool("json")) {
      io.out << Dump({{"text", *text},
                      {"ids", r.tokens},
                      {"logprobs", r.logprobs},
                      {"finished", r.finished}})
             << "\n";
    } else {
      io.out << *text << "\n";
      if (samples > 1) io.out << "----\n";
    }
  }
  return kExitOk;
}

int RunInitModel(const std::vector<std::string>& args, Io io) {
  FlagSet flags("cmdistill init-model",
                "--config config.json --out DIR [--seed N] [--tokenizer PATH]",
                "Writes a randomly initialised model (Hugging Face folder) for "
                "the architecture of a\n"
                "config.json. The tokenizer files are copied from --tokenizer "
                "(a folder); without it a\n"
                "byte-level tokenizer (256 byte tokens + <|endoftext|>) is "
                "generated, which needs\n"
                "vocab_size >= 257.");
  flags.AddString("config", "FILE", "Hugging Face config.json");
  flags.AddString("out", "DIR", "output folder");
  flags.AddString("seed", "N", "random seed", "0");
  flags.AddString("tokenizer", "DIR",
                  "folder with tokenizer.json (+ tokenizer_config.json)");
  flags.AddString("dtype", "T", "float32 or bfloat16", "float32");
  if (auto code = ParseOrExit(&flags, args, io)) return *code;
  if (!flags.IsSet("config") || !flags.IsSet("out")) {
    io.err
        << "cmdistill init-model: --config FILE and --out DIR are required\n";
    return kExitUsage;
  }
  int64_t seed = 0;
  if (!ParseInt64(flags, "seed", &seed, io)) return kExitUsage;
  std::ifstream in(flags.Get("config"));
  if (!in) {
    io.err << "cmdistill init-model: cannot open " << flags.Get("config")
           << "\n";
    return kExitFailure;
  }
  std::string text((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  auto cfg = checkpoint::ParseModelConfig(text, flags.Get("config"));
  if (!cfg.ok()) {
    return Fail(io, "init-model", cfg.status());
  }
  std::string generated;
  if (flags.IsSet("tokenizer")) {
    auto tok = tokenizer::Tokenizer::Load(flags.Get("tokenizer"));
    if (!tok.ok()) {
      return Fail(io, "init-model", tok.status());
    }
    if ((*tok)->vocab_size() > cfg->vocab_size) {
      io.err << "cmdistill init-model: the tokenizer has "
             << (*tok)->vocab_size() << " ids but config.json vocab_size is "
             << cfg->vocab_size << "\n";
      return kExitFailure;
    }
  } else {
    if (cfg->vocab_size < 257) {
      io.err << "cmdistill init-model: a generated byte-level tokenizer needs "
                "vocab_size >= 257\n";
      return kExitFailure;
    }
    generated = tokenizer::MakeByteLevelTokenizerJson({}, {"<|endoftext|>"});
    if (cfg->eos_token_ids.empty()) cfg->eos_token_ids = {256};
  }
  auto m = model::LanguageModel::InitRandom(*cfg, static_cast<uint64_t>(seed),
                                            "cpu", flags.Get("dtype"));
  if (!m.ok()) {
    return Fail(io, "init-model", m.status());
  }
  checkpoint::WriteOptions wo;
  if (flags.IsSet("tokenizer")) wo.copy_tokenizer_from = flags.Get("tokenizer");
  if (auto s = (*m)->Save(flags.Get("out"), wo); !s.ok()) {
    return Fail(io, "init-model", s);
  }
  if (!generated.empty()) {
    std::ofstream(flags.Get("out") + "/tokenizer.json") << generated;
    std::ofstream(flags.Get("out") + "/tokenizer_config.json")
        << R"({"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", )"
        << R"("clean_up_tokenization_spaces": false, )"
        << R"("tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": )"
        << cfg->max_position_embeddings << "}\n";
  }
  io.out << "wrote a " << (*m)->num_parameters() << "-parameter "
         << cfg->model_type << " model to " << flags.Get("out") << "\n";
  return kExitOk;
}

}  // namespace

void AddModelCommands(std::vector<Command>* commands) {
  commands->push_back({"tokenize",
                       "encode or decode JSON Lines with a tokenizer.json",
                       RunTokenize});
  commands->push_back(
      {"score", "per-token log-probabilities of id sequences (JSON Lines)",
       RunScore});
  commands->push_back(
      {"generate", "sample completions of a prompt", RunGenerate});
  commands->push_back(
      {"init-model",
       "write a randomly initialised model in Hugging Face format",
       RunInitModel});
}

}  // namespace cmdistill::cli
