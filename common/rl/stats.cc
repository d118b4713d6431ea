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
  // The unit of the intervals: the cluster where every record has one, else
  // the problem where every record has one, else the record.
  bool by_cluster = !records.empty(), by_problem = !records.empty();
  for (const EvalRecord& r : records) {
    by_cluster = by_cluster && r.cluster >= 0;
    by_problem = by_problem && r.problem >= 0;
  }
  auto unit = [&](const EvalRecord& r) {
    return by_cluster ? r.cluster : r.problem;
  };
  std::map<int64_t, int64_t> per_unit;
  if (by_cluster || by_problem) {
    for (const EvalRecord& r : records) ++per_unit[unit(r)];
  }
  // Several records in one unit: the share of records (the estimand does not
  // change with clustering) with a cluster-robust interval — the ratio
  // estimator's variance from the units' residuals S_u − p·n_u, times
  // U/(U − 1), and Student's t with U − 1 degrees of freedom, clamped to
  // [0, 1]. With equal-sized units this is the t-interval over the units'
  // shares. Else Wilson over records.
  const bool clustered =
      (by_cluster || by_problem) && per_unit.size() < records.size();
  auto proportion = [&](auto success, auto included) {
    if (!clustered) {
      int64_t k = 0, n = 0;
      for (const EvalRecord& r : records) {
        if (!included(r)) continue;
        ++n;
        k += success(r) ? 1 : 0;
      }
      return ProportionEstimate(k, n);
    }
    std::map<int64_t, std::pair<double, double>> shares;  // sum, count
    int64_t n = 0;
    for (const EvalRecord& r : records) {
      if (!included(r)) continue;
      auto& sc = shares[unit(r)];
      sc.first += success(r) ? 1 : 0;
      sc.second += 1;
      ++n;
    }
    Estimate e;
    if (n == 0) return e;
    double k = 0;
    for (const auto& [u, sc] : shares) k += sc.first;
    const double p = k / static_cast<double>(n);
    const double units = static_cast<double>(shares.size());
    e.value = p;
    e.n = n;
    if (shares.size() < 2) {
      e.low = 0;
      e.high = 1;
      return e;
    }
    double ss = 0;
    for (const auto& [u, sc] : shares) {
      const double resid = sc.first - p * sc.second;
      ss += resid * resid;
    }
    const double se = std::sqrt(units / (units - 1) * ss) / n;
    const double half =
        StudentT975(static_cast<int64_t>(shares.size()) - 1) * se;
    e.low = std::clamp(p - half, 0.0, 1.0);
    e.high = std::clamp(p + half, 0.0, 1.0);
    return e;
  };
  auto all = [](const EvalRecord&) { return true; };
  auto checkable = [](const EvalRecord& r) { return r.checkable; };
  SuccessMetrics m;
  std::vector<double> kl, length;
  for (const EvalRecord& r : records) {
    kl.push_back(r.mean_token_kl);
    length.push_back(static_cast<double>(r.length));
  }
  m.correctness =
      proportion([](const EvalRecord& r) { return r.correct; }, all);
  m.length = MeanEstimate(length);
  if (have_teacher) {
    m.satisfaction =
        proportion([](const EvalRecord& r) { return r.satisfied; }, all);
    m.mean_kl = MeanEstimate(kl);
  }
  m.reasoning = proportion(
      [](const EvalRecord& r) { return r.reasoning_success; }, checkable);
  m.teacher_style =
      proportion([](const EvalRecord& r) { return r.style == 0; }, checkable);
  m.foreign_style =
      proportion([](const EvalRecord& r) { return r.style == 1; }, checkable);
  for (Estimate* e : {&m.reasoning, &m.teacher_style, &m.foreign_style}) {
    if (e->n == 0) *e = Estimate{};
  }
  return m;
}

}  // namespace cmdistill::rl
