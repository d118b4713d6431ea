#include "common/process/signals.h"

#include <signal.h>

#include <thread>

#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace cmdistill {
namespace {

using ::cmdistill::testing::StatusIs;

TEST(ShutdownSignal, SigtermIsDeliveredThroughThePipe) {
  ASSERT_OK_AND_ASSIGN(auto s, ShutdownSignal::Install());
  EXPECT_EQ(s->WaitUntil(absl::Now() + absl::Milliseconds(10)), 0);
  // Raised from another thread: the handler must not care which thread it lands
  // on.
  std::thread([] { kill(getpid(), SIGTERM); }).join();
  EXPECT_EQ(s->Wait(), SIGTERM);
  EXPECT_EQ(s->Wait(), SIGTERM);  // sticky
  EXPECT_EQ(s->signal_count(), 1);
}

TEST(ShutdownSignal, NotifyAndSecondInstance) {
  ASSERT_OK_AND_ASSIGN(auto s, ShutdownSignal::Install());
  EXPECT_THAT(ShutdownSignal::Install(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  std::thread t([&] { s->Notify(); });
  EXPECT_EQ(s->Wait(), ShutdownSignal::kNotified);
  t.join();
}

TEST(ShutdownSignal, SigintCountsAndHandlersAreRestored) {
  {
    ASSERT_OK_AND_ASSIGN(auto s, ShutdownSignal::Install());
    raise(SIGINT);
    raise(SIGINT);
    EXPECT_EQ(s->Wait(), SIGINT);
    EXPECT_EQ(s->signal_count(), 2);
  }
  struct sigaction now;
  sigaction(SIGTERM, nullptr, &now);
  EXPECT_EQ(now.sa_handler, SIG_DFL);
}

}  // namespace
}  // namespace cmdistill
