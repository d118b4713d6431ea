#include "common/metrics/metrics.h"

#include "prometheus/text_serializer.h"

namespace cmdistill::metrics {

std::shared_ptr<Registry> NewRegistry() { return std::make_shared<Registry>(); }

prometheus::Histogram::BucketBoundaries ExponentialBuckets(double start,
                                                           double factor,
                                                           int count) {
  prometheus::Histogram::BucketBoundaries b;
  if (start <= 0 || factor <= 1 || count <= 0) return b;
  b.reserve(count);
  double v = start;
  for (int i = 0; i < count; ++i, v *= factor) b.push_back(v);
  return b;
}

prometheus::Histogram::BucketBoundaries LinearBuckets(double start,
                                                      double width, int count) {
  prometheus::Histogram::BucketBoundaries b;
  if (width <= 0 || count <= 0) return b;
  b.reserve(count);
  for (int i = 0; i < count; ++i) b.push_back(start + width * i);
  return b;
}

prometheus::Histogram::BucketBoundaries LatencyBuckets() {
  return ExponentialBuckets(1e-4, 2.0, 21);
}

prometheus::Histogram::BucketBoundaries PowersOfTwoUpTo(int64_t start,
                                                        int64_t max) {
  prometheus::Histogram::BucketBoundaries b;
  int64_t v = 1;
  while (v < start) v *= 2;
  for (;; v *= 2) {
    b.push_back(static_cast<double>(v));
    if (v >= max || v >= (int64_t{1} << 40)) break;
  }
  return b;
}

std::string Serialize(const Registry& registry) {
  prometheus::TextSerializer serializer;
  return serializer.Serialize(registry.Collect());
}

}  // namespace cmdistill::metrics
