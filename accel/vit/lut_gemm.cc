// The lookup-table products (lut_gemm.h) in Google Highway, compiled for
// every target and dispatched at run time. The layout is lut_layout.h's.
//
// Speed (AMD Zen 2, AVX2): about 52 multiply-accumulates per cycle, against
// 32 for vpmaddubsw, whose single port is the limit: per two steps of a
// 4-vector tile, 24 shuffles, 20 byte adds, 4 shifts and 8 word adds over
// the four vector ports. The file is compiled with -fno-tree-pre: GCC 12's
// partial redundancy elimination otherwise turns the loop-carried sums into
// register copies and spills.
#include "accel/vit/lut_gemm.h"

#include <algorithm>
#include <cstring>

#include "accel/vit/aligned.h"
#include "accel/vit/lut_layout.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "accel/vit/lut_gemm.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

#ifndef HGPIPE_ACCEL_VIT_LUT_GEMM_ONCE_
#define HGPIPE_ACCEL_VIT_LUT_GEMM_ONCE_
namespace hgpipe::accel::vit::lut {

// sel[j][h * 16 + i]: activation 4 h + j of a step if bit j of i is set,
// else 0x80 (a shuffle index that reads 0).
alignas(32) inline constexpr uint8_t kSelect[4][32] = {
#define HGPIPE_SEL(j, h)                                                  \
  (0 >> j & 1 ? 4 * h + j : 0x80), (1 >> j & 1 ? 4 * h + j : 0x80),       \
      (2 >> j & 1 ? 4 * h + j : 0x80), (3 >> j & 1 ? 4 * h + j : 0x80),   \
      (4 >> j & 1 ? 4 * h + j : 0x80), (5 >> j & 1 ? 4 * h + j : 0x80),   \
      (6 >> j & 1 ? 4 * h + j : 0x80), (7 >> j & 1 ? 4 * h + j : 0x80),   \
      (8 >> j & 1 ? 4 * h + j : 0x80), (9 >> j & 1 ? 4 * h + j : 0x80),   \
      (10 >> j & 1 ? 4 * h + j : 0x80), (11 >> j & 1 ? 4 * h + j : 0x80), \
      (12 >> j & 1 ? 4 * h + j : 0x80), (13 >> j & 1 ? 4 * h + j : 0x80), \
      (14 >> j & 1 ? 4 * h + j : 0x80), (15 >> j & 1 ? 4 * h + j : 0x80)
    {HGPIPE_SEL(0, 0), HGPIPE_SEL(0, 1)},
    {HGPIPE_SEL(1, 0), HGPIPE_SEL(1, 1)},
    {HGPIPE_SEL(2, 0), HGPIPE_SEL(2, 1)},
    {HGPIPE_SEL(3, 0), HGPIPE_SEL(3, 1)},
#undef HGPIPE_SEL
};

}  // namespace hgpipe::accel::vit::lut
#endif  // HGPIPE_ACCEL_VIT_LUT_GEMM_ONCE_

