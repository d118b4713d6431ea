// A bounded multi-producer multi-consumer queue: the one queue type of
// cmdistill.
//
// Status-code contract (STYLE.md), which callers turn directly into gRPC
// statuses:
//   TryPush         OK | RESOURCE_EXHAUSTED (full: back off) | UNAVAILABLE
//   (closed) Push(deadline)  OK | DEADLINE_EXCEEDED (still full at the
//   deadline) | UNAVAILABLE (closed) PopBatch        items | DEADLINE_EXCEEDED
//   (nothing arrived in time) |
//                   OUT_OF_RANGE (closed and drained)
// After Close() no push succeeds; items already queued can still be popped
// (drain), and every blocked caller wakes up at once.
//
// Thread-safety: every method may be called concurrently from any thread.
// Blocking methods block only until their deadline; none holds the lock while
// waiting.
#ifndef CMDISTILL_COMMON_QUEUE_BOUNDED_QUEUE_H_
#define CMDISTILL_COMMON_QUEUE_BOUNDED_QUEUE_H_

#include <algorithm>
#include <cstddef>
#include <deque>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace cmdistill {

template <typename T>
class BoundedQueue {
 public:
  // `capacity` must be at least 1.
  explicit BoundedQueue(size_t capacity)
      : capacity_(std::max<size_t>(capacity, 1)) {}

  BoundedQueue(const BoundedQueue&) = delete;
  BoundedQueue& operator=(const BoundedQueue&) = delete;

  // Never blocks. On failure `item` is left untouched, so the caller still owns
  // it.
  absl::Status TryPush(T& item) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (closed_) return absl::UnavailableError("queue is closed");
    if (items_.size() >= capacity_) {
      return absl::ResourceExhaustedError(
          absl::StrCat("queue is full (capacity ", capacity_, ")"));
    }
    items_.push_back(std::move(item));
    return absl::OkStatus();
  }
  absl::Status TryPush(T&& item) ABSL_LOCKS_EXCLUDED(mu_) {
    return TryPush(item);
  }

  // Blocks until there is room, the queue is closed or `deadline` passes.
  absl::Status Push(T& item, absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    auto room_or_closed = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return closed_ || items_.size() < capacity_;
    };
    mu_.AwaitWithDeadline(absl::Condition(&room_or_closed), deadline);
    if (closed_) return absl::UnavailableError("queue is closed");
    if (items_.size() >= capacity_) {
      return absl::DeadlineExceededError(
          "queue stayed full until the deadline");
    }
    items_.push_back(std::move(item));
    return absl::OkStatus();
  }
  absl::Status Push(T&& item, absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_) {
    return Push(item, deadline);
  }

  // Waits until at least `min_items` are queued (or the queue is closed, or
  // `deadline` passes), then removes and returns up to `max_items` in FIFO
  // order. At the deadline it returns whatever is there if that is at least one
  // item. `min_items` is clamped to [1, max_items]; `max_items` must be at
  // least 1.
  absl::StatusOr<std::vector<T>> PopBatch(size_t min_items, size_t max_items,
                                          absl::Time deadline)
      ABSL_LOCKS_EXCLUDED(mu_) {
    max_items = std::max<size_t>(max_items, 1);
    min_items = std::clamp<size_t>(min_items, 1, max_items);
    absl::MutexLock lock(&mu_);
    auto enough_or_closed = [this, min_items]()
                                ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
                                  return closed_ || items_.size() >= min_items;
                                };
    mu_.AwaitWithDeadline(absl::Condition(&enough_or_closed), deadline);
    if (items_.empty()) {
      if (closed_) return absl::OutOfRangeError("queue is closed and drained");
      return absl::DeadlineExceededError("no item arrived before the deadline");
    }
    const size_t n = std::min(max_items, items_.size());
    std::vector<T> out;
    out.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      out.push_back(std::move(items_.front()));
      items_.pop_front();
    }
    return out;
  }

  // Idempotent. Wakes every blocked Push and PopBatch.
  void Close() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }

  size_t size() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return items_.size();
  }
  size_t capacity() const { return capacity_; }
  bool closed() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return closed_;
  }

 private:
  const size_t capacity_;
  mutable absl::Mutex mu_;
  std::deque<T> items_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace cmdistill

#endif  // CMDISTILL_COMMON_QUEUE_BOUNDED_QUEUE_H_
