// HG-PIPE's transformer blocks on lookup tables: every product of 3-bit
// operands by LutGemm, the stages around them by vec_stages, bit for bit
// the arithmetic of stages.h. Rows go through a block in groups of
// kLutRowBlock, so that a group's tables, sums and bytes stay in cache from
// one stage to the next instead of making a pass over memory each.
//
// A block qualifies when its products' operands are 3-bit (activations of
// a type spanning at most 8 values; weights, k and v in [-4, 3]), its
// accumulators 16-bit, and vec_stages accepts each stage; Create says which
// condition failed otherwise, and VitKernel computes that block stage by
// stage. HG-PIPE's DeiT-tiny qualifies everywhere. Only softmax attention
// and GELU MLPs qualify: Taylor attention runs stage by stage, skipped
// branches not at all (vit_kernel.h).
//
// Thread safety: Run may be called from several threads at once (scratch
// is per thread).
#ifndef HGPIPE_ACCEL_VIT_LUT_BLOCKS_H_
#define HGPIPE_ACCEL_VIT_LUT_BLOCKS_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "accel/vit/lut_gemm.h"
#include "accel/vit/simd.h"
#include "accel/vit/vec_stages.h"
#include "accel/vit/vit_weights.h"

namespace hgpipe::accel::vit {

inline constexpr uint32_t kLutRowBlock = 32;

// A product with constant weights: packed weights, the activations' shift
// and the bias with that shift's correction, modulo 2^16.
struct LutLinear {
  LutWeights weights;
  int8_t offset = 0;          // activations enter as a - offset
  std::vector<int16_t> bias;  // bias + offset * sum_k w, per output
};

class LutAttention {
 public:
  // `in` is the type of the residual stream entering the block.
  static absl::StatusOr<std::unique_ptr<LutAttention>> Create(const VitSpec& spec,
                                                              const AttentionBlock& a,
                                                              const IntType& in, Simd simd);
  // out[n][tokens][width] = the block on x, same layout; out may alias x.
  void Run(const int32_t* x, uint32_t images, int32_t* out) const;

 private:
  LutAttention() = default;

  uint32_t tokens_ = 0, width_ = 0, heads_ = 0;
  Simd simd_ = Simd::kBest;
  NormParams norm_;
  LutLinear qkv_;  // q | k | v outputs
  RequantParams q_quant_, k_quant_, v_quant_;
  int8_t q_offset_ = 0, p_offset_ = 0;  // tables of q rows, of probabilities
  SoftmaxParams softmax_;
  RequantParams context_quant_;
  LutLinear o_;
  ResidualParams residual_;
};

class LutMlp {
 public:
  static absl::StatusOr<std::unique_ptr<LutMlp>> Create(const VitSpec& spec, const MlpBlock& m,
                                                        const IntType& in, Simd simd);
  void Run(const int32_t* x, uint32_t images, int32_t* out) const;

 private:
  LutMlp() = default;

  uint32_t tokens_ = 0, width_ = 0, hidden_ = 0;
  Simd simd_ = Simd::kBest;
  NormParams norm_;
  LutLinear fc1_;
  RequantParams gelu_;
  LutLinear fc2_;
  ResidualParams residual_;
};

}  // namespace hgpipe::accel::vit

#endif  // HGPIPE_ACCEL_VIT_LUT_BLOCKS_H_
