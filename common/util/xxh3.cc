#include "common/util/xxh3.h"

#include <cstdio>

// Header-only: the hash is compiled in, so binaries need no libxxhash at run
// time (only libxxhash-dev to build).
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace cmdistill {
namespace {

std::string HexOf(XXH128_hash_t h) {
  char out[33];
  std::snprintf(out, sizeof(out), "%016llx%016llx",
                static_cast<unsigned long long>(h.high64),
                static_cast<unsigned long long>(h.low64));
  return out;
}

}  // namespace

std::string Xxh3Hex(std::string_view data) {
  return HexOf(XXH3_128bits(data.data(), data.size()));
}

struct Xxh3::State {
  XXH3_state_t s;
};

Xxh3::Xxh3() : state_(std::make_unique<State>()) {
  XXH3_128bits_reset(&state_->s);
}

Xxh3::~Xxh3() = default;

void Xxh3::Update(std::string_view data) {
  XXH3_128bits_update(&state_->s, data.data(), data.size());
}

std::string Xxh3::Hex() { return HexOf(XXH3_128bits_digest(&state_->s)); }

}  // namespace cmdistill
