// What `cmdistill local` prints about where a run's time went, from the
// Prometheus text its children leave.
#include "app/local/time_shares.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_util.h"

namespace cmdistill::local {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

// As prometheus-cpp writes a labelled histogram (buckets elided).
std::string ActorText(double sampling, double teacher, double idle,
                      int rounds) {
  return "# HELP cmdistill_actor_round_phase_seconds Where a round goes\n"
         "# TYPE cmdistill_actor_round_phase_seconds histogram\n"
         "cmdistill_actor_round_phase_seconds_count{phase=\"sampling\"} " +
         std::to_string(rounds) +
         "\n"
         "cmdistill_actor_round_phase_seconds_sum{phase=\"sampling\"} " +
         std::to_string(sampling) +
         "\n"
         "cmdistill_actor_round_phase_seconds_bucket{phase=\"sampling\","
         "le=\"0.1\"} 2\n"
         "cmdistill_actor_round_phase_seconds_sum{phase=\"teacher\"} " +
         std::to_string(teacher) +
         "\n"
         "cmdistill_actor_round_phase_seconds_sum{phase=\"idle\"} " +
         std::to_string(idle) +
         "\n"
         "cmdistill_actor_round_phase_seconds_sum_other{phase=\"sampling\"} "
         "99\n"
         "cmdistill_actor_round_seconds_count " +
         std::to_string(rounds) + "\n";
}

TEST(TimeShares, SumsASampleByLabelAndSkipsOtherMetricsAndComments) {
  const auto by =
      SumByLabel(ActorText(6, 2, 0, 4) + ActorText(1, 1, 2, 3),
                 "cmdistill_actor_round_phase_seconds_sum", "phase");
  EXPECT_THAT(by, ElementsAre(Pair("idle", 2), Pair("sampling", 7),
                              Pair("teacher", 3)));
  EXPECT_THAT(SumByLabel("a_count 3\na_count{x=\"1\"} 4\nbad line\na_count z\n",
                         "a_count", "x"),
              ElementsAre(Pair("", 3), Pair("1", 4)));
}

TEST(TimeShares, ReadsEveryActorAndTheLearnerAndPrintsShares) {
  testing::TempDir dir;
  const std::string d = dir.path();
  auto write = [&](const std::string& name, const std::string& text) {
    dir.Write(name, text);
  };
  write("actor-1.prom", ActorText(6, 2, 0, 4));
  write("actor-2.prom", ActorText(6, 2, 4, 5));
  write("actor-3.prom", ActorText(9, 9, 9, 9));          // an earlier run's
  write("teacher.prom", ActorText(100, 100, 100, 100));  // not an actor
  write("learner.prom",
        "cmdistill_learner_step_phase_seconds_sum{phase=\"wait\"} 7.5\n"
        "cmdistill_learner_step_phase_seconds_sum{phase=\"update\"} 2\n"
        "cmdistill_learner_step_phase_seconds_sum{phase=\"publish\"} 0.5\n"
        "cmdistill_learner_step_phase_seconds_sum{phase=\"checkpoint\"} 0\n"
        "cmdistill_learner_step_phase_seconds_count{phase=\"update\"} 12\n");
  const TimeShares t = ReadTimeShares(d, /*actors=*/2);
  EXPECT_EQ(t.actors, 2);
  EXPECT_EQ(t.rounds, 9);
  EXPECT_EQ(t.steps, 12);
  // In a fixed order; no time, no entry.
  EXPECT_THAT(t.actor, ElementsAre(Pair("sampling", 12), Pair("teacher", 4),
                                   Pair("idle", 4)));
  EXPECT_THAT(t.learner, ElementsAre(Pair("wait", 7.5), Pair("update", 2),
                                     Pair("publish", 0.5)));
  EXPECT_EQ(FormatTimeShares(t),
            "actors (2, 9 rounds, 20.0 s in rounds): sampling 60%, teacher "
            "scoring 20%, idle (no prompts) 20%\n"
            "learner (12 steps, 10.0 s): waiting for trajectories 75%, update "
            "20%, publish 5%\n");
}

TEST(TimeShares, NothingToShowWithoutFiles) {
  testing::TempDir dir;
  EXPECT_EQ(FormatTimeShares(ReadTimeShares(dir.path(), 2)), "");
  EXPECT_EQ(FormatTimeShares(ReadTimeShares(dir.path() + "/missing", 2)), "");
}

}  // namespace
}  // namespace cmdistill::local
