// The function a bitstream computes, in software: what an emulated board
// executes for the bitstream it is programmed with.
#ifndef HGPIPE_ACCEL_KERNEL_H_
#define HGPIPE_ACCEL_KERNEL_H_

#include <cstdint>
#include <memory>

#include "accel/bitstream.h"

namespace hgpipe::accel {

// Thread safety: Compute may run concurrently on several threads (one per
// board programmed with the same bitstream).
class Kernel {
 public:
  virtual ~Kernel() = default;
  virtual const BitstreamManifest& manifest() const = 0;
  // n images: `input` holds n * input_bytes() in device order, `output`
  // receives n * output_words() device words.
  virtual void Compute(const int8_t* input, uint32_t n, uint32_t* output) const = 0;
};

// The `verify` loopback kernel (accel/verify_digest.h), one shared instance.
// Kernels by bitstream name: accel/kernels/kernel_registry.h.
std::shared_ptr<const Kernel> VerifyKernel();

}  // namespace hgpipe::accel

#endif  // HGPIPE_ACCEL_KERNEL_H_
