// The arithmetic of HG-PIPE's pipeline stages (docs/datapath.md,
// "Numerics"): each function computes one stage of the authors' HLS code
// (hguq/HG-PIPE src/*.h) over many rows at once, every intermediate wrapped
// to its ap_int / ap_uint type, so the result equals the bitstream's bit for
// bit. The matrix products themselves run on oneDNN (matmul.h); these are
// the element-wise stages around them. VitKernel chains them; tests drive
// them one by one with the authors' golden data.
//
// Byte lanes: a stage output that feeds a matrix product (at most 8 bits) is
// written as one byte per value, unsigned types as their uint8 bit pattern.
//
// Thread safety: pure functions; concurrent calls on disjoint outputs are
// fine.
#ifndef HGPIPE_ACCEL_VIT_STAGES_H_
#define HGPIPE_ACCEL_VIT_STAGES_H_

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"

#include "accel/vit/matmul.h"
#include "accel/vit/vit_weights.h"

namespace hgpipe::accel::vit {

// LayerNorm of `rows` rows of `width` values of type `in` (rows `stride`
// values apart) into dense byte rows of `width` (src/layernorm.h).
void NormRows(const NormStage& p, const IntType& in, const int32_t* x, size_t rows, size_t width,
              size_t stride, int8_t* out);

// NormRows' per-row scalars: the mean from the row's sum (exact, or modulo
// 2^32 when p.sum has at most 32 bits) and the reciprocal square root from
// the sum of squared deviations (the same).
int64_t NormMean(const NormStage& p, int64_t sum);
int64_t NormRsqrt(const NormStage& p, uint64_t squares);

// Finishes a product computed without bias: acc[r][c] becomes
// wrap_acc(bias[c] + acc[r][c]) for `rows` rows of p.out values.
void LinearFinish(const LinearStage& p, int32_t* acc, size_t rows);

// Wraps n accumulators to `t` in place (the bias-free attention products).
void WrapValues(const IntType& t, int32_t* v, size_t n);

// Requantization / GELU: out[i] = table[clamp(wrap_cursor((x[i] + offset)
// >> shift), 0, bound)] as byte lanes (src/quant.h, src/gelu.h). x holds
// values of `in` (the producing accumulator's type).
void TableLookup(const TableStage& p, const IntType& in, const int32_t* x, size_t n, int8_t* out);

// Softmax of `rows` rows of `cols` scores into byte lanes
// (src/softmax.h). `scratch` holds `cols` int32.
void SoftmaxRows(const SoftmaxStage& p, const int32_t* scores, size_t rows, size_t cols,
                 int32_t* scratch, int8_t* out);

// SoftmaxRows' per-row reciprocal of the exponentials' sum (exact, or
// modulo 2^64), and the offset and shift its probabilities round with.
struct SoftmaxScale {
  int64_t recip, offset, shift;
};
SoftmaxScale SoftmaxRecip(const SoftmaxStage& p, uint64_t sum);

// out[i] = wrap_out(main[i] + ((x[i] * mult + 2^(shift-1)) >> shift)); out
// may alias x or main.
void ResidualAdd(const ResidualStage& p, const int32_t* x, const int32_t* main, size_t n,
                 int32_t* out);

// Patch embedding after the product: rows row0 .. row0 + rows of images of
// `tokens` rows each; acc holds x W^T for those rows (acc[0] is row0's). Token
// 0 of every image becomes the CLS embedding; the others get their token's
// bias. out[r] = wrap_out((wrap_acc(...) + 2^(shift-1)) >> shift).
void PatchFinish(const PatchStage& p, const int32_t* acc, size_t row0, size_t rows, size_t tokens,
                 size_t width, int32_t* out);

// ViTALiTy's Taylor attention of one image (TaylorStage): q, k, v are byte
// lanes [tokens][width] of types q_type, k_type, v_type (head h in columns
// h * head_dim ..), context the int32 [tokens][width] accumulator, wrapped
// to context_type. Linear in tokens: per head T x head_dim^2 products twice.
void TaylorAttention(const TaylorStage& p, const IntType& q_type, const IntType& k_type,
                     const IntType& v_type, const IntType& context_type, const int8_t* q,
                     const int8_t* k, const int8_t* v, size_t tokens, size_t width, size_t heads,
                     int32_t* context);

// The attention products of one block, over images of `tokens` rows of
// `width` byte lanes (q, k and v each [image][token][width], head h in
// columns h * head_dim ..), batched over (image, head):
//   scores  [image][head][token][token] = q_h k_h^T
//   context [image][token][width]       = p_h v_h (p as scores' layout)
// Accumulators are int32, to be wrapped to the stage types (WrapValues).
// InvalidArgument if k or v is wider than 7 bits.
absl::StatusOr<std::unique_ptr<BatchedMatmul>> MakeScoresProduct(const VitSpec& s,
                                                                 const IntType& q_type,
                                                                 const IntType& k_type,
                                                                 bool own_kernels = true);
absl::StatusOr<std::unique_ptr<BatchedMatmul>> MakeContextProduct(const VitSpec& s,
                                                                  const IntType& p_type,
                                                                  const IntType& v_type,
                                                                  bool own_kernels = true);

// Device output words of rows of logits (wrapped to the head's acc type).
void LogitWords(const int32_t* logits, size_t n, uint32_t* words);

}  // namespace hgpipe::accel::vit

#endif  // HGPIPE_ACCEL_VIT_STAGES_H_
