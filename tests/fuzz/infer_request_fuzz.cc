// Request validation: any bytes as a ModelInferRequest (tensors, BYTES
// contents, parameters) against the bundled models' configs. Bad input must
// be refused with a status, never crash or read out of bounds, and an
// accepted request's image pointers must lie inside the request.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "server/infer_request.h"
#include "tests/fuzz/bundled_configs.h"

namespace {

const std::vector<hgpipe::config::ModelConfig>* configs;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  configs = hgpipe::fuzz::InitBundledConfigs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  inference::ModelInferRequest req;
  if (!req.ParseFromArray(data, static_cast<int>(size))) return 0;
  for (const auto& c : *configs) {
    absl::StatusOr<hgpipe::server::PreparedInput> in = hgpipe::server::PrepareInput(req, c);
    if (in.ok() && in->images != nullptr) {
      // Touch every byte the scheduler would read.
      volatile int8_t sink = 0;
      const size_t bytes = size_t{in->n_images} * 196 * 768;
      if (c.input_format() == hgpipe::config::DEVICE_PATCHES) {
        for (size_t i = 0; i < bytes; i += 4096) sink = sink + in->images[i];
        sink = sink + in->images[bytes - 1];
      }
    }
    (void)hgpipe::server::ParseRequestPolicy(req, c);
  }
  return 0;
}
