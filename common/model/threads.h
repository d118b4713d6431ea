// How many threads a piece of model work runs on. Two libraries compute:
// LibTorch (an OpenMP pool) and OpenBLAS (its own pool, or the same OpenMP pool
// in Debian's libopenblas0-openmp). A parallel region costs a fork/join and an
// OpenBLAS GEMM split across threads re-packs its operands per thread, so work
// below a size runs faster on one thread — measured for a decode step at batch
// 8 (docs/benchmarks.md, "Thread scaling"). Torch-free: what the CLI and the
// roles include.
#ifndef CMDISTILL_COMMON_MODEL_THREADS_H_
#define CMDISTILL_COMMON_MODEL_THREADS_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "common/checkpoint/hf_checkpoint.h"

namespace cmdistill::model {

// LibTorch's intra-op threads and OpenBLAS's for this process (n >= 1), and
// their number.
void SetComputeThreads(int n);
int ComputeThreads();

// Sizes OpenBLAS's pool with LibTorch's, once per process (a LanguageModel
// does it when made).
void MatchBlasThreadsOnce();

// "openmp" (one pool with LibTorch), "pthreads" (a second pool), "serial",
// or "none" (no OpenBLAS in the process).
std::string BlasThreading();

// Whether a forward over `rows` tokens of `config` is worth more than one
// thread: its MLP projection ([rows, hidden] x [hidden, intermediate]) does at
// least 4e6 FLOPs, or its weight matrix (>= 512 Ki elements)
// outgrows a core's cache, so that reading it is what a second core speeds
// up. Calibrated on decode steps (docs/benchmarks.md, "Thread scaling").
bool WorthThreads(const checkpoint::ModelConfig& config, int64_t rows);

// How work picks its threads; CMDISTILL_THREADS_POLICY, read once, names it
// (for measuring what each part gives; docs/benchmarks.md):
//   "tuned" (default): small work on one thread, the rest as ThreadsTuner
//                      measures best;
//   "size":            small work on one thread, the rest threaded;
//   "always":          everything on ComputeThreads() (before 2026-12-08).
enum class ThreadsPolicy { kTuned, kSize, kAlways };
ThreadsPolicy GetThreadsPolicy();
std::string ThreadsPolicyName();  // "tuned", "size" or "always"

// While alive, this thread's LibTorch and OpenBLAS work runs on one thread
// unless `use_threads`; scopes nest (an inner scope cannot add threads back).
// With the OpenMP OpenBLAS both follow the calling thread's OpenMP count; the
// pthreads OpenBLAS has one count per process, which the scope sets too (so
// scopes on two threads at once would share it: the roles run their model
// work on one thread). A LibTorch built with MKL would need MKL's count set
// as well (Debian's is not).
class ComputeThreadsScope {
 public:
  explicit ComputeThreadsScope(bool use_threads);
  ~ComputeThreadsScope();
  ComputeThreadsScope(const ComputeThreadsScope&) = delete;
  ComputeThreadsScope& operator=(const ComputeThreadsScope&) = delete;

 private:
  int restore_ = 0;  // the thread count to restore; 0: nothing changed
};

// Chooses, per kind of recurring work (a decode step of a batch size, a
// scoring batch, a training step), between ComputeThreads() and one thread by
// measuring both: with a neighbour on one of the cores (another process,
// another role) every parallel region waits for the thread that shares its
// core, a scheduler time slice at a time — measured 3x slower than one
// thread for decode at batch 64 on 2 cores with one busy. The first two uses
// run threaded (the first is not measured: it pays first-touch costs), the
// next on one thread, then the faster of the two (a moving
// average of seconds per unit of work); the other is tried again after 16
// uses, and after twice as many each time it loses (at most 512), so a
// neighbour that comes or goes is noticed (a probe's time replaces its
// choice's stale average). Thread-safe.
class ThreadsTuner {
 public:
  struct Choice {
    bool threads = true;
    bool probe = false;  // the other choice than the best, tried again
  };
  Choice Choose(int kind);
  // The time of a use made with `choice` (from Choose).
  void Record(int kind, Choice choice, double seconds_per_unit);

 private:
  struct Kind {
    double avg[2] = {-1, -1};  // [one thread, threads]; < 0: not measured
    int64_t uses = 0, next_probe = 16, interval = 16;
    bool warm = false;
  };
  std::mutex mu_;
  std::map<int, Kind> kinds_;
};

// A ComputeThreadsScope whose choice comes from `tuner` for `kind` (when the
// work is worth threads at all) and whose wall time, per `units` of work, is
// reported back to it when the scope ends.
class TunedThreadsScope {
 public:
  TunedThreadsScope(ThreadsTuner* tuner, int kind, bool worth_threads,
                    double units);
  ~TunedThreadsScope();
  TunedThreadsScope(const TunedThreadsScope&) = delete;
  TunedThreadsScope& operator=(const TunedThreadsScope&) = delete;

  // The work turned out not to be what `kind` times (a decode loop's last
  // step, which stops before its forward): nothing is reported. Work that
  // ends by an exception reports nothing either.
  void Discard() { units_ = 0; }

 private:
  ThreadsTuner* tuner_;
  int kind_;
  bool tuned_;
  ThreadsTuner::Choice choice_;
  double units_;
  int exceptions_;
  std::chrono::steady_clock::time_point start_;
  std::optional<ComputeThreadsScope> scope_;
};

// A small integer for "about n" (its bit length), to key ThreadsTuner kinds.
int SizeBucket(int64_t n);

}  // namespace cmdistill::model

#endif  // CMDISTILL_COMMON_MODEL_THREADS_H_
