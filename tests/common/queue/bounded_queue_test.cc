#include "common/queue/bounded_queue.h"

#include <atomic>
#include <memory>
#include <numeric>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace cmdistill {
namespace {

using ::cmdistill::testing::StatusIs;
using ::testing::ElementsAre;

absl::Time Past() { return absl::Now() - absl::Seconds(1); }
absl::Time Soon() { return absl::Now() + absl::Milliseconds(20); }
absl::Time Far() { return absl::Now() + absl::Seconds(30); }

TEST(BoundedQueue, ShedsLoadWithResourceExhaustedWhenFull) {
  BoundedQueue<int> q(3);
  EXPECT_OK(q.TryPush(1));
  EXPECT_OK(q.TryPush(2));
  EXPECT_OK(q.TryPush(3));
  for (int i = 0; i < 100; ++i) {
    EXPECT_THAT(q.TryPush(4), StatusIs(absl::StatusCode::kResourceExhausted));
  }
  EXPECT_EQ(q.size(), 3u);
  ASSERT_OK_AND_ASSIGN(auto one, q.PopBatch(1, 1, Past()));
  EXPECT_THAT(one, ElementsAre(1));
  EXPECT_OK(q.TryPush(4));  // room again
  EXPECT_THAT(q.TryPush(5), StatusIs(absl::StatusCode::kResourceExhausted));
}

TEST(BoundedQueue, FailedTryPushLeavesItemWithCaller) {
  BoundedQueue<std::unique_ptr<int>> q(1);
  EXPECT_OK(q.TryPush(std::make_unique<int>(1)));
  auto item = std::make_unique<int>(2);
  EXPECT_THAT(q.TryPush(item), StatusIs(absl::StatusCode::kResourceExhausted));
  ASSERT_NE(item, nullptr);
  EXPECT_EQ(*item, 2);
}

TEST(BoundedQueue, PopBatchHonoursMinMaxAndFifo) {
  BoundedQueue<int> q(10);
  for (int i = 0; i < 5; ++i) ASSERT_OK(q.TryPush(i));
  ASSERT_OK_AND_ASSIGN(auto a, q.PopBatch(2, 3, Past()));
  EXPECT_THAT(a, ElementsAre(0, 1, 2));
  // Fewer than min at the deadline: returns what is there.
  ASSERT_OK_AND_ASSIGN(auto b, q.PopBatch(5, 5, Soon()));
  EXPECT_THAT(b, ElementsAre(3, 4));
  EXPECT_THAT(q.PopBatch(1, 4, Soon()),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
}

TEST(BoundedQueue, PopBatchWakesWhenMinReached) {
  BoundedQueue<int> q(10);
  std::thread producer([&] {
    for (int i = 0; i < 4; ++i) ASSERT_OK(q.Push(i, Far()));
  });
  ASSERT_OK_AND_ASSIGN(auto batch, q.PopBatch(4, 8, Far()));
  producer.join();
  EXPECT_THAT(batch, ElementsAre(0, 1, 2, 3));
}

TEST(BoundedQueue, PushWaitsForRoomOrDeadline) {
  BoundedQueue<int> q(1);
  ASSERT_OK(q.TryPush(1));
  EXPECT_THAT(q.Push(2, Soon()), StatusIs(absl::StatusCode::kDeadlineExceeded));
  absl::Notification started;
  std::thread pusher([&] {
    started.Notify();
    EXPECT_OK(q.Push(3, Far()));
  });
  started.WaitForNotification();
  ASSERT_OK_AND_ASSIGN(auto first, q.PopBatch(1, 1, Far()));
  EXPECT_THAT(first, ElementsAre(1));
  ASSERT_OK_AND_ASSIGN(auto second, q.PopBatch(1, 1, Far()));
  EXPECT_THAT(second, ElementsAre(3));
  pusher.join();
}

TEST(BoundedQueue, CloseRefusesPushesDrainsThenOutOfRange) {
  BoundedQueue<int> q(4);
  ASSERT_OK(q.TryPush(1));
  ASSERT_OK(q.TryPush(2));
  q.Close();
  q.Close();  // idempotent
  EXPECT_THAT(q.TryPush(3), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(q.Push(3, Far()), StatusIs(absl::StatusCode::kUnavailable));
  // Closed queues hand out what they hold even below min, without waiting.
  ASSERT_OK_AND_ASSIGN(auto rest, q.PopBatch(10, 10, Far()));
  EXPECT_THAT(rest, ElementsAre(1, 2));
  EXPECT_THAT(q.PopBatch(1, 1, Far()), StatusIs(absl::StatusCode::kOutOfRange));
}

TEST(BoundedQueue, CloseWakesBlockedCallers) {
  BoundedQueue<int> full(1);
  ASSERT_OK(full.TryPush(0));
  BoundedQueue<int> empty(1);
  std::thread blocked_push([&] {
    EXPECT_THAT(full.Push(1, Far()), StatusIs(absl::StatusCode::kUnavailable));
  });
  std::thread blocked_pop([&] {
    EXPECT_THAT(empty.PopBatch(1, 1, Far()),
                StatusIs(absl::StatusCode::kOutOfRange));
  });
  full.Close();
  empty.Close();
  blocked_push.join();
  blocked_pop.join();
}

TEST(BoundedQueue, ManyProducersAndConsumersLoseAndDuplicateNothing) {
  constexpr int kProducers = 4, kConsumers = 3, kPerProducer = 2000;
  BoundedQueue<int> q(16);
  std::vector<std::thread> threads;
  std::vector<std::vector<int>> got(kConsumers);
  for (int p = 0; p < kProducers; ++p) {
    threads.emplace_back([&, p] {
      for (int i = 0; i < kPerProducer; ++i)
        ASSERT_OK(q.Push(p * kPerProducer + i, Far()));
    });
  }
  for (int c = 0; c < kConsumers; ++c) {
    threads.emplace_back([&, c] {
      for (;;) {
        auto batch = q.PopBatch(1, 7, Far());
        if (!batch.ok()) {
          EXPECT_THAT(batch, StatusIs(absl::StatusCode::kOutOfRange));
          return;
        }
        got[c].insert(got[c].end(), batch->begin(), batch->end());
      }
    });
  }
  for (int p = 0; p < kProducers; ++p) threads[p].join();
  q.Close();
  for (int c = 0; c < kConsumers; ++c) threads[kProducers + c].join();
  std::vector<int> all;
  for (const auto& g : got) all.insert(all.end(), g.begin(), g.end());
  std::sort(all.begin(), all.end());
  std::vector<int> expected(kProducers * kPerProducer);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(all, expected);
}

}  // namespace
}  // namespace cmdistill
