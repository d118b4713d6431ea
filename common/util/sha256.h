// SHA-256 as lower-case hex (OpenSSL): tokenizer fingerprints and
// policy-snapshot checksums.
#ifndef CMDISTILL_COMMON_UTIL_SHA256_H_
#define CMDISTILL_COMMON_UTIL_SHA256_H_

#include <string>
#include <string_view>

namespace cmdistill {

std::string Sha256Hex(std::string_view data);

}  // namespace cmdistill

#endif  // CMDISTILL_COMMON_UTIL_SHA256_H_
