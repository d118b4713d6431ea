#include "common/config/config.h"

#include <string>

#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_util.h"

namespace cmdistill::config {
namespace {

using ::cmdistill::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;

TEST(Config, DefaultsComeFromTheSchemaAndAreValid) {
  RunConfig c = DefaultRunConfig();
  EXPECT_EQ(c.method(), v1::METHOD_CMDP);
  EXPECT_DOUBLE_EQ(c.constraint().budget(), 0.35);
  EXPECT_DOUBLE_EQ(c.constraint().penalty(), 20);
  EXPECT_EQ(c.constraint().cost_normalization(),
            v1::COST_NORMALIZATION_PER_MAX_LEN);
  EXPECT_DOUBLE_EQ(c.optimizer().lr(), 1e-5);
  EXPECT_FLOAT_EQ(c.training().clip_epsilon(), 0.2f);
  EXPECT_EQ(c.generation().samples_per_prompt(), 8u);
  EXPECT_EQ(c.data().prompt_template(), "Question: {question}\nAnswer:");
  ASSERT_OK_AND_ASSIGN(RunConfig loaded, LoadRunConfigFromString("", "empty"));
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(c, loaded));
}

TEST(Config, FileValuesOverrideDefaults) {
  ASSERT_OK_AND_ASSIGN(RunConfig c, LoadRunConfigFromString(R"(
method: saute
constraint:
  budget: 0.5
  cost_normalization: prefix_mean
generation:
  stop_strings: ["\n\n", "Question:"]
  top_p: 0.9
optimizer: {lr: 2e-5, schedule: cosine}
)",
                                                            "run.yaml"));
  EXPECT_EQ(c.method(), v1::METHOD_SAUTE);
  EXPECT_DOUBLE_EQ(c.constraint().budget(), 0.5);
  EXPECT_EQ(c.constraint().cost_normalization(),
            v1::COST_NORMALIZATION_PREFIX_MEAN);
  ASSERT_EQ(c.generation().stop_strings_size(), 2);
  EXPECT_EQ(c.generation().stop_strings(0), "\n\n");
  EXPECT_FLOAT_EQ(c.generation().top_p(), 0.9f);
  EXPECT_DOUBLE_EQ(c.optimizer().lr(), 2e-5);
  EXPECT_EQ(c.optimizer().schedule(), v1::LR_SCHEDULE_COSINE);
  EXPECT_DOUBLE_EQ(c.constraint().penalty(), 20);  // untouched default
}

TEST(Config, UnknownKeyIsNamedWithPathLineAndSuggestion) {
  auto c = LoadRunConfigFromString(
      "optimizer:\n  lr: 1e-5\n  wieght_decay: 0.1\n", "run.yaml");
  EXPECT_THAT(
      c,
      StatusIs(kInvalid, AllOf(HasSubstr("run.yaml:3:3"),
                               HasSubstr("optimizer.wieght_decay: unknown key"),
                               HasSubstr("did you mean 'weight_decay'"))));
}

TEST(Config, UnknownTopLevelSectionListsKnownKeys) {
  auto c = LoadRunConfigFromString("zzzzzz: 1\n", "run.yaml");
  EXPECT_THAT(c, StatusIs(kInvalid,
                          AllOf(HasSubstr("run.yaml:1:1: zzzzzz: unknown key"),
                                HasSubstr("known keys: run_name"))));
}

