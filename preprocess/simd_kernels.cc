#include "preprocess/simd_kernels.h"

#include <algorithm>
#include <cstring>

// Highway's dynamic dispatch: this file is compiled once per target.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "preprocess/simd_kernels.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace hgpipe::preprocess::simd {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// The products of output i's taps, for `chunks` vectors of taps.
template <class D>
HWY_INLINE hn::Vec<D> TapProducts(D d, const uint8_t* in, const int32_t* k, int chunks) {
  const hn::Rebind<uint8_t, D> d8;
  const int lanes = static_cast<int>(hn::Lanes(d));
  auto sum = hn::Mul(hn::PromoteTo(d, hn::LoadU(d8, in)), hn::LoadU(d, k));
  for (int c = 1; c < chunks; ++c) {
    sum = hn::Add(
        sum, hn::Mul(hn::PromoteTo(d, hn::LoadU(d8, in + c * lanes)), hn::LoadU(d, k + c * lanes)));
  }
  return sum;
}

#if HWY_TARGET != HWY_SCALAR
// Lane j of the result: the sum of the lanes of v[j], for 8 vectors of 8
// lanes (within-block interleaves, then the two blocks added): one
// reduction for 8 outputs instead of 8.
template <class D>
HWY_INLINE hn::Vec<D> SumsOf8(D d, const hn::Vec<D>* v) {
  const hn::Repartition<int64_t, D> d64;
  auto pair = [&](hn::Vec<D> a, hn::Vec<D> b) {
    return hn::Add(hn::InterleaveLower(d, a, b), hn::InterleaveUpper(d, a, b));
  };
  auto quad = [&](hn::Vec<D> a, hn::Vec<D> b) {
    const auto a64 = hn::BitCast(d64, a), b64 = hn::BitCast(d64, b);
    return hn::Add(hn::BitCast(d, hn::InterleaveLower(d64, a64, b64)),
                   hn::BitCast(d, hn::InterleaveUpper(d64, a64, b64)));
  };
  const auto q0 = quad(pair(v[0], v[1]), pair(v[2], v[3]));
  const auto q1 = quad(pair(v[4], v[5]), pair(v[6], v[7]));
  return hn::Add(hn::ConcatLowerLower(d, q1, q0), hn::ConcatUpperUpper(d, q1, q0));
}
#endif

// Outputs [i, count) one at a time.
template <class D>
HWY_INLINE void HorizontalTail(D d, const uint8_t* in, const int32_t* first, const int32_t* taps,
                               const int32_t* coefficients, int stride, int i, int count,
                               uint8_t* out) {
  const int lanes = static_cast<int>(hn::Lanes(d));
  const int32_t half = 1 << (kPrecisionBits - 1);
  for (; i < count; ++i) {
    const int chunks = (taps[i] + lanes - 1) / lanes;
    const auto products =
        TapProducts(d, in + first[i], coefficients + static_cast<size_t>(i) * stride, chunks);
    const int32_t total = hn::GetLane(hn::SumOfLanes(d, products)) + half;
    out[i] = static_cast<uint8_t>(std::clamp(total >> kPrecisionBits, 0, 255));
  }
}

// Each output is a short dot product (Pillow's taps are few: bicubic at a
// scale below 2 has at most 8), so the taps go in lanes; with 8-lane
// vectors, 8 outputs share one reduction.
void HorizontalRowImpl(const uint8_t* in, const int32_t* first, const int32_t* taps,
                       const int32_t* coefficients, int stride, int count, uint8_t* out) {
  const hn::CappedTag<int32_t, 8> d;
  int i = 0;
#if HWY_TARGET != HWY_SCALAR
  const int lanes = static_cast<int>(hn::Lanes(d));
  const int32_t half = 1 << (kPrecisionBits - 1);
  if (lanes == 8) {
    const hn::Rebind<uint8_t, decltype(d)> d8;
    hn::Vec<decltype(d)> products[8];
    for (; i + 8 <= count; i += 8) {
      int most = 0;
      for (int j = 0; j < 8; ++j) most = std::max(most, taps[i + j]);
      const int chunks = (most + lanes - 1) / lanes;
      for (int j = 0; j < 8; ++j) {
        products[j] = TapProducts(d, in + first[i + j],
                                  coefficients + static_cast<size_t>(i + j) * stride, chunks);
      }
      auto sum = hn::ShiftRight<kPrecisionBits>(hn::Add(SumsOf8(d, products), hn::Set(d, half)));
      sum = hn::Min(hn::Max(sum, hn::Zero(d)), hn::Set(d, 255));
      hn::StoreU(hn::DemoteTo(d8, sum), d8, out + i);
    }
  }
#endif
  HorizontalTail(d, in, first, taps, coefficients, stride, i, count, out);
}

