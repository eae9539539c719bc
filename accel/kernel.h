// The function a bitstream computes, in software: what an emulated board
// executes for the bitstream it is programmed with.
#ifndef HGPIPE_ACCEL_KERNEL_H_
#define HGPIPE_ACCEL_KERNEL_H_

#include <cstdint>
#include <memory>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
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
  virtual void Compute(const int8_t* input, uint32_t n,
                       uint32_t* output) const = 0;
};

// The kernels emulated boards know, by bitstream name. NotFound for others.
absl::StatusOr<std::shared_ptr<const Kernel>> FindEmulatedKernel(
    absl::string_view bitstream);

}  // namespace hgpipe::accel

#endif  // HGPIPE_ACCEL_KERNEL_H_
