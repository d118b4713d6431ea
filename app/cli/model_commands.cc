// `cmdistill tokenize`, `score`, `generate` and `init-model`: the model and
// tokenizer libraries from the command line (for people and for checks; the
// formats are stable).
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "app/cli/commands.h"
#include "app/cli/flags.h"
#include "app/cli/run_config_flags.h"
#include "app/tools/model_tools.h"
#include "common/checkpoint/hf_checkpoint.h"
#include "common/model/language_model.h"
#include "common/tokenizer/tokenizer.h"

namespace cmdistill::cli {
namespace {

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
  tools::TokenizeOptions o;
  o.decode = flags.GetBool("decode");
  o.add_special_tokens = flags.GetBool("add-special-tokens");
  o.skip_special_tokens = flags.GetBool("skip-special-tokens");
  return tools::TokenizeLines(**tok, o, std::cin, io.out, io.err) > 0
             ? kExitFailure
             : kExitOk;
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
  auto bad = tools::ScoreLines(**model, batch_tokens, std::cin, io.out, io.err);
  if (!bad.ok()) return Fail(io, "score", bad.status());
  return *bad > 0 ? kExitFailure : kExitOk;
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
  if (auto ids = (*tok)->Encode(flags.Get("prompt"));
      !ids.ok() || ids->empty()) {
    io.err << "cmdistill generate: the prompt must be non-empty UTF-8 text\n";
    return kExitUsage;
  }
  const absl::Status s =
      tools::GenerateText(**model, **tok, flags.Get("prompt"), samples, o,
                          flags.GetBool("json"), io.out);
  return s.ok() ? kExitOk : Fail(io, "generate", s);
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
  auto m = tools::InitModelFolder(
      flags.Get("config"),
      flags.IsSet("tokenizer") ? flags.Get("tokenizer") : "",
      static_cast<uint64_t>(seed), flags.Get("dtype"), flags.Get("out"));
  if (!m.ok()) return Fail(io, "init-model", m.status());
  io.out << "wrote a " << m->parameters << "-parameter " << m->model_type
         << " model to " << flags.Get("out") << "\n";
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
