// Vector versions of the element-wise stages (stages.h) for the lookup-table
// blocks (lut_blocks.h), in Google Highway: the same functions of the same
// HLS types, bit for bit, computed in 16- and 32-bit lanes instead of int64.
//
// Products reach them as 16-bit sums (LutGemm: exact modulo 2^16), which is
// all an accumulator of at most 16 bits keeps. Each Prepare* checks that the
// stage's types and scalars let the narrow lanes reproduce it exactly (no
// intermediate can overflow its lane) and otherwise returns a status saying
// which condition failed; the caller then computes the stage with stages.h.
// HG-PIPE's DeiT-tiny meets every condition.
//
// With Simd::kBaseline, or on a target without 16-byte vectors, each stage
// widens its input and calls the stages.h function: the reference
// arithmetic itself.
//
// Thread safety: Params are immutable; the functions are pure.
#ifndef HGPIPE_ACCEL_VIT_VEC_STAGES_H_
#define HGPIPE_ACCEL_VIT_VEC_STAGES_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "accel/vit/simd.h"
#include "accel/vit/vit_weights.h"

namespace hgpipe::accel::vit {

// A table stage after a product: out = table[index(wrap_acc(y + bias))], one
// byte per value (stages.h LinearFinish, then TableLookup). Tables of at
// most 64 entries (shuffles look them up), accumulators of at most 16 bits.
struct RequantParams {
  IntType acc;
  TableStage table;
  // The index arithmetic's constants, checked to fit 16-bit lanes.
  int16_t offset = 0;
  int shift = 0;
  // When the index's bits (shift .. shift + cursor bits) lie below the
  // accumulator's width, they are those of y + bias + offset modulo 2^16:
  // the index is two shifts, up by `up` and down by `down`.
  bool field = false;
  int up = 0, down = 0;
  uint8_t lanes[64] = {};  // the table as byte lanes, zero-padded
};
absl::StatusOr<RequantParams> PrepareRequant(const IntType& acc, const TableStage& t);

// out[r][c] (rows `ldo` bytes apart) for r < rows, c < cols, from
// y[r][c] (rows `ldy` apart) and bias[c], both modulo 2^16.
void Requant(const RequantParams& p, const int16_t* y, size_t ldy, const int16_t* bias, size_t rows,
             size_t cols, int8_t* out, size_t ldo, Simd simd = Simd::kBest);

// A product finished into the residual stream: out = wrap_out(wrap_acc(y +
// bias) + round(x * mult / 2^shift)) (stages.h LinearFinish, then
// ResidualAdd with the product as `main`). Needs |x| <= 2^15 and
// 16 <= shift <= 46: the scaling splits mult into 16-bit halves.
struct ResidualParams {
  IntType acc, in;
  ResidualStage residual;
  int32_t mult_high = 0, mult_low = 0;  // mult = high * 2^16 + low
};
absl::StatusOr<ResidualParams> PrepareResidual(const IntType& acc, const IntType& in,
                                               const ResidualStage& r);

// out[r][c] for r < rows, c < cols; x and out rows are `cols` apart, y rows
// `ldy`. out may alias x.
void ResidualFinish(const ResidualParams& p, const int16_t* y, size_t ldy, const int16_t* bias,
                    const int32_t* x, size_t rows, size_t cols, int32_t* out,
                    Simd simd = Simd::kBest);

// LayerNorm (stages.h NormRows) with per-row sums in 32-bit lanes and the
// affine product in 64-bit ones. Needs the sum and variance types within 32
// bits, d * rsqrt within int32, and the output bits below the affine
// type's width.
struct NormParams {
  NormStage norm;
  IntType in;
  size_t width = 0;
  std::vector<int64_t> bias_even, bias_odd;  // bias split by column parity
  std::vector<int32_t> weight_odd;           // odd columns' weights, spaced out
};
absl::StatusOr<NormParams> PrepareNorm(const NormStage& n, const IntType& in, size_t width);

// rows rows of `width` values (rows `width` apart) into dense byte rows.
void Norm(const NormParams& p, const int32_t* x, size_t rows, int8_t* out, Simd simd = Simd::kBest);

// Softmax (stages.h SoftmaxRows) of scores wrapped to `scores`: the
// exponential's index and the row's probabilities as byte tables of at most
// 64 entries, the exponential's sum by byte sums of its two bytes.
struct SoftmaxParams {
  IntType scores;
  SoftmaxStage softmax;
  IntType minus;  // softmax.minus, or a no-op wrap where it cannot wrap
  // As RequantParams::field: the exponential's index from max - y + offset
  // by two shifts, when its bits lie below the scores' and difference's
  // widths.
  bool field = false;
  int up = 0, down = 0;
  uint8_t exp_low[64] = {}, exp_high[64] = {};  // exp_table's bytes
};
absl::StatusOr<SoftmaxParams> PrepareSoftmax(const IntType& scores, const SoftmaxStage& s);

// rows rows of cols scores (y rows `ldy` apart, readable up to a multiple of
// 32 values) into byte rows `ldo` apart.
void Softmax(const SoftmaxParams& p, const int16_t* y, size_t ldy, size_t rows, size_t cols,
             int8_t* out, size_t ldo, Simd simd = Simd::kBest);

}  // namespace hgpipe::accel::vit

#endif  // HGPIPE_ACCEL_VIT_VEC_STAGES_H_
