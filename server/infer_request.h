// Checking a KServe v2 ModelInferRequest against a model's config and
// locating its image bytes. Pure functions: no gRPC calls, no scheduler.
#ifndef HGPIPE_SERVER_INFER_REQUEST_H_
#define HGPIPE_SERVER_INFER_REQUEST_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/grpc_service.pb.h"
#include "proto/model_config.pb.h"

namespace hgpipe::server {

struct PreparedInput {
  // n_images flat int8 images: points into the request's raw contents, or
  // into `converted` when the client sent typed contents.
  const int8_t* images = nullptr;
  uint32_t n_images = 0;
  std::unique_ptr<std::vector<int8_t>> converted;
};

// OK with the images, or InvalidArgument saying what is wrong (no inputs,
// unknown input or output name, datatype, shape, raw size, raw and typed
// contents together, values out of range, too many images).
absl::StatusOr<PreparedInput> PrepareInput(const inference::ModelInferRequest& request,
                                           const config::ModelConfig& config);

}  // namespace hgpipe::server

#endif  // HGPIPE_SERVER_INFER_REQUEST_H_
