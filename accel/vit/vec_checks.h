// The checks and conversions the vector stages share (vec_stages.cc,
// vec_softmax.cc): which values fit which lanes, and 16-bit sums as the
// int32 accumulators stages.h takes. Internal to accel/vit.
#ifndef HGPIPE_ACCEL_VIT_VEC_CHECKS_H_
#define HGPIPE_ACCEL_VIT_VEC_CHECKS_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "accel/vit/int_type.h"

namespace hgpipe::accel::vit::vec_checks {

// The largest magnitude a value of `t` can have.
inline int64_t MaxAbs(const IntType& t) { return std::max(-t.min(), t.max()); }

// Whether values of `t` fit signed lanes of `bits` bits after wrapping:
// signed types up to the lane's width, unsigned ones one bit narrower.
inline bool FitsLane(const IntType& t, int bits) {
  return t.is_signed ? t.bits <= bits : t.bits < bits;
}

// Whether every value of [lo, hi] fits a signed `bits`-bit lane.
inline bool InLane(int64_t lo, int64_t hi, int bits) {
  const int64_t half = int64_t{1} << (bits - 1);
  return lo >= -half && hi < half;
}

inline absl::Status Refuse(absl::string_view stage, absl::string_view why) {
  return absl::FailedPreconditionError(absl::StrCat(stage, ": ", why));
}

// Sign-extended 16-bit sums y + bias, as stages.h's int32 accumulators.
inline void Widen(const int16_t* y, const int16_t* bias, size_t n, int32_t* out) {
  for (size_t i = 0; i < n; ++i) {
    const unsigned sum =
        static_cast<uint16_t>(y[i]) + static_cast<uint16_t>(bias != nullptr ? bias[i] : 0);
    out[i] = static_cast<int16_t>(static_cast<uint16_t>(sum));
  }
}

}  // namespace hgpipe::accel::vit::vec_checks

#endif  // HGPIPE_ACCEL_VIT_VEC_CHECKS_H_
