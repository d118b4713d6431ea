// The rule that picks final/ among the warm start and the checkpoints.
#include "app/workflows/selection.h"

#include "gtest/gtest.h"

namespace cmdistill::workflows {
namespace {

SelectionCandidate C(const char* label, double fac, double csr) {
  SelectionCandidate c;
  c.label = label;
  c.correctness.value = fac;
  c.satisfaction.value = csr;
  return c;
}

TEST(ChooseCandidate, MostCorrectAmongThoseMeetingTheTarget) {
  // The most correct overall (step 100, 0.62) breaks the target: not chosen.
  EXPECT_EQ(
      ChooseCandidate({C("warm start", 0.40, 0.92), C("step 50", 0.45, 0.95),
                       C("step 100", 0.62, 0.70), C("last", 0.44, 0.97)},
                      0.9),
      1);
  // The warm start wins when training made everything worse.
  EXPECT_EQ(ChooseCandidate({C("warm start", 0.40, 0.92),
                             C("step 50", 0.35, 0.95), C("last", 0.30, 0.97)},
                            0.9),
            0);
  // Ties go to the later candidate.
  EXPECT_EQ(ChooseCandidate(
                {C("warm start", 0.40, 0.92), C("last", 0.40, 0.93)}, 0.9),
            1);
  // Exactly at the target qualifies.
  EXPECT_EQ(ChooseCandidate(
                {C("warm start", 0.40, 0.89), C("last", 0.30, 0.90)}, 0.9),
            1);
}

TEST(ChooseCandidate, NoneMeetsTheTargetTheMostSatisfyingWins) {
  EXPECT_EQ(ChooseCandidate({C("warm start", 0.40, 0.80),
                             C("step 50", 0.50, 0.85), C("last", 0.60, 0.70)},
                            0.9),
            1);
  // Equal satisfaction: the more correct, then the later.
  EXPECT_EQ(ChooseCandidate({C("warm start", 0.40, 0.80),
                             C("step 50", 0.50, 0.80), C("last", 0.45, 0.80)},
                            0.9),
            1);
  EXPECT_EQ(ChooseCandidate({}, 0.9), -1);
}

}  // namespace
}  // namespace cmdistill::workflows
