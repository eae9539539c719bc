// Packing weights for the lookup-table products (lut_gemm.h: LutWeights) in
// Google Highway, compiled for every target and dispatched at run time.
// Constant weights are packed once, at load; the attention's k and v for
// every image and head, so those must be fast.
#include "accel/vit/lut_gemm.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "accel/vit/lut_layout.h"

#ifndef HGPIPE_ACCEL_VIT_LUT_PACK_ONCE_
#define HGPIPE_ACCEL_VIT_LUT_PACK_ONCE_
namespace hgpipe::accel::vit::lut {

// The packing in plain loops: the reference for the vector packers and
// their code on single-lane targets. w[j][i] is at w[j * ldw + i], or with
// `transposed` at w[i * ldw + j].
void PackScalar(const int8_t* w, size_t n, size_t k, size_t ldw, bool transposed, uint8_t* out,
                int32_t* sums);

}  // namespace hgpipe::accel::vit::lut
#endif  // HGPIPE_ACCEL_VIT_LUT_PACK_ONCE_

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "accel/vit/lut_pack.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace hgpipe::accel::vit {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using namespace lut;  // NOLINT: the layout constants

#if HWY_TARGET != HWY_SCALAR
// A 16 x 8 byte transpose: block holds 16 rows of 8 bytes; out[s] gets
// byte s of every row, in row order (16-byte vectors: unpacks of 16-, 32-
// and 64-bit lanes after pairing rows 2i and 2i + 1 bytewise).
template <class D8>
HWY_INLINE void Transpose16x8(D8 d8, const uint8_t* HWY_RESTRICT block, uint8_t* HWY_RESTRICT out) {
  const hn::Repartition<uint16_t, D8> d16;
  const hn::Repartition<uint32_t, D8> d32;
  const hn::Repartition<uint64_t, D8> d64;
  alignas(16) static constexpr uint8_t kPairs[16] = {0, 8,  1, 9,  2, 10, 3, 11,
                                                     4, 12, 5, 13, 6, 14, 7, 15};
  const auto pairs = hn::Load(d8, kPairs);
  auto w = [&](size_t i) {
    return hn::BitCast(d16, hn::TableLookupBytes(hn::LoadU(d8, block + 16 * i), pairs));
  };
  const auto w0 = w(0), w1 = w(1), w2 = w(2), w3 = w(3), w4 = w(4), w5 = w(5), w6 = w(6), w7 = w(7);
  const auto a0 = hn::BitCast(d32, hn::InterleaveLower(d16, w0, w1));
  const auto a1 = hn::BitCast(d32, hn::InterleaveUpper(d16, w0, w1));
  const auto a2 = hn::BitCast(d32, hn::InterleaveLower(d16, w2, w3));
  const auto a3 = hn::BitCast(d32, hn::InterleaveUpper(d16, w2, w3));
  const auto a4 = hn::BitCast(d32, hn::InterleaveLower(d16, w4, w5));
  const auto a5 = hn::BitCast(d32, hn::InterleaveUpper(d16, w4, w5));
  const auto a6 = hn::BitCast(d32, hn::InterleaveLower(d16, w6, w7));
  const auto a7 = hn::BitCast(d32, hn::InterleaveUpper(d16, w6, w7));
  const auto b0 = hn::BitCast(d64, hn::InterleaveLower(d32, a0, a2));
  const auto b1 = hn::BitCast(d64, hn::InterleaveUpper(d32, a0, a2));
  const auto b2 = hn::BitCast(d64, hn::InterleaveLower(d32, a1, a3));
  const auto b3 = hn::BitCast(d64, hn::InterleaveUpper(d32, a1, a3));
  const auto b4 = hn::BitCast(d64, hn::InterleaveLower(d32, a4, a6));
  const auto b5 = hn::BitCast(d64, hn::InterleaveUpper(d32, a4, a6));
  const auto b6 = hn::BitCast(d64, hn::InterleaveLower(d32, a5, a7));
  const auto b7 = hn::BitCast(d64, hn::InterleaveUpper(d32, a5, a7));
  hn::StoreU(hn::BitCast(d8, hn::InterleaveLower(d64, b0, b4)), d8, out);
  hn::StoreU(hn::BitCast(d8, hn::InterleaveUpper(d64, b0, b4)), d8, out + 16);
  hn::StoreU(hn::BitCast(d8, hn::InterleaveLower(d64, b1, b5)), d8, out + 32);
  hn::StoreU(hn::BitCast(d8, hn::InterleaveUpper(d64, b1, b5)), d8, out + 48);
  hn::StoreU(hn::BitCast(d8, hn::InterleaveLower(d64, b2, b6)), d8, out + 64);
  hn::StoreU(hn::BitCast(d8, hn::InterleaveUpper(d64, b2, b6)), d8, out + 80);
  hn::StoreU(hn::BitCast(d8, hn::InterleaveLower(d64, b3, b7)), d8, out + 96);
  hn::StoreU(hn::BitCast(d8, hn::InterleaveUpper(d64, b3, b7)), d8, out + 112);
}
#endif

