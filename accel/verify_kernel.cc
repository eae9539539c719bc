// The `verify` loopback kernel (definition in verify_digest.h).
#include <vector>

#include "accel/device_layout.h"
#include "accel/kernel.h"
#include "accel/verify_digest.h"

namespace hgpipe::accel {
namespace {

class VerifyKernelImpl final : public Kernel {
 public:
  VerifyKernelImpl() { manifest_.name = "verify"; }
  const BitstreamManifest& manifest() const override { return manifest_; }

  void Compute(const int8_t* input, uint32_t n, uint32_t* output) const override {
    const DeviceGeometry& g = manifest_.geometry;
    // The digest is defined on the flat order a client sends, so the kernel
    // undoes the host's device packing: a round trip the tests then prove.
    thread_local std::vector<int8_t> flat;
    flat.resize(g.input_bytes());
    for (uint32_t i = 0; i < n; ++i) {
      UnpackImage(g, input + i * g.input_bytes(), flat.data());
      const uint64_t h = verify::ImageHash(flat.data(), flat.size());
      uint32_t* out = output + i * g.output_words();
      for (uint32_t j = 0; j < g.classes; ++j) out[j] = verify::DigestWord(h, j);
    }
  }

 private:
  BitstreamManifest manifest_;
};

}  // namespace

std::shared_ptr<const Kernel> VerifyKernel() {
  static const auto* const kVerify =
      new std::shared_ptr<const Kernel>(std::make_shared<VerifyKernelImpl>());
  return *kVerify;
}

}  // namespace hgpipe::accel
