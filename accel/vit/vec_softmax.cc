// The vector softmax (vec_stages.h: Softmax) in Google Highway, compiled
// for every target and dispatched at run time.
#include "accel/vit/vec_stages.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "accel/vit/aligned.h"
#include "accel/vit/stages.h"
#include "accel/vit/vec_checks.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "accel/vit/vec_softmax.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

#include "accel/vit/vec_ops-inl.h"

#ifndef HGPIPE_ACCEL_VIT_VEC_SOFTMAX_ONCE_
#define HGPIPE_ACCEL_VIT_VEC_SOFTMAX_ONCE_
namespace hgpipe::accel::vit::vec_ref {

// stages.h's SoftmaxRows on the 16-bit sums widened to int32: the fallback
// on targets without 16-byte vectors and for Simd::kBaseline.
void Softmax(const SoftmaxParams& p, const int16_t* y, size_t ldy, size_t rows, size_t cols,
             int8_t* out, size_t ldo);

}  // namespace hgpipe::accel::vit::vec_ref
#endif  // HGPIPE_ACCEL_VIT_VEC_SOFTMAX_ONCE_

HWY_BEFORE_NAMESPACE();
namespace hgpipe::accel::vit {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET != HWY_SCALAR

void SoftmaxImpl(const SoftmaxParams& p, const int16_t* y, size_t ldy, size_t rows, size_t cols,
                 int8_t* out, size_t ldo) {
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
            c1 = cursor1_signed ? hn::ShiftRightSame(f, down)
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

using namespace vec_checks;  // NOLINT

void vec_ref::Softmax(const SoftmaxParams& p, const int16_t* y, size_t ldy, size_t rows,
                      size_t cols, int8_t* out, size_t ldo) {
  std::vector<int32_t> v(cols), scratch(cols);
  for (size_t r = 0; r < rows; ++r) {
    Widen(y + r * ldy, nullptr, cols, v.data());
    WrapValues(p.scores, v.data(), cols);
    SoftmaxRows(p.softmax, v.data(), 1, cols, scratch.data(), out + r * ldo);
  }
}

HWY_EXPORT(SoftmaxVec);

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

void Softmax(const SoftmaxParams& p, const int16_t* y, size_t ldy, size_t rows, size_t cols,
             int8_t* out, size_t ldo, Simd simd) {
  if (simd == Simd::kBaseline) return vec_ref::Softmax(p, y, ldy, rows, cols, out, ldo);
  HWY_DYNAMIC_DISPATCH(SoftmaxVec)(p, y, ldy, rows, cols, out, ldo);
}

}  // namespace hgpipe::accel::vit
#endif  // HWY_ONCE