// The packers. Rows (w[j][i], i contiguous), 16 at a time: each plane's
// bits of a row come out of a byte compare as a bit mask, 8 values (a
// step: both groups' nibbles) per byte; the 16 rows' masks are transposed
// so that a step's 16 bytes form one vector, whose nibbles go to the unit
// in packed order.
void PackRowsImpl(const int8_t* w, size_t n, size_t k, size_t ldw, uint8_t* out, int32_t* sums) {
#if HWY_TARGET == HWY_SCALAR
  PackScalar(w, n, k, ldw, /*transposed=*/false, out, sums);
#else
  const hn::CappedTag<uint8_t, kUnit> d;
  const hn::CappedTag<uint8_t, kVector> d16b;
  const hn::Repartition<uint64_t, decltype(d)> d64;
  const size_t lanes = hn::Lanes(d), steps = Steps(k);
  const size_t vectors = (n + kVector - 1) / kVector;
  const size_t padded = (k + lanes - 1) / lanes * lanes;
  const size_t blocks = (padded / 8 + 7) / 8;  // of 8 steps
  alignas(16) uint8_t order[kVector];
  for (size_t o = 0; o < kVector; ++o) order[Position(o)] = static_cast<uint8_t>(o);
  const auto perm = hn::Load(d16b, order);
  const auto low4 = hn::Set(d16b, uint8_t{15});
  std::vector<uint8_t> row(padded, 0);
  // masks[plane][block][row][8]: each 8-step block of 16 rows contiguous.
  std::vector<uint8_t> masks(3 * blocks * kVector * 8);
  alignas(16) uint8_t steps_of[8 * kVector];
  for (size_t v = 0; v < vectors; ++v) {
    std::fill(masks.begin(), masks.end(), 0);  // rows past n: zero weights
    for (size_t o = 0; o < kVector && v * kVector + o < n; ++o) {
      const size_t j = v * kVector + o;
      // Rows whose chunks all lie inside are read in place.
      const uint8_t* src = reinterpret_cast<const uint8_t*>(w + j * ldw);
      if (padded != k) {
        std::memcpy(row.data(), src, k);
        src = row.data();
      }
      // Sums through unsigned bytes: value + 128, less 128 per padded value.
      auto total = hn::Zero(d64);
      for (size_t c = 0; c < padded; c += lanes) {
        const auto x = hn::LoadU(d, src + c);
        total = hn::Add(total, hn::SumsOf8(hn::Xor(x, hn::Set(d, uint8_t{0x80}))));
        const size_t byte = c / 8;  // the chunk's first step
        for (size_t p = 0; p < 3; ++p) {
          uint8_t* m = masks.data() + ((p * blocks + byte / 8) * kVector + o) * 8 + byte % 8;
          hn::StoreMaskBits(d, hn::TestBit(x, hn::Set(d, static_cast<uint8_t>(1u << p))), m);
        }
      }
      sums[j] = static_cast<int32_t>(static_cast<int64_t>(hn::GetLane(hn::SumOfLanes(d64, total))) -
                                     128 * static_cast<int64_t>(padded));
    }
    for (size_t p = 0; p < 3; ++p) {
      for (size_t sb = 0; sb < blocks; ++sb) {
        Transpose16x8(d16b, masks.data() + (p * blocks + sb) * kVector * 8, steps_of);
        for (size_t s = sb * 8; s < std::min(steps, sb * 8 + 8); ++s) {
          const auto m = hn::Load(d16b, steps_of + (s - sb * 8) * kVector);
          uint8_t* unit = out + UnitOffset(v, s, steps, vectors) + p * kUnit;
          hn::StoreU(hn::TableLookupBytes(hn::And(m, low4), perm), d16b, unit);
          hn::StoreU(hn::TableLookupBytes(hn::ShiftRight<4>(m), perm), d16b, unit + 16);
        }
      }
    }
  }
#endif
}

