// Fuzz target: the learner's handling of submitted trajectories, torch-free:
// the input is decoded as a SubmitTrajectoriesRequest; each trajectory is
// checked against the wire contract (rl::ValidateTrajectory, what every service
// refuses as invalid) and
// accounted against a lease manager holding real leases (exactly-once
// bookkeeping: duplicates, unknown leases, out-of-range samples). The
// invariant: no prompt is ever done twice in an epoch.
#include <cstdint>
#include <set>
#include <utility>

#include "absl/time/clock.h"
#include "cmdistill/v1/learner.pb.h"
#include "common/rl/trajectory_checks.h"
#include "services/learner/lease_manager.h"

using cmdistill::learner::LeaseManager;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  cmdistill::v1::SubmitTrajectoriesRequest req;
  if (!req.ParseFromArray(data, static_cast<int>(size))) return 0;
  cmdistill::learner::LeaseOptions o;
  o.samples_per_prompt = 2;
  o.epochs = 2;
  LeaseManager leases(4, o);
  const absl::Time now = absl::Now();
  auto got = leases.Acquire(4, now);
  std::set<std::pair<uint64_t, uint64_t>> done;  // (epoch, prompt)
  for (const auto& t : req.trajectories()) {
    cmdistill::rl::TrajectoryContract contract;
    contract.vocab_size = 260;
    const absl::Status st = cmdistill::rl::ValidateTrajectory(t, contract);
    if (!st.ok() && cmdistill::rl::TrajectoryViolation(st).empty())
      __builtin_trap();
    (void)LeaseManager::LeaseEpoch(t.lease().lease_id());
    // Fuzzed lease ids, and the real ones picked by the fuzzed prompt id.
    std::string id = t.lease().lease_id();
    if (got.ok() && !got->empty() && t.lease().prompt_id() < 8)
      id = (*got)[t.lease().prompt_id() % got->size()].lease_id;
    const uint64_t epoch = leases.epoch();
    const auto r = leases.Submit(id, t.sample_index(), now);
    if (r == cmdistill::learner::SubmitResult::kGroupComplete) {
      uint64_t prompt = 0;
      for (const auto& l : *got)
        if (l.lease_id == id) prompt = l.prompt_id;
      if (!done.insert({epoch, prompt}).second) __builtin_trap();
    }
  }
  return 0;
}
