// The learner's policy store: versions and digests, long-polls answered by a
// publish, by their deadline and by Finish, and at once when they need not
// wait.
#include "services/learner/policy_store.h"

#include <atomic>

#include "absl/synchronization/notification.h"
#include "common/util/sha256.h"
#include "gtest/gtest.h"

namespace cmdistill::learner {
namespace {

TEST(PolicyStore, VersionsCountFromTheFirstAndCarryTheirDigest) {
  PolicyStore s(/*first_version=*/7, absl::Seconds(30));
  EXPECT_EQ(s.Newest(), nullptr);
  EXPECT_EQ(s.Publish("abc"), 7u);
  EXPECT_EQ(s.Publish("abcd"), 8u);
  auto snap = s.Newest();
  ASSERT_NE(snap, nullptr);
  EXPECT_EQ(snap->version, 8u);
  EXPECT_EQ(snap->bytes, "abcd");
  EXPECT_EQ(snap->sha256_hex, Sha256Hex("abcd"));
  EXPECT_EQ(s.version(), 8u);
}

TEST(PolicyStore, APollIsAnsweredAtOnceWhenItNeedNotWait) {
  PolicyStore s(0, absl::Seconds(30));
  s.Publish("v0");
  s.Publish("v1");
  uint64_t got = 99;
  s.Wait(/*after=*/0, absl::Seconds(10),
         [&](const PolicyStore::Answer& a) { got = a.version; });
  EXPECT_EQ(got, 1u);  // newer than 0 exists: answered on this thread
  got = 99;
  s.Wait(1, absl::ZeroDuration(),
         [&](const PolicyStore::Answer& a) { got = a.version; });
  EXPECT_EQ(got, 1u);  // no wait asked for
}

TEST(PolicyStore, APublishAnswersAWaitingPoll) {
  PolicyStore s(0, absl::Seconds(30));
  s.Publish("v0");
  absl::Notification done;
  PolicyStore::Answer got;
  s.Wait(0, absl::Seconds(30), [&](const PolicyStore::Answer& a) {
    got = a;
    done.Notify();
  });
  EXPECT_FALSE(done.HasBeenNotified());
  s.Publish("v1");
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_EQ(got.version, 1u);
  EXPECT_EQ(got.size_bytes, 2u);
  EXPECT_EQ(got.sha256_hex, Sha256Hex("v1"));
}

TEST(PolicyStore, DeadlinesFinishAndCloseAnswerEveryPoll) {
  PolicyStore s(0, /*max_long_poll=*/absl::Milliseconds(50));
  s.Publish("v0");
  absl::Notification timed_out;
  // Asked for 30 s; the store's cap of 50 ms answers it with the old version.
  s.Wait(0, absl::Seconds(30), [&](const PolicyStore::Answer& a) {
    EXPECT_EQ(a.version, 0u);
    timed_out.Notify();
  });
  ASSERT_TRUE(timed_out.WaitForNotificationWithTimeout(absl::Seconds(20)));
  PolicyStore t(0, absl::Seconds(30));
  t.Publish("v0");
  absl::Notification finished;
  t.Wait(0, absl::Seconds(30),
         [&](const PolicyStore::Answer&) { finished.Notify(); });
  t.Finish();
  ASSERT_TRUE(finished.WaitForNotificationWithTimeout(absl::Seconds(20)));
  std::atomic<int> after = 0;
  t.Wait(0, absl::Seconds(30), [&](const PolicyStore::Answer&) { ++after; });
  EXPECT_EQ(after, 1);  // finished: at once
  PolicyStore u(0, absl::Seconds(30));
  u.Publish("v0");
  std::atomic<int> closed = 0;
  u.Wait(0, absl::Seconds(30), [&](const PolicyStore::Answer&) { ++closed; });
  u.Close();
  EXPECT_EQ(closed, 1);
}

TEST(PolicyStore, TheTickRuns) {
  absl::Notification ticked;
  PolicyStore s(0, absl::Seconds(30), [&] {
    if (!ticked.HasBeenNotified()) ticked.Notify();
  });
  EXPECT_TRUE(ticked.WaitForNotificationWithTimeout(absl::Seconds(20)));
}

}  // namespace
}  // namespace cmdistill::learner