// Columns (w[i][j], j contiguous): 16 outputs side by side, each plane's
// nibbles gathered across 4 rows with shifts, then put in packed order.
void PackColsImpl(const int8_t* w, size_t n, size_t k, size_t ldw, uint8_t* out, int32_t* sums) {
#if HWY_TARGET == HWY_SCALAR
  PackScalar(w, n, k, ldw, /*transposed=*/true, out, sums);
#else
  const hn::CappedTag<uint8_t, kVector> d;
  const hn::RebindToSigned<decltype(d)> ds;
  const hn::Half<decltype(ds)> dh;
  const hn::Rebind<int16_t, decltype(dh)> d16;  // column sums: |sum| <= 4 k
  const size_t steps = Steps(k), vectors = (n + kVector - 1) / kVector;
  alignas(16) uint8_t order[kVector];
  for (size_t o = 0; o < kVector; ++o) order[Position(o)] = static_cast<uint8_t>(o);
  const auto perm = hn::Load(d, order);
  const auto one = hn::Set(d, uint8_t{1});
  alignas(16) uint8_t tail[kVector];
  alignas(16) int16_t total[kVector];
  for (size_t v = 0; v < vectors; ++v) {
    const size_t j0 = v * kVector, live = std::min(kVector, n - j0);
    auto load = [&](size_t i) {
      if (live == kVector) return hn::LoadU(d, reinterpret_cast<const uint8_t*>(w + i * ldw + j0));
      std::memset(tail, 0, sizeof(tail));
      std::memcpy(tail, w + i * ldw + j0, live);
      return hn::Load(d, tail);
    };
    auto sum_lo = hn::Zero(d16), sum_hi = sum_lo;
    for (size_t s = 0; s < steps; ++s) {
      uint8_t* unit = out + UnitOffset(v, s, steps, vectors);
      for (size_t h = 0; h < 2; ++h) {
        auto p0 = hn::Zero(d), p1 = p0, p2 = p0;
        for (size_t q = 0; q < 4; ++q) {
          const size_t i = s * kStep + 4 * h + q;
          if (i >= k) break;
          const auto x = load(i);
          const auto xs = hn::BitCast(ds, x);
          sum_lo = hn::Add(sum_lo, hn::PromoteTo(d16, hn::LowerHalf(dh, xs)));
          sum_hi = hn::Add(sum_hi, hn::PromoteTo(d16, hn::UpperHalf(dh, xs)));
          const int sq = static_cast<int>(q);
          p0 = hn::Or(p0, hn::ShiftLeftSame(hn::And(x, one), sq));
          p1 = hn::Or(p1, hn::ShiftLeftSame(hn::And(hn::ShiftRight<1>(x), one), sq));
          p2 = hn::Or(p2, hn::ShiftLeftSame(hn::And(hn::ShiftRight<2>(x), one), sq));
        }
        hn::StoreU(hn::TableLookupBytes(p0, perm), d, unit + 16 * h);
        hn::StoreU(hn::TableLookupBytes(p1, perm), d, unit + kUnit + 16 * h);
        hn::StoreU(hn::TableLookupBytes(p2, perm), d, unit + 2 * kUnit + 16 * h);
      }
    }
    hn::Store(sum_lo, d16, total);
    hn::Store(sum_hi, d16, total + kVector / 2);
    for (size_t o = 0; o < live; ++o) sums[j0 + o] = total[o];
  }
#endif
}

}  // namespace HWY_NAMESPACE
}  // namespace hgpipe::accel::vit
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace hgpipe::accel::vit {

void lut::PackScalar(const int8_t* w, size_t n, size_t k, size_t ldw, bool transposed, uint8_t* out,
                     int32_t* sums) {
  const size_t steps = Steps(k), vectors = (n + kVector - 1) / kVector;
  auto at = [&](size_t j, size_t i) -> int { return transposed ? w[i * ldw + j] : w[j * ldw + i]; };
  for (size_t j = 0; j < n; ++j) {
    sums[j] = 0;
    for (size_t i = 0; i < k; ++i) sums[j] += at(j, i);
    const size_t v = j / kVector, b = Position(j % kVector);
    for (size_t s = 0; s < steps; ++s) {
      uint8_t* unit = out + UnitOffset(v, s, steps, vectors);
      for (size_t h = 0; h < 2; ++h) {
        for (size_t p = 0; p < 3; ++p) {
          uint8_t nibble = 0;
          for (size_t q = 0; q < 4; ++q) {
            const size_t i = s * kStep + 4 * h + q;
            if (i < k) nibble |= ((static_cast<unsigned>(at(j, i)) >> p) & 1) << q;
          }
          unit[p * kUnit + 16 * h + b] = nibble;
        }
      }
    }
  }
}

HWY_EXPORT(PackRowsImpl);
HWY_EXPORT(PackColsImpl);

void LutWeights::Pack(const int8_t* w, size_t n, size_t k, size_t ldw, bool transposed, Simd simd) {
  using namespace lut;  // NOLINT
  n_ = n;
  k_ = k;
  const size_t steps = Steps(k), vectors = (n + kVector - 1) / kVector;
  const size_t bytes = vectors * steps * kStepBytes + 64;
  // Reused by runtime operands (the attention's k and v): no reallocation,
  // and zeros where no output is (partial vectors) stay zeros.
  if (data_.size() != bytes || sums_.size() != n) {
    data_.assign(bytes, 0);
    offset_ = (64 - reinterpret_cast<uintptr_t>(data_.data()) % 64) % 64;
  }
  sums_.resize(n);
  uint8_t* out = data_.data() + offset_;
  // Column sums of the vector packer are int16: |sum| <= 4 k.
  if (simd == Simd::kBaseline || (transposed && k >= 8192)) {
    PackScalar(w, n, k, ldw, transposed, out, sums_.data());
  } else if (transposed) {
    HWY_DYNAMIC_DISPATCH(PackColsImpl)(w, n, k, ldw, out, sums_.data());
  } else {
    HWY_DYNAMIC_DISPATCH(PackRowsImpl)(w, n, k, ldw, out, sums_.data());
  }
}

}  // namespace hgpipe::accel::vit
#endif  // HWY_ONCE