TEST(Config, WrongTypesAreNamed) {
  EXPECT_THAT(
      LoadRunConfigFromString("training:\n  max_steps: many\n", "f.yaml"),
      StatusIs(
          kInvalid,
          AllOf(HasSubstr("f.yaml:2:14"), HasSubstr("training.max_steps"),
                HasSubstr("expected a non-negative integer, got 'many'"))));
  EXPECT_THAT(LoadRunConfigFromString("training:\n  max_steps: -3\n", "f.yaml"),
              StatusIs(kInvalid, HasSubstr("non-negative")));
  EXPECT_THAT(
      LoadRunConfigFromString("training:\n  max_steps: 1.5\n", "f.yaml"),
      StatusIs(kInvalid, HasSubstr("training.max_steps")));
  EXPECT_THAT(
      LoadRunConfigFromString("security:\n  tls: yes please\n", "f.yaml"),
      StatusIs(kInvalid, HasSubstr("security.tls: expected true or false")));
  EXPECT_THAT(
      LoadRunConfigFromString("constraint:\n  budget: .nan\n", "f.yaml"),
      StatusIs(kInvalid,
               HasSubstr("constraint.budget: expected a finite number")));
  EXPECT_THAT(LoadRunConfigFromString("constraint: 3\n", "f.yaml"),
              StatusIs(kInvalid, HasSubstr("constraint: expected a mapping")));
  EXPECT_THAT(
      LoadRunConfigFromString("generation:\n  stop_strings: x\n", "f.yaml"),
      StatusIs(kInvalid,
               HasSubstr("generation.stop_strings: expected a list")));
  EXPECT_THAT(LoadRunConfigFromString("constraint:\n  budget:\n", "f.yaml"),
              StatusIs(kInvalid, HasSubstr("constraint.budget: has no value")));
  EXPECT_THAT(LoadRunConfigFromString(
                  "data:\n  max_test_examples: 99999999999\n", "f.yaml"),
              StatusIs(kInvalid, HasSubstr("does not fit in 32 bits")));
}

TEST(Config, EnumErrorsListAllowedValues) {
  EXPECT_THAT(
      LoadRunConfigFromString("method: ppo\n", "f.yaml"),
      StatusIs(kInvalid,
               AllOf(HasSubstr("f.yaml:1:9: method: 'ppo' is not one of"),
                     HasSubstr("cmdp, saute, grpo, soft_lagrangian"))));
  EXPECT_THAT(LoadRunConfigFromString("method: unspecified\n", "f.yaml"),
              StatusIs(kInvalid, HasSubstr("method")));
  ASSERT_OK_AND_ASSIGN(
      auto c, LoadRunConfigFromString("method: WEAKEST_LINK\n", "f.yaml"));
  EXPECT_EQ(c.method(), v1::METHOD_WEAKEST_LINK);
}

TEST(Config, OutOfRangeValuesNameKeyRangeAndLine) {
  EXPECT_THAT(
      LoadRunConfigFromString("\noptimizer:\n  lr: 0\n", "f.yaml"),
      StatusIs(kInvalid,
               AllOf(HasSubstr("f.yaml:3:7: optimizer.lr: value 0 is out of "
                               "range (0, 1]"))));
  EXPECT_THAT(
      LoadRunConfigFromString("generation:\n  top_p: 1.5\n", "f.yaml"),
      StatusIs(kInvalid,
               HasSubstr("generation.top_p: value 1.5 is out of range")));
  EXPECT_THAT(
      LoadRunConfigFromString("constraint:\n  budget: -0.1\n", "f.yaml"),
      StatusIs(kInvalid, HasSubstr("constraint.budget")));
  EXPECT_THAT(
      LoadRunConfigFromString("optimizer:\n  beta2: 1\n", "f.yaml"),
      StatusIs(kInvalid,
               HasSubstr("optimizer.beta2: value 1 is out of range [0, 1)")));
}

