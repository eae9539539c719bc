// HG-PIPE's own geometry, DeiT-tiny (224x224, 16x16 patches, width 192,
// 3 heads, 12 blocks, 1000 classes), with deterministic generated integer
// weights: for benchmarks and for serving HG-PIPE's shape and timing without
// a checkpoint. Real DeiT weights come from a converted checkpoint
// (tools/vit/convert_deit_checkpoint.py) loaded with LoadVitKernel.
#ifndef HGPIPE_ACCEL_VIT_DEIT_TINY_H_
#define HGPIPE_ACCEL_VIT_DEIT_TINY_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "accel/vit/vit_kernel.h"
#include "accel/vit/vit_weights.h"

namespace hgpipe::accel::vit {

struct DeitTinyOptions {
  enum class Precision {
    // HG-PIPE's: 3-bit weights and activations in the blocks, 8-bit patch
    // embedding and head; manifest name "deit_tiny".
    kW3A3,
    // 8-bit throughout; manifest name "deit_tiny_w8a8".
    kW8A8,
  };
  // Default: kW3A3.
  Precision precision = Precision::kW3A3;
  VitKernel::Options kernel;
};

// The generated weights: a function of `seed` and the precision only, the
// same on every run and machine (integer PRNG, IEEE double arithmetic).
// Timing: HG-PIPE's defaults (accel/bitstream.h); no labels.
VitWeights MakeDeitTinyWeights(uint64_t seed,
                               DeitTinyOptions::Precision precision);

absl::StatusOr<std::shared_ptr<const VitKernel>> MakeDeitTinyKernel(
    uint64_t seed, const DeitTinyOptions& options = DeitTinyOptions());

}  // namespace hgpipe::accel::vit

#endif  // HGPIPE_ACCEL_VIT_DEIT_TINY_H_
