// HG-PIPE's integer Vision Transformer as an emulated board's kernel: the
// function an HG-PIPE bitstream computes, bit for bit as the authors' HLS
// code computes it (docs/datapath.md; the stages' arithmetic is stages.h,
// the Python reference tools/vit/hgpipe.py). Input: n images in device order
// (int8 patches, accel/device_layout.h); output: one 19-bit logit word per
// class.
//
// Thread safety: a VitKernel is immutable after creation; Compute and the
// stage methods may run on several threads at once.
#ifndef HGPIPE_ACCEL_VIT_VIT_KERNEL_H_
#define HGPIPE_ACCEL_VIT_VIT_KERNEL_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "accel/kernel.h"
#include "accel/vit/simd.h"
#include "accel/vit/vit_weights.h"

namespace hgpipe::accel::vit {

class VitKernel final : public Kernel {
 public:
  struct Options {
    // Images computed together (one oneDNN call per layer per chunk).
    // Default: 0, which picks about 2,048 token rows per chunk.
    uint32_t chunk_images = 0;
    // OpenMP threads one Compute call uses (oneDNN and the element-wise
    // stages). Default: 1, so that boards computing at the same time each
    // take a core instead of contending for the same ones.
    int threads = 1;
    // How the transformer blocks are computed; every choice gives the same
    // bits. kLut: on lookup tables (lut_blocks.h) where a block qualifies,
    // stage by stage elsewhere. kStages: stage by stage everywhere
    // (stages.h, matmul.h). Unset: $HGPIPE_VIT_BLOCKS ("lut" or "stages"),
    // else kLut.
    enum class Blocks { kLut, kStages };
    std::optional<Blocks> blocks;
    // The instruction set (simd.h). kBaseline also keeps the products off
    // the AVX2 narrow kernel (matmul.h), so oneDNN computes them: the
    // portable fallbacks, which tests check on any machine. Unset:
    // $HGPIPE_VIT_SIMD ("best" or "baseline"), else kBest.
    std::optional<Simd> simd;
  };

  // Prepares the matrix-product primitives for `weights` (already validated
  // by VitWeightsFromContainer). InvalidArgument for bad options, Internal if
  // oneDNN refuses a shape.
  static absl::StatusOr<std::shared_ptr<const VitKernel>> Create(VitWeights weights,
                                                                 Options options);
  static absl::StatusOr<std::shared_ptr<const VitKernel>> Create(VitWeights weights) {
    return Create(std::move(weights), Options());
  }
  ~VitKernel() override;
  VitKernel(const VitKernel&) = delete;
  VitKernel& operator=(const VitKernel&) = delete;

  const BitstreamManifest& manifest() const override { return manifest_; }
  void Compute(const int8_t* input, uint32_t n, uint32_t* output) const override;

  // The pipeline's stage groups on n images, as the authors test their
  // blocks one by one. Residual streams are int32 [n][tokens][width]:
  //   PatchEmbed: flat int8 [n][tokens][token_values] (not device order)
  //   Attention / Mlp (block < depth): residual in -> residual out (the
  //     same values for a branch of kind none: it is skipped)
  //   Head: residual -> int32 logits [n][classes]
  void PatchEmbed(const int8_t* flat, uint32_t n, int32_t* out) const;
  void Attention(uint32_t block, const int32_t* x, uint32_t n, int32_t* out) const;
  void Mlp(uint32_t block, const int32_t* x, uint32_t n, int32_t* out) const;
  void Head(const int32_t* x, uint32_t n, int32_t* logits) const;

  const VitSpec& spec() const { return weights_.spec; }
  // Attention and MLP blocks computed on lookup tables (0 .. 2 * depth).
  uint32_t lut_blocks() const;
  const VitWeights& weights() const { return weights_; }
  // FP32 logit = DecodeLogitWord(word) * logit_scale().
  double logit_scale() const { return weights_.spec.logit_scale; }
  // The real value an input int8 of 1 stands for (after normalization).
  double input_scale() const { return weights_.spec.input_scale; }
  // Class names, one per class, or empty if the weights carry none.
  const std::vector<std::string>& labels() const { return weights_.labels; }

 private:
  struct Impl;
  struct Workspace;
  VitKernel(VitWeights weights, std::unique_ptr<Impl> impl);
  // The stage groups on one chunk (b <= chunk images) in `ws`.
  void AttentionChunk(uint32_t block, Workspace& ws, uint32_t b, const int32_t* x,
                      int32_t* out) const;
  void MlpChunk(uint32_t block, Workspace& ws, uint32_t b, const int32_t* x, int32_t* out) const;
  void HeadChunk(Workspace& ws, uint32_t b, const int32_t* x, int32_t* logits) const;

  const VitWeights weights_;
  const BitstreamManifest manifest_;
  const std::unique_ptr<Impl> impl_;
};

// Loads a weight file (docs/datapath.md, "Weight file"). Errors name the
// file and the field: NotFound if unreadable, DataLoss on a CRC mismatch,
// InvalidArgument when malformed or inconsistent or when $HGPIPE_VIT_BLOCKS
// or $HGPIPE_VIT_SIMD holds an unknown value.
absl::StatusOr<std::shared_ptr<const VitKernel>> LoadVitKernel(const std::string& weights_path);
absl::StatusOr<std::shared_ptr<const VitKernel>> LoadVitKernel(const std::string& weights_path,
                                                               const VitKernel::Options& options);

}  // namespace hgpipe::accel::vit

#endif  // HGPIPE_ACCEL_VIT_VIT_KERNEL_H_
