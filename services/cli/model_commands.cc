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
    io.err << "cmdistill tokenize: " << tok.status().message() << "\n";
    return kExitFailure;
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

}  // namespace

void AddModelCommands(std::vector<Command>* commands) {
  commands->push_back({"tokenize",
                       "encode or decode JSON Lines with a tokenizer.json",
                       RunTokenize});
}

}  // namespace cmdistill::cli
