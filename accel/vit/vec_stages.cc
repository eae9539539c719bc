// The vector stages (vec_stages.h) in Google Highway, compiled for every
// target and dispatched at run time. Each Prepare* states the bounds that
// keep every lane's intermediate exact; the vector code relies on them.
#include "accel/vit/vec_stages.h"
#include "accel/vit/aligned.h"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "accel/vit/stages.h"

#ifndef HGPIPE_ACCEL_VIT_VEC_STAGES_ONCE_
#define HGPIPE_ACCEL_VIT_VEC_STAGES_ONCE_
namespace hgpipe::accel::vit::vec_ref {

// The stages.h arithmetic on 16-bit sums widened to int32: the fallback on
// targets without 16-byte vectors, for Simd::kBaseline and for row tails.
void Requant(const RequantParams& p, const int16_t* y, size_t ldy, const int16_t* bias,
             size_t rows, size_t c0, size_t cols, int8_t* out, size_t ldo);
void Residual(const ResidualParams& p, const int16_t* y, size_t ldy, const int16_t* bias,
              const int32_t* x, size_t rows, size_t c0, size_t cols, size_t stride,
              int32_t* out);
void Softmax(const SoftmaxParams& p, const int16_t* y, size_t ldy, size_t rows, size_t cols,
             int8_t* out, size_t ldo);

}  // namespace hgpipe::accel::vit::vec_ref
#endif  // HGPIPE_ACCEL_VIT_VEC_STAGES_ONCE_

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "accel/vit/vec_stages.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
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
HWY_INLINE hn::Vec<D8> Lookup(D8 d, hn::Vec<D8> t0, hn::Vec<D8> t1, hn::Vec<D8> t2,
                              hn::Vec<D8> t3, hn::Vec<D8> idx) {
  static_assert(kPieces == 1 || kPieces == 2 || kPieces == 4);
  if constexpr (kPieces == 1) return hn::TableLookupBytesOr0(t0, idx);
  // Shuffles read the low 4 bits (bit 7 zeroes); bits 4 and 5 pick the piece.
  const auto low = hn::And(idx, hn::Set(d, uint8_t{0x8F}));
  const auto bit4 = hn::TestBit(idx, hn::Set(d, uint8_t{16}));
  const auto r01 = hn::IfThenElse(bit4, hn::TableLookupBytesOr0(t1, low),
                                  hn::TableLookupBytesOr0(t0, low));
  if constexpr (kPieces == 2) return r01;
  const auto r23 = hn::IfThenElse(bit4, hn::TableLookupBytesOr0(t3, low),
                                  hn::TableLookupBytesOr0(t2, low));
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

void RequantImpl(const RequantParams& p, const int16_t* y, size_t ldy, const int16_t* bias,
                 size_t rows, size_t cols, int8_t* out, size_t ldo) {
  const D16 d16;
  const hn::Repartition<uint8_t, D16> d8;
  const hn::Rebind<uint8_t, D16> d8h;
  const size_t n16 = hn::Lanes(d16), step = 2 * n16;
  const size_t main = cols - cols % step;
  const auto t0 = hn::LoadDup128(d8, p.lanes), t1 = hn::LoadDup128(d8, p.lanes + 16),
             t2 = hn::LoadDup128(d8, p.lanes + 32), t3 = hn::LoadDup128(d8, p.lanes + 48);
  const auto offset = hn::Set(d16, p.offset);
  const auto bound = hn::Set(d16, static_cast<int16_t>(p.table.bound));
  const Wrapping<int16_t> acc(p.acc), cursor(p.table.cursor);
  const int shift = p.shift;
  const bool field = p.field, is_signed = p.table.cursor.is_signed;
  const int up = p.up, down = p.down;
  const hn::RebindToUnsigned<D16> du16;
  auto index = [&](const int16_t* yc, const int16_t* bc) {
    const auto z = hn::Add(hn::LoadU(d16, yc), hn::LoadU(d16, bc));
    hn::Vec<D16> c;
    if (field) {
      const auto f = hn::ShiftLeftSame(hn::Add(z, offset), up);
      c = is_signed ? hn::ShiftRightSame(f, down)
                    : hn::BitCast(d16, hn::ShiftRightSame(hn::BitCast(du16, f), down));
    } else {
      const auto v = Wrap(d16, z, acc);
      c = Wrap(d16, hn::ShiftRightSame(hn::Add(v, offset), shift), cursor);
    }
    return hn::Min(hn::Max(c, hn::Zero(d16)), bound);
  };
  WithPieces(p.table.bound + 1, [&](auto pieces) {
    for (size_t r = 0; r < rows; ++r) {
      const int16_t* yr = y + r * ldy;
      uint8_t* o = reinterpret_cast<uint8_t*>(out + r * ldo);
      for (size_t c = 0; c < main; c += step) {
        const auto idx = hn::Combine(d8, hn::DemoteTo(d8h, index(yr + c + n16, bias + c + n16)),
                                     hn::DemoteTo(d8h, index(yr + c, bias + c)));
        hn::StoreU(Lookup<decltype(pieces)::value>(d8, t0, t1, t2, t3, idx), d8, o + c);
      }
    }
  });
  if (main < cols) vec_ref::Requant(p, y, ldy, bias, rows, main, cols, out, ldo);
}

void ResidualImpl(const ResidualParams& p, const int16_t* y, size_t ldy, const int16_t* bias,
                  const int32_t* x, size_t rows, size_t cols, int32_t* out) {
  const D16 d16;
  const hn::Half<D16> dh;
  const hn::Repartition<int32_t, D16> d32;
  const size_t n16 = hn::Lanes(d16), n32 = hn::Lanes(d32);
  const size_t main = cols - cols % n16;
  const Wrapping<int16_t> acc(p.acc);
  const Wrapping<int32_t> out_type(p.residual.out);
  // round(x * mult / 2^s), s >= 16, with mult = high 2^16 + low:
  // (x high + floor((x low + h) / 2^16) + c) >> (s - 16), where h and c
  // carry the rounding half 2^(s-1) (vec_stages.h).
  const int s = static_cast<int>(p.residual.shift);
  const auto high = hn::Set(d32, p.mult_high), low = hn::Set(d32, p.mult_low);
  const auto h = hn::Set(d32, s == 16 ? int32_t{1} << 15 : 0);
  const auto carry = hn::Set(d32, s >= 17 ? int32_t{1} << std::min(s - 17, 30) : 0);
  auto scale = [&](hn::Vec<decltype(d32)> v) {
    const auto b = hn::ShiftRight<16>(hn::Add(hn::Mul(v, low), h));
    return hn::ShiftRightSame(hn::Add(hn::Add(hn::Mul(v, high), b), carry), s - 16);
  };
  for (size_t r = 0; r < rows; ++r) {
    const int16_t* yr = y + r * ldy;
    const int32_t* xr = x + r * cols;
    int32_t* o = out + r * cols;
    for (size_t c = 0; c < main; c += n16) {
      const auto v = Wrap(d16, hn::Add(hn::LoadU(d16, yr + c), hn::LoadU(d16, bias + c)), acc);
      const auto lo = hn::PromoteTo(d32, hn::LowerHalf(dh, v));
      const auto hi = hn::PromoteTo(d32, hn::UpperHalf(dh, v));
      const auto x0 = hn::LoadU(d32, xr + c), x1 = hn::LoadU(d32, xr + c + n32);
      hn::StoreU(Wrap(d32, hn::Add(lo, scale(x0)), out_type), d32, o + c);
      hn::StoreU(Wrap(d32, hn::Add(hi, scale(x1)), out_type), d32, o + c + n32);
    }
  }
  if (main < cols) vec_ref::Residual(p, y, ldy, bias, x, rows, main, cols, cols, out);
}

template <bool kOutSigned>
void NormRowsImpl(const NormParams& p, const int32_t* x, size_t rows, int8_t* out) {
  const hn::CappedTag<int32_t, 8> d32;
  const hn::RebindToUnsigned<decltype(d32)> du32;
  const hn::Repartition<int64_t, decltype(d32)> d64;
  const hn::Repartition<uint64_t, decltype(d32)> du64;
  const size_t n32 = hn::Lanes(d32), width = p.width;
  const NormStage& n = p.norm;
  const Wrapping<int32_t> in(p.in), shift_type(n.shift);
  // The affine sum's bits out_shift .. out_shift + 32, in the even int32
  // lanes' place (a right shift) and the odd lanes' (left or right).
  const int out_shift = static_cast<int>(n.out_shift);
  const bool odd_left = out_shift <= 32;
  const int odd_shift = odd_left ? 32 - out_shift : out_shift - 32;
  const auto lo = hn::Set(d32, static_cast<int32_t>(n.out.min()));
  const auto hi = hn::Set(d32, static_cast<int32_t>(n.out.max()));
  const auto high_words = hn::Set(du64, uint64_t{0xFFFFFFFF00000000});
  const int32_t* w = n.weight.data();
  const int32_t* wo = p.weight_odd.data();
  const int64_t* be = p.bias_even.data();
  const int64_t* bo = p.bias_odd.data();
  // Phase by phase over all rows rather than row by row: each row's passes
  // wait on its reductions and scalar steps, so interleaving rows keeps
  // the vector units busy.
  constexpr size_t kBatch = 32;
  int32_t means[kBatch], rsqrts[kBatch];
  thread_local AlignedVector<int32_t> dev;  // x - mean, wrapped, per batch
  if (dev.size() < kBatch * width) dev.resize(kBatch * width);
  for (size_t r0 = 0; r0 < rows; r0 += kBatch) {
    const size_t nb = std::min(kBatch, rows - r0);
    for (size_t r = 0; r < nb; ++r) {
      const int32_t* xr = x + (r0 + r) * width;
      auto sum = hn::Zero(d32);
      for (size_t c = 0; c < width; c += n32) sum = hn::Add(sum, hn::LoadU(d32, xr + c));
      // Wrapping int32 sums: exact modulo 2^32, all p.sum keeps.
      means[r] = static_cast<int32_t>(NormMean(n, hn::GetLane(hn::SumOfLanes(d32, sum))));
    }
    for (size_t r = 0; r < nb; ++r) {
      const int32_t* xr = x + (r0 + r) * width;
      int32_t* dr = dev.data() + r * width;
      const auto m = hn::Set(d32, means[r]);
      auto squares = hn::Zero(du32);
      for (size_t c = 0; c < width; c += n32) {
        const auto d = Wrap(d32, hn::Sub(hn::LoadU(d32, xr + c), m), in);
        hn::StoreU(d, d32, dr + c);
        const auto du = hn::BitCast(du32, d);
        squares = hn::Add(squares, hn::Mul(du, du));
      }
      rsqrts[r] = static_cast<int32_t>(NormRsqrt(n, hn::GetLane(hn::SumOfLanes(du32, squares))));
    }
    for (size_t r = 0; r < nb; ++r) {
      const int32_t* devr = dev.data() + r * width;
      const auto rs = hn::Set(d32, rsqrts[r]);
      int8_t* o = out + (r0 + r) * width;
      for (size_t c = 0; c < width; c += n32) {
        // d * rsqrt fits int32; times the weight and plus the bias in int64
        // (modulo 2^64; the bits kept lie below the affine type's width).
        const auto dr = hn::Mul(hn::LoadU(d32, devr + c), rs);
        const auto even = hn::Add(hn::MulEven(dr, hn::LoadU(d32, w + c)), hn::LoadU(d64, be + c / 2));
        const auto dr_odd = hn::BitCast(d32, hn::ShiftRight<32>(hn::BitCast(du64, dr)));
        const auto odds = hn::Add(hn::MulEven(dr_odd, hn::LoadU(d32, wo + c)), hn::LoadU(d64, bo + c / 2));
        const auto e = hn::ShiftRightSame(hn::BitCast(du64, even), out_shift);
        const auto f = odd_left ? hn::ShiftLeftSame(hn::BitCast(du64, odds), odd_shift)
                                : hn::ShiftRightSame(hn::BitCast(du64, odds), odd_shift);
        const auto merged = hn::BitCast(d32, hn::Or(hn::AndNot(high_words, e), hn::And(high_words, f)));
        const auto v = Wrap(d32, merged, shift_type);
        StoreBytes(d32, hn::Min(hn::Max(v, lo), hi), kOutSigned, o + c);
      }
    }
  }
}

void NormImpl(const NormParams& p, const int32_t* x, size_t rows, int8_t* out) {
  if (p.norm.out.is_signed) {
    NormRowsImpl<true>(p, x, rows, out);
  } else {
    NormRowsImpl<false>(p, x, rows, out);
  }
}

void SoftmaxImpl(const SoftmaxParams& p, const int16_t* y, size_t ldy, size_t rows,
                 size_t cols, int8_t* out, size_t ldo) {
  const D16 d16;
  const hn::Repartition<uint8_t, D16> d8;
  const hn::Rebind<uint8_t, D16> d8h;
  const hn::Repartition<uint64_t, decltype(d8)> d64;
  const hn::Repartition<int32_t, D16> d32;
  const size_t n16 = hn::Lanes(d16), n8 = hn::Lanes(d8), n32 = hn::Lanes(d32);
  const SoftmaxStage& sm = p.softmax;
  const Wrapping<int16_t> scores(p.scores), minus_type(p.minus), cursor1(sm.cursor1);
  const Wrapping<int32_t> affine(sm.affine), cursor3(sm.cursor3);
  const auto el0 = hn::LoadDup128(d8, p.exp_low), el1 = hn::LoadDup128(d8, p.exp_low + 16),
             el2 = hn::LoadDup128(d8, p.exp_low + 32), el3 = hn::LoadDup128(d8, p.exp_low + 48);
  const auto eh0 = hn::LoadDup128(d8, p.exp_high), eh1 = hn::LoadDup128(d8, p.exp_high + 16),
             eh2 = hn::LoadDup128(d8, p.exp_high + 32), eh3 = hn::LoadDup128(d8, p.exp_high + 48);
  const auto exp_offset = hn::Set(d16, static_cast<int16_t>(sm.exp_offset));
  const auto exp_bound = hn::Set(d16, static_cast<int16_t>(sm.exp_bound));
  const int exp_shift = static_cast<int>(std::min<int64_t>(sm.exp_shift, 15));
  const bool field = p.field, cursor1_signed = sm.cursor1.is_signed;
  const int up = p.up, down = p.down;
  const hn::RebindToUnsigned<D16> du16;
  const auto out_lo = hn::Set(d32, static_cast<int32_t>(sm.out.min()));
  const auto out_hi = hn::Set(d32, static_cast<int32_t>(sm.out.max()));
  const size_t padded = (cols + n8 - 1) / n8 * n8;
  // Phase by phase over a batch of rows rather than row by row: each row
  // waits on its maximum, its sum and the scalar reciprocal, so
  // interleaving rows keeps the vector units busy.
  constexpr size_t kBatch = 32;
  thread_local AlignedVector<uint8_t> cursors;  // [kBatch][padded]
  if (cursors.size() < kBatch * padded) cursors.resize(kBatch * padded);
  int16_t maxima[kBatch];
  uint64_t sums[kBatch];
  // The exponential and probability tables have exp_bound + 1 entries.
  const size_t entries = static_cast<size_t>(sm.exp_bound) + 1;
  const size_t prob_entries = (entries + n32 - 1) / n32 * n32;
  alignas(64) int32_t exps[64] = {};
  for (size_t c = 0; c < entries; ++c) exps[c] = sm.exp_table[c];
  alignas(64) uint8_t prob[64] = {};
  alignas(64) uint8_t tail[64];
  WithPieces(sm.exp_bound + 1, [&](auto pieces) {
    constexpr int kPieces = decltype(pieces)::value;
    for (size_t r0 = 0; r0 < rows; r0 += kBatch) {
      const size_t nb = std::min(kBatch, rows - r0);
      // Each row's maximum; lanes past the row hold the type's minimum.
      for (size_t r = 0; r < nb; ++r) {
        const int16_t* yr = y + (r0 + r) * ldy;
        auto mx = hn::Set(d16, int16_t{-32768});
        for (size_t c = 0; c < cols; c += n16) {
          auto v = Wrap(d16, hn::LoadU(d16, yr + c), scores);
          if (c + n16 > cols) v = hn::IfThenElse(hn::FirstN(d16, cols - c), v, mx);
          mx = hn::Max(mx, v);
        }
        maxima[r] = hn::GetLane(hn::MaxOfLanes(d16, mx));
      }
      // Each score's index into the exponential table (0x80 past the row,
      // a shuffle index reading 0), and the sum of its two bytes' values.
      for (size_t r = 0; r < nb; ++r) {
        const int16_t* yr = y + (r0 + r) * ldy;
        uint8_t* cr = cursors.data() + r * padded;
        const auto m = hn::Set(d16, maxima[r]);
        auto cursor = [&](const int16_t* yc) {
          hn::Vec<D16> c1;
          if (field) {
            const auto f =
                hn::ShiftLeftSame(hn::Add(hn::Sub(m, hn::LoadU(d16, yc)), exp_offset), up);
            c1 = cursor1_signed
                     ? hn::ShiftRightSame(f, down)
                     : hn::BitCast(d16, hn::ShiftRightSame(hn::BitCast(du16, f), down));
          } else {
            const auto s = Wrap(d16, hn::LoadU(d16, yc), scores);
            const auto minus = Wrap(d16, hn::Sub(m, s), minus_type);
            c1 = Wrap(d16, hn::ShiftRightSame(hn::Add(minus, exp_offset), exp_shift), cursor1);
          }
          return hn::Min(hn::Max(c1, hn::Zero(d16)), exp_bound);
        };
        auto sum_low = hn::Zero(d64);
        auto sum_high = sum_low;
        for (size_t c = 0; c < cols; c += n8) {
          auto idx = hn::Combine(d8, hn::DemoteTo(d8h, cursor(yr + c + n16)),
                                 hn::DemoteTo(d8h, cursor(yr + c)));
          if (c + n8 > cols) {
            idx = hn::IfThenElse(hn::FirstN(d8, cols - c), idx, hn::Set(d8, 0x80));
          }
          hn::StoreU(idx, d8, cr + c);
          sum_low = hn::Add(sum_low, hn::SumsOf8(Lookup<kPieces>(d8, el0, el1, el2, el3, idx)));
          sum_high = hn::Add(sum_high, hn::SumsOf8(Lookup<kPieces>(d8, eh0, eh1, eh2, eh3, idx)));
        }
        sums[r] = hn::GetLane(hn::SumOfLanes(d64, sum_low)) +
                  256 * hn::GetLane(hn::SumOfLanes(d64, sum_high));
      }
      for (size_t r = 0; r < nb; ++r) {
        // The row's probability of every exponential index, in int32 lanes.
        const SoftmaxScale scale = SoftmaxRecip(sm, sums[r]);
        const auto recip = hn::Set(d32, static_cast<int32_t>(scale.recip));
        const auto offset = hn::Set(d32, static_cast<int32_t>(scale.offset));
        const int shift = static_cast<int>(std::min<int64_t>(scale.shift, 31));
        for (size_t c = 0; c < prob_entries; c += n32) {
          const auto a = Wrap(d32, hn::Mul(hn::Load(d32, exps + c), recip), affine);
          const auto q = Wrap(d32, hn::ShiftRightSame(hn::Add(a, offset), shift), cursor3);
          StoreBytes(d32, hn::Min(hn::Max(q, out_lo), out_hi), sm.out.is_signed, prob + c);
        }
        const auto p0 = hn::LoadDup128(d8, prob), p1 = hn::LoadDup128(d8, prob + 16),
                   p2 = hn::LoadDup128(d8, prob + 32), p3 = hn::LoadDup128(d8, prob + 48);
        const uint8_t* cr = cursors.data() + r * padded;
        uint8_t* o = reinterpret_cast<uint8_t*>(out + (r0 + r) * ldo);
        for (size_t c = 0; c < cols; c += n8) {
          const auto v = Lookup<kPieces>(d8, p0, p1, p2, p3, hn::LoadU(d8, cr + c));
          if (c + n8 <= cols) {
            hn::StoreU(v, d8, o + c);
          } else {
            hn::StoreU(v, d8, tail);
            std::memcpy(o + c, tail, cols - c);
          }
        }
      }
    }
  });
}

#endif  // HWY_TARGET != HWY_SCALAR

// The entry points: vectors where the target has 16-byte ones.
void RequantVec(const RequantParams& p, const int16_t* y, size_t ldy, const int16_t* bias,
                size_t rows, size_t cols, int8_t* out, size_t ldo) {
#if HWY_TARGET == HWY_SCALAR
  vec_ref::Requant(p, y, ldy, bias, rows, 0, cols, out, ldo);
#else
  RequantImpl(p, y, ldy, bias, rows, cols, out, ldo);
#endif
}
void ResidualVec(const ResidualParams& p, const int16_t* y, size_t ldy, const int16_t* bias,
                 const int32_t* x, size_t rows, size_t cols, int32_t* out) {
#if HWY_TARGET == HWY_SCALAR
  vec_ref::Residual(p, y, ldy, bias, x, rows, 0, cols, cols, out);
#else
  ResidualImpl(p, y, ldy, bias, x, rows, cols, out);
#endif
}
void NormVec(const NormParams& p, const int32_t* x, size_t rows, int8_t* out) {
#if HWY_TARGET == HWY_SCALAR
  NormRows(p.norm, p.in, x, rows, p.width, p.width, out);
#else
  NormImpl(p, x, rows, out);
#endif
}
void SoftmaxVec(const SoftmaxParams& p, const int16_t* y, size_t ldy, size_t rows, size_t cols,
                int8_t* out, size_t ldo) {
#if HWY_TARGET == HWY_SCALAR
  vec_ref::Softmax(p, y, ldy, rows, cols, out, ldo);
#else
  SoftmaxImpl(p, y, ldy, rows, cols, out, ldo);
#endif
}

}  // namespace HWY_NAMESPACE
}  // namespace hgpipe::accel::vit
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace hgpipe::accel::vit {
namespace {

// The largest magnitude a value of `t` can have.
int64_t MaxAbs(const IntType& t) { return std::max(-t.min(), t.max()); }

// Whether values of `t` fit signed lanes of `bits` bits after wrapping:
// signed types up to the lane's width, unsigned ones one bit narrower.
bool FitsLane(const IntType& t, int bits) {
  return t.is_signed ? t.bits <= bits : t.bits < bits;
}

// Whether every value of [lo, hi] fits a signed `bits`-bit lane.
bool InLane(int64_t lo, int64_t hi, int bits) {
  const int64_t half = int64_t{1} << (bits - 1);
  return lo >= -half && hi < half;
}

absl::Status Refuse(absl::string_view stage, absl::string_view why) {
  return absl::FailedPreconditionError(absl::StrCat(stage, ": ", why));
}

// Sign-extended 16-bit sums y + bias, as stages.h's int32 accumulators.
void Widen(const int16_t* y, const int16_t* bias, size_t n, int32_t* out) {
  for (size_t i = 0; i < n; ++i) {
    const unsigned sum = static_cast<uint16_t>(y[i]) +
                         static_cast<uint16_t>(bias != nullptr ? bias[i] : 0);
    out[i] = static_cast<int16_t>(static_cast<uint16_t>(sum));
  }
}

}  // namespace

namespace vec_ref {

void Requant(const RequantParams& p, const int16_t* y, size_t ldy, const int16_t* bias,
             size_t rows, size_t c0, size_t cols, int8_t* out, size_t ldo) {
  std::vector<int32_t> v(cols - c0);
  for (size_t r = 0; r < rows; ++r) {
    Widen(y + r * ldy + c0, bias + c0, v.size(), v.data());
    WrapValues(p.acc, v.data(), v.size());
    TableLookup(p.table, p.acc, v.data(), v.size(), out + r * ldo + c0);
  }
}

void Residual(const ResidualParams& p, const int16_t* y, size_t ldy, const int16_t* bias,
              const int32_t* x, size_t rows, size_t c0, size_t cols, size_t stride,
              int32_t* out) {
  std::vector<int32_t> v(cols - c0);
  for (size_t r = 0; r < rows; ++r) {
    Widen(y + r * ldy + c0, bias + c0, v.size(), v.data());
    WrapValues(p.acc, v.data(), v.size());
    ResidualAdd(p.residual, x + r * stride + c0, v.data(), v.size(), out + r * stride + c0);
  }
}

void Softmax(const SoftmaxParams& p, const int16_t* y, size_t ldy, size_t rows, size_t cols,
             int8_t* out, size_t ldo) {
  std::vector<int32_t> v(cols), scratch(cols);
  for (size_t r = 0; r < rows; ++r) {
    Widen(y + r * ldy, nullptr, cols, v.data());
    WrapValues(p.scores, v.data(), cols);
    SoftmaxRows(p.softmax, v.data(), 1, cols, scratch.data(), out + r * ldo);
  }
}

}  // namespace vec_ref

HWY_EXPORT(RequantVec);
HWY_EXPORT(ResidualVec);
HWY_EXPORT(NormVec);
HWY_EXPORT(SoftmaxVec);

absl::StatusOr<RequantParams> PrepareRequant(const IntType& acc, const TableStage& t) {
  constexpr absl::string_view kStage = "vector requantization";
  if (!FitsLane(acc, 16)) return Refuse(kStage, "accumulator wider than 16 bits");
  if (!InLane(acc.min() + t.offset, acc.max() + t.offset, 16)) {
    return Refuse(kStage, "accumulator plus offset leaves 16 bits");
  }
  if (t.shift < 0) return Refuse(kStage, "negative shift");
  if (!(t.cursor.is_signed || t.cursor.bits < 16)) return Refuse(kStage, "unsigned 16-bit index");
  if (t.bound < 0 || t.bound >= 64) return Refuse(kStage, "table of more than 64 entries");
  RequantParams p;
  p.acc = acc;
  p.table = t;
  p.offset = static_cast<int16_t>(t.offset);
  p.shift = static_cast<int>(std::min<int64_t>(t.shift, 15));
  const int64_t top = t.shift + t.cursor.bits;  // the index's bits end here
  p.field = top <= acc.bits && top <= 16 && FitsLane(t.cursor, 16);
  p.up = static_cast<int>(16 - top);
  p.down = 16 - t.cursor.bits;
  for (int64_t i = 0; i <= t.bound; ++i) p.lanes[i] = static_cast<uint8_t>(t.table[i]);
  return p;
}

absl::StatusOr<ResidualParams> PrepareResidual(const IntType& acc, const IntType& in,
                                               const ResidualStage& r) {
  constexpr absl::string_view kStage = "vector residual";
  if (!FitsLane(acc, 16)) return Refuse(kStage, "accumulator wider than 16 bits");
  if (MaxAbs(in) > (int64_t{1} << 15)) return Refuse(kStage, "residual input beyond 2^15");
  if (r.mult < 0 || r.mult >= (int64_t{1} << 31)) return Refuse(kStage, "multiplier beyond 31 bits");
  if (r.shift < 16 || r.shift > 46) return Refuse(kStage, "shift outside 16..46");
  if (!FitsLane(r.out, 33)) return Refuse(kStage, "output wider than 32 bits");
  ResidualParams p;
  p.acc = acc;
  p.in = in;
  p.residual = r;
  p.mult_high = static_cast<int32_t>(r.mult >> 16);
  p.mult_low = static_cast<int32_t>(r.mult & 0xFFFF);
  return p;
}

absl::StatusOr<NormParams> PrepareNorm(const NormStage& n, const IntType& in, size_t width) {
  constexpr absl::string_view kStage = "vector layer norm";
  if (width == 0 || width % 8 != 0) return Refuse(kStage, "width not a multiple of 8");
  if (n.sum.bits > 32 || n.var.bits > 32) return Refuse(kStage, "sum or variance wider than 32 bits");
  if (!FitsLane(in, 33) || !FitsLane(n.mean, 33)) return Refuse(kStage, "input wider than 32 bits");
  int64_t rsqrt = 0;
  for (int32_t v : n.rsqrt_table) rsqrt = std::max<int64_t>(rsqrt, std::abs(int64_t{v}));
  if (MaxAbs(in) * rsqrt >= (int64_t{1} << 31)) return Refuse(kStage, "d * rsqrt beyond int32");
  if (n.out_shift < 0 || n.out_shift > 63 || n.out_shift + n.shift.bits > n.affine.bits ||
      !FitsLane(n.shift, 33)) {
    return Refuse(kStage, "output bits beyond the affine type");
  }
  NormParams p;
  p.norm = n;
  p.in = in;
  p.width = width;
  for (size_t c = 0; c < width; c += 2) {
    p.bias_even.push_back(n.bias[c]);
    p.bias_odd.push_back(n.bias[c + 1]);
    p.weight_odd.push_back(n.weight[c + 1]);  // in the even lanes' place
    p.weight_odd.push_back(0);
  }
  return p;
}

absl::StatusOr<SoftmaxParams> PrepareSoftmax(const IntType& scores, const SoftmaxStage& s) {
  constexpr absl::string_view kStage = "vector softmax";
  // Differences of two scores then fit 16 bits.
  if (scores.bits > 15) return Refuse(kStage, "scores wider than 15 bits");
  if (!FitsLane(s.minus, 16)) return Refuse(kStage, "difference wider than 16 bits");
  if (!InLane(s.minus.min() + s.exp_offset, s.minus.max() + s.exp_offset, 16)) {
    return Refuse(kStage, "difference plus offset leaves 16 bits");
  }
  if (s.exp_shift < 0 || !FitsLane(s.cursor1, 16)) return Refuse(kStage, "exponential index");
  if (s.exp_bound < 0 || s.exp_bound >= 64) return Refuse(kStage, "exponential table over 64");
  int64_t exp_max = 0, recip_max = 0;
  for (int32_t e : s.exp_table) {
    if (e < 0 || e > 0xFFFF) return Refuse(kStage, "exponential beyond 16 bits");
    exp_max = std::max<int64_t>(exp_max, e);
  }
  for (const auto* t : {&s.recip_one_table, &s.recip_two_table}) {
    for (int32_t v : *t) recip_max = std::max(recip_max, std::abs(int64_t{v}));
  }
  if (exp_max * recip_max >= (int64_t{1} << 31)) return Refuse(kStage, "exp * recip beyond int32");
  if (!FitsLane(s.affine, 32) || !FitsLane(s.cursor3, 32)) {
    return Refuse(kStage, "probability types wider than 31 bits");
  }
  for (int64_t off : {s.one_out_offset, s.two_out_offset}) {
    if (!InLane(s.affine.min() + off, s.affine.max() + off, 32)) {
      return Refuse(kStage, "probability offset leaves 32 bits");
    }
  }
  if (s.one_out_shift < 0 || s.two_out_shift < 0) return Refuse(kStage, "negative shift");
  SoftmaxParams p;
  p.scores = scores;
  p.softmax = s;
  // The max minus a score lies in [0, 2^bits); wrapping it is a no-op when
  // the difference type holds that (a 16-bit signed "type" skips it).
  const int64_t diff_max = scores.max() - scores.min();
  p.minus = s.minus.Holds(0) && s.minus.Holds(diff_max) ? IntType{16, true} : s.minus;
  // max - y + offset modulo 2^16 has the index's bits when they lie below
  // the widths both wraps keep.
  const int64_t top = s.exp_shift + s.cursor1.bits;
  p.field = top <= scores.bits && top <= s.minus.bits && top <= 16 && FitsLane(s.cursor1, 16);
  p.up = static_cast<int>(std::max<int64_t>(0, 16 - top));
  p.down = 16 - s.cursor1.bits;
  for (int64_t c = 0; c <= s.exp_bound; ++c) {
    p.exp_low[c] = static_cast<uint8_t>(s.exp_table[c] & 0xFF);
    p.exp_high[c] = static_cast<uint8_t>(s.exp_table[c] >> 8);
  }
  return p;
}

void Requant(const RequantParams& p, const int16_t* y, size_t ldy, const int16_t* bias,
             size_t rows, size_t cols, int8_t* out, size_t ldo, Simd simd) {
  if (simd == Simd::kBaseline) return vec_ref::Requant(p, y, ldy, bias, rows, 0, cols, out, ldo);
  HWY_DYNAMIC_DISPATCH(RequantVec)(p, y, ldy, bias, rows, cols, out, ldo);
}

void ResidualFinish(const ResidualParams& p, const int16_t* y, size_t ldy, const int16_t* bias,
                    const int32_t* x, size_t rows, size_t cols, int32_t* out, Simd simd) {
  if (simd == Simd::kBaseline) return vec_ref::Residual(p, y, ldy, bias, x, rows, 0, cols, cols, out);
  HWY_DYNAMIC_DISPATCH(ResidualVec)(p, y, ldy, bias, x, rows, cols, out);
}

void Norm(const NormParams& p, const int32_t* x, size_t rows, int8_t* out, Simd simd) {
  if (simd == Simd::kBaseline) return NormRows(p.norm, p.in, x, rows, p.width, p.width, out);
  HWY_DYNAMIC_DISPATCH(NormVec)(p, x, rows, out);
}

void Softmax(const SoftmaxParams& p, const int16_t* y, size_t ldy, size_t rows, size_t cols,
             int8_t* out, size_t ldo, Simd simd) {
  if (simd == Simd::kBaseline) return vec_ref::Softmax(p, y, ldy, rows, cols, out, ldo);
  HWY_DYNAMIC_DISPATCH(SoftmaxVec)(p, y, ldy, rows, cols, out, ldo);
}

}  // namespace hgpipe::accel::vit
#endif  // HWY_ONCE
