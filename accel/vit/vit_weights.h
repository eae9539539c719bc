// The parameters of HG-PIPE's integer ViT datapath (docs/datapath.md): the
// geometry (VitSpec) and, stage by stage, the HLS integer types, scalars,
// weights and lookup tables the bitstream is built with (VitWeights), decoded
// from a weight container and validated so the datapath can run without
// further checks. The stages are those of the authors' HLS sources
// (hguq/HG-PIPE src/*.h); their arithmetic is in stages.h.
#ifndef HGPIPE_ACCEL_VIT_VIT_WEIGHTS_H_
#define HGPIPE_ACCEL_VIT_VIT_WEIGHTS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "accel/bitstream.h"
#include "accel/vit/int_type.h"
#include "accel/vit/weight_file.h"

namespace hgpipe::accel::vit {

// Geometry, scales and timing: the weight file's plain manifest keys.
struct VitSpec {
  std::string name;
  uint32_t tokens = 0;        // device tokens; token 0 is the CLS placeholder
  uint32_t token_values = 0;  // int8 values per token
  uint32_t width = 0;         // embedding dimension C
  uint32_t heads = 0;
  uint32_t depth = 0;  // transformer blocks (attention + MLP each)
  uint32_t mlp_hidden = 0;
  uint32_t classes = 0;
  double input_scale = 1.0;  // real value of a device input int8 of 1
  double logit_scale = 1.0;  // real value of a logit of 1
  PipelineTiming timing;     // clock and cycles; overheads keep defaults
  // Optional manifest keys top1_accuracy (a fraction) and accuracy_dataset:
  // what the weights were measured to do, required of a model's variants
  // (docs/serving.md, "Variants").
  MeasuredAccuracy accuracy;

