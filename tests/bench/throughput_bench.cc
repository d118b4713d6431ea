// `cmdistill bench decode/score/train` for the LibTorch subset (no cmdistill
// binary there): the same measurements (app/bench/throughput.h) as one
// JSON object, for scripts/gpu-check.sh.
//
// usage: throughput_bench [--shape small|medium|qwen05b | --model DIR]
//        [--device D] [--dtype float32|bfloat16] [--batches 1,8,64]
//        [--new-tokens 128] [--prompt-len 18] [--score-batch 64]
//        [--score-len 256] [--train-batch 8] [--train-len 128] [--warmup 1]
//        [--repeats 3] [--peak-tflops 790] [--save DIR]
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "app/bench/throughput.h"

namespace cmdistill {
namespace {

std::string Json(const bench::Rate& s) {
  return absl::StrFormat(R"({"min": %.1f, "median": %.1f, "max": %.1f})", s.min,
                         s.median, s.max);
}

int Fail(const std::string& what) {
  std::fprintf(stderr, "throughput_bench: %s\n", what.c_str());
  return 2;
}

int Main(int argc, char** argv) {
  std::map<std::string, std::string> a = {
      {"shape", "small"},    {"device", "cpu"},     {"dtype", "float32"},
      {"batches", "1,8,64"}, {"new-tokens", "128"}, {"prompt-len", "18"},
      {"score-batch", "64"}, {"score-len", "256"},  {"train-batch", "8"},
      {"train-len", "128"},  {"warmup", "1"},       {"repeats", "3"},
      {"peak-tflops", "0"},  {"model", ""},         {"save", ""}};
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k.rfind("--", 0) != 0 || i + 1 >= argc || !a.count(k.substr(2)))
      return Fail("unknown or incomplete flag '" + k + "' (see the header)");
    a[k.substr(2)] = argv[++i];
  }
  std::map<std::string, int64_t> n;
  for (const char* k : {"new-tokens", "prompt-len", "score-batch", "score-len",
                        "train-batch", "train-len", "warmup", "repeats"}) {
    if (!absl::SimpleAtoi(a[k], &n[k]) || n[k] < 0)
      return Fail(std::string("--") + k + " must be a count");
  }
  double peak = 0;
  if (!absl::SimpleAtod(a["peak-tflops"], &peak))
    return Fail("--peak-tflops must be a number");
  auto batches = bench::ParseCounts(a["batches"], "batches");
  if (!batches.ok()) return Fail(std::string(batches.status().message()));
  std::unique_ptr<model::LanguageModel> m;
  if (!a["model"].empty()) {
    auto l = model::LanguageModel::Load(a["model"], a["device"], a["dtype"]);
    if (!l.ok()) return Fail(std::string(l.status().message()));
    m = *std::move(l);
  } else {
    auto shape = bench::Shape(a["shape"]);
    if (!shape.ok()) return Fail(std::string(shape.status().message()));
    auto r =
        model::LanguageModel::InitRandom(*shape, 1, a["device"], a["dtype"]);
    if (!r.ok()) return Fail(std::string(r.status().message()));
    m = *std::move(r);
  }
  if (!a["save"].empty()) {  // the same weights for the eager comparison
    if (auto s = m->Save(a["save"]); !s.ok())
      return Fail(std::string(s.message()));
  }
  const bench::Repeats rep{static_cast<int>(n["warmup"]),
                           static_cast<int>(n["repeats"])};
  std::vector<std::string> parts = {absl::StrFormat(
      R"("device": "%s", "dtype": "%s", "parameters": %d, "vocab": %d)",
      m->device_name(), m->dtype_name(), m->num_parameters(),
      m->config().vocab_size)};
  std::vector<std::string> decode;
  for (int64_t B : *batches) {
    auto r = bench::Decode(*m, B, n["prompt-len"], n["new-tokens"], false, rep);
    if (!r.ok()) return Fail(std::string(r.status().message()));
    decode.push_back(absl::StrFormat(R"("%d": %s)", B, Json(*r)));
  }
  parts.push_back(absl::StrFormat(R"("decode_tokens_per_s": {%s})",
                                  absl::StrJoin(decode, ", ")));
  auto score = bench::Score(*m, n["score-batch"], n["score-len"], rep);
  if (!score.ok()) return Fail(std::string(score.status().message()));
  parts.push_back(absl::StrFormat(R"("score_tokens_per_s": %s)", Json(*score)));
  auto train = bench::Train(*m, n["train-batch"], n["train-len"], rep);
  if (!train.ok()) return Fail(std::string(train.status().message()));
  parts.push_back(
      absl::StrFormat(R"("train_tokens_per_s": %s, "train_model_tflops": %.2f)",
                      Json(train->tokens), train->model_flops / 1e12));
  if (peak > 0) {
    parts.push_back(absl::StrFormat(R"("train_mfu": %.4f)",
                                    train->model_flops / (peak * 1e12)));
  }
  std::printf("{%s}\n", absl::StrJoin(parts, ", ").c_str());
  return 0;
}

}  // namespace
}  // namespace cmdistill

int main(int argc, char** argv) { return cmdistill::Main(argc, argv); }
