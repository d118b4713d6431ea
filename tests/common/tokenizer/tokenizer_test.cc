// The tokenizer on small generated tokenizer.json files whose answers can be
// worked by hand.
#include "common/tokenizer/tokenizer.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/status_matchers.h"

namespace cmdistill::tokenizer {
namespace {

using ::cmdistill::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::unique_ptr<Tokenizer> Make(
    const std::vector<std::string>& merges,
    const std::vector<std::string>& special = {"<|eos|>"},
    const std::string& config = "") {
  auto t = Tokenizer::FromJson(MakeByteLevelTokenizerJson(merges, special),
                               config, "test");
  EXPECT_OK(t.status());
  return *std::move(t);
}

// Found by fuzzing: structurally wrong JSON (a Sequence normalizer without
// its list, a post-processor template without special_tokens, values of the
// wrong type) is an INVALID_ARGUMENT naming the file, never a crash.
TEST(Tokenizer, MalformedStructureIsAnErrorNotACrash) {
  using json = nlohmann::json;
  const std::string good = MakeByteLevelTokenizerJson({}, {});
  for (const auto& [key, value] : std::vector<std::pair<std::string, json>>{
           {"normalizer", {{"type", "Sequence"}}},
           {"pre_tokenizer", {{"type", "Sequence"}}},
           {"post_processor",
            {{"type", "TemplateProcessing"},
             {"single", {{{"SpecialToken", {{"id", "x"}}}}}}}},
           {"post_processor", {{"type", "Sequence"}}},
           {"added_tokens", {{{"id", "seven"}, {"content", "<x>"}}}},
           {"normalizer", 5},
           {"decoder", "ByteLevel"}}) {
    json j = json::parse(good);
    j[key] = value;
    auto t = Tokenizer::FromJson(j.dump(), "", "t.json");
    EXPECT_FALSE(t.ok()) << key << " = " << value.dump();
    if (!t.ok()) {
      EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_THAT(t.status().message(), ::testing::HasSubstr("t.json"));
    }
  }
}

TEST(Tokenizer, TrainedMergesFollowPairFrequency) {
  // Pieces (Qwen pattern): "aaab", " aaab" x2, " ab" (space = "Ġ").
  // Round 1: a-a 6, a-b 4, Ġ-a 3 -> "a a". Round 2: a-b 4 beats aa-a 3.
  // Round 3: aa-ab 3. Round 4: Ġ-aaab 2. Then every pair occurs once: stop.
  ASSERT_OK_AND_ASSIGN(auto merges,
                       TrainByteLevelMerges({"aaab aaab aaab ab"}, 10));
  EXPECT_THAT(merges, ElementsAre("a a", "a b", "aa ab", "Ġ aaab"));
  // The trained tokenizer encodes the corpus in fewer tokens and decodes it
  // back unchanged.
  auto t = Make(merges);
  ASSERT_OK_AND_ASSIGN(auto ids, t->Encode("aaab aaab aaab ab"));
  EXPECT_LT(ids.size(), 17u);
  ASSERT_OK_AND_ASSIGN(auto text, t->Decode(ids));
  EXPECT_EQ(text, "aaab aaab aaab ab");
  EXPECT_THAT(TrainByteLevelMerges({"ok", "\xff"}, 4),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(Tokenizer, BytesOnlyAndMergesInRankOrder) {
  auto bytes = Make({});
  // No merges: one id per byte (ids 0..255 in GPT-2's byte order: 'a' is byte
  // 97 -> id 64).
  ASSERT_OK_AND_ASSIGN(auto ids, bytes->Encode("ab"));
  EXPECT_EQ(ids.size(), 2u);
  // "a b" (rank 0) then "ab c" (rank 1); "b c" (rank 2) never applies once ab
  // is formed.
  auto t = Make({"a b", "ab c", "b c"});
  ASSERT_OK_AND_ASSIGN(auto abc, t->Encode("abc"));
  ASSERT_EQ(abc.size(), 1u);
  EXPECT_EQ(t->IdToToken(abc[0]), "abc");
  // "bc" alone merges with rank 2.
  ASSERT_OK_AND_ASSIGN(auto bc, t->Encode("bc"));
  EXPECT_THAT(bc, ElementsAre(t->TokenToId("bc")));
  // Leftmost first on equal ranks: "aaa" with "a a" gives "aa" + "a".
  auto a = Make({"a a"});
  ASSERT_OK_AND_ASSIGN(auto aaa, a->Encode("aaa"));
  EXPECT_THAT(aaa, ElementsAre(a->TokenToId("aa"), a->TokenToId("a")));
  // Spaces are byte-level 'Ġ': " a" is one piece, two symbols.
  ASSERT_OK_AND_ASSIGN(auto sp, a->Encode(" a"));
  EXPECT_THAT(sp, ElementsAre(a->TokenToId("\xc4\xa0"), a->TokenToId("a")));
}

TEST(Tokenizer, AddedTokensAreSplitOutAndDecodeRoundTrips) {
  auto t = Make({"a b"}, {"<|eos|>", "<|im_start|>"});
  ASSERT_OK_AND_ASSIGN(auto ids, t->Encode("ab<|eos|>ab<|im_start|>"));
  const int32_t eos = t->TokenToId("<|eos|>"),
                start = t->TokenToId("<|im_start|>");
  EXPECT_THAT(ids,
              ElementsAre(t->TokenToId("ab"), eos, t->TokenToId("ab"), start));
  EXPECT_TRUE(t->IsSpecial(eos));
  ASSERT_OK_AND_ASSIGN(std::string text, t->Decode(ids));
  EXPECT_EQ(text, "ab<|eos|>ab<|im_start|>");
  ASSERT_OK_AND_ASSIGN(std::string plain,
                       t->Decode(ids, /*skip_special_tokens=*/true));
  EXPECT_EQ(plain, "abab");
  // A long round trip through every kind of character.
  const std::string s = "Zoë: 12345 — 你好\n\t😀 it's";
  ASSERT_OK_AND_ASSIGN(auto sids, t->Encode(s));
  ASSERT_OK_AND_ASSIGN(std::string back, t->Decode(sids));
  EXPECT_EQ(back, s);
}

TEST(Tokenizer, InvalidInputAndIdsAreRefused) {
  auto t = Make({});
  EXPECT_THAT(t->Encode("ok \xff bad"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("invalid UTF-8 at byte 3")));
  EXPECT_THAT(t->Encode("\xe4\xbd"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(t->Decode({1, 100000}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("id 100000 at position 1")));
  EXPECT_THAT(t->Decode({-1}), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(Tokenizer, InvalidByteSequencesDecodeToReplacementCharacters) {
  EXPECT_EQ(LossyUtf8("a\xff"
                      "b"),
            "a\xEF\xBF\xBD"
            "b");
  // A truncated 3-byte sequence is one maximal subpart: one U+FFFD.
  EXPECT_EQ(LossyUtf8("\xe4\xbd"
                      "x"),
            "\xEF\xBF\xBD"
            "x");
  // An over-long encoding and a surrogate: each byte is its own subpart.
  EXPECT_EQ(LossyUtf8("\xc0\xaf"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(LossyUtf8("\xed\xa0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(LossyUtf8("\xf0\x9f\x98\x80"), "\xf0\x9f\x98\x80");
}

TEST(Tokenizer, UnsupportedComponentsAreNamed) {
  auto j = nlohmann::json::parse(MakeByteLevelTokenizerJson({}, {}));
  j["model"]["type"] = "Unigram";
  EXPECT_THAT(Tokenizer::FromJson(j.dump(), "", "t.json"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("t.json: model.type")));
  j = nlohmann::json::parse(MakeByteLevelTokenizerJson({}, {}));
  j["normalizer"] = {{"type", "Lowercase"}};
  EXPECT_THAT(Tokenizer::FromJson(j.dump(), "", "t.json"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("normalizer 'Lowercase'")));
  j = nlohmann::json::parse(MakeByteLevelTokenizerJson({}, {}));
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\w+";
  EXPECT_THAT(
      Tokenizer::FromJson(j.dump(), "", "t.json"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("Split pattern")));
  j = nlohmann::json::parse(MakeByteLevelTokenizerJson({"a b"}, {}));
  j["model"]["merges"].push_back("q zz");
  EXPECT_THAT(
      Tokenizer::FromJson(j.dump(), "", "t.json"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'q zz'")));
  EXPECT_THAT(Tokenizer::FromJson("{", "", "t.json"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(Tokenizer::Load("/nonexistent/tokenizer.json"),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST(Tokenizer, TemplatePostProcessorAndConfigTokens) {
  auto j =
      nlohmann::json::parse(MakeByteLevelTokenizerJson({}, {"<s>", "</s>"}));
  const int32_t bos = j["added_tokens"][0]["id"];
  j["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single",
       {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
        {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
      {"pair", nlohmann::json::array()},
      {"special_tokens",
       {{"<s>", {{"id", "<s>"}, {"ids", {bos}}, {"tokens", {"<s>"}}}}}}};
  ASSERT_OK_AND_ASSIGN(
      auto t,
      Tokenizer::FromJson(
          j.dump(), R"({"eos_token": "</s>", "bos_token": {"content": "<s>"}})",
          "t.json"));
  ASSERT_OK_AND_ASSIGN(auto with, t->Encode("hi", true));
  ASSERT_OK_AND_ASSIGN(auto without, t->Encode("hi", false));
  EXPECT_EQ(with.size(), without.size() + 1);
  EXPECT_EQ(with[0], bos);
  EXPECT_EQ(t->bos_id(), bos);
  EXPECT_EQ(t->eos_id(), bos + 1);
}

}  // namespace
}  // namespace cmdistill::tokenizer
