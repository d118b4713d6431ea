// The one check that two parties (student and teacher, an actor and the
// teacher service) tokenize alike, by the tokenizers' fingerprints.
// Header-only: the actor uses it without linking the tokenizer library.
#ifndef CMDISTILL_COMMON_TOKENIZER_FINGERPRINT_H_
#define CMDISTILL_COMMON_TOKENIZER_FINGERPRINT_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace cmdistill::tokenizer {

// OK when the fingerprints match or one is unknown (""); otherwise
// FAILED_PRECONDITION naming `peer` and both fingerprints' prefixes.
inline absl::Status CheckSameTokenizer(const std::string& ours,
                                       const std::string& theirs,
                                       const std::string& peer) {
  if (ours.empty() || theirs.empty() || ours == theirs) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat(peer, " uses a different tokenizer (fingerprint ",
                   theirs.substr(0, 12), "... vs ours ", ours.substr(0, 12),
                   "...): teacher and student must share one"));
}

}  // namespace cmdistill::tokenizer

#endif  // CMDISTILL_COMMON_TOKENIZER_FINGERPRINT_H_
