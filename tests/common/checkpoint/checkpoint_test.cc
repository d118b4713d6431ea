// Safetensors and Hugging Face folders: round trips, and every corrupt or
// hostile file is refused with a message naming the file and tensor — never a
// crash or an out-of-bounds read.
#include <cstring>
#include <fstream>
#include <vector>

#include "common/checkpoint/hf_checkpoint.h"
#include "common/checkpoint/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_util.h"

namespace cmdistill::checkpoint {
namespace {

using ::cmdistill::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;

TEST(Safetensors, RoundTripIsBitExact) {
  cmdistill::testing::TempDir dir;
  std::vector<float> a = {1.5f, -2.25f, 3.0f, 1e-30f, -0.0f, 7.0f};
  std::vector<uint16_t> b = {0x3f80, 0xc000, 0x7f7f};
  ASSERT_OK(WriteSafetensors(
      dir.File("x.safetensors"),
      {{"b", DType::kBF16, {3}, {reinterpret_cast<uint8_t*>(b.data()), 6}},
       {"a", DType::kF32, {2, 3}, {reinterpret_cast<uint8_t*>(a.data()), 24}}},
      {{"format", "pt"}}));
  ASSERT_OK_AND_ASSIGN(auto f,
                       SafetensorsFile::Open(dir.File("x.safetensors")));
  ASSERT_EQ(f->tensors().size(), 2u);
  const TensorInfo* ta = f->Find("a");
  ASSERT_NE(ta, nullptr);
  EXPECT_EQ(ta->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(std::memcmp(f->Data(*ta).data(), a.data(), 24), 0);
  EXPECT_EQ(std::memcmp(f->Data(*f->Find("b")).data(), b.data(), 6), 0);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  EXPECT_EQ(f->Find("nope"), nullptr);
  // The header is padded to 8 bytes, as the reference writer does.
  std::ifstream in(dir.File("x.safetensors"), std::ios::binary);
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  EXPECT_EQ(n % 8, 0u);
}

TEST(Safetensors, HostileHeadersAreRefused) {
  struct Case {
    const char* header;
    uint64_t data_size;
    const char* expect;
  };
  const std::vector<Case> cases = {
      {"[1, 2]", 0, "not a JSON object"},
      {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}",
       8, "not a JSON object"},
      {"{\"a\": {\"dtype\": \"F33\", \"shape\": [2], \"data_offsets\": [0, "
       "8]}}",
       8, "tensor 'a': unknown dtype 'F33'"},
      {"{\"a\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, "
       "8]}}",
       8, "tensor 'a': 8 bytes for a F32 tensor that needs 12"},
      {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, "
       "16]}}",
       8,
       "tensor 'a': data_offsets [0, 16] outside the data buffer of 8 bytes"},
      {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, "
       "0]}}",
       8, "outside the data buffer"},
      {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
       " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, "
       "12]}}",
       12, "overlaps another tensor"},
      {"{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, "
       "8]}}",
       8, "bytes [0, 4) of the data buffer belong to no tensor"},
      {"{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, "
       "4]}}",
       8, "bytes [4, 8) at the end of the data buffer belong to no tensor"},
      {"{\"a\": {\"dtype\": \"F32\", \"shape\": [-2], \"data_offsets\": [0, "
       "8]}}",
       8, "non-negative integers"},
      {"{\"a\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], "
       "\"data_offsets\": [0, 8]}}",
       8, "shape overflows"},
      {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2]}}", 8,
       "needs dtype, shape and data_offsets"},
      {"{\"__metadata__\": {\"x\": 1}}", 0,
       "__metadata__ values must be strings"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(ParseHeader(c.header, c.data_size, "f.safetensors", nullptr),
                StatusIs(kInvalid, HasSubstr(c.expect)))
        << c.header;
  }
}

TEST(Safetensors, TruncatedFilesAreRefused) {
  cmdistill::testing::TempDir dir;
  std::vector<float> a(16, 1.0f);
  ASSERT_OK(WriteSafetensors(
      dir.File("ok.safetensors"),
      {{"a", DType::kF32, {16}, {reinterpret_cast<uint8_t*>(a.data()), 64}}}));
  std::ifstream in(dir.File("ok.safetensors"), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)),
                    std::istreambuf_iterator<char>());
  // Data cut short.
  dir.Write("short.safetensors", bytes.substr(0, bytes.size() - 10));
  EXPECT_THAT(SafetensorsFile::Open(dir.File("short.safetensors")),
              StatusIs(kInvalid, AllOf(HasSubstr("short.safetensors"),
                                       HasSubstr("tensor 'a'"))));
  // Header cut short: the length prefix points past the end.
  dir.Write("header.safetensors", bytes.substr(0, 20));
  EXPECT_THAT(SafetensorsFile::Open(dir.File("header.safetensors")),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("beyond the end of the file")));
  dir.Write("tiny.safetensors", "abc");
  EXPECT_THAT(SafetensorsFile::Open(dir.File("tiny.safetensors")),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("truncated")));
  std::string huge = bytes;
  const uint64_t absurd = 1ull << 40;
  std::memcpy(huge.data(), &absurd, 8);
  dir.Write("huge.safetensors", huge);
  EXPECT_THAT(SafetensorsFile::Open(dir.File("huge.safetensors")),
              StatusIs(kInvalid, HasSubstr("absurd")));
  EXPECT_THAT(SafetensorsFile::Open(dir.File("missing.safetensors")),
              StatusIs(absl::StatusCode::kNotFound));
}

