#include "services/learner/policy_store.h"

#include <algorithm>
#include <utility>

#include "common/util/sha256.h"
#include "common/util/xxh3.h"

namespace cmdistill::learner {

PolicyStore::PolicyStore(uint64_t first_version, absl::Duration max_long_poll,
                         std::function<void()> tick)
    : max_long_poll_(max_long_poll),
      tick_(std::move(tick)),
      next_version_(first_version) {
  thread_ = std::thread([this] { WaiterLoop(); });
}

PolicyStore::~PolicyStore() { Close(); }

std::shared_ptr<PolicySnapshot> PolicyStore::Prepare(std::string bytes) {
  auto snap = std::make_shared<PolicySnapshot>();
  snap->sha256_hex = Sha256Hex(bytes);
  snap->xxh3_hex = Xxh3Hex(bytes);
  snap->bytes = std::move(bytes);
  return snap;
}

uint64_t PolicyStore::Publish(std::shared_ptr<PolicySnapshot> snap) {
  absl::MutexLock lock(&mu_);
  snap->version = next_version_++;
  snapshot_ = std::move(snap);
  return snapshot_->version;
}

std::shared_ptr<const PolicySnapshot> PolicyStore::Newest() const {
  absl::MutexLock lock(&mu_);
  return snapshot_;
}

uint64_t PolicyStore::version() const {
  absl::MutexLock lock(&mu_);
  return snapshot_ ? snapshot_->version : 0;
}

PolicyStore::Answer PolicyStore::AnswerLocked() const {
  return {snapshot_->version, snapshot_->bytes.size(), snapshot_->sha256_hex};
}

void PolicyStore::Wait(uint64_t after, absl::Duration max_wait, Reply reply) {
  Answer now;
  {
    absl::MutexLock lock(&mu_);
    if (!(snapshot_->version > after || max_wait <= absl::ZeroDuration() ||
          finished_ || closing_)) {
      waiters_.push_back({after,
                          absl::Now() + std::min(max_wait, max_long_poll_),
                          std::move(reply)});
      return;
    }
    now = AnswerLocked();
  }
  reply(now);
}

void PolicyStore::Finish() {
  absl::MutexLock lock(&mu_);
  finished_ = true;
}

void PolicyStore::Close() {
  {
    absl::MutexLock lock(&mu_);
    if (closing_ && !thread_.joinable()) return;
    closing_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void PolicyStore::WaiterLoop() {
  for (;;) {
    std::vector<Waiter> due;
    Answer answer;
    bool stop = false;
    {
      absl::MutexLock lock(&mu_);
      absl::Time next = absl::Now() + absl::Milliseconds(200);
      for (const Waiter& w : waiters_) next = std::min(next, w.until);
      const uint64_t seen = next_version_;
      auto wake = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return closing_ || finished_ || next_version_ != seen;
      };
      mu_.AwaitWithDeadline(absl::Condition(&wake), next);
      const absl::Time now = absl::Now();
      stop = closing_;
      if (snapshot_ != nullptr) {
        answer = AnswerLocked();
        for (auto it = waiters_.begin(); it != waiters_.end();) {
          if (stop || finished_ || answer.version > it->after ||
              it->until <= now) {
            due.push_back(std::move(*it));
            it = waiters_.erase(it);
          } else {
            ++it;
          }
        }
      }
    }
    for (Waiter& w : due) w.reply(answer);
    if (tick_) tick_();
    if (stop) return;
    absl::MutexLock lock(&mu_);
    // Once finished every poll is answered at once: no one is left to wait.
    if (finished_ && waiters_.empty()) {
      mu_.Await(absl::Condition(&closing_));
      return;
    }
  }
}

}  // namespace cmdistill::learner
