// The `verify` bitstream's function: a loopback test kernel with HG-PIPE's
// I/O shape whose output is a digest of its own input, so that a client can
// check that every response holds its own image's result. Header-only and
// dependency-free on purpose: clients check responses with this same
// definition without linking the accelerator layer.
//
// Definition, for one image of B bytes (B a multiple of 8) in flat
// [tokens][token_values] order (the order a client sends, before device
// packing), and C classes:
//   h = 0x9E3779B97F4A7C15
//   for each little-endian uint64 word w of the image, in order:
//     h = (h ^ w) * 0x100000001B3  (mod 2^64)
//   logit[j] = int19(splitmix64(h + j) & 0x7FFFF)   for j in [0, C)
// where int19(v) = v - 2^19 if v >= 2^18 else v, and splitmix64(x) is
//   x += 0x9E3779B97F4A7C15; x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9;
//   x = (x ^ (x >> 27)) * 0x94D049BB133111EB; return x ^ (x >> 31).
// The device word for logit[j] is its low 19 bits (not sign-extended).
#ifndef HGPIPE_ACCEL_VERIFY_DIGEST_H_
#define HGPIPE_ACCEL_VERIFY_DIGEST_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace hgpipe::verify {

inline uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// The 64-bit digest of one image (`bytes` a multiple of 8).
inline uint64_t ImageHash(const int8_t* image, size_t bytes) {
  uint64_t h = 0x9E3779B97F4A7C15ull;
  for (size_t i = 0; i + 8 <= bytes; i += 8) {
    uint64_t w;
    std::memcpy(&w, image + i, 8);  // x86 and ARM hosts are little-endian
    h = (h ^ w) * 0x100000001B3ull;
  }
  return h;
}

// Device word j of an image whose hash is h.
inline uint32_t DigestWord(uint64_t h, uint32_t j) {
  return static_cast<uint32_t>(SplitMix64(h + j) & 0x7FFFFu);
}

// The signed logits `classes` a correct `verify` response carries for image.
inline void ExpectedLogits(const int8_t* image, size_t bytes, uint32_t classes, int32_t* logits) {
  const uint64_t h = ImageHash(image, bytes);
  for (uint32_t j = 0; j < classes; ++j) {
    const int32_t v = static_cast<int32_t>(DigestWord(h, j));
    logits[j] = v >= (1 << 18) ? v - (1 << 19) : v;
  }
}

}  // namespace hgpipe::verify

#endif  // HGPIPE_ACCEL_VERIFY_DIGEST_H_
