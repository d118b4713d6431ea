#include "common/rl/stats.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <vector>

namespace cmdistill::rl {

double StudentT975(int64_t df) {
  // Exact table for small df; beyond it the Cornish-Fisher expansion around z
  // = 1.95996 is accurate to better than 1e-4.
  static constexpr double kTable[] = {
      0,     12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365,
      2.306, 2.262,  2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
      2.120, 2.110,  2.101, 2.093, 2.086, 2.080, 2.074, 2.069,
      2.064, 2.060,  2.056, 2.052, 2.048, 2.045, 2.042};
  if (df < 1) return std::numeric_limits<double>::infinity();
  if (df <= 30) return kTable[df];
  const double z = 1.959963984540054, d = static_cast<double>(df);
  const double z3 = z * z * z, z5 = z3 * z * z, z7 = z5 * z * z;
  return z + (z3 + z) / (4 * d) + (5 * z5 + 16 * z3 + 3 * z) / (96 * d * d) +
         (3 * z7 + 19 * z5 + 17 * z3 - 15 * z) / (384 * d * d * d);
}

Estimate ProportionEstimate(int64_t successes, int64_t n) {
  Estimate e;
  e.n = n;
  if (n <= 0) {
    e.high = 1;
    return e;
  }
  const double z = 1.959963984540054;
  const double nn = static_cast<double>(n);
  const double p = static_cast<double>(successes) / nn;
  const double denom = 1 + z * z / nn;
  const double center = (p + z * z / (2 * nn)) / denom;
  const double half =
      z * std::sqrt(p * (1 - p) / nn + z * z / (4 * nn * nn)) / denom;
  e.value = p;
  e.low = std::max(0.0, center - half);
  e.high = std::min(1.0, center + half);
  return e;
}

Estimate MeanEstimate(absl::Span<const double> values) {
  Estimate e;
  e.n = static_cast<int64_t>(values.size());
  if (values.empty()) return e;
  double mean = 0;
  for (double v : values) mean += v;
  mean /= static_cast<double>(values.size());
  e.value = mean;
  if (values.size() == 1) {
    e.low = -std::numeric_limits<double>::infinity();
    e.high = std::numeric_limits<double>::infinity();
    return e;
  }
  double var = 0;
  for (double v : values) var += (v - mean) * (v - mean);
  var /= static_cast<double>(values.size() - 1);
  const double half =
      StudentT975(e.n - 1) * std::sqrt(var / static_cast<double>(e.n));
  e.low = mean - half;
  e.high = mean + half;
  return e;
}

Estimate ClampedMeanEstimate(absl::Span<const double> values, double lo,
                             double hi) {
  Estimate e = MeanEstimate(values);
  e.low = std::clamp(e.low, lo, hi);
  e.high = std::clamp(e.high, lo, hi);
  return e;
}

Estimate PairedDifference(absl::Span<const double> a,
                          absl::Span<const double> b) {
  std::vector<double> d;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i)
    d.push_back(a[i] - b[i]);
  return ClampedMeanEstimate(d, -1.0, 1.0);
}

SuccessMetrics Summarize(absl::Span<const EvalRecord> records,
                         bool have_teacher) {
  SuccessMetrics m;
  // Several samples of one problem: per-problem shares first.
  std::map<int64_t, std::pair<double, double>> fac, csr;  // sum, count
  bool clustered = false;
  for (const EvalRecord& r : records) {
    if (r.problem < 0) {
      clustered = false;
      break;
    }
    auto& f = fac[r.problem];
    if (f.second > 0) clustered = true;
    f.first += r.correct;
    f.second += 1;
    auto& c = csr[r.problem];
    c.first += r.satisfied;
    c.second += 1;
  }
  if (clustered && records.size() > fac.size()) {
    auto shares = [](const std::map<int64_t, std::pair<double, double>>& in) {
      std::vector<double> out;
      for (const auto& [p, sc] : in) out.push_back(sc.first / sc.second);
      return out;
    };
    SuccessMetrics c;
    std::vector<double> kl, length;
    for (const EvalRecord& r : records) {
      kl.push_back(r.mean_token_kl);
      length.push_back(static_cast<double>(r.length));
    }
    const int64_t n = static_cast<int64_t>(records.size());
    c.correctness = ClampedMeanEstimate(shares(fac), 0.0, 1.0);
    c.correctness.n = n;
    c.length = MeanEstimate(length);
    if (have_teacher) {
      c.satisfaction = ClampedMeanEstimate(shares(csr), 0.0, 1.0);
      c.satisfaction.n = n;
      c.mean_kl = MeanEstimate(kl);
    }
    return c;
  }
  int64_t correct = 0, satisfied = 0;
  std::vector<double> kl, length;
  for (const EvalRecord& r : records) {
    correct += r.correct;
    satisfied += r.satisfied;
    kl.push_back(r.mean_token_kl);
    length.push_back(static_cast<double>(r.length));
  }
  const int64_t n = static_cast<int64_t>(records.size());
  m.correctness = ProportionEstimate(correct, n);
  m.length = MeanEstimate(length);
  if (have_teacher) {
    m.satisfaction = ProportionEstimate(satisfied, n);
    m.mean_kl = MeanEstimate(kl);
  }
  return m;
}

}  // namespace cmdistill::rl