  uint32_t head_dim() const { return width / heads; }
  // Multiply-accumulates per image (the op count timing is scaled by).
  uint64_t macs() const;
  BitstreamManifest ToManifest() const;
};

// LayerNorm with the reciprocal-square-root table (src/layernorm.h).
struct NormStage {
  IntType sum, divc, mean, var, cursor, rsqrt, affine, shift, out;
  int64_t mean_mult = 0, mean_shift = 1;                 // mean ~ sum * mean_mult >> shift
  int64_t var_offset = 0, var_shift = 0, var_bound = 0;  // table index
  int64_t out_shift = 0;
  std::vector<int32_t> weight;       // [C], the affine gamma, requantized
  std::vector<int64_t> bias;         // [C], the affine beta, requantized
  std::vector<int32_t> rsqrt_table;  // [var_bound + 1]
};

// y = x W^T + bias, accumulated in `acc` (src/matmul.h).
struct LinearStage {
  IntType weight_type, bias_type, acc;
  uint32_t in = 0, out = 0;
  std::vector<int8_t> weight;  // [out][in]
  std::vector<int32_t> bias;   // [out]
};

// Requantization or GELU: a table indexed by (x + offset) >> shift
// (src/quant.h, src/gelu.h).
struct TableStage {
  IntType cursor, out;
  int64_t offset = 0, shift = 0, bound = 0;
  std::vector<int32_t> table;  // [bound + 1]
};

// Softmax with the exponential table and the two-segment reciprocal
// (src/softmax.h).
struct SoftmaxStage {
  IntType minus, cursor1, exp, sum, recip, cursor2_one, cursor2_two, affine, cursor3, out;
  int64_t exp_offset = 0, exp_shift = 0, exp_bound = 0;
  int64_t one_offset = 0, one_shift = 0, one_bound = 0;
  int64_t one_out_offset = 0, one_out_shift = 0;
  int64_t two_offset = 0, two_shift = 0, two_bound = 0;
  int64_t two_out_offset = 0, two_out_shift = 0;
  std::vector<int32_t> exp_table;        // [exp_bound + 1]
  std::vector<int32_t> recip_one_table;  // [one_bound + 1]
  std::vector<int32_t> recip_two_table;  // [two_bound + 1]
};

// ViTALiTy's linear Taylor attention of one head (docs/datapath.md, "Taylor
// attention"), in place of the scores and softmax: with k, v the tables'
// values over the image's T tokens,
//   ksum = sum_t k_t, vsum = sum_t v_t, kv = K^T V        (wrapped)
//   g    = T kv - ksum^T vsum   (T K^T V with the keys centred, exactly)
//   gq   = clamp_gout(wrap_gshift((g + 2^(g_shift-1)) >> g_shift))
//   m    = wrap_mterm((vsum mean_mult + 2^(mean_shift-1)) >> mean_shift)
//   context_t = wrap_context(m + q_t gq)
// Sums and products wrap modulo 2^64 before each type keeps its low bits,
// as the reference's int64 arithmetic does.
struct TaylorStage {
  IntType ksum, vsum, kv, g, gshift, gout, mterm;
  int64_t g_shift = 1, mean_mult = 0, mean_shift = 1;
};

// What computes a block's attention and MLP: the manifest keys
// blocks.I.attn.kind (softmax, taylor, none) and blocks.I.mlp.kind (gelu,
// none), softmax and gelu when absent. A skipped (none) branch passes the
// residual stream through unchanged and has no stage lines.
enum class AttentionKind { kSoftmax, kTaylor, kNone };
enum class MlpKind { kGelu, kNone };

// out = main + round(x * mult / 2^shift), in `out` (the blocks' merge).
struct ResidualStage {
  IntType out;
  int64_t mult = 0, shift = 1;
};

// A block of kind kNone holds nothing else; one of kTaylor has no scores
// or softmax but `taylor`.
struct AttentionBlock {
  AttentionKind kind = AttentionKind::kSoftmax;
  NormStage norm;
  LinearStage q, k, v;
  TableStage q_quant, k_quant, v_quant;
  IntType scores;  // q k^T accumulator, per head
  SoftmaxStage softmax;
  TaylorStage taylor;
  IntType context;  // p v (or Taylor) accumulator, per head
  TableStage context_quant;
  LinearStage o;
  ResidualStage residual;
};

struct MlpBlock {
  MlpKind kind = MlpKind::kGelu;
  NormStage norm;
  LinearStage fc1;
  TableStage gelu;
  LinearStage fc2;
  ResidualStage residual;
};

// Patch embedding with the per-token bias (positions folded in) and the CLS
// embedding replacing token 0 (src/patch_embed.h).
struct PatchStage {
  IntType in, weight_type, bias_type, acc, out;
  int64_t shift = 1;
  std::vector<int8_t> weight;  // [width][token_values]
  std::vector<int32_t> bias;   // [tokens][width]
  std::vector<int32_t> cls;    // [width]
};

// LayerNorm of token 0 and the classifier (src/head.h); logits are `acc`.
struct HeadStage {
  NormStage norm;
  LinearStage linear;
};

struct VitWeights {
  VitSpec spec;
  PatchStage patch;
  std::vector<AttentionBlock> attn;  // [depth]
  std::vector<MlpBlock> mlp;         // [depth]
  HeadStage head;
  std::vector<std::string> labels;  // empty, or one per class

  // The residual stream's type entering attention block i, MLP block i and
  // the head: the output type of the last stage before it that runs (a
  // skipped branch writes nothing).
  IntType AttentionInput(uint32_t i) const;
  IntType MlpInput(uint32_t i) const;
  IntType HeadInput() const;

 private:
  // The stream's type after branch `branch` (2i: attention i, 2i + 1: MLP
  // i) or, for -1, after the patch embedding, skipping branches of kind none.
  IntType StreamAfter(int64_t branch) const;
};

// Decodes a container and checks everything the datapath relies on: every
// stage line and tensor present, shapes, types (matrix-product operands fit
// int8 / uint8, accumulators and the residual stream int32, logits 19 bits),
// scalars in range, table lengths (bound + 1) and values (within their
// types), weights and biases within theirs. Errors name `source`, the
// manifest key or tensor, and the reason.
absl::StatusOr<VitWeights> VitWeightsFromContainer(const Container& c, absl::string_view source);

}  // namespace hgpipe::accel::vit

#endif  // HGPIPE_ACCEL_VIT_VIT_WEIGHTS_H_
