// Metric registry helpers. Naming (DESIGN.md §7):
// `cmdistill_<subsystem>_<name>_<unit>`, base units, `_total` on counters,
// low-cardinality labels only. Resolve handles once at start-up (Family::Add
// returns a stable reference) and touch only references on hot paths.
#ifndef CMDISTILL_COMMON_METRICS_METRICS_H_
#define CMDISTILL_COMMON_METRICS_METRICS_H_

#include <cstdint>
#include <memory>
#include <string>

#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace cmdistill::metrics {

using Registry = prometheus::Registry;

std::shared_ptr<Registry> NewRegistry();

// Histogram bucket boundaries.
// `count` boundaries start, start*factor, ... (start > 0, factor > 1).
prometheus::Histogram::BucketBoundaries ExponentialBuckets(double start,
                                                           double factor,
                                                           int count);
// `count` boundaries start, start+width, ...
prometheus::Histogram::BucketBoundaries LinearBuckets(double start,
                                                      double width, int count);
// Latency in seconds from 100 µs to ~100 s (factor 2, 21 buckets): RPCs, model
// calls.
prometheus::Histogram::BucketBoundaries LatencyBuckets();
// Powers of two from `start` (rounded up to one) to the first >= `max`: a
// size histogram sized to a configured limit.
prometheus::Histogram::BucketBoundaries PowersOfTwoUpTo(int64_t start,
                                                        int64_t max);

// Prometheus text exposition format (0.0.4) of everything in `registry`.
std::string Serialize(const Registry& registry);

}  // namespace cmdistill::metrics

#endif  // CMDISTILL_COMMON_METRICS_METRICS_H_
