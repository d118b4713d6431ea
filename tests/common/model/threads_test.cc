// How model work picks its threads: the size rule, the scope, the tuner's
// choices from measured times, and the OpenBLAS this process computes with.
#include "common/model/threads.h"

#include <ATen/Parallel.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <vector>

#include "gtest/gtest.h"

namespace cmdistill::model {
namespace {

checkpoint::ModelConfig Shape(int64_t hidden, int64_t intermediate) {
  checkpoint::ModelConfig c;
  c.hidden_size = hidden;
  c.intermediate_size = intermediate;
  return c;
}

TEST(Threads, SmallWorkRunsOnOneThreadLargeWorkOrLargeWeightsOnAll) {
  if (GetThreadsPolicy() != ThreadsPolicy::kTuned) GTEST_SKIP();
  const auto small = Shape(256, 688);    // 176 Ki weights
  const auto medium = Shape(512, 1376);  // 688 Ki weights: past a core's cache
  EXPECT_FALSE(WorthThreads(small, 1));
  EXPECT_FALSE(WorthThreads(small, 8));  // 2.8 MFLOP
  EXPECT_TRUE(WorthThreads(small, 12));  // 4.2 MFLOP
  EXPECT_TRUE(WorthThreads(small, 64));
  EXPECT_TRUE(WorthThreads(medium, 1));
}

// The threads a LibTorch parallel loop actually ran on (this file is
// compiled with OpenMP, as LibTorch's kernels are).
int ThreadsUsed() {
  std::atomic<int> mask{0};
  at::parallel_for(0, 64, 1, [&](int64_t, int64_t) {
    mask |= 1 << at::get_thread_num();
    // Long enough that every thread of the pool takes a chunk.
    const auto until =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(5);
    while (std::chrono::steady_clock::now() < until) {
    }
  });
  return __builtin_popcount(mask.load());
}

TEST(Threads, AScopeRunsItsWorkOnOneThreadAndRestores) {
  const int before = ComputeThreads();
  SetComputeThreads(2);
  {
    const ComputeThreadsScope all(true);
    EXPECT_EQ(ThreadsUsed(), 2);
    {
      const ComputeThreadsScope one(false);
      EXPECT_EQ(ThreadsUsed(), 1);
      const ComputeThreadsScope inner(true);  // cannot add threads back
      EXPECT_EQ(ThreadsUsed(), 1);
    }
    EXPECT_EQ(ThreadsUsed(), 2);
  }
  EXPECT_EQ(ComputeThreads(), 2);
  SetComputeThreads(before);
}

TEST(Threads, ATunedScopeTakesTheTunersChoiceAndReportsItsTime) {
  const int before = ComputeThreads();
  SetComputeThreads(2);
  ThreadsTuner tuner;
  std::vector<int> used;
  for (int i = 0; i < 4; ++i) {
    TunedThreadsScope s(&tuner, /*kind=*/7, /*worth_threads=*/true, 1.0);
    used.push_back(ThreadsUsed());
  }
  // Threaded twice (the first not measured), one thread once, then the faster.
  EXPECT_EQ(used[0], 2);
  EXPECT_EQ(used[1], 2);
  EXPECT_EQ(used[2], 1);
  {
    // Not worth threads: one thread, and the tuner is not asked.
    TunedThreadsScope s(&tuner, /*kind=*/8, /*worth_threads=*/false, 1.0);
    EXPECT_EQ(ThreadsUsed(), 1);
  }
  // A discarded use and one ended by an exception report nothing: kind 9
  // then still needs its unmeasured and its measured threaded uses before
  // it tries one thread (had they reported, the next use would be it).
  {
    TunedThreadsScope s(&tuner, 9, true, 1.0);
    s.Discard();
  }
  try {
    TunedThreadsScope s(&tuner, 9, true, 1.0);
    throw std::runtime_error("failed work");
  } catch (const std::runtime_error&) {
  }
  std::vector<int> after;
  for (int i = 0; i < 3; ++i) {
    TunedThreadsScope s(&tuner, 9, true, 1.0);
    after.push_back(ThreadsUsed());
  }
  EXPECT_EQ(after, (std::vector<int>{2, 2, 1}));
  SetComputeThreads(before);
}

// Uses `n` choices of kind 0, each recorded as taking `threaded` or `single`
// seconds; returns the choices (true: threaded).
std::vector<bool> Use(ThreadsTuner* t, int n, double threaded, double single) {
  std::vector<bool> out;
  for (int i = 0; i < n; ++i) {
    const ThreadsTuner::Choice c = t->Choose(0);
    t->Record(0, c, c.threads ? threaded : single);
    out.push_back(c.threads);
  }
  return out;
}

int Count(const std::vector<bool>& v, bool value) {
  int n = 0;
  for (bool b : v) n += b == value;
  return n;
}

TEST(ThreadsTuner, MeasuresBothThenKeepsTheFasterAndProbesTheOtherLessOften) {
  ThreadsTuner t;
  // Threads twice (the first not measured), one thread once, then the
  // faster: one thread (a busy neighbour makes threads 3x slower).
  const auto first = Use(&t, 16, 3.0, 1.0);
  EXPECT_EQ(first, (std::vector<bool>{true, true, false, false, false, false,
                                      false, false, false, false, false, false,
                                      false, false, false, false}));
  // Use 16 probes threads; it loses again: the next probe comes 32 uses
  // after the next, then 64.
  const auto next = Use(&t, 16 + 33 + 65, 3.0, 1.0);
  EXPECT_TRUE(next[0]);
  EXPECT_TRUE(next[33]);
  EXPECT_TRUE(next[98]);
  EXPECT_EQ(Count(next, true), 3);
}

TEST(ThreadsTuner, FollowsANeighbourThatComesAndGoes) {
  ThreadsTuner t;
  // Idle: threads are twice as fast and kept (one probe of a single thread
  // per interval).
  const auto idle = Use(&t, 40, 1.0, 2.0);
  EXPECT_GE(Count(idle, true), 36);
  // A neighbour: threads now take 4x as long; within a few probes the
  // average moves and one thread is chosen.
  const auto busy = Use(&t, 400, 8.0, 2.0);
  EXPECT_FALSE(busy.back());
  EXPECT_GE(Count({busy.end() - 100, busy.end()}, false), 95);
  // It leaves: threads win their next probes back.
  const auto gone = Use(&t, 2000, 1.0, 2.0);
  EXPECT_TRUE(gone.back());
  EXPECT_GE(Count({gone.end() - 100, gone.end()}, true), 95);
}

TEST(Threads, ComputesWithTheOpenBlasTheSystemSelected) {
  // scripts/setup.sh selects the OpenMP build (one thread pool with
  // LibTorch's); this process must have loaded that one.
  std::error_code ec;
  const auto blas =
      std::filesystem::canonical("/usr/lib/x86_64-linux-gnu/libblas.so.3", ec);
  if (ec || blas.string().find("openblas-openmp") == std::string::npos)
    GTEST_SKIP() << "the selected BLAS is not OpenBLAS's OpenMP build";
  EXPECT_EQ(BlasThreading(), "openmp");
}

}  // namespace
}  // namespace cmdistill::model
