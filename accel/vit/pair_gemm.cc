// The 16-bit pair products (pair_gemm.h) in Google Highway, compiled for
// every target and dispatched at run time.
//
// Layout: units of 8 outputs; tiles of kUnits units, [tile][k pair][unit]
// [output][2] int16, outputs and k padded with zeros. A tile's weights (24
// KB for k = 768) stay in L1 while every row passes; kRows rows share each
// weight load.
#include "accel/vit/pair_gemm.h"

#include <algorithm>
#include <cstring>

#include "accel/vit/aligned.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "accel/vit/pair_gemm.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

#ifndef HGPIPE_ACCEL_VIT_PAIR_GEMM_CONSTANTS_
#define HGPIPE_ACCEL_VIT_PAIR_GEMM_CONSTANTS_
namespace hgpipe::accel::vit::pairs {

constexpr size_t kUnit = 8;   // outputs per unit (one int32 vector on AVX2)
constexpr size_t kUnits = 2;  // units per tile: 8 sums for 4 rows
constexpr size_t kRows = 4;
constexpr size_t kRowBlock = 64;  // rows converted to int16 at a time

inline size_t Pairs(size_t k) { return (k + 1) / 2; }
inline size_t Tiles(size_t n) { return (n + kUnit * kUnits - 1) / (kUnit * kUnits); }

}  // namespace hgpipe::accel::vit::pairs
#endif  // HGPIPE_ACCEL_VIT_PAIR_GEMM_CONSTANTS_

