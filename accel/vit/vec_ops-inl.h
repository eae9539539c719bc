// Vector helpers shared by the vector stages (vec_stages.cc,
// vec_softmax.cc): Highway code, included once per target after
// hwy/highway.h (the usual toggling include guard). Internal to accel/vit.
#if defined(HGPIPE_ACCEL_VIT_VEC_OPS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef HGPIPE_ACCEL_VIT_VEC_OPS_INL_H_
#undef HGPIPE_ACCEL_VIT_VEC_OPS_INL_H_
#else
#define HGPIPE_ACCEL_VIT_VEC_OPS_INL_H_
#endif

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "accel/vit/int_type.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace hgpipe::accel::vit {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET != HWY_SCALAR

// IntType::Wrap without branches or shifts (one port shifts on AMD Zen 2,
// and the stages shift a lot already): the low bits, then the sign bit
// flipped and subtracted back, ((v & mask) ^ sign) - sign, which
// sign-extends a signed type (sign = 2^(bits-1)) and leaves an unsigned
// one (sign = 0). Prepare* guarantee the types fit their lanes.
template <typename T>
struct Wrapping {
  explicit Wrapping(const IntType& t) {
    using U = std::make_unsigned_t<T>;
    const int bits = std::min<int>(t.bits, kBits);
    mask = static_cast<T>(bits >= kBits ? U(~U{0}) : static_cast<U>((uint64_t{1} << bits) - 1));
    sign = static_cast<T>(t.is_signed ? static_cast<U>(uint64_t{1} << (bits - 1)) : U{0});
  }
  static constexpr int kBits = sizeof(T) * 8;
  T mask, sign;
};

template <class D>
HWY_INLINE hn::Vec<D> Wrap(D d, hn::Vec<D> v, const Wrapping<hn::TFromD<D>>& w) {
  const auto sign = hn::Set(d, w.sign);
  return hn::Sub(hn::Xor(hn::And(v, hn::Set(d, w.mask)), sign), sign);
}

// A byte table of up to 16 * kPieces entries (kPieces 1, 2 or 4), looked
// up by indices below that, or with bit 7 set for 0. The 16-byte pieces
// t0..t3 come from LoadDup128 (unused ones are ignored).
template <int kPieces, class D8>
HWY_INLINE hn::Vec<D8> Lookup(D8 d, hn::Vec<D8> t0, hn::Vec<D8> t1, hn::Vec<D8> t2, hn::Vec<D8> t3,
                              hn::Vec<D8> idx) {
  static_assert(kPieces == 1 || kPieces == 2 || kPieces == 4);
  if constexpr (kPieces == 1) return hn::TableLookupBytesOr0(t0, idx);
  // Shuffles read the low 4 bits (bit 7 zeroes); bits 4 and 5 pick the piece.
  const auto low = hn::And(idx, hn::Set(d, uint8_t{0x8F}));
  const auto bit4 = hn::TestBit(idx, hn::Set(d, uint8_t{16}));
  const auto r01 =
      hn::IfThenElse(bit4, hn::TableLookupBytesOr0(t1, low), hn::TableLookupBytesOr0(t0, low));
  if constexpr (kPieces == 2) return r01;
  const auto r23 =
      hn::IfThenElse(bit4, hn::TableLookupBytesOr0(t3, low), hn::TableLookupBytesOr0(t2, low));
  return hn::IfThenElse(hn::TestBit(idx, hn::Set(d, uint8_t{32})), r23, r01);
}

// Calls f with the smallest piece count (1, 2 or 4) for `entries`.
template <class F>
HWY_INLINE void WithPieces(int64_t entries, F&& f) {
  if (entries <= 16) {
    f(std::integral_constant<int, 1>());
  } else if (entries <= 32) {
    f(std::integral_constant<int, 2>());
  } else {
    f(std::integral_constant<int, 4>());
  }
}

// int32 lanes holding values of an at most 8-bit type, stored as their
// byte lanes (the low byte: signed and unsigned types saturate apart).
template <class D32>
HWY_INLINE void StoreBytes(D32 d32, hn::Vec<D32> v, bool is_signed, void* out) {
  if (is_signed) {
    const hn::Rebind<int8_t, D32> d8;
    hn::StoreU(hn::DemoteTo(d8, v), d8, static_cast<int8_t*>(out));
  } else {
    const hn::Rebind<uint8_t, D32> d8;
    hn::StoreU(hn::DemoteTo(d8, v), d8, static_cast<uint8_t*>(out));
  }
}

using D16 = hn::CappedTag<int16_t, 16>;

#endif  // HWY_TARGET != HWY_SCALAR

}  // namespace HWY_NAMESPACE
}  // namespace hgpipe::accel::vit
HWY_AFTER_NAMESPACE();

#endif  // HGPIPE_ACCEL_VIT_VEC_OPS_INL_H_
