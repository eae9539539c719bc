// The vector stages against the stages they replace (stages.h), on random
// inputs over their types' whole ranges, with the parameters of every block
// of the HG-PIPE authors' DeiT-tiny and with variations that take the
// other branches (unsigned types, smaller tables, signed outputs), under
// every SIMD target.
#include "accel/vit/vec_stages.h"

#include <cstdint>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "accel/vit/stages.h"
#include "accel/vit/weight_file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/accel_vit/simd_targets.h"
#include "tests/accel_vit/test_paths.h"

namespace hgpipe::accel::vit {
namespace {

const VitWeights& Deit() {
  static const VitWeights* const w = [] {
    absl::StatusOr<Container> c = ReadContainer(DeitTinyWeightsPath());
    EXPECT_TRUE(c.ok()) << c.status();
    absl::StatusOr<VitWeights> v = VitWeightsFromContainer(*c, "deit_tiny");
    EXPECT_TRUE(v.ok()) << v.status();
    return new VitWeights(*std::move(v));
  }();
  return *w;
}

std::vector<int16_t> Random16(size_t n, std::mt19937& rng) {
  std::uniform_int_distribution<int> dist(-32768, 32767);
  std::vector<int16_t> v(n);
  for (int16_t& x : v) x = static_cast<int16_t>(dist(rng));
  return v;
}

// n values of `t`, most spread over its range, some at its ends.
std::vector<int32_t> RandomOf(const IntType& t, size_t n, std::mt19937& rng) {
  std::uniform_int_distribution<int64_t> dist(t.min(), t.max());
  std::vector<int32_t> v(n);
  for (size_t i = 0; i < n; ++i) {
    v[i] = static_cast<int32_t>(i % 13 == 0 ? t.min() : i % 17 == 0 ? t.max() : dist(rng));
  }
  return v;
}

// The 16-bit sums y + bias as stages.h's accumulators, wrapped to `acc`.
std::vector<int32_t> Accumulators(const std::vector<int16_t>& y, size_t ldy,
                                  const std::vector<int16_t>& bias, size_t rows, size_t cols,
                                  const IntType& acc) {
  std::vector<int32_t> v(rows * cols);
  for (size_t r = 0; r < rows; ++r) {
    for (size_t c = 0; c < cols; ++c) {
      v[r * cols + c] = static_cast<int16_t>(
          static_cast<uint16_t>(y[r * ldy + c] + (bias.empty() ? 0 : bias[c])));
    }
  }
  WrapValues(acc, v.data(), v.size());
  return v;
}

void CheckRequant(const IntType& acc, const TableStage& t, size_t cols, uint32_t seed) {
  absl::StatusOr<RequantParams> p = PrepareRequant(acc, t);
  ASSERT_TRUE(p.ok()) << p.status();
  std::mt19937 rng(seed);
  const size_t rows = 5, ldy = cols + 7, ldo = cols + 3;
  const std::vector<int16_t> y = Random16(rows * ldy, rng), bias = Random16(cols, rng);
  const std::vector<int32_t> v = Accumulators(y, ldy, bias, rows, cols, acc);
  std::vector<int8_t> want(rows * cols);
  TableLookup(t, acc, v.data(), v.size(), want.data());
  for (const SimdCase& c : SimdCases()) {
    SCOPED_TRACE(absl::StrCat(c.name, " acc ", acc.ToString(), " cols ", cols));
    ScopedSimdCase scope(c);
    std::vector<int8_t> out(rows * ldo, 0x5A);
    Requant(*p, y.data(), ldy, bias.data(), rows, cols, out.data(), ldo, c.simd);
    for (size_t r = 0; r < rows; ++r) {
      for (size_t i = 0; i < cols; ++i) {
        ASSERT_EQ(out[r * ldo + i], want[r * cols + i]) << "[" << r << "][" << i << "]";
      }
      for (size_t i = cols; i < ldo; ++i) ASSERT_EQ(out[r * ldo + i], 0x5A) << "past the row";
    }
  }
}

void CheckResidual(const IntType& acc, const IntType& in, const ResidualStage& rs, size_t cols,
                   uint32_t seed) {
  absl::StatusOr<ResidualParams> p = PrepareResidual(acc, in, rs);
  ASSERT_TRUE(p.ok()) << p.status();
  std::mt19937 rng(seed);
  const size_t rows = 4, ldy = cols + 5;
  const std::vector<int16_t> y = Random16(rows * ldy, rng), bias = Random16(cols, rng);
  const std::vector<int32_t> x = RandomOf(in, rows * cols, rng);
  const std::vector<int32_t> v = Accumulators(y, ldy, bias, rows, cols, acc);
  std::vector<int32_t> want(rows * cols);
  ResidualAdd(rs, x.data(), v.data(), v.size(), want.data());
  for (const SimdCase& c : SimdCases()) {
    SCOPED_TRACE(absl::StrCat(c.name, " cols ", cols));
    ScopedSimdCase scope(c);
    std::vector<int32_t> out = x;  // in place, as the blocks run it
    ResidualFinish(*p, y.data(), ldy, bias.data(), out.data(), rows, cols, out.data(), c.simd);
    EXPECT_EQ(out, want);
  }
}

void CheckNorm(const NormStage& n, const IntType& in, size_t width, uint32_t seed) {
  absl::StatusOr<NormParams> p = PrepareNorm(n, in, width);
  ASSERT_TRUE(p.ok()) << p.status();
  std::mt19937 rng(seed);
  const size_t rows = 12;
  std::vector<int32_t> x = RandomOf(in, rows * width, rng);
  // Rows of every spread: whole range, narrow ones (small variances), a
  // constant row (variance 0).
  for (size_t r = 1; r < rows; ++r) {
    const int shift = static_cast<int>(r) % in.bits;
    for (size_t c = 0; c < width; ++c) {
      x[r * width + c] = static_cast<int32_t>(in.Clamp(x[r * width + c] >> shift));
    }
  }
  for (size_t c = 0; c < width; ++c) x[(rows - 1) * width + c] = 7;
  std::vector<int8_t> want(rows * width);
  NormRows(n, in, x.data(), rows, width, width, want.data());
  for (const SimdCase& c : SimdCases()) {
    SCOPED_TRACE(c.name);
    ScopedSimdCase scope(c);
    std::vector<int8_t> out(rows * width);
    Norm(*p, x.data(), rows, out.data(), c.simd);
    EXPECT_EQ(out, want);
  }
}

void CheckSoftmax(const IntType& scores, const SoftmaxStage& s, size_t cols, uint32_t seed) {
  absl::StatusOr<SoftmaxParams> p = PrepareSoftmax(scores, s);
  ASSERT_TRUE(p.ok()) << p.status();
  std::mt19937 rng(seed);
  const size_t rows = 6, ldy = (cols + 31) / 32 * 32 + 32, ldo = cols + 5;
  std::vector<int16_t> y = Random16(rows * ldy, rng);
  // Rows with equal scores and with one score far above the rest.
  for (size_t c = 0; c < cols; ++c) y[ldy + c] = 100;
  for (size_t c = 0; c < cols; ++c)
    y[2 * ldy + c] = static_cast<int16_t>(c == cols / 2 ? 500 : -500);
  const std::vector<int32_t> v = Accumulators(y, ldy, {}, rows, cols, scores);
  std::vector<int8_t> want(rows * cols);
  std::vector<int32_t> scratch(cols);
  SoftmaxRows(s, v.data(), rows, cols, scratch.data(), want.data());
  for (const SimdCase& c : SimdCases()) {
    SCOPED_TRACE(absl::StrCat(c.name, " cols ", cols));
    ScopedSimdCase scope(c);
    std::vector<int8_t> out(rows * ldo, 0x5A);
    Softmax(*p, y.data(), ldy, rows, cols, out.data(), ldo, c.simd);
    for (size_t r = 0; r < rows; ++r) {
      for (size_t i = 0; i < cols; ++i) {
        ASSERT_EQ(out[r * ldo + i], want[r * cols + i]) << "[" << r << "][" << i << "]";
      }
      for (size_t i = cols; i < ldo; ++i) ASSERT_EQ(out[r * ldo + i], 0x5A) << "past the row";
    }
  }
}

TEST(VecStagesTest, EveryStageOfEveryDeitTinyBlock) {
  const VitWeights& w = Deit();
  const VitSpec& s = w.spec;
  for (uint32_t i = 0; i < s.depth; ++i) {
    SCOPED_TRACE(absl::StrCat("block ", i));
    const AttentionBlock& a = w.attn[i];
    const MlpBlock& m = w.mlp[i];
    CheckNorm(a.norm, w.AttentionInput(i), s.width, 100 + i);
    CheckNorm(m.norm, w.MlpInput(i), s.width, 200 + i);
    CheckRequant(a.q.acc, a.q_quant, s.width, 300 + i);
    CheckRequant(a.k.acc, a.k_quant, s.width, 400 + i);
    CheckRequant(a.v.acc, a.v_quant, s.width, 500 + i);
    CheckRequant(a.context, a.context_quant, s.head_dim(), 600 + i);
    CheckRequant(m.fc1.acc, m.gelu, s.mlp_hidden, 700 + i);
    CheckSoftmax(a.scores, a.softmax, s.tokens, 800 + i);
    CheckResidual(a.o.acc, w.AttentionInput(i), a.residual, s.width, 900 + i);
    CheckResidual(m.fc2.acc, w.MlpInput(i), m.residual, s.width, 1000 + i);
  }
}

TEST(VecStagesTest, RowTailsAndShortRows) {
  const VitWeights& w = Deit();
  const AttentionBlock& a = w.attn[0];
  for (size_t cols : {1, 15, 31, 33, 100}) {
    CheckRequant(a.q.acc, a.q_quant, cols, 7 + cols);
    CheckResidual(a.o.acc, w.AttentionInput(0), a.residual, cols, 8 + cols);
    CheckSoftmax(a.scores, a.softmax, cols, 9 + cols);
  }
  CheckNorm(a.norm, w.AttentionInput(0), 8, 10);
}

TEST(VecStagesTest, OtherTypesAndTableSizes) {
  const AttentionBlock& a = Deit().attn[0];
  std::mt19937 rng(42);
  // Unsigned accumulators and indices, tables of one and two 16-entry
  // pieces, a negative offset, no shift.
  for (int64_t bound : {9, 20, 40}) {
    TableStage t;
    t.cursor = IntType{5, false};
    t.out = IntType{4, true};
    t.offset = -300;
    t.shift = 0;
    t.bound = bound;
    for (int64_t i = 0; i <= bound; ++i) t.table.push_back(static_cast<int32_t>(i % 16) - 8);
    CheckRequant(IntType{12, false}, t, 70, 50 + static_cast<uint32_t>(bound));
  }
  // A 16-bit signed accumulator (no wrap) and a 16-bit signed index.
  TableStage t = a.q_quant;
  t.cursor = IntType{16, true};
  t.offset = 0;
  t.shift = 9;
  CheckRequant(IntType{16, true}, t, 64, 60);
  // Exponential tables of one and four pieces; signed probabilities.
  for (int64_t bound : {15, 63}) {
    SoftmaxStage sm = a.softmax;
    sm.exp_bound = bound;
    sm.exp_table.resize(bound + 1);
    std::uniform_int_distribution<int> e(0, 32768);
    for (int32_t& v : sm.exp_table) v = e(rng);
    sm.exp_table[0] = 32768;
    CheckSoftmax(a.scores, sm, 196, 70 + static_cast<uint32_t>(bound));
  }
  SoftmaxStage sm = a.softmax;
  sm.out = IntType{4, true};
  CheckSoftmax(a.scores, sm, 50, 80);
  // An index whose bits reach past the scores' width (computed from the
  // wrapped difference), and a difference type that wraps.
  sm = a.softmax;
  sm.exp_shift = 7;
  CheckSoftmax(a.scores, sm, 196, 81);
  sm = a.softmax;
  sm.minus = IntType{9, true};
  sm.exp_offset = 3;
  CheckSoftmax(a.scores, sm, 196, 82);
  // Layer norms with an unsigned and an 8-bit output.
  for (IntType out : {IntType{3, false}, IntType{8, true}, IntType{8, false}}) {
    NormStage n = a.norm;
    n.out = out;
    CheckNorm(n, Deit().AttentionInput(0), 192, 90 + out.bits);
  }
  // A residual with the smallest shift the split allows.
  ResidualStage r = a.residual;
  r.shift = 16;
  r.mult = 65535;
  CheckResidual(a.o.acc, IntType{16, true}, r, 48, 95);
}

TEST(VecStagesTest, PrepareRefusesWhatNarrowLanesCannotHold) {
  const AttentionBlock& a = Deit().attn[0];
  using ::testing::HasSubstr;
  EXPECT_THAT(PrepareRequant(IntType{17, true}, a.q_quant).status().message(),
              HasSubstr("wider than 16 bits"));
  TableStage big = a.q_quant;
  big.bound = 64;
  big.table.resize(65);
  EXPECT_THAT(PrepareRequant(a.q.acc, big).status().message(), HasSubstr("64 entries"));
  TableStage far = a.q_quant;
  far.offset = 40000;
  EXPECT_THAT(PrepareRequant(a.q.acc, far).status().message(), HasSubstr("offset"));
  ResidualStage r = a.residual;
  r.shift = 15;
  EXPECT_THAT(PrepareResidual(a.o.acc, IntType{15, true}, r).status().message(),
              HasSubstr("shift"));
  EXPECT_THAT(PrepareResidual(a.o.acc, IntType{20, true}, a.residual).status().message(),
              HasSubstr("2^15"));
  EXPECT_THAT(PrepareNorm(a.norm, IntType{15, true}, 12).status().message(),
              HasSubstr("multiple of 8"));
  NormStage n = a.norm;
  n.var = IntType{40, false};
  EXPECT_THAT(PrepareNorm(n, IntType{15, true}, 192).status().message(), HasSubstr("32 bits"));
  EXPECT_THAT(PrepareSoftmax(IntType{16, true}, a.softmax).status().message(),
              HasSubstr("15 bits"));
  for (const absl::Status& st : {PrepareRequant(IntType{17, true}, a.q_quant).status(),
                                 PrepareSoftmax(IntType{16, true}, a.softmax).status()}) {
    EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  }
}

}  // namespace
}  // namespace hgpipe::accel::vit
