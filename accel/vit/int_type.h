// The integer types of HG-PIPE's HLS datapath: ap_int<W> (signed) and
// ap_uint<W> (unsigned). Every stage result is assigned to one of them, which
// keeps its low W bits (AP_WRAP): the datapath's overflow behaviour, which
// the emulated board reproduces exactly (docs/datapath.md, "Numerics").
#ifndef HGPIPE_ACCEL_VIT_INT_TYPE_H_
#define HGPIPE_ACCEL_VIT_INT_TYPE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hgpipe::accel::vit {

// Widest type a weight file may name: wide enough for every intermediate of
// the authors' design (38 bits at most), narrow enough that the emulation's
// int64 arithmetic never loses a bit that the type keeps.
inline constexpr int kMaxIntTypeBits = 56;

struct IntType {
  int bits = 32;
  bool is_signed = true;

  int64_t min() const { return is_signed ? -(int64_t{1} << (bits - 1)) : 0; }
  int64_t max() const {
    return is_signed ? (int64_t{1} << (bits - 1)) - 1 : (int64_t{1} << bits) - 1;
  }
  bool Holds(int64_t v) const { return v >= min() && v <= max(); }
  // v modulo 2^bits, in the type's range. Exact for any v whose low `bits`
  // bits are right, so callers may compute in wrapping uint64 arithmetic.
  int64_t Wrap(int64_t v) const {
    const int drop = 64 - bits;
    const uint64_t low = static_cast<uint64_t>(v) << drop;
    return is_signed ? static_cast<int64_t>(low) >> drop : static_cast<int64_t>(low >> drop);
  }
  int64_t Clamp(int64_t v) const { return v < min() ? min() : (v > max() ? max() : v); }
  // "s13" or "u7".
  std::string ToString() const;
  friend bool operator==(const IntType& a, const IntType& b) {
    return a.bits == b.bits && a.is_signed == b.is_signed;
  }
};

// "s<bits>" (ap_int) or "u<bits>" (ap_uint), bits in 1..kMaxIntTypeBits;
// InvalidArgument otherwise.
absl::StatusOr<IntType> ParseIntType(absl::string_view text);

}  // namespace hgpipe::accel::vit

#endif  // HGPIPE_ACCEL_VIT_INT_TYPE_H_
