// The embedded default's bootstrap at tiny sizes: the same seed and thread
// count give the same data, tokenizer and warm-start weights, bit for bit (a
// result a user reproduces starts here), and the two-style warm start reports
// its styles.
#include "app/workflows/bootstrap.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/config/config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_util.h"

namespace cmdistill::workflows {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

v1::RunConfig TinyRun(const std::string& out) {
  v1::RunConfig c = config::DefaultRunConfig();
  c.set_output_dir(out);
  c.mutable_generation()->set_max_new_tokens(64);
  auto* g = c.mutable_local()->mutable_datagen();
  g->set_train(200);
  g->set_test(16);
  g->set_validation(16);
  g->set_min_steps(1);
  g->set_max_steps(1);
  g->set_max_value(3);
  g->add_ops("add");
  g->add_ops("sub");
  g->set_distractors(0);
  g->set_restate(true);
  g->set_check(true);
  c.mutable_local()->set_tokenizer_merges(60);
  for (auto* shape : {c.mutable_local()->mutable_teacher_model(),
                      c.mutable_local()->mutable_student_model()}) {
    shape->set_hidden_size(32);
    shape->set_num_layers(1);
    shape->set_num_heads(2);
    shape->set_num_kv_heads(1);
    shape->set_intermediate_size(64);
    shape->set_max_positions(256);
  }
  for (auto* sft : {c.mutable_local()->mutable_teacher_sft(),
                    c.mutable_local()->mutable_student_sft()}) {
    sft->set_steps(12);
    sft->set_batch_size(8);
    sft->set_eval_every(0);
    sft->set_eval_examples(4);
  }
  c.mutable_local()->mutable_student_sft()->set_foreign_style_fraction(0.5);
  c.mutable_local()->mutable_student_sft()->set_teacher_style_steps(4);
  ResolveLocalPaths(&c);
  return c;
}

TEST(Bootstrap, SameSeedSameWarmStartBitForBit) {
  testing::TempDir a, b;
  std::ostringstream log_a, log_b;
  ASSERT_OK(Bootstrap(TinyRun(a.path()), log_a));
  ASSERT_OK(Bootstrap(TinyRun(b.path()), log_b));
  for (const char* f :
       {"data/train.jsonl", "data/validation.jsonl", "data/test.jsonl",
        "models/tokenizer/tokenizer.json", "models/teacher/model.safetensors",
        "models/student-warm/model.safetensors",
        "models/student-warm/cmdistill_styles.txt"}) {
    const std::string x = ReadAll(a.File(f)), y = ReadAll(b.File(f));
    EXPECT_FALSE(x.empty()) << f;
    EXPECT_TRUE(x == y) << f << " differs between two runs of one seed";
  }
  // The warm start's styles were measured and printed.
  EXPECT_THAT(log_a.str(), HasSubstr("styles when sampled (16 validation"));
  EXPECT_THAT(log_a.str(), HasSubstr("started in the foreign style"));
  // The teacher's style restates and checks; the data says what made it.
  EXPECT_THAT(ReadAll(a.File("data/train.jsonl")), HasSubstr(" starts with "));
  EXPECT_THAT(ReadAll(a.File("data/train.jsonl")), HasSubstr("Check: "));
  EXPECT_THAT(ReadAll(a.File("data/cmdistill_datagen.yaml")),
              HasSubstr("restate: true"));
  // Another seed: another warm start.
  testing::TempDir c;
  v1::RunConfig other = TinyRun(c.path());
  other.set_seed(1);
  std::ostringstream log_c;
  ASSERT_OK(Bootstrap(other, log_c));
  EXPECT_FALSE(ReadAll(a.File("models/student-warm/model.safetensors")) ==
               ReadAll(c.File("models/student-warm/model.safetensors")));
}

TEST(Bootstrap, ChangedDatagenRemakesTheDataAndTheModels) {
  testing::TempDir d;
  std::ostringstream log1, log2, log3;
  ASSERT_OK(Bootstrap(TinyRun(d.path()), log1));
  ASSERT_OK(Bootstrap(TinyRun(d.path()), log2));
  EXPECT_THAT(log2.str(), HasSubstr("teacher: cached"));
  EXPECT_THAT(log2.str(), ::testing::Not(HasSubstr("data: wrote")));
  v1::RunConfig changed = TinyRun(d.path());
  changed.mutable_local()->mutable_datagen()->set_check(false);
  ASSERT_OK(Bootstrap(changed, log3));
  EXPECT_THAT(log3.str(), HasSubstr("data: wrote"));
  EXPECT_THAT(log3.str(), HasSubstr("tokenizer: learned"));
  EXPECT_THAT(log3.str(), ::testing::Not(HasSubstr("teacher: cached")));
  EXPECT_THAT(ReadAll(d.File("data/train.jsonl")),
              ::testing::Not(HasSubstr("Check: ")));
}

}  // namespace
}  // namespace cmdistill::workflows