ModelConfig Tiny() {
  ModelConfig c;
  c.model_type = "qwen2";
  c.vocab_size = 10;
  c.hidden_size = 4;
  c.intermediate_size = 6;
  c.num_hidden_layers = 1;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.head_dim = 2;
  c.attention_bias = true;
  c.tie_word_embeddings = true;
  return c;
}

// Writes a checkpoint of zeros with the tensors ExpectedTensors lists, minus
// `drop`, with `reshape` given a wrong shape.
void WriteTiny(const std::string& dir, const ModelConfig& c,
               const std::string& drop = "", const std::string& reshape = "",
               const WriteOptions& options = {}) {
  std::vector<std::vector<float>> storage;
  std::vector<TensorToWrite> tensors;
  for (auto [name, shape] : ExpectedTensors(c)) {
    if (name == drop) continue;
    if (name == reshape) shape.back() += 1;
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    storage.emplace_back(static_cast<size_t>(n), 0.5f);
    tensors.push_back({name,
                       DType::kF32,
                       shape,
                       {reinterpret_cast<const uint8_t*>(storage.back().data()),
                        static_cast<size_t>(n) * 4}});
  }
  ASSERT_OK(WriteHfCheckpoint(dir, c, tensors, options));
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
}

TEST(HfCheckpoint, WritesWhatTransformersNeedWhereTheSourceHasNone) {
  cmdistill::testing::TempDir dir;
  // A source with a tokenizer.json and a tokenizer_config.json that lacks
  // the loading keys, and no generation_config.json.
  dir.Write("src/tokenizer.json", "{}");
  dir.Write("src/tokenizer_config.json", R"({"eos_token": "<|endoftext|>"})");
  ModelConfig c = Tiny();
  c.eos_token_ids = {7};
  c.max_position_embeddings = 96;
  WriteOptions o;
  o.copy_tokenizer_from = dir.File("src");
  o.generation.temperature = 0.7;
  o.generation.top_p = 0.9;
  o.generation.max_new_tokens = 40;
  WriteTiny(dir.File("m"), c, "", "", o);
  const std::string cfg = ReadAll(dir.File("m/config.json"));
  EXPECT_THAT(cfg, HasSubstr("\"bos_token_id\": 7"));  // = eos (Qwen, GPT-2)
  EXPECT_THAT(cfg, HasSubstr("\"transformers_version\": \"4.46.0\""));
  const std::string gen = ReadAll(dir.File("m/generation_config.json"));
  EXPECT_THAT(gen, HasSubstr("\"eos_token_id\": 7"));
  EXPECT_THAT(gen, HasSubstr("\"bos_token_id\": 7"));
  EXPECT_THAT(gen, HasSubstr("\"temperature\": 0.7"));
  EXPECT_THAT(gen, HasSubstr("\"top_p\": 0.9"));
  EXPECT_THAT(gen, HasSubstr("\"max_new_tokens\": 40"));
  EXPECT_THAT(gen, HasSubstr("\"do_sample\": true"));
  const std::string tok = ReadAll(dir.File("m/tokenizer_config.json"));
  EXPECT_THAT(tok, HasSubstr("\"eos_token\": \"<|endoftext|>\""));  // kept
  EXPECT_THAT(tok,
              HasSubstr("\"tokenizer_class\": \"PreTrainedTokenizerFast\""));
  EXPECT_THAT(tok, HasSubstr("\"model_max_length\": 96"));
  // A source that has them is copied as it is, not replaced.
  dir.Write("src2/tokenizer.json", "{}");
  dir.Write("src2/tokenizer_config.json",
            R"({"tokenizer_class": "Qwen2Tokenizer", "model_max_length": 5})");
  dir.Write("src2/generation_config.json", R"({"eos_token_id": [1, 2]})");
  o.copy_tokenizer_from = dir.File("src2");
  WriteTiny(dir.File("m2"), c, "", "", o);
  EXPECT_EQ(ReadAll(dir.File("m2/generation_config.json")),
            R"({"eos_token_id": [1, 2]})");
  EXPECT_EQ(ReadAll(dir.File("m2/tokenizer_config.json")),
            R"({"tokenizer_class": "Qwen2Tokenizer", "model_max_length": 5})");
  // A tokenizer_config.json that is not an object is refused by name.
  dir.Write("src3/tokenizer.json", "{}");
  dir.Write("src3/tokenizer_config.json", "[1]");
  o.copy_tokenizer_from = dir.File("src3");
  std::vector<TensorToWrite> none;
  EXPECT_THAT(WriteHfCheckpoint(dir.File("m3"), c, none, o),
              StatusIs(kInvalid, HasSubstr("tokenizer_config.json")));
}