// 16 products per instruction (x86's pmaddwd) instead of 8: two outputs of
// up to 8 taps in one 16-lane vector, the 22-bit coefficients split into
// two 16-bit halves (k = hi * 2^11 + lo), so the result is exact.
void HorizontalRowMaddImpl(const uint8_t* in, const int32_t* first, const int32_t* taps,
                           const int32_t* coefficients, int stride, const MaddCoefficients& madd,
                           int count, uint8_t* out) {
  const hn::CappedTag<int32_t, 8> d;
  int i = 0;
#if HWY_ARCH_X86 && HWY_TARGET != HWY_SCALAR && HWY_TARGET != HWY_EMU128
  const hn::CappedTag<int16_t, 16> d16;
  if (hn::Lanes(d) == 8 && hn::Lanes(d16) == 16 && !madd.hi.empty()) {
    const hn::Rebind<uint8_t, decltype(d16)> d8x16;
    const hn::Half<decltype(d8x16)> d8x8;
    const hn::Rebind<uint8_t, decltype(d)> d8;
    const hn::Repartition<int64_t, decltype(d)> d64;
    const int32_t half = 1 << (kPrecisionBits - 1);
    for (; i + 8 <= count; i += 8) {
      hn::Vec<decltype(d)> s[4];
      for (int m = 0; m < 4; ++m) {
        const auto bytes = hn::Combine(d8x16, hn::LoadU(d8x8, in + first[i + m + 4]),
                                       hn::LoadU(d8x8, in + first[i + m]));
        const auto v = hn::PromoteTo(d16, bytes);
        const size_t at = MaddCoefficientIndex(i + m, 0);
        auto unused = hn::Zero(d);
        const auto high =
            hn::ReorderWidenMulAccumulate(d, v, hn::LoadU(d16, &madd.hi[at]), hn::Zero(d), unused);
        const auto low =
            hn::ReorderWidenMulAccumulate(d, v, hn::LoadU(d16, &madd.lo[at]), hn::Zero(d), unused);
        s[m] = hn::Add(hn::ShiftLeft<11>(high), low);  // 4 partial sums per output, per block
      }
      // Block 0 of s[m] holds output i + m's partial sums, block 1 output
      // i + m + 4's: within-block interleaves leave lane j = output i + j.
      auto pair = [&](hn::Vec<decltype(d)> a, hn::Vec<decltype(d)> b) {
        return hn::Add(hn::InterleaveLower(d, a, b), hn::InterleaveUpper(d, a, b));
      };
      const auto p01 = hn::BitCast(d64, pair(s[0], s[1]));
      const auto p23 = hn::BitCast(d64, pair(s[2], s[3]));
      auto sum = hn::Add(hn::BitCast(d, hn::InterleaveLower(d64, p01, p23)),
                         hn::BitCast(d, hn::InterleaveUpper(d64, p01, p23)));
      sum = hn::ShiftRight<kPrecisionBits>(hn::Add(sum, hn::Set(d, half)));
      sum = hn::Min(hn::Max(sum, hn::Zero(d)), hn::Set(d, 255));
      hn::StoreU(hn::DemoteTo(d8, sum), d8, out + i);
    }
  }
#endif
  if (i == 0) {
    HorizontalRowImpl(in, first, taps, coefficients, stride, count, out);
  } else {
    HorizontalTail(d, in, first, taps, coefficients, stride, i, count, out);
  }
}