HWY_BEFORE_NAMESPACE();
namespace hgpipe::accel::vit {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using namespace lut;  // NOLINT: the layout constants above

void BuildTablesImpl(const int8_t* a, size_t lda, size_t rows, size_t k, int8_t offset,
                     uint8_t* tables) {
  const size_t steps = Steps(k), row_bytes = steps * kStepBytes;
#if HWY_TARGET == HWY_SCALAR
  // Single-lane vectors cannot shuffle 16 bytes: plain loops.
  for (size_t r = 0; r < rows; ++r) {
    for (size_t s = 0; s < steps; ++s) {
      for (size_t h = 0; h < 2; ++h) {
        for (size_t i = 0; i < 16; ++i) {
          int t = 0;
          for (size_t j = 0; j < 4; ++j) {
            const size_t c = s * kStep + 4 * h + j;
            if ((i >> j & 1) && c < k) t += a[r * lda + c] - offset;
          }
          uint8_t* o = tables + r * row_bytes + s * kStepBytes + 16 * h + i;
          o[0] = static_cast<uint8_t>(t);
          o[kUnit] = static_cast<uint8_t>(2 * t + kBias);
          o[2 * kUnit] = static_cast<uint8_t>(4 * t);
        }
      }
    }
  }
#else
  const hn::CappedTag<uint8_t, kUnit> d;
  const size_t lanes = hn::Lanes(d);
  const auto shift = hn::Set(d, static_cast<uint8_t>(offset));
  const auto bias = hn::Set(d, static_cast<uint8_t>(kBias));
  const auto eight = hn::Set(d, uint8_t{8});
  // One 16-byte load serves two steps: the second's selectors read bytes
  // 8..15. Values past k are read but never looked up: their weights'
  // bits are 0, so no index includes them.
  for (size_t u = 0; u < kUnit; u += lanes) {
    const auto sel0 = hn::Load(d, kSelect[0] + u), sel1 = hn::Load(d, kSelect[1] + u),
               sel2 = hn::Load(d, kSelect[2] + u), sel3 = hn::Load(d, kSelect[3] + u);
    // 0x80 + 8 keeps bit 7: still a zero.
    const auto sel4 = hn::Add(sel0, eight), sel5 = hn::Add(sel1, eight),
               sel6 = hn::Add(sel2, eight), sel7 = hn::Add(sel3, eight);
    auto store = [&](hn::Vec<decltype(d)> t, uint8_t* o) {
      const auto t2 = hn::Add(t, t);
      hn::StoreU(t, d, o);
      hn::StoreU(hn::Add(t2, bias), d, o + kUnit);
      hn::StoreU(hn::Add(t2, t2), d, o + 2 * kUnit);
    };
    const bool shifted = offset != 0;
    for (size_t r = 0; r < rows; ++r) {
      const uint8_t* x = reinterpret_cast<const uint8_t*>(a + r * lda);
      uint8_t* out = tables + r * row_bytes + u;
      for (size_t s = 0; s < steps; s += 2) {
        auto v = hn::LoadDup128(d, x + s * kStep);
        if (shifted) v = hn::Sub(v, shift);
        store(hn::Add(hn::Add(hn::TableLookupBytesOr0(v, sel0), hn::TableLookupBytesOr0(v, sel1)),
                      hn::Add(hn::TableLookupBytesOr0(v, sel2), hn::TableLookupBytesOr0(v, sel3))),
              out + s * kStepBytes);
        if (s + 1 < steps) {
          store(
              hn::Add(hn::Add(hn::TableLookupBytesOr0(v, sel4), hn::TableLookupBytesOr0(v, sel5)),
                      hn::Add(hn::TableLookupBytesOr0(v, sel6), hn::TableLookupBytesOr0(v, sel7))),
              out + (s + 1) * kStepBytes);
        }
      }
    }
  }
#endif
}

#if HWY_TARGET != HWY_SCALAR
// An empty asm that "changes" v, so that v is computed where it is written:
// without it GCC hoists all of a step's shuffles ahead of the adds, which
// needs more than 16 registers and spills. No instruction is emitted.
// (Clang schedules the loop well without it.)
template <class V>
HWY_INLINE void InOrder(V& v) {
#if HWY_ARCH_X86 && defined(__GNUC__) && !defined(__clang__)
  asm("" : "+x"(v.raw));
#else
  (void)v;
#endif
}

// A lookup of plane p into a byte sum: planes 0 and 1 add (weights 1, 2),
// plane 2 subtracts (weight -4; its table holds 4 T).
template <int p, class V>
HWY_INLINE V Accumulate(V q, V lookup) {
  if constexpr (p == 2) {
    return hn::Sub(q, lookup);
  } else {
    return hn::Add(q, lookup);
  }
}

// Sums of one row times C vectors (C <= kTile) of packed weights over
// `steps` steps, written (or with `accumulate`, added modulo 2^16) as
// C * 16 int16 to y: all of them; the caller copies partial vectors.
// Each table is loaded once for all C vectors; two steps' lookups add up in
// bytes (at most 2 * 112) before they are widened. Variables instead of
// arrays, so that sizeless vector types (SVE) work.
template <size_t C>
HWY_INLINE void Tile(const uint8_t* HWY_RESTRICT tab, const uint8_t* HWY_RESTRICT idx, size_t steps,
                     bool accumulate, int16_t* HWY_RESTRICT y) {
  static_assert(C >= 1 && C <= 4);
  const hn::CappedTag<uint8_t, kUnit> d;
  const hn::Repartition<uint16_t, decltype(d)> dw;
  const size_t lanes = hn::Lanes(d);
  auto all0 = hn::Zero(dw), all1 = all0, all2 = all0, all3 = all0;
  auto high0 = all0, high1 = all0, high2 = all0, high3 = all0;
  const size_t vstride = C * kStepBytes;  // bytes per step of the tile
  for (size_t s = 0; s < steps; s += 2) {
    const size_t n = std::min<size_t>(2, steps - s);
    const uint8_t* t = tab + s * kStepBytes;
    const uint8_t* x = idx + s * vstride;
    for (size_t u = 0; u < kUnit; u += lanes) {
      auto q0 = hn::Zero(d), q1 = q0, q2 = q0, q3 = q0;
      // Macros rather than lambdas: GCC keeps the sums in registers.
#define HGPIPE_LUT_PLANE(i, p)                                                                \
  {                                                                                           \
    const auto table = hn::LoadU(d, t + i * kStepBytes + p * kUnit + u);                      \
    const uint8_t* xp = x + i * vstride + p * kUnit + u;                                      \
    q0 = Accumulate<p>(q0, hn::TableLookupBytes(table, hn::LoadU(d, xp)));                    \
    InOrder(q0);                                                                              \
    if constexpr (C > 1) {                                                                    \
      q1 = Accumulate<p>(q1, hn::TableLookupBytes(table, hn::LoadU(d, xp + kStepBytes)));     \
      InOrder(q1);                                                                            \
    }                                                                                         \
    if constexpr (C > 2) {                                                                    \
      q2 = Accumulate<p>(q2, hn::TableLookupBytes(table, hn::LoadU(d, xp + 2 * kStepBytes))); \
      InOrder(q2);                                                                            \
    }                                                                                         \
    if constexpr (C > 3) {                                                                    \
      q3 = Accumulate<p>(q3, hn::TableLookupBytes(table, hn::LoadU(d, xp + 3 * kStepBytes))); \
      InOrder(q3);                                                                            \
    }                                                                                         \
  }
      HGPIPE_LUT_PLANE(0, 0)
      HGPIPE_LUT_PLANE(0, 1)
      HGPIPE_LUT_PLANE(0, 2)
      if (n == 2) {
        HGPIPE_LUT_PLANE(1, 0)
        HGPIPE_LUT_PLANE(1, 1)
        HGPIPE_LUT_PLANE(1, 2)
      }
#undef HGPIPE_LUT_PLANE
#define HGPIPE_LUT_WIDEN(c)                           \
  {                                                   \
    const auto w = hn::BitCast(dw, q##c);             \
    all##c = hn::Add(all##c, w);                      \
    high##c = hn::Add(high##c, hn::ShiftRight<8>(w)); \
  }
      HGPIPE_LUT_WIDEN(0)
      if constexpr (C > 1) HGPIPE_LUT_WIDEN(1)
      if constexpr (C > 2) HGPIPE_LUT_WIDEN(2)
      if constexpr (C > 3) HGPIPE_LUT_WIDEN(3)
#undef HGPIPE_LUT_WIDEN
    }
  }
  // Every group added kBias to each output.
  const auto bias = hn::Set(dw, static_cast<uint16_t>(2 * steps * kBias));
  auto finish = [&](auto all, auto high, int16_t* out) {
    const auto low = hn::Sub(all, hn::ShiftLeft<8>(high));
    uint16_t* o = reinterpret_cast<uint16_t*>(out);
    if (lanes == 32) {
      // The two 16-byte halves hold the same outputs' even and odd groups.
      auto sum = hn::Sub(
          hn::Add(hn::ConcatLowerLower(dw, high, low), hn::ConcatUpperUpper(dw, high, low)), bias);
      if (accumulate) sum = hn::Add(sum, hn::LoadU(dw, o));
      hn::StoreU(sum, dw, o);
    } else {
      auto l = hn::Sub(low, bias), h = hn::Sub(high, bias);
      if (accumulate) {
        l = hn::Add(l, hn::LoadU(dw, o));
        h = hn::Add(h, hn::LoadU(dw, o + 8));
      }
      hn::StoreU(l, dw, o);
      hn::StoreU(h, dw, o + 8);
    }
  };
  finish(all0, high0, y);
  if constexpr (C > 1) finish(all1, high1, y + kVector);
  if constexpr (C > 2) finish(all2, high2, y + 2 * kVector);
  if constexpr (C > 3) finish(all3, high3, y + 3 * kVector);
}

#else   // HWY_TARGET == HWY_SCALAR
// The same sums from the tables and indices in plain loops: steps
// [s_begin, s_end), row r's tables table_stride bytes apart.
void ScalarGemm(const uint8_t* tables, size_t table_stride, size_t rows, size_t steps,
                size_t s_begin, size_t s_end, const uint8_t* idx, size_t vectors, size_t n,
                int16_t* y, size_t ldy, bool accumulate) {
  for (size_t r = 0; r < rows; ++r) {
    const uint8_t* tab = tables + r * table_stride;
    for (size_t v = 0; v < vectors; ++v) {
      const size_t tile = v / kTile, c = v % kTile;
      const size_t width = std::min(kTile, vectors - tile * kTile);
      const uint8_t* x = idx + tile * kTile * steps * kStepBytes + c * kStepBytes;
      int32_t sum[kVector] = {};
      for (size_t s = s_begin; s < s_end; ++s) {
        for (size_t b = 0; b < 32; ++b) {
          const uint8_t* xs = x + s * width * kStepBytes + b;
          const uint8_t* ts = tab + (s - s_begin) * kStepBytes + (b / 16) * 16;
          const int g = static_cast<int8_t>(ts[xs[0]]) +
                        static_cast<int8_t>(ts[kUnit + xs[kUnit]]) - kBias -
                        static_cast<int8_t>(ts[2 * kUnit + xs[2 * kUnit]]);
          sum[Output(b % 16)] += g;
        }
      }
      for (size_t o = 0; o < kVector && v * kVector + o < n; ++o) {
        int16_t& out = y[r * ldy + v * kVector + o];
        out = static_cast<int16_t>((accumulate ? out : 0) + sum[o]);
      }
    }
  }
}
#endif  // HWY_TARGET != HWY_SCALAR

// Steps [s_begin, s_end) of the products, row r's tables for them at
// tables + r * table_stride; added to y with `accumulate`.
void GemmImpl(const uint8_t* tables, size_t table_stride, size_t rows, size_t k, size_t s_begin,
              size_t s_end, const uint8_t* idx, size_t n, int16_t* y, size_t ldy, bool accumulate) {
  const size_t steps = Steps(k), vectors = (n + kVector - 1) / kVector;
#if HWY_TARGET == HWY_SCALAR
  ScalarGemm(tables, table_stride, rows, steps, s_begin, s_end, idx, vectors, n, y, ldy,
             accumulate);
#else
  alignas(64) int16_t part[kTile * kVector];
  for (size_t r0 = 0; r0 < rows; r0 += kRowBlock) {
    const size_t r1 = std::min(rows, r0 + kRowBlock);
    for (size_t v0 = 0; v0 < vectors; v0 += kTile) {
      const size_t width = std::min(kTile, vectors - v0);
      const size_t live = std::min(n - v0 * kVector, width * kVector);
      const bool whole = live == width * kVector;
      for (size_t s0 = s_begin; s0 < s_end; s0 += kChunkSteps) {
        const size_t chunk = std::min(kChunkSteps, s_end - s0);
        const bool add = accumulate || s0 > s_begin;
        const uint8_t* x = idx + (v0 * steps + s0 * width) * kStepBytes;
        for (size_t r = r0; r < r1; ++r) {
          const uint8_t* tab = tables + r * table_stride + (s0 - s_begin) * kStepBytes;
          int16_t* out = y + r * ldy + v0 * kVector;
          if (!whole) {
            if (add) std::memcpy(part, out, live * sizeof(int16_t));
            out = part;
          }
          switch (width) {
            case 4: Tile<4>(tab, x, chunk, add, out); break;
            case 3: Tile<3>(tab, x, chunk, add, out); break;
            case 2: Tile<2>(tab, x, chunk, add, out); break;
            default: Tile<1>(tab, x, chunk, add, out); break;
          }
          if (!whole) std::memcpy(y + r * ldy + v0 * kVector, part, live * sizeof(int16_t));
        }
      }
    }
  }
#endif
}

}  // namespace HWY_NAMESPACE
}  // namespace hgpipe::accel::vit
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace hgpipe::accel::vit {

HWY_EXPORT(BuildTablesImpl);
HWY_EXPORT(GemmImpl);

size_t LutTableBytes(size_t k) { return lut::Steps(k) * lut::kStepBytes; }
size_t LutReadableBytes(size_t k) { return (lut::Steps(k) + 1) / 2 * 2 * lut::kStep; }

void BuildLutTables(const int8_t* a, size_t lda, size_t rows, size_t k, int8_t offset,
                    uint8_t* tables, Simd simd) {
  if (simd == Simd::kBest) {
    HWY_DYNAMIC_DISPATCH(BuildTablesImpl)(a, lda, rows, k, offset, tables);
  } else {
    HWY_STATIC_DISPATCH(BuildTablesImpl)(a, lda, rows, k, offset, tables);
  }
}

namespace {

void Gemm(const uint8_t* tables, size_t table_stride, size_t rows, const LutWeights& w,
          size_t s_begin, size_t s_end, int16_t* y, size_t ldy, bool accumulate, Simd simd) {
  if (simd == Simd::kBest) {
    HWY_DYNAMIC_DISPATCH(GemmImpl)
    (tables, table_stride, rows, w.k(), s_begin, s_end, w.data(), w.n(), y, ldy, accumulate);
  } else {
    HWY_STATIC_DISPATCH(GemmImpl)
    (tables, table_stride, rows, w.k(), s_begin, s_end, w.data(), w.n(), y, ldy, accumulate);
  }
}

}  // namespace

void LutGemm(const uint8_t* tables, size_t rows, const LutWeights& w, int16_t* y, size_t ldy,
             Simd simd) {
  const size_t steps = lut::Steps(w.k());
  Gemm(tables, steps * lut::kStepBytes, rows, w, 0, steps, y, ldy, /*accumulate=*/false, simd);
}

void LutProduct(const int8_t* a, size_t lda, int8_t offset, size_t rows, const LutWeights& w,
                int16_t* y, size_t ldy, Simd simd) {
  using namespace lut;  // NOLINT
  const size_t k = w.k(), steps = Steps(k);
  // Tables for one chunk of steps at a time, so that they stay in L2 (98
  // KB for 32 rows) however long the rows.
  thread_local AlignedVector<uint8_t> tables;
  const size_t chunk_bytes = std::min(steps, kBuildSteps) * kStepBytes;
  if (tables.size() < rows * chunk_bytes) tables.resize(rows * chunk_bytes);
  for (size_t s0 = 0; s0 < steps; s0 += kBuildSteps) {
    const size_t s1 = std::min(steps, s0 + kBuildSteps);
    BuildLutTables(a + s0 * kStep, lda, rows, std::min(k - s0 * kStep, (s1 - s0) * kStep), offset,
                   tables.data(), simd);
    Gemm(tables.data(), (s1 - s0) * kStepBytes, rows, w, s0, s1, y, ldy, s0 > 0, simd);
  }
}

}  // namespace hgpipe::accel::vit
#endif  // HWY_ONCE