TEST(Config, RequiredFieldsAndCrossFieldRules) {
  EXPECT_THAT(LoadRunConfigFromString("run_name: \"\"\n", "f.yaml"),
              StatusIs(kInvalid, HasSubstr("run_name: is required")));
  EXPECT_THAT(
      LoadRunConfigFromString("data:\n  prompt_template: \"Q: {q}\"\n",
                              "f.yaml"),
      StatusIs(kInvalid, AllOf(HasSubstr("f.yaml:2:20: data.prompt_template"),
                               HasSubstr("{question}"))));
  EXPECT_THAT(
      LoadRunConfigFromString("security:\n  require_client_certificate: true\n",
                              "f.yaml"),
      StatusIs(kInvalid, HasSubstr("security.require_client_certificate")));
  EXPECT_THAT(
      LoadRunConfigFromString("student:\n  device: gpu\n", "f.yaml"),
      StatusIs(kInvalid, HasSubstr("student.device: must be auto, cpu, cuda")));
  EXPECT_OK(LoadRunConfigFromString("student:\n  device: cuda:1\n", "f.yaml")
                .status());
}

TEST(Config, ReportsEveryProblemAtOnce) {
  auto c = LoadRunConfigFromString("method: x\noptimizer:\n  lr: -1\nfoo: 1\n",
                                   "f.yaml");
  EXPECT_THAT(c, StatusIs(kInvalid,
                          AllOf(HasSubstr("3 problems"), HasSubstr("method"),
                                HasSubstr("optimizer.lr"), HasSubstr("foo"))));
}

TEST(Config, SetOverridesAnyFieldAfterTheFile) {
  ASSERT_OK_AND_ASSIGN(
      RunConfig c,
      LoadRunConfigFromString(
          "optimizer:\n  lr: 2e-5\n", "f.yaml",
          {"optimizer.lr=3e-5", "method=gkd", "generation.stop_strings=[a, b]",
           "student.path=/models/student", "security.tls=false",
           "data.prompt_template=Q: {question} A:"}));
  EXPECT_DOUBLE_EQ(c.optimizer().lr(), 3e-5);
  EXPECT_EQ(c.method(), v1::METHOD_GKD);
  ASSERT_EQ(c.generation().stop_strings_size(), 2);
  EXPECT_EQ(c.generation().stop_strings(1), "b");
  EXPECT_EQ(c.student().path(), "/models/student");
  // A value that is not plain YAML is still taken whole for a string field.
  EXPECT_EQ(c.data().prompt_template(), "Q: {question} A:");
}

TEST(Config, SetErrorsNameTheOverride) {
  EXPECT_THAT(LoadRunConfigFromString("", "f.yaml", {"optimizer.lrr=1"}),
              StatusIs(kInvalid, AllOf(HasSubstr("--set optimizer.lrr"),
                                       HasSubstr("did you mean 'lr'"))));
  EXPECT_THAT(LoadRunConfigFromString("", "f.yaml", {"optimizer.lr=0"}),
              StatusIs(kInvalid,
                       HasSubstr("--set optimizer.lr: optimizer.lr: value 0")));
  EXPECT_THAT(LoadRunConfigFromString("", "f.yaml", {"optimizer"}),
              StatusIs(kInvalid, HasSubstr("expected key.path=value")));
  EXPECT_THAT(LoadRunConfigFromString("", "f.yaml", {"method.x=1"}),
              StatusIs(kInvalid, HasSubstr("is not a section")));
}

TEST(Config, PrintedConfigLoadsBackEqual) {
  ASSERT_OK_AND_ASSIGN(RunConfig c,
                       LoadRunConfigFromString(
                           "", "f.yaml",
                           {"optimizer.lr=1.234567e-5", "constraint.budget=0.1",
                            "generation.temperature=0.7",
                            "generation.stop_strings=[\"\\n\\nQ:\", \"é\"]",
                            "data.prompt_template=\"a: {question}\\n\\tb\""}));
  const std::string yaml = ToYaml(c);
  ASSERT_OK_AND_ASSIGN(RunConfig back,
                       LoadRunConfigFromString(yaml, "printed"));
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(c, back))
      << yaml;
  EXPECT_THAT(yaml, HasSubstr("method: cmdp"));
  EXPECT_THAT(yaml, HasSubstr("budget: 0.1\n"));
}