void VerticalRowImpl(const uint8_t* const* rows, const int32_t* k, int taps, int n, uint8_t* out) {
  const hn::ScalableTag<int32_t> d32;
  const hn::Rebind<uint8_t, decltype(d32)> d8;
  const int lanes = static_cast<int>(hn::Lanes(d32));
  const auto half = hn::Set(d32, 1 << (kPrecisionBits - 1));
  int i = 0;
  for (; i + lanes <= n; i += lanes) {
    auto sum = half;
    for (int t = 0; t < taps; ++t) {
      const auto v = hn::PromoteTo(d32, hn::LoadU(d8, rows[t] + i));
      sum = hn::Add(sum, hn::Mul(v, hn::Set(d32, k[t])));
    }
    // Pillow's clip8: negative sums to 0, sums of 256 steps or more to 255.
    sum = hn::Min(hn::Max(hn::ShiftRight<kPrecisionBits>(sum), hn::Zero(d32)), hn::Set(d32, 255));
    hn::StoreU(hn::DemoteTo(d8, sum), d8, out + i);
  }
  for (; i < n; ++i) {
    int32_t sum = 1 << (kPrecisionBits - 1);
    for (int t = 0; t < taps; ++t) sum += rows[t][i] * k[t];
    out[i] = static_cast<uint8_t>(std::clamp(sum >> kPrecisionBits, 0, 255));
  }
}

// A 256-entry byte table as 16 in-register 16-entry tables: the high
// nibble picks the table, the low nibble indexes it (a byte shuffle).
void LookupRowImpl(const uint8_t* in, int n, const int8_t* table, int8_t* out) {
  const hn::ScalableTag<uint8_t> d;
  const int lanes = static_cast<int>(hn::Lanes(d));
  const uint8_t* t8 = reinterpret_cast<const uint8_t*>(table);
  using V = hn::Vec<decltype(d)>;
  V tables[16];
  for (int h = 0; h < 16; ++h) tables[h] = hn::LoadDup128(d, t8 + 16 * h);
  const auto low_mask = hn::Set(d, 15);
  int i = 0;
  for (; i + lanes <= n; i += lanes) {
    const auto v = hn::LoadU(d, in + i);
    const auto low = hn::And(v, low_mask);
    const auto high = hn::ShiftRight<4>(v);
    auto result = hn::TableLookupBytes(tables[0], low);
    for (int h = 1; h < 16; ++h) {
      result = hn::IfThenElse(hn::Eq(high, hn::Set(d, static_cast<uint8_t>(h))),
                              hn::TableLookupBytes(tables[h], low), result);
    }
    hn::StoreU(result, d, reinterpret_cast<uint8_t*>(out + i));
  }
  for (; i < n; ++i) out[i] = table[in[i]];
}

void DeinterleaveRgbImpl(const uint8_t* in, int pixel_stride, int n, uint8_t* r, uint8_t* g,
                         uint8_t* b) {
  const hn::ScalableTag<uint8_t> d;
  const int lanes = static_cast<int>(hn::Lanes(d));
  int i = 0;
  if (pixel_stride == 3) {
    for (; i + lanes <= n; i += lanes) {
      hn::Vec<decltype(d)> v0, v1, v2;
      hn::LoadInterleaved3(d, in + static_cast<size_t>(i) * 3, v0, v1, v2);
      hn::StoreU(v0, d, r + i);
      hn::StoreU(v1, d, g + i);
      hn::StoreU(v2, d, b + i);
    }
  } else if (pixel_stride == 4) {
    for (; i + lanes <= n; i += lanes) {
      hn::Vec<decltype(d)> v0, v1, v2, v3;
      hn::LoadInterleaved4(d, in + static_cast<size_t>(i) * 4, v0, v1, v2, v3);
      hn::StoreU(v0, d, r + i);
      hn::StoreU(v1, d, g + i);
      hn::StoreU(v2, d, b + i);
    }
  }
  for (; i < n; ++i) {
    const uint8_t* p = in + static_cast<size_t>(i) * pixel_stride;
    r[i] = p[0];
    g[i] = p[1];
    b[i] = p[2];
  }
}

