// "Did you mean ...?" for unknown keys, flags and subcommands.
#ifndef CMDISTILL_COMMON_UTIL_SUGGEST_H_
#define CMDISTILL_COMMON_UTIL_SUGGEST_H_

#include <algorithm>
#include <string>
#include <vector>

namespace cmdistill {

// Levenshtein distance (insertions, deletions, substitutions).
inline size_t EditDistance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min(
          {row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// The candidate closest to `name` if it is within `max_distance` edits, else
// "".
inline std::string ClosestMatch(const std::string& name,
                                const std::vector<std::string>& candidates,
                                size_t max_distance) {
  std::string best;
  size_t best_d = max_distance + 1;
  for (const std::string& c : candidates) {
    const size_t d = EditDistance(name, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  return best;
}

}  // namespace cmdistill

#endif  // CMDISTILL_COMMON_UTIL_SUGGEST_H_
