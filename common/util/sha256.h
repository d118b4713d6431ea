// SHA-256 as lower-case hex (OpenSSL): tokenizer fingerprints and
// policy-snapshot checksums.
#ifndef CMDISTILL_COMMON_UTIL_SHA256_H_
#define CMDISTILL_COMMON_UTIL_SHA256_H_

#include <memory>
#include <string>
#include <string_view>

namespace cmdistill {

std::string Sha256Hex(std::string_view data);

// Incremental SHA-256: Update() with the pieces in order, then Hex() once
// (equal to Sha256Hex of their concatenation). Lets a receiver hash each chunk
// as it arrives instead of a second pass over the whole buffer.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  void Update(std::string_view data);
  std::string Hex();  // finishes; call once

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

}  // namespace cmdistill

#endif  // CMDISTILL_COMMON_UTIL_SHA256_H_