void InterleavePairRowsImpl(const int8_t* a, ptrdiff_t a_stride, const int8_t* b,
                            ptrdiff_t b_stride, int rows, int row_bytes, int8_t* out) {
  // 16-bit lanes: a pair of int8 values moves as one lane. At most 8 lanes
  // (16 bytes, a 16-pixel patch row) so short rows still fill vectors.
  const hn::CappedTag<uint16_t, 8> d;
  const int lanes = static_cast<int>(hn::Lanes(d));
  const int pairs = row_bytes / 2;
  for (int r = 0; r < rows; ++r, a += a_stride, b += b_stride, out += 2 * row_bytes) {
    int i = 0;
    // Highway's unaligned loads and stores take any address.
    const auto* a16 = reinterpret_cast<const uint16_t*>(a);
    const auto* b16 = reinterpret_cast<const uint16_t*>(b);
    auto* out16 = reinterpret_cast<uint16_t*>(out);
    for (; i + lanes <= pairs; i += lanes) {
      hn::StoreInterleaved2(hn::LoadU(d, a16 + i), hn::LoadU(d, b16 + i), d, out16 + 2 * i);
    }
    for (; i < pairs; ++i) {
      std::memcpy(out + 4 * i, a + 2 * i, 2);
      std::memcpy(out + 4 * i + 2, b + 2 * i, 2);
    }
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace hgpipe::preprocess::simd
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace hgpipe::preprocess::simd {

HWY_EXPORT(HorizontalRowImpl);
HWY_EXPORT(HorizontalRowMaddImpl);
HWY_EXPORT(VerticalRowImpl);
HWY_EXPORT(LookupRowImpl);
HWY_EXPORT(DeinterleaveRgbImpl);
HWY_EXPORT(InterleavePairRowsImpl);

void HorizontalRow(const uint8_t* in, const int32_t* first, const int32_t* taps,
                   const int32_t* coefficients, int stride, int count, uint8_t* out) {
  HWY_DYNAMIC_DISPATCH(HorizontalRowImpl)(in, first, taps, coefficients, stride, count, out);
}

void HorizontalRowMadd(const uint8_t* in, const int32_t* first, const int32_t* taps,
                       const int32_t* coefficients, int stride, const MaddCoefficients& madd,
                       int count, uint8_t* out) {
  HWY_DYNAMIC_DISPATCH(HorizontalRowMaddImpl)
  (in, first, taps, coefficients, stride, madd, count, out);
}

void VerticalRow(const uint8_t* const* rows, const int32_t* k, int taps, int n, uint8_t* out) {
  HWY_DYNAMIC_DISPATCH(VerticalRowImpl)(rows, k, taps, n, out);
}

void LookupRow(const uint8_t* in, int n, const int8_t* table, int8_t* out) {
  HWY_DYNAMIC_DISPATCH(LookupRowImpl)(in, n, table, out);
}

void DeinterleaveRgb(const uint8_t* in, int pixel_stride, int n, uint8_t* r, uint8_t* g,
                     uint8_t* b) {
  HWY_DYNAMIC_DISPATCH(DeinterleaveRgbImpl)(in, pixel_stride, n, r, g, b);
}

void InterleavePairRows(const int8_t* a, ptrdiff_t a_stride, const int8_t* b, ptrdiff_t b_stride,
                        int rows, int row_bytes, int8_t* out) {
  HWY_DYNAMIC_DISPATCH(InterleavePairRowsImpl)(a, a_stride, b, b_stride, rows, row_bytes, out);
}

}  // namespace hgpipe::preprocess::simd
#endif  // HWY_ONCE