TEST(Config, YamlSyntaxErrorsGiveLine) {
  EXPECT_THAT(LoadRunConfigFromString("a: [1, 2\nb: 3\n", "broken.yaml"),
              StatusIs(kInvalid, AllOf(HasSubstr("broken.yaml:"),
                                       HasSubstr("YAML syntax"))));
}

TEST(Config, MissingFileIsNotFound) {
  EXPECT_THAT(LoadRunConfig("/nonexistent/run.yaml"),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("/nonexistent/run.yaml")));
}

TEST(Config, ExampleConfigsInTheRepositoryAreValid) {
  const char* src = std::getenv("CMDISTILL_SOURCE_DIR");
  ASSERT_NE(src, nullptr);
  for (const char* name :
       {"configs/quickstart.yaml", "configs/gsm8k-qwen2.5-math.yaml"}) {
    EXPECT_OK(LoadRunConfig(std::string(src) + "/" + name).status()) << name;
  }
}

TEST(Config, EnumShortNames) {
  EXPECT_EQ(MethodName(v1::METHOD_SOFT_LAGRANGIAN), "soft_lagrangian");
  EXPECT_EQ(EnumShortName(*v1::ModelDType_descriptor()->FindValueByNumber(2)),
            "bfloat16");
  EXPECT_THAT(ToYaml(DefaultRunConfig()), Not(HasSubstr("METHOD_")));
}

}  // namespace
}  // namespace cmdistill::config

namespace cmdistill::config {
namespace {

TEST(MethodLabel, NamesEveryDepartureFromThePapersMethod) {
  ASSERT_OK_AND_ASSIGN(RunConfig paper, LoadRunConfigFromString("", "empty"));
  EXPECT_EQ(MethodLabel(paper), "cmdp");  // the schema's defaults are the paper
  ASSERT_OK_AND_ASSIGN(RunConfig c, LoadRunConfigFromString(R"(
constraint:
  kappa: 0
  keep_task_reward_when_infeasible: true
  penalty_placement: terminal
)",
                                                            "run.yaml"));
  EXPECT_EQ(MethodLabel(c),
            "cmdp@constraint.kappa=0@constraint.keep_task_reward_when_"
            "infeasible=true@constraint.penalty_placement=terminal");
  // What the experiment's variant already says is not repeated.
  EXPECT_EQ(MethodLabel(c, "cmdp@constraint.kappa=0"),
            "cmdp@constraint.kappa=0@constraint.keep_task_reward_when_"
            "infeasible=true@constraint.penalty_placement=terminal");
  // κ is cmdp's: grpo on the same file is plain grpo.
  c.set_method(v1::METHOD_GRPO);
  EXPECT_EQ(MethodLabel(c), "grpo");
  c.set_method(v1::METHOD_SAUTE);
  EXPECT_EQ(MethodLabel(c),
            "saute@constraint.keep_task_reward_when_infeasible=true@"
            "constraint.penalty_placement=terminal");
  ASSERT_OK_AND_ASSIGN(RunConfig l, LoadRunConfigFromString(R"(
method: lagrangian
constraint: {lagrangian_constraint: violation_rate, violation_target: 0.1}
)",
                                                            "run.yaml"));
  EXPECT_EQ(MethodLabel(l),
            "lagrangian@constraint.lagrangian_constraint=violation_rate");
  EXPECT_THAT(LoadRunConfigFromString("constraint: {violation_target: 1.5}\n",
                                      "run.yaml"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("constraint.violation_target")));
  EXPECT_THAT(
      LoadRunConfigFromString("local: {student_sft: {foreign_style_fraction: "
                              "-0.1}}\n",
                              "run.yaml"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("local.student_sft.foreign_style_fraction")));
  EXPECT_THAT(
      LoadRunConfigFromString("eval: {final_selection: best}\n", "run.yaml"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("eval.final_selection")));
}

}  // namespace
}  // namespace cmdistill::config
