// HG-PIPE's device I/O encoding (docs/datapath.md, "Input" and "Output").
//
// Input: the host sends a flat [tokens][token_values] int8 image reordered for
// the 32-bit AXI stream, each beat holding 2 tokens x 2 values:
//   device = flat.reshape(tokens/2, 2, token_values/2, 2).transpose(0, 2, 1, 3)
// Output: one 32-bit word per class holding a 19-bit two's-complement logit
// that is not sign-extended.
#ifndef HGPIPE_ACCEL_DEVICE_LAYOUT_H_
#define HGPIPE_ACCEL_DEVICE_LAYOUT_H_

#include <cstddef>
#include <cstdint>

#include "absl/types/span.h"

#include "accel/bitstream.h"

namespace hgpipe::accel {

inline constexpr int kLogitBits = 19;

// The device order, element by element: value v of token t of a flat image
// with `token_values` values per token sits at
//   DeviceTokenOffset(token_values, t) + DeviceValueOffset(v)
// = (((t / 2) * (token_values / 2) + v / 2) * 2 + t % 2) * 2 + v % 2.
// Everything that writes device order (PackImage below, preprocessing
// straight into a board slot) goes through these two. token_values is even.
inline constexpr size_t DeviceTokenOffset(size_t token_values, size_t t) {
  return (t / 2) * token_values * 2 + (t % 2) * 2;
}
inline constexpr size_t DeviceValueOffset(size_t v) { return (v / 2) * 4 + v % 2; }

// Flat [tokens][token_values] -> device order. `flat` and `device` each hold
// geometry.input_bytes() and must not overlap.
void PackImage(const DeviceGeometry& g, const int8_t* flat, int8_t* device);
// Device order -> flat; the inverse of PackImage.
void UnpackImage(const DeviceGeometry& g, const int8_t* device, int8_t* flat);

// A device output word -> its signed logit (bits above 19 are ignored).
inline int32_t DecodeLogitWord(uint32_t word) {
  const int32_t v = static_cast<int32_t>(word & ((1u << kLogitBits) - 1));
  return v >= (1 << (kLogitBits - 1)) ? v - (1 << kLogitBits) : v;
}
// Device output words -> signed logits, one per word.
inline void DecodeLogits(absl::Span<const uint32_t> words, int32_t* logits) {
  for (size_t i = 0; i < words.size(); ++i) logits[i] = DecodeLogitWord(words[i]);
}
// A logit in [-2^18, 2^18) -> the device's word; other values wrap.
inline uint32_t EncodeLogitWord(int32_t logit) {
  return static_cast<uint32_t>(logit) & ((1u << kLogitBits) - 1);
}

}  // namespace hgpipe::accel

#endif  // HGPIPE_ACCEL_DEVICE_LAYOUT_H_
