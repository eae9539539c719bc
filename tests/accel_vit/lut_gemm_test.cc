#include "accel/vit/lut_gemm.h"

#include <cstdint>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/accel_vit/simd_targets.h"

namespace hgpipe::accel::vit {
namespace {

struct Shape {
  size_t rows, k, n;
  bool transposed;
};

// Operands in [lo, hi], with the extremes forced in so that the largest
// products and sums occur.
std::vector<int8_t> Operands(size_t count, int lo, int hi, std::mt19937& rng) {
  std::uniform_int_distribution<int> dist(lo, hi);
  std::vector<int8_t> v(count);
  for (size_t i = 0; i < count; ++i) v[i] = static_cast<int8_t>(dist(rng));
  for (size_t i = 0; i < count && i < 8; ++i) v[i] = static_cast<int8_t>(i % 2 ? hi : lo);
  return v;
}

// sum_i a[r][i] * w[j][i] modulo 2^16, with a shifted by `offset`, as the
// tables see it, and w given [n][k] or [k][n].
std::vector<int16_t> Reference(const std::vector<int8_t>& a, const std::vector<int8_t>& w,
                               const Shape& s, int offset) {
  std::vector<int16_t> y(s.rows * s.n);
  for (size_t r = 0; r < s.rows; ++r) {
    for (size_t j = 0; j < s.n; ++j) {
      int64_t sum = 0;
      for (size_t i = 0; i < s.k; ++i) {
        const int wv = s.transposed ? w[i * s.n + j] : w[j * s.k + i];
        sum += (a[r * s.k + i] - offset) * wv;
      }
      y[r * s.n + j] = static_cast<int16_t>(static_cast<uint16_t>(sum));
    }
  }
  return y;
}

// Tables, packing and products of random operands against the reference,
// under every SIMD target, with rows padded as BuildLutTables reads them.
void CheckShape(const Shape& s, int a_lo, int a_hi, int offset, uint32_t seed) {
  std::mt19937 rng(seed);
  const size_t lda = std::max(s.k, LutReadableBytes(s.k));
  std::vector<int8_t> a = Operands(s.rows * s.k, a_lo, a_hi, rng);
  std::vector<int8_t> w = Operands(s.n * s.k, kLutMin, kLutMax, rng);
  std::vector<int8_t> padded(s.rows * lda + 64, 0x55);  // what lies past k is ignored
  for (size_t r = 0; r < s.rows; ++r) {
    std::copy(a.begin() + r * s.k, a.begin() + (r + 1) * s.k, padded.begin() + r * lda);
  }
  const std::vector<int16_t> want = Reference(a, w, s, offset);
  const size_t ldy = (s.n + 15) / 16 * 16 + 3;  // room for whole vectors
  for (const SimdCase& c : SimdCases()) {
    SCOPED_TRACE(absl::StrCat(c.name, " rows=", s.rows, " k=", s.k, " n=", s.n,
                              s.transposed ? " transposed" : ""));
    ScopedSimdCase scope(c);
    LutWeights lw;
    lw.Pack(w.data(), s.n, s.k, s.transposed ? s.n : s.k, s.transposed, c.simd);
    ASSERT_EQ(lw.sums().size(), s.n);
    for (size_t j = 0; j < s.n; ++j) {
      int sum = 0;
      for (size_t i = 0; i < s.k; ++i) sum += s.transposed ? w[i * s.n + j] : w[j * s.k + i];
      ASSERT_EQ(lw.sums()[j], sum) << "output " << j;
    }
    std::vector<uint8_t> tables(s.rows * LutTableBytes(s.k));
    BuildLutTables(padded.data(), lda, s.rows, s.k, static_cast<int8_t>(offset), tables.data(),
                   c.simd);
    // From tables built up front, and from the activations (LutProduct:
    // tables a chunk of 32 steps at a time, sums added across chunks).
    std::vector<int16_t> y(s.rows * ldy, 0x7777), z(s.rows * ldy, 0x7777);
    LutGemm(tables.data(), s.rows, lw, y.data(), ldy, c.simd);
    LutProduct(padded.data(), lda, static_cast<int8_t>(offset), s.rows, lw, z.data(), ldy, c.simd);
    size_t bad = 0;
    for (size_t r = 0; r < s.rows; ++r) {
      for (size_t j = 0; j < s.n; ++j) {
        const int16_t w16 = want[r * s.n + j];
        if ((y[r * ldy + j] != w16 || z[r * ldy + j] != w16) && bad++ < 3) {
          ADD_FAILURE() << "[" << r << "][" << j << "]: LutGemm " << y[r * ldy + j]
                        << ", LutProduct " << z[r * ldy + j] << ", want " << w16;
        }
      }
    }
    EXPECT_EQ(bad, 0u);
  }
}

TEST(LutGemmTest, SignedOperandsOfEveryShape) {
  // Tails of every kind: k not a multiple of a step (8) or of two, n not a
  // multiple of a vector (16) or a tile (64), rows not of a row block, and
  // k past a chunk of 32 steps (sums added modulo 2^16 across chunks).
  const Shape shapes[] = {{1, 1, 1, false},     {3, 7, 15, false},    {5, 8, 16, false},
                          {2, 9, 17, false},    {4, 24, 65, false},   {33, 64, 196, false},
                          {2, 192, 576, false}, {3, 196, 64, true},   {2, 200, 33, true},
                          {2, 768, 192, false}, {1, 1000, 70, false}, {35, 17, 3, true}};
  uint32_t seed = 1;
  for (const Shape& s : shapes) CheckShape(s, kLutMin, kLutMax, 0, seed++);
}

TEST(LutGemmTest, ShiftedActivations) {
  // u3 activations enter as a - 4 (the probabilities and GELU outputs).
  CheckShape({6, 196, 64, true}, 0, 7, 4, 11);
  CheckShape({6, 768, 48, false}, 0, 7, 4, 12);
  // u2 in [0, 3], shifted by 2 into [-2, 1].
  CheckShape({3, 40, 20, false}, 0, 3, 2, 13);
}

TEST(LutGemmTest, LargestSumsWrapModulo16Bits) {
  // All products 16: k = 4096 sums to 65536, which is 0 modulo 2^16.
  const Shape s{2, 4096, 16, false};
  const size_t lda = LutReadableBytes(s.k);
  std::vector<int8_t> a(s.rows * lda + 64, kLutMin), w(s.n * s.k, kLutMin);
  LutWeights lw;
  lw.Pack(w.data(), s.n, s.k, s.k);
  std::vector<uint8_t> tables(s.rows * LutTableBytes(s.k));
  BuildLutTables(a.data(), lda, s.rows, s.k, 0, tables.data());
  std::vector<int16_t> y(s.rows * s.n, 1);
  LutGemm(tables.data(), s.rows, lw, y.data(), s.n);
  for (int16_t v : y) EXPECT_EQ(v, 0);
}

TEST(LutGemmTest, RepackingTheSameBufferGivesTheNewProducts) {
  std::mt19937 rng(5);
  // A wider packing, then a narrower one of the same vector count (the
  // attention packs k and v per image and head into one LutWeights).
  std::vector<int8_t> w1 = Operands(31 * 8, kLutMin, kLutMax, rng);
  std::vector<int8_t> w2 = Operands(20 * 8, kLutMin, kLutMax, rng);
  LutWeights lw;
  lw.Pack(w1.data(), 31, 8, 8);
  lw.Pack(w2.data(), 20, 8, 8);
  std::vector<int8_t> a = Operands(LutReadableBytes(8), kLutMin, kLutMax, rng);
  std::vector<uint8_t> tables(LutTableBytes(8));
  BuildLutTables(a.data(), 8, 1, 8, 0, tables.data());
  std::vector<int16_t> y(32, 0x7777);
  LutGemm(tables.data(), 1, lw, y.data(), 32);
  const std::vector<int16_t> want = Reference(a, w2, {1, 8, 20, false}, 0);
  for (size_t j = 0; j < 20; ++j) EXPECT_EQ(y[j], want[j]) << j;
  for (size_t j = 20; j < 32; ++j) EXPECT_EQ(y[j], 0x7777) << "written past n: " << j;
}

}  // namespace
}  // namespace hgpipe::accel::vit
