// The READY / STEP / FINISHED lines: what the services print is what the
// supervisor parses, field by field; other lines and lines without their
// required key are not taken for them.
#include "services/common/child_protocol.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cmdistill::services {
namespace {

TEST(ChildProtocol, ReadyRoundTripsAndAnActorHasOnlyMetrics) {
  const std::string line = FormatReady({"learner", 4321, 9100});
  EXPECT_EQ(line, "READY name=learner grpc_port=4321 metrics_port=9100");
  auto r = ParseReady(line);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->name, "learner");
  EXPECT_EQ(r->grpc_port, 4321);
  EXPECT_EQ(r->metrics_port, 9100);
  auto actor = ParseReady(FormatReady({"actor", 0, 9200}));
  ASSERT_TRUE(actor.has_value());
  EXPECT_EQ(actor->grpc_port, 0);
  EXPECT_FALSE(ParseReady("READY name=x grpc_port=0 metrics_port=0"));
  EXPECT_FALSE(ParseReady("READY name=x"));
  EXPECT_FALSE(ParseReady("READYX grpc_port=1"));
  EXPECT_FALSE(ParseReady("log: READY grpc_port=1"));
}

TEST(ChildProtocol, StepRoundTripsEveryField) {
  StepLine s;
  s.step = 12;
  s.version = 12;
  s.reward = 0.625;
  s.ret = -0.25;
  s.satisfaction = 0.875;
  s.cost = 0.12345;
  s.kl = 0.0625;
  s.lambda = 1.5;
  s.loss = -0.03125;
  s.tokens = 4096;
  s.wait_s = 0.5;
  s.update_s = 0.25;
  s.publish_s = 0.0625;
  s.checkpoint_s = 0.125;
  const std::string line = FormatStep(s);
  EXPECT_THAT(line, ::testing::StartsWith("STEP step=12 version=12 "));
  auto p = ParseStep(line);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->step, 12);
  EXPECT_EQ(p->version, 12u);
  EXPECT_DOUBLE_EQ(p->reward, 0.625);
  EXPECT_DOUBLE_EQ(p->ret, -0.25);
  EXPECT_DOUBLE_EQ(p->satisfaction, 0.875);
  EXPECT_DOUBLE_EQ(p->cost, 0.12345);
  EXPECT_DOUBLE_EQ(p->kl, 0.0625);
  EXPECT_DOUBLE_EQ(p->lambda, 1.5);
  EXPECT_DOUBLE_EQ(p->loss, -0.03125);
  EXPECT_EQ(p->tokens, 4096);
  EXPECT_DOUBLE_EQ(p->wait_s, 0.5);
  EXPECT_DOUBLE_EQ(p->update_s, 0.25);
  EXPECT_DOUBLE_EQ(p->publish_s, 0.0625);
  EXPECT_DOUBLE_EQ(p->checkpoint_s, 0.125);
  // Not classified (not the embedded task): no style keys, -1 back.
  EXPECT_THAT(line, ::testing::Not(::testing::HasSubstr("style")));
  EXPECT_DOUBLE_EQ(p->diagnostics.foreign_style, -1);
  s.diagnostics.teacher_style = 0.875;
  s.diagnostics.foreign_style = 0.0625;
  s.diagnostics.clip_fraction = 0.25;
  auto styled = ParseStep(FormatStep(s));
  ASSERT_TRUE(styled.has_value());
  EXPECT_DOUBLE_EQ(styled->diagnostics.teacher_style, 0.875);
  EXPECT_DOUBLE_EQ(styled->diagnostics.foreign_style, 0.0625);
  EXPECT_DOUBLE_EQ(styled->diagnostics.clip_fraction, 0.25);
  // Unknown keys are ignored; the step is required.
  auto more = ParseStep("STEP step=3 future=1 kl=0.5");
  ASSERT_TRUE(more.has_value());
  EXPECT_EQ(more->step, 3);
  EXPECT_DOUBLE_EQ(more->kl, 0.5);
  EXPECT_FALSE(ParseStep("STEP kl=0.5"));
  EXPECT_FALSE(ParseStep("FINISHED step=3"));
}

TEST(ChildProtocol, FinishedRoundTripsTheLedger) {
  FinishedLine f;
  f.step = 60;
  f.model = "/out/final";
  f.complete = true;
  f.prompts = 240;
  f.unique = 60;
  f.epochs = {{60, 60}, {60, 60}, {60, 60}, {60, 60}};
  const std::string line = FormatFinished(f);
  EXPECT_EQ(line,
            "FINISHED step=60 model=/out/final complete=1 prompts=240 "
            "unique=60 epochs=60/60,60/60,60/60,60/60");
  auto p = ParseFinished(line);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->step, 60);
  EXPECT_EQ(p->model, "/out/final");
  EXPECT_TRUE(p->complete);
  EXPECT_EQ(p->prompts, 240u);
  EXPECT_EQ(p->epochs, f.epochs);
  EXPECT_FALSE(ParseFinished("FINISHED model=x"));
  EXPECT_FALSE(ParseFinished("STEP step=1"));
}

}  // namespace
}  // namespace cmdistill::services
