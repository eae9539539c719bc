// The vector stages (vec_stages.h) in Google Highway, compiled for every
// target and dispatched at run time. Each Prepare* states the bounds that
// keep every lane's intermediate exact; the vector code relies on them.
#include "accel/vit/vec_stages.h"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "accel/vit/aligned.h"
#include "accel/vit/stages.h"
#include "accel/vit/vec_checks.h"

#ifndef HGPIPE_ACCEL_VIT_VEC_STAGES_ONCE_
#define HGPIPE_ACCEL_VIT_VEC_STAGES_ONCE_
namespace hgpipe::accel::vit::vec_ref {

// The stages.h arithmetic on 16-bit sums widened to int32: the fallback on
// targets without 16-byte vectors, for Simd::kBaseline and for row tails.
void Requant(const RequantParams& p, const int16_t* y, size_t ldy, const int16_t* bias, size_t rows,
             size_t c0, size_t cols, int8_t* out, size_t ldo);
void Residual(const ResidualParams& p, const int16_t* y, size_t ldy, const int16_t* bias,
              const int32_t* x, size_t rows, size_t c0, size_t cols, size_t stride, int32_t* out);
}  // namespace hgpipe::accel::vit::vec_ref
#endif  // HGPIPE_ACCEL_VIT_VEC_STAGES_ONCE_

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "accel/vit/vec_stages.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

#include "accel/vit/vec_ops-inl.h"

HWY_BEFORE_NAMESPACE();
namespace hgpipe::accel::vit {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET != HWY_SCALAR

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
        const auto even =
            hn::Add(hn::MulEven(dr, hn::LoadU(d32, w + c)), hn::LoadU(d64, be + c / 2));
        const auto dr_odd = hn::BitCast(d32, hn::ShiftRight<32>(hn::BitCast(du64, dr)));
        const auto odds =
            hn::Add(hn::MulEven(dr_odd, hn::LoadU(d32, wo + c)), hn::LoadU(d64, bo + c / 2));
        const auto e = hn::ShiftRightSame(hn::BitCast(du64, even), out_shift);
        const auto f = odd_left ? hn::ShiftLeftSame(hn::BitCast(du64, odds), odd_shift)
                                : hn::ShiftRightSame(hn::BitCast(du64, odds), odd_shift);
        const auto merged =
            hn::BitCast(d32, hn::Or(hn::AndNot(high_words, e), hn::And(high_words, f)));
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
}  // namespace HWY_NAMESPACE
}  // namespace hgpipe::accel::vit
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace hgpipe::accel::vit {

using namespace vec_checks;  // NOLINT
namespace vec_ref {

void Requant(const RequantParams& p, const int16_t* y, size_t ldy, const int16_t* bias, size_t rows,
             size_t c0, size_t cols, int8_t* out, size_t ldo) {
  std::vector<int32_t> v(cols - c0);
  for (size_t r = 0; r < rows; ++r) {
    Widen(y + r * ldy + c0, bias + c0, v.size(), v.data());
    WrapValues(p.acc, v.data(), v.size());
    TableLookup(p.table, p.acc, v.data(), v.size(), out + r * ldo + c0);
  }
}

void Residual(const ResidualParams& p, const int16_t* y, size_t ldy, const int16_t* bias,
              const int32_t* x, size_t rows, size_t c0, size_t cols, size_t stride, int32_t* out) {
  std::vector<int32_t> v(cols - c0);
  for (size_t r = 0; r < rows; ++r) {
    Widen(y + r * ldy + c0, bias + c0, v.size(), v.data());
    WrapValues(p.acc, v.data(), v.size());
    ResidualAdd(p.residual, x + r * stride + c0, v.data(), v.size(), out + r * stride + c0);
  }
}

}  // namespace vec_ref

HWY_EXPORT(RequantVec);
HWY_EXPORT(ResidualVec);
HWY_EXPORT(NormVec);

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
  if (r.mult < 0 || r.mult >= (int64_t{1} << 31))
    return Refuse(kStage, "multiplier beyond 31 bits");
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
  if (n.sum.bits > 32 || n.var.bits > 32)
    return Refuse(kStage, "sum or variance wider than 32 bits");
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

void Requant(const RequantParams& p, const int16_t* y, size_t ldy, const int16_t* bias, size_t rows,
             size_t cols, int8_t* out, size_t ldo, Simd simd) {
  if (simd == Simd::kBaseline) return vec_ref::Requant(p, y, ldy, bias, rows, 0, cols, out, ldo);
  HWY_DYNAMIC_DISPATCH(RequantVec)(p, y, ldy, bias, rows, cols, out, ldo);
}

void ResidualFinish(const ResidualParams& p, const int16_t* y, size_t ldy, const int16_t* bias,
                    const int32_t* x, size_t rows, size_t cols, int32_t* out, Simd simd) {
  if (simd == Simd::kBaseline)
    return vec_ref::Residual(p, y, ldy, bias, x, rows, 0, cols, cols, out);
  HWY_DYNAMIC_DISPATCH(ResidualVec)(p, y, ldy, bias, x, rows, cols, out);
}

void Norm(const NormParams& p, const int32_t* x, size_t rows, int8_t* out, Simd simd) {
  if (simd == Simd::kBaseline) return NormRows(p.norm, p.in, x, rows, p.width, p.width, out);
  HWY_DYNAMIC_DISPATCH(NormVec)(p, x, rows, out);
}

}  // namespace hgpipe::accel::vit
#endif  // HWY_ONCE