TEST(HfCheckpoint, OpensWhatItWritesWithHuggingFaceNames) {
  cmdistill::testing::TempDir dir;
  WriteTiny(dir.File("m"), Tiny());
  ASSERT_OK_AND_ASSIGN(auto ck, HfCheckpoint::Open(dir.File("m")));
  EXPECT_EQ(ck->config().model_type, "qwen2");
  EXPECT_TRUE(ck->config().attention_bias);
  EXPECT_NE(ck->Find("model.layers.0.self_attn.q_proj.bias").file, nullptr);
  EXPECT_EQ(ck->Find("lm_head.weight").file, nullptr);
  std::ifstream cfg(dir.File("m/config.json"));
  std::string text((std::istreambuf_iterator<char>(cfg)),
                   std::istreambuf_iterator<char>());
  EXPECT_THAT(text, HasSubstr("\"Qwen2ForCausalLM\""));
  EXPECT_THAT(text, HasSubstr("\"num_key_value_heads\": 1"));
}

TEST(HfCheckpoint, CorruptFoldersAreRefusedNamingFileAndTensor) {
  cmdistill::testing::TempDir dir;
  WriteTiny(dir.File("missing"), Tiny(), "model.layers.0.mlp.up_proj.weight");
  EXPECT_THAT(
      HfCheckpoint::Open(dir.File("missing")),
      StatusIs(
          kInvalid,
          HasSubstr("tensor 'model.layers.0.mlp.up_proj.weight' is missing")));
  WriteTiny(dir.File("shape"), Tiny(), "", "model.norm.weight");
  EXPECT_THAT(
      HfCheckpoint::Open(dir.File("shape")),
      StatusIs(kInvalid,
               AllOf(HasSubstr("model.safetensors"),
                     HasSubstr("'model.norm.weight' has shape [5], config.json "
                               "needs [4]"))));
  WriteTiny(dir.File("type"), Tiny());
  dir.Write("type/config.json",
            "{\"model_type\": \"gpt2\", \"vocab_size\": 10}");
  EXPECT_THAT(
      HfCheckpoint::Open(dir.File("type")),
      StatusIs(kInvalid, AllOf(HasSubstr("config.json"), HasSubstr("'gpt2'"))));
  dir.Write("type/config.json",
            "{\"model_type\": \"llama\", \"vocab_size\": \"ten\"}");
  EXPECT_THAT(HfCheckpoint::Open(dir.File("type")),
              StatusIs(kInvalid, HasSubstr("'vocab_size' is not an integer")));
  WriteTiny(dir.File("noweights"), Tiny());
  std::remove(dir.File("noweights/model.safetensors").c_str());
  EXPECT_THAT(HfCheckpoint::Open(dir.File("noweights")),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("neither model.safetensors")));
  dir.Write("noweights/model.safetensors.index.json",
            "{\"weight_map\": {\"model.norm.weight\": \"../../etc/passwd\"}}");
  EXPECT_THAT(HfCheckpoint::Open(dir.File("noweights")),
              StatusIs(kInvalid, HasSubstr("must be a plain file name")));
  dir.Write("noweights/model.safetensors.index.json",
            "{\"weight_map\": {\"model.norm.weight\": "
            "\"model-00001-of-00002.safetensors\"}}");
  EXPECT_THAT(HfCheckpoint::Open(dir.File("noweights")),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(HfCheckpoint::Open(dir.File("nothing")),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST(ModelConfig, UnsupportedFeaturesAreNamed) {
  const std::string base =
      "\"model_type\": \"llama\", \"vocab_size\": 10, \"hidden_size\": 8, "
      "\"intermediate_size\": "
      "8, \"num_hidden_layers\": 1, \"num_attention_heads\": 2";
  EXPECT_OK(ParseModelConfig("{" + base + "}", "c.json").status());
  EXPECT_THAT(
      ParseModelConfig("{" + base + ", \"hidden_act\": \"gelu\"}", "c.json"),
      StatusIs(kInvalid, HasSubstr("hidden_act")));
  EXPECT_THAT(ParseModelConfig(
                  "{" + base + ", \"rope_scaling\": {\"rope_type\": \"yarn\"}}",
                  "c.json"),
              StatusIs(kInvalid, HasSubstr("'yarn'")));
  EXPECT_THAT(
      ParseModelConfig("{" + base + ", \"num_key_value_heads\": 3}", "c.json"),
      StatusIs(kInvalid, HasSubstr("multiple of num_key_value_heads")));
  ASSERT_OK_AND_ASSIGN(
      auto c,
      ParseModelConfig("{" + base + ", \"eos_token_id\": [1, 2]}", "c"));
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(c.head_dim, 4);
  ASSERT_OK_AND_ASSIGN(auto back,
                       ParseModelConfig(ModelConfigToJson(c), "again"));
  EXPECT_EQ(back.eos_token_ids, c.eos_token_ids);
  EXPECT_EQ(back.hidden_size, 8);
}

}  // namespace
}  // namespace cmdistill::checkpoint
