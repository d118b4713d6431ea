// The learner's published policy versions: the newest immutable snapshot
// (weights + sha256) and the long-polls of actors waiting for a version newer
// than theirs. gRPC-free apart from the reactor a waiter is finished on.
//
// Thread-safe. One waiter thread answers long-polls when a version is
// published, when their deadline passes, or when the store is finished (no
// more versions: every poll is answered at once from then on).
#ifndef CMDISTILL_SERVICES_LEARNER_POLICY_STORE_H_
#define CMDISTILL_SERVICES_LEARNER_POLICY_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace cmdistill::learner {

struct PolicySnapshot {
  uint64_t version = 0;
  std::string bytes;
  std::string sha256_hex;  // identity (WaitForPolicy, checkpoints)
  std::string xxh3_hex;    // the receivers' integrity check (fast)
};

class PolicyStore {
 public:
  // The answer to a long-poll: the newest version when it is answered.
  struct Answer {
    uint64_t version = 0;
    size_t size_bytes = 0;
    std::string sha256_hex;
  };
  using Reply = std::function<void(const Answer&)>;

  // `first_version`: the version the first Publish gets (0, or the version of
  // the checkpoint resumed from). `tick` (may be empty) runs on the waiter
  // thread at least every 200 ms, outside the store's lock.
  PolicyStore(uint64_t first_version, absl::Duration max_long_poll,
              std::function<void()> tick = {});
  ~PolicyStore();  // Close()

  // A snapshot of `bytes` with its sha256 and XXH3 (the expensive part: call it
  // outside any lock), to be installed by Publish.
  static std::shared_ptr<PolicySnapshot> Prepare(std::string bytes);
  // Installs `snap` as the next version (sets snap->version); returns it.
  uint64_t Publish(std::shared_ptr<PolicySnapshot> snap);
  // Prepare + Publish.
  uint64_t Publish(std::string bytes) {
    return Publish(Prepare(std::move(bytes)));
  }
  // The newest snapshot (null before the first Publish).
  std::shared_ptr<const PolicySnapshot> Newest() const;
  uint64_t version() const;

  // Answers `reply` (on this thread) at once when a version newer than `after`
  // exists, `max_wait` is zero or the store is finished; otherwise from the
  // waiter thread once one is published or min(max_wait, max_long_poll) has
  // passed. Requires a published snapshot.
  void Wait(uint64_t after, absl::Duration max_wait, Reply reply);
  // No more versions: pending polls are answered now, later ones at once.
  void Finish();
  // Stops the waiter thread after answering every pending poll. Idempotent.
  void Close();

 private:
  struct Waiter {
    uint64_t after;
    absl::Time until;
    Reply reply;
  };
  Answer AnswerLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WaiterLoop();

  const absl::Duration max_long_poll_;
  const std::function<void()> tick_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const PolicySnapshot> snapshot_ ABSL_GUARDED_BY(mu_);
  uint64_t next_version_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<Waiter> waiters_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace cmdistill::learner

#endif  // CMDISTILL_SERVICES_LEARNER_POLICY_STORE_H_
