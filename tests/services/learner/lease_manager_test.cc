// Lease accounting: every prompt of every epoch is trained exactly once,
// whatever expires, is returned, duplicated or submitted late; state survives a
// restore.
#include "services/learner/lease_manager.h"

#include <map>
#include <random>
#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace cmdistill::learner {
namespace {

using ::cmdistill::testing::StatusIs;

const absl::Time kT0 = absl::FromUnixSeconds(1000);

LeaseOptions Opts(uint32_t g, uint64_t epochs) {
  LeaseOptions o;
  o.samples_per_prompt = g;
  o.epochs = epochs;
  o.lease_duration = absl::Seconds(10);
  return o;
}

TEST(LeaseManager, HandsOutEveryPromptOncePerEpochThenOutOfRange) {
  LeaseManager m(5, Opts(2, 2));
  std::multiset<uint64_t> trained;
  absl::Time now = kT0;
  while (!m.finished()) {
    ASSERT_OK_AND_ASSIGN(auto leases, m.Acquire(2, now));
    ASSERT_FALSE(leases.empty());
    for (const Lease& l : leases) {
      EXPECT_EQ(m.Submit(l.lease_id, 0, now), SubmitResult::kAccepted);
      EXPECT_EQ(m.Submit(l.lease_id, 0, now), SubmitResult::kDuplicate);
      EXPECT_EQ(m.Submit(l.lease_id, 7, now), SubmitResult::kInvalid);
      EXPECT_EQ(m.Submit(l.lease_id, 1, now), SubmitResult::kGroupComplete);
      EXPECT_EQ(m.Submit(l.lease_id, 1, now),
                SubmitResult::kUnknownLease);  // done
      trained.insert(l.prompt_id);
    }
  }
  EXPECT_EQ(trained.size(), 10u);
  for (uint64_t p = 0; p < 5; ++p)
    EXPECT_EQ(trained.count(p), 2u);  // once per epoch
  EXPECT_THAT(m.Acquire(1, now), StatusIs(absl::StatusCode::kOutOfRange));
  EXPECT_EQ(m.done_total(), 10u);
}

TEST(LeaseManager, ExpiredLeasesAreReissuedAndOldIdsRefused) {
  LeaseManager m(2, Opts(1, 1));
  ASSERT_OK_AND_ASSIGN(auto a, m.Acquire(2, kT0));
  ASSERT_EQ(a.size(), 2u);
  ASSERT_OK_AND_ASSIGN(auto none, m.Acquire(2, kT0 + absl::Seconds(5)));
  EXPECT_TRUE(none.empty());  // everything leased, nothing expired yet
  // The first actor dies; after expiry both prompts are re-issued under new
  // ids.
  ASSERT_OK_AND_ASSIGN(auto b, m.Acquire(2, kT0 + absl::Seconds(11)));
  ASSERT_EQ(b.size(), 2u);
  EXPECT_NE(b[0].lease_id, a[0].lease_id);
  EXPECT_EQ(m.Submit(a[0].lease_id, 0, kT0),
            SubmitResult::kUnknownLease);  // late: refused
  EXPECT_EQ(m.Submit(b[0].lease_id, 0, kT0), SubmitResult::kGroupComplete);
  // A returned lease goes back to the front of the queue.
  EXPECT_TRUE(m.Return(b[1].lease_id));
  EXPECT_FALSE(m.Return(b[1].lease_id));
  ASSERT_OK_AND_ASSIGN(auto c, m.Acquire(1, kT0 + absl::Seconds(12)));
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].prompt_id, b[1].prompt_id);
}

TEST(LeaseManager, RandomFailuresNeverTrainAPromptTwice) {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 20; ++trial) {
    const uint64_t n = 1 + rng() % 30;
    const uint32_t g = 1 + rng() % 4;
    LeaseManager m(n, Opts(g, 2));
    std::map<uint64_t, int> trained;
    absl::Time now = kT0;
    std::vector<Lease> held;
    int guard = 0;
    while (!m.finished() && ++guard < 100000) {
      now += absl::Seconds(rng() % 4);
      auto got = m.Acquire(1 + rng() % 3, now);
      ASSERT_OK(got.status());
      held.insert(held.end(), got->begin(), got->end());
      if (held.empty()) continue;
      const size_t i = rng() % held.size();
      const Lease l = held[i];
      switch (rng() % 6) {
        case 0:  // the actor dies: nothing submitted, the lease will expire
          held.erase(held.begin() + static_cast<long>(i));
          break;
        case 1:
          m.Return(l.lease_id);
          held.erase(held.begin() + static_cast<long>(i));
          break;
        default: {  // submit all samples, some twice
          for (uint32_t s = 0; s < g; ++s) {
            SubmitResult r = m.Submit(l.lease_id, s, now);
            if (r == SubmitResult::kGroupComplete)
              ++trained[l.prompt_id * 10 + l.epoch];
            if (rng() % 3 == 0) {
              const SubmitResult again = m.Submit(l.lease_id, s, now);
              EXPECT_NE(again, SubmitResult::kGroupComplete);
              EXPECT_NE(again, SubmitResult::kAccepted);
            }
          }
          held.erase(held.begin() + static_cast<long>(i));
        }
      }
    }
    ASSERT_TRUE(m.finished());
    EXPECT_EQ(trained.size(), 2 * n);
    for (const auto& [key, count] : trained) EXPECT_EQ(count, 1) << key;
  }
}

TEST(LeaseManager, StateRestoresExactly) {
  LeaseManager a(10, Opts(2, 1));
  ASSERT_OK_AND_ASSIGN(auto l, a.Acquire(3, kT0));
  EXPECT_EQ(a.Submit(l[0].lease_id, 0, kT0), SubmitResult::kAccepted);
  LeaseManager b(10, Opts(2, 1));
  ASSERT_OK(b.Restore(a.state()));
  // The restored manager knows the outstanding lease and its received sample.
  EXPECT_EQ(b.Submit(l[0].lease_id, 0, kT0), SubmitResult::kDuplicate);
  EXPECT_EQ(b.Submit(l[0].lease_id, 1, kT0), SubmitResult::kGroupComplete);
  ASSERT_OK_AND_ASSIGN(auto next_a, a.Acquire(1, kT0));
  ASSERT_OK_AND_ASSIGN(auto next_b, b.Acquire(1, kT0));
  EXPECT_EQ(next_a[0].prompt_id,
            next_b[0].prompt_id);  // same order after restore
  // The same counter, but never the same id: a learner that resumes from this
  // state cannot reissue an id its lost history (a) handed out.
  const std::string& ia = next_a[0].lease_id;
  const std::string& ib = next_b[0].lease_id;
  EXPECT_NE(ia, ib);
  EXPECT_EQ(ia.substr(0, ia.rfind('-')), ib.substr(0, ib.rfind('-')));
  EXPECT_EQ(ia.substr(ia.rfind('-') + 1), a.incarnation());
  EXPECT_EQ(ib.substr(ib.rfind('-') + 1), b.incarnation());
  EXPECT_EQ(b.Submit(ia, 0, kT0), SubmitResult::kUnknownLease);
  LeaseManager small(2, Opts(2, 1));
  EXPECT_THAT(small.Restore(a.state()),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace cmdistill::learner
