#include "common/model/threads.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <exception>

namespace cmdistill::model {

namespace {

// Looked up rather than linked: OpenBLAS comes in through LibTorch's libblas
// (Debian) or not at all, and OpenMP through LibTorch.
template <typename F>
F Symbol(const char* name) {
  return reinterpret_cast<F>(dlsym(RTLD_DEFAULT, name));
}

// OpenBLAS keeps a thread pool of its own (one thread per core by default)
// that LibTorch does not size when it links the generic libblas (Debian): each
// small matmul of a decode step then wakes threads that spin in sched_yield
// next to LibTorch's — measured as 37% of a batch-1 decode's time in
// sched_yield and the kernel.
void SetBlasThreads(int n) {
  static const auto set = Symbol<void (*)(int)>("openblas_set_num_threads");
  if (set != nullptr) set(n);
}

// The calling thread's OpenMP thread count (an OpenMP ICV: per thread, cheap
// to change; LibTorch's parallel_for and OpenMP OpenBLAS read it per call).
void SetThisThreadsOmpThreads(int n) {
  static const auto set = Symbol<void (*)(int)>("omp_set_num_threads");
  if (set != nullptr) set(n);
}

}  // namespace

void SetComputeThreads(int n) {
  at::set_num_threads(std::max(1, n));
  SetBlasThreads(std::max(1, n));
}

int ComputeThreads() { return at::get_num_threads(); }

void MatchBlasThreadsOnce() {
  static const bool done = [] {
    SetBlasThreads(at::get_num_threads());
    return true;
  }();
  (void)done;
}

std::string BlasThreading() {
  static const auto get = Symbol<int (*)()>("openblas_get_parallel");
  if (get == nullptr) return "none";
  switch (get()) {
    case 0:
      return "serial";
    case 1:
      return "pthreads";
    case 2:
      return "openmp";
  }
  return "unknown";
}

ThreadsPolicy GetThreadsPolicy() {
  static const ThreadsPolicy p = [] {
    const char* e = std::getenv("CMDISTILL_THREADS_POLICY");
    const std::string v = e != nullptr ? e : "";
    if (v == "always") return ThreadsPolicy::kAlways;
    if (v == "size") return ThreadsPolicy::kSize;
    return ThreadsPolicy::kTuned;
  }();
  return p;
}

std::string ThreadsPolicyName() {
  switch (GetThreadsPolicy()) {
    case ThreadsPolicy::kAlways:
      return "always";
    case ThreadsPolicy::kSize:
      return "size";
    case ThreadsPolicy::kTuned:
      break;
  }
  return "tuned";
}

bool WorthThreads(const checkpoint::ModelConfig& config, int64_t rows) {
  const double weight = static_cast<double>(config.hidden_size) *
                        static_cast<double>(config.intermediate_size);
  if (GetThreadsPolicy() == ThreadsPolicy::kAlways) return true;
  return 2.0 * static_cast<double>(rows) * weight >= 4e6 ||
         weight >= 512.0 * 1024.0;
}

namespace {

// The OpenMP OpenBLAS follows the calling thread's OpenMP count by itself
// (and resizes its buffers when told a new count: not per call); the
// pthreads one must be told.
bool BlasFollowsOpenMp() {
  static const bool follows = BlasThreading() == "openmp";
  return follows;
}

}  // namespace

ComputeThreadsScope::ComputeThreadsScope(bool use_threads) {
  if (use_threads) return;
  const int n = at::get_num_threads();
  if (n <= 1) return;
  restore_ = n;
  SetThisThreadsOmpThreads(1);
  if (!BlasFollowsOpenMp()) SetBlasThreads(1);
}

ComputeThreadsScope::~ComputeThreadsScope() {
  if (restore_ == 0) return;
  SetThisThreadsOmpThreads(restore_);
  if (!BlasFollowsOpenMp()) SetBlasThreads(restore_);
}

ThreadsTuner::Choice ThreadsTuner::Choose(int kind) {
  std::lock_guard<std::mutex> lock(mu_);
  Kind& k = kinds_[kind];
  const int64_t use = k.uses++;
  if (k.avg[1] < 0) return {true, false};
  if (k.avg[0] < 0) return {false, false};
  const bool best = k.avg[1] <= k.avg[0];
  if (use < k.next_probe) return {best, false};
  k.next_probe = use + k.interval;
  return {!best, true};
}

void ThreadsTuner::Record(int kind, Choice choice, double seconds_per_unit) {
  if (!(seconds_per_unit >= 0)) return;
  std::lock_guard<std::mutex> lock(mu_);
  Kind& k = kinds_[kind];
  if (!k.warm) {  // the first use pays first-touch costs: not a measure
    k.warm = true;
    return;
  }
  double& a = k.avg[choice.threads ? 1 : 0];
  if (a < 0 || choice.probe) {
    // A first measure, or a probe of the other choice: its average was made
    // long ago (before a neighbour came or went), the probe replaces it.
    a = seconds_per_unit;
  } else {
    a = 0.7 * a + 0.3 * seconds_per_unit;
  }
  if (!choice.probe) return;
  // The probe lost again (back off) or won (keep watching closely).
  const bool won = (k.avg[1] <= k.avg[0]) == choice.threads;
  k.interval = won ? 16 : std::min<int64_t>(512, 2 * k.interval);
  k.next_probe = k.uses + k.interval;
}

TunedThreadsScope::TunedThreadsScope(ThreadsTuner* tuner, int kind,
                                     bool worth_threads, double units)
    : tuner_(tuner),
      kind_(kind),
      tuned_(worth_threads && at::get_num_threads() > 1 &&
             GetThreadsPolicy() == ThreadsPolicy::kTuned),
      choice_(tuned_ ? tuner->Choose(kind)
                     : ThreadsTuner::Choice{worth_threads, false}),
      units_(units),
      exceptions_(std::uncaught_exceptions()),
      start_(std::chrono::steady_clock::now()) {
  scope_.emplace(choice_.threads);
}

TunedThreadsScope::~TunedThreadsScope() {
  if (!tuned_ || !(units_ > 0) || std::uncaught_exceptions() > exceptions_)
    return;
  const double s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_)
          .count();
  tuner_->Record(kind_, choice_, s / units_);
}

int SizeBucket(int64_t n) {
  int b = 0;
  while (n > 0) {
    ++b;
    n >>= 1;
  }
  return b;
}

}  // namespace cmdistill::model
