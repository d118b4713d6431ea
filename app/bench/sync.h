// Policy weight sync as an actor does it, timed against the machine's own
// loopback TCP ceiling (behind `cmdistill bench sync`).
#ifndef CMDISTILL_SERVICES_BENCH_SYNC_H_
#define CMDISTILL_SERVICES_BENCH_SYNC_H_

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "app/bench/throughput.h"
#include "common/model/language_model.h"

namespace cmdistill::bench {

// Bytes/s of a plain TCP stream over 127.0.0.1 into one buffer of `bytes`:
// the ceiling any weight transfer on this machine has.
absl::StatusOr<Rate> LoopbackTcp(size_t bytes, const Repeats& r);

struct SyncResult {
  size_t bytes = 0;
  Rate fetch, loopback;  // bytes/s
};

// The actor's real path, timed: WaitForPolicy + FetchPolicy (chunked stream
// over loopback TCP) + XXH3 check + load, from an in-process learner over
// `student`; then LoopbackTcp of the same size.
absl::StatusOr<SyncResult> Sync(model::LanguageModel& student,
                                const std::string& device,
                                const std::string& dtype, size_t chunk_bytes,
                                const Repeats& r);

}  // namespace cmdistill::bench

#endif  // CMDISTILL_SERVICES_BENCH_SYNC_H_
