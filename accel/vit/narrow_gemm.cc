#include "accel/vit/narrow_gemm.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace hgpipe::accel::vit {
namespace {

constexpr size_t kTile = 32;      // outputs per packed tile: two 16-lane registers
constexpr size_t kRows = 4;       // rows per micro-kernel call
constexpr size_t kRowBlock = 64;  // rows whose activations stay in cache

}  // namespace

void NarrowWeights::Pack(const int8_t* w, size_t n, size_t k, size_t ldw, bool transposed) {
  n_ = n;
  k_ = k;
  const size_t tiles = (n + kTile - 1) / kTile, pairs = (k + 1) / 2;
  data_.assign(tiles * pairs * kTile * 2 + 32, 0);
  offset_ = (32 - reinterpret_cast<uintptr_t>(data_.data()) % 32) % 32;
  int8_t* out = data_.data() + offset_;
  for (size_t t = 0; t < tiles; ++t) {
    for (size_t p = 0; p < pairs; ++p) {
      int8_t* dst = out + (t * pairs + p) * kTile * 2;
      for (size_t j = 0; j < kTile; ++j) {
        const size_t row = t * kTile + j;
        if (row >= n) break;
        for (size_t h = 0; h < 2; ++h) {
          const size_t col = 2 * p + h;
          if (col >= k) break;
          dst[2 * j + h] = transposed ? w[col * ldw + row] : w[row * ldw + col];
        }
      }
    }
  }
}

bool NarrowGemmFits(size_t k, int a_max, int w_max) {
  return k % 2 == 0 && a_max >= 0 && w_max >= 0 &&
         static_cast<uint64_t>(k) * a_max * w_max <= 32767;
}

#if defined(__x86_64__)

bool NarrowGemmSupported() {
  static const bool supported = __builtin_cpu_supports("avx2");
  return supported;
}

namespace {

// kRows rows (the last ones repeated when fewer are left) times one tile of
// 32 outputs; int16 sums widened to int32 on the way out.
__attribute__((target("avx2"))) void MicroKernel(const uint8_t* const* rows, size_t live_rows,
                                                 const int8_t* tile, size_t pairs,
                                                 int32_t* const* out, size_t live_cols) {
  __m256i acc[kRows][2];
  for (size_t i = 0; i < kRows; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_si256();
  for (size_t p = 0; p < pairs; ++p) {
    const __m256i b0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(tile + p * 64));
    const __m256i b1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(tile + p * 64 + 32));
    for (size_t i = 0; i < kRows; ++i) {
      int16_t pair;
      std::memcpy(&pair, rows[i] + 2 * p, 2);
      const __m256i a = _mm256_set1_epi16(pair);
      acc[i][0] = _mm256_add_epi16(acc[i][0], _mm256_maddubs_epi16(a, b0));
      acc[i][1] = _mm256_add_epi16(acc[i][1], _mm256_maddubs_epi16(a, b1));
    }
  }
  for (size_t i = 0; i < live_rows; ++i) {
    alignas(32) int32_t wide[kTile];
    for (size_t h = 0; h < 2; ++h) {
      _mm256_store_si256(reinterpret_cast<__m256i*>(wide + 16 * h),
                         _mm256_cvtepi16_epi32(_mm256_castsi256_si128(acc[i][h])));
      _mm256_store_si256(reinterpret_cast<__m256i*>(wide + 16 * h + 8),
                         _mm256_cvtepi16_epi32(_mm256_extracti128_si256(acc[i][h], 1)));
    }
    std::memcpy(out[i], wide, live_cols * sizeof(int32_t));
  }
}

}  // namespace

void NarrowGemm(const uint8_t* a, size_t lda, size_t m, const NarrowWeights& w, int32_t* y,
                size_t ldy) {
  const size_t n = w.n(), pairs = (w.k() + 1) / 2;
  const size_t tiles = (n + kTile - 1) / kTile;
  for (size_t m0 = 0; m0 < m; m0 += kRowBlock) {
    const size_t m1 = std::min(m, m0 + kRowBlock);
    for (size_t t = 0; t < tiles; ++t) {
      const int8_t* tile = w.data() + t * pairs * kTile * 2;
      const size_t live_cols = std::min(kTile, n - t * kTile);
      for (size_t r = m0; r < m1; r += kRows) {
        const size_t live_rows = std::min(kRows, m1 - r);
        const uint8_t* rows[kRows];
        int32_t* out[kRows];
        for (size_t i = 0; i < kRows; ++i) {
          const size_t row = r + std::min(i, live_rows - 1);
          rows[i] = a + row * lda;
          out[i] = y + row * ldy + t * kTile;
        }
        MicroKernel(rows, live_rows, tile, pairs, out, live_cols);
      }
    }
  }
}

#else  // !defined(__x86_64__)

bool NarrowGemmSupported() { return false; }

void NarrowGemm(const uint8_t*, size_t, size_t, const NarrowWeights&, int32_t*, size_t) {}

#endif

}  // namespace hgpipe::accel::vit
