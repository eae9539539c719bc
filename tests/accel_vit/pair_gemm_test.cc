#include "accel/vit/pair_gemm.h"

#include <cstdint>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/accel_vit/simd_targets.h"

namespace hgpipe::accel::vit {
namespace {

// Random bytes with the extremes (-128 and 127, or 0 and 255) forced in:
// the products the 16-bit kernels of oneDNN would saturate on.
std::vector<uint8_t> Bytes(size_t n, std::mt19937& rng) {
  std::uniform_int_distribution<int> dist(0, 255);
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(dist(rng));
  for (size_t i = 0; i < n && i < 6; ++i) v[i] = i % 2 ? 0x80 : 0x7F;
  return v;
}

TEST(PairGemmTest, ExactForAnyBytes) {
  if (!PairGemmSupported()) GTEST_SKIP() << "no x86 vector target";
  struct Shape {
    size_t rows, k, n;
  };
  const Shape shapes[] = {{1, 1, 1},     {5, 3, 7},      {4, 16, 16}, {9, 33, 17},
                          {3, 768, 192}, {2, 192, 1000}, {7, 64, 33}};
  std::mt19937 rng(3);
  for (const Shape& s : shapes) {
    const std::vector<uint8_t> x = Bytes(s.rows * (s.k + 2), rng);
    const std::vector<uint8_t> wb = Bytes(s.n * s.k, rng);
    const std::vector<int8_t> w(wb.begin(), wb.end());
    PairWeights pw;
    pw.Pack(w.data(), s.n, s.k, s.k);
    for (bool x_unsigned : {false, true}) {
      std::vector<int32_t> want(s.rows * s.n);
      for (size_t r = 0; r < s.rows; ++r) {
        for (size_t j = 0; j < s.n; ++j) {
          int32_t sum = 0;
          for (size_t i = 0; i < s.k; ++i) {
            const uint8_t b = x[r * (s.k + 2) + i];
            sum += (x_unsigned ? int32_t{b} : int32_t{static_cast<int8_t>(b)}) * w[j * s.k + i];
          }
          want[r * s.n + j] = sum;
        }
      }
      for (const SimdCase& c : SimdCases()) {
        if (c.simd == Simd::kBaseline) continue;
        SCOPED_TRACE(absl::StrCat(c.name, " rows=", s.rows, " k=", s.k, " n=", s.n,
                                  x_unsigned ? " unsigned" : " signed"));
        ScopedSimdCase scope(c);
        if (!PairGemmSupported()) continue;  // single-lane targets have no kernel
        std::vector<int32_t> y(s.rows * (s.n + 1), -1);
        PairGemm(x.data(), x_unsigned, s.k + 2, s.rows, pw, y.data(), s.n + 1);
        for (size_t r = 0; r < s.rows; ++r) {
          for (size_t j = 0; j < s.n; ++j) {
            ASSERT_EQ(y[r * (s.n + 1) + j], want[r * s.n + j]) << "y[" << r << "][" << j << "]";
          }
          EXPECT_EQ(y[r * (s.n + 1) + s.n], -1) << "row " << r << " written past n";
        }
      }
    }
  }
}

}  // namespace
}  // namespace hgpipe::accel::vit
