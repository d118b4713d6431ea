// Where a run's time went, from the Prometheus text its children left in
// <output_dir>/metrics/: the actors' round phases
// (cmdistill_actor_round_phase_seconds, summed over actors) and the learner's
// step phases (cmdistill_learner_step_phase_seconds), as shares of their
// wholes — what `cmdistill local` and the quickstart print, so that a user
// knows which role to scale.
#ifndef CMDISTILL_APP_LOCAL_TIME_SHARES_H_
#define CMDISTILL_APP_LOCAL_TIME_SHARES_H_

#include <map>
#include <string>
#include <vector>

namespace cmdistill::local {

// The values of `metric` (a sample name such as "x_seconds_sum") summed by
// the value of `label`, over every sample of that name in `text` (Prometheus
// text exposition; comments and other metrics skipped; a sample without the
// label counts under ""). Lines it cannot read are skipped.
std::map<std::string, double> SumByLabel(const std::string& text,
                                         const std::string& metric,
                                         const std::string& label);

struct TimeShares {
  // Seconds by phase, in a fixed order; phases with no time left out.
  std::vector<std::pair<std::string, double>> actor, learner;
  int actors = 0;                // actor files read
  double rounds = 0, steps = 0;  // completed actor rounds, learner steps
};

// Reads <metrics_dir>/learner.prom and actor-1.prom .. actor-<actors>.prom,
// the files of this run's actors (missing files: no shares from them; an
// earlier run's other actors in the same folder are not read).
TimeShares ReadTimeShares(const std::string& metrics_dir, int actors);

// "actors (2, 41 rounds, 96 s): sampling 61%, teacher 14%, ...\n"
// "learner (24 steps, 50 s): waiting for trajectories 70%, update 25%, ...\n"
// Empty when there is nothing to show.
std::string FormatTimeShares(const TimeShares& shares);

}  // namespace cmdistill::local

#endif  // CMDISTILL_APP_LOCAL_TIME_SHARES_H_