HWY_BEFORE_NAMESPACE();
namespace hgpipe::accel::vit {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using namespace pairs;  // NOLINT: the layout constants above

// vpmaddwd's lanes: only x86 targets (pair_gemm.h).
#if HWY_ARCH_X86 && HWY_TARGET != HWY_SCALAR && HWY_TARGET != HWY_EMU128

bool SupportedImpl() { return true; }

// Rows as int16 pairs, each pair read as one int32 for the broadcast.
void Widen(const uint8_t* x, bool x_unsigned, size_t ldx, size_t rows, size_t k, size_t pairs,
           int16_t* out) {
  for (size_t r = 0; r < rows; ++r) {
    int16_t* o = out + r * 2 * pairs;
    const uint8_t* xr = x + r * ldx;
    if (x_unsigned) {
      for (size_t i = 0; i < k; ++i) o[i] = xr[i];
    } else {
      for (size_t i = 0; i < k; ++i) o[i] = static_cast<int8_t>(xr[i]);
    }
    if (k % 2 != 0) o[k] = 0;
  }
}

// kRows rows (a[i]: their int16 pairs) times one tile, into part.
HWY_INLINE void Tile(const int32_t* const* a, const int16_t* wt, size_t pairs,
                     int32_t (*part)[kUnit * kUnits]) {
  const hn::CappedTag<int32_t, kUnit> d32;
  const hn::Repartition<int16_t, decltype(d32)> d16;
  const size_t lanes = hn::Lanes(d32);
  for (size_t u = 0; u < kUnit; u += lanes) {
    auto s00 = hn::Zero(d32), s01 = s00, s10 = s00, s11 = s00;
    auto s20 = s00, s21 = s00, s30 = s00, s31 = s00, unused = s00;
    for (size_t p = 0; p < pairs; ++p) {
      const int16_t* wp = wt + p * kUnits * kUnit * 2 + 2 * u;
      const auto w0 = hn::LoadU(d16, wp), w1 = hn::LoadU(d16, wp + kUnit * 2);
      const auto x0 = hn::BitCast(d16, hn::Set(d32, a[0][p]));
      const auto x1 = hn::BitCast(d16, hn::Set(d32, a[1][p]));
      const auto x2 = hn::BitCast(d16, hn::Set(d32, a[2][p]));
      const auto x3 = hn::BitCast(d16, hn::Set(d32, a[3][p]));
      s00 = hn::ReorderWidenMulAccumulate(d32, x0, w0, s00, unused);
      s01 = hn::ReorderWidenMulAccumulate(d32, x0, w1, s01, unused);
      s10 = hn::ReorderWidenMulAccumulate(d32, x1, w0, s10, unused);
      s11 = hn::ReorderWidenMulAccumulate(d32, x1, w1, s11, unused);
      s20 = hn::ReorderWidenMulAccumulate(d32, x2, w0, s20, unused);
      s21 = hn::ReorderWidenMulAccumulate(d32, x2, w1, s21, unused);
      s30 = hn::ReorderWidenMulAccumulate(d32, x3, w0, s30, unused);
      s31 = hn::ReorderWidenMulAccumulate(d32, x3, w1, s31, unused);
    }
    hn::Store(s00, d32, part[0] + u);
    hn::Store(s01, d32, part[0] + kUnit + u);
    hn::Store(s10, d32, part[1] + u);
    hn::Store(s11, d32, part[1] + kUnit + u);
    hn::Store(s20, d32, part[2] + u);
    hn::Store(s21, d32, part[2] + kUnit + u);
    hn::Store(s30, d32, part[3] + u);
    hn::Store(s31, d32, part[3] + kUnit + u);
  }
}

void GemmImpl(const uint8_t* x, bool x_unsigned, size_t ldx, size_t rows, const int16_t* w,
              size_t n, size_t k, int32_t* y, size_t ldy) {
  const size_t pairs = Pairs(k), tiles = Tiles(n);
  // A block of rows at a time as int16 (96 KB for 64 rows of 768: in L2
  // while every tile passes).
  thread_local AlignedVector<int16_t> wide;
  if (wide.size() < kRowBlock * 2 * pairs) wide.resize(kRowBlock * 2 * pairs);
  const int32_t* rows32 = reinterpret_cast<const int32_t*>(wide.data());
  alignas(64) int32_t part[kRows][kUnit * kUnits];
  for (size_t b0 = 0; b0 < rows; b0 += kRowBlock) {
    const size_t b1 = std::min(rows, b0 + kRowBlock);
    Widen(x + b0 * ldx, x_unsigned, ldx, b1 - b0, k, pairs, wide.data());
    for (size_t t = 0; t < tiles; ++t) {
      const int16_t* wt = w + t * pairs * kUnits * kUnit * 2;
      const size_t j0 = t * kUnits * kUnit, live = std::min(kUnits * kUnit, n - j0);
      for (size_t r0 = b0; r0 < b1; r0 += kRows) {
        // Missing rows repeat the last one; their sums are dropped.
        const size_t live_rows = std::min(kRows, b1 - r0);
        const int32_t* a[kRows];
        for (size_t i = 0; i < kRows; ++i) {
          a[i] = rows32 + (r0 - b0 + std::min(i, live_rows - 1)) * pairs;
        }
        Tile(a, wt, pairs, part);
        for (size_t i = 0; i < live_rows; ++i) {
          std::memcpy(y + (r0 + i) * ldy + j0, part[i], live * sizeof(int32_t));
        }
      }
    }
  }
}

#else

bool SupportedImpl() { return false; }

void GemmImpl(const uint8_t*, bool, size_t, size_t, const int16_t*, size_t, size_t, int32_t*,
              size_t) {}

#endif

}  // namespace HWY_NAMESPACE
}  // namespace hgpipe::accel::vit
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace hgpipe::accel::vit {

HWY_EXPORT(SupportedImpl);
HWY_EXPORT(GemmImpl);

bool PairGemmSupported() { return HWY_DYNAMIC_DISPATCH(SupportedImpl)(); }

void PairWeights::Pack(const int8_t* w, size_t n, size_t k, size_t ldw) {
  using namespace pairs;  // NOLINT
  n_ = n;
  k_ = k;
  const size_t pairs = Pairs(k), tiles = Tiles(n);
  data_.assign(tiles * pairs * kUnits * kUnit * 2 + 32, 0);
  offset_ = (64 - reinterpret_cast<uintptr_t>(data_.data()) % 64) % 64 / sizeof(int16_t);
  int16_t* out = data_.data() + offset_;
  for (size_t j = 0; j < n; ++j) {
    const size_t t = j / (kUnits * kUnit), c = j % (kUnits * kUnit);
    for (size_t i = 0; i < k; ++i) {
      out[((t * pairs + i / 2) * kUnits * kUnit + c) * 2 + i % 2] = w[j * ldw + i];
    }
  }
}

void PairGemm(const uint8_t* x, bool x_unsigned, size_t ldx, size_t rows, const PairWeights& w,
              int32_t* y, size_t ldy) {
  HWY_DYNAMIC_DISPATCH(GemmImpl)(x, x_unsigned, ldx, rows, w.data(), w.n(), w.k(), y, ldy);
}

}  // namespace hgpipe::accel::vit
#endif  // HWY_ONCE
