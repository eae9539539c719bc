// Building KServe v2 inference requests and reading their responses, for
// clients of HG-PIPE models: images go out as one raw INT8 tensor
// [N, 196, 768] (flat patches, the order a client sends before any device
// packing), logits come back as one raw INT32 (or FP32) tensor [N, classes].
//
// Pure functions on protobuf messages, no gRPC: the request builders, the
// readers and the `verify` digest check are unit-tested without a server.
#ifndef HGPIPE_CLIENTS_TENSORS_H_
#define HGPIPE_CLIENTS_TENSORS_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "proto/grpc_service.pb.h"

namespace hgpipe::clients {

// HG-PIPE's image geometry (DeiT-tiny, 224 x 224): 196 tokens of 768 int8
// values, 1000 classes. Clients do not link the accelerator layer, so the
// figures are restated here; accel/bitstream.h's DeviceGeometry is the source.
inline constexpr int64_t kImageTokens = 196;
inline constexpr int64_t kTokenValues = 768;
inline constexpr size_t kImageBytes = size_t{kImageTokens} * kTokenValues;
inline constexpr int64_t kClasses = 1000;

// Tensor names of the HG-PIPE models in this repository.
inline constexpr absl::string_view kDefaultInputName = "INPUT";
inline constexpr absl::string_view kDefaultOutputName = "OUTPUT";

// The platform string ModelMetadata reports for the `verify` bitstream,
// whose outputs are a digest of their own input (accel/verify_digest.h).
inline constexpr absl::string_view kVerifyPlatform = "hgpipe/verify";

// A request for `model` carrying `images` (n = images.size() / image_bytes
// images, each image_bytes bytes) as one raw INT8 input tensor named
// `input_name` of shape [n, tokens, token_values], and asking for the output
// `output_name` (empty: all outputs). InvalidArgument if images is empty or
// not a whole number of images, or if tokens * token_values != image_bytes.
struct ImageRequestOptions {
  std::string input_name = std::string(kDefaultInputName);
  std::string output_name = std::string(kDefaultOutputName);
  // Default: HG-PIPE's 196 x 768.
  int64_t tokens = kImageTokens;
  int64_t token_values = kTokenValues;
  // Optional request id, echoed back by KServe servers.
  std::string id;
  // Request policy parameters (SetPriority, SetTimeoutMicros); 0: not sent.
  uint64_t priority = 0;
  uint64_t timeout_us = 0;
};
absl::StatusOr<inference::ModelInferRequest> MakeImageRequest(
    absl::string_view model, absl::Span<const int8_t> images,
    const ImageRequestOptions& options = {});

// Triton's request policy parameters, which hgpipe-server honours:
// `priority` (uint64_param): 1 is the highest level, up to the model's
// priority levels; 0 asks for the model's default (the parameter is then
// removed). `timeout` (int64_param): microseconds from the request's arrival
// after which the server answers DEADLINE_EXCEEDED instead of computing it;
// 0 asks for the model's default (removed). The call's own gRPC deadline
// also bounds it.
void SetPriority(inference::ModelInferRequest* request, uint64_t priority);
void SetTimeoutMicros(inference::ModelInferRequest* request, uint64_t timeout_us);
// hgpipe-server's `min_accuracy` (double_param, docs/serving.md "Variants"):
// the least measured top-1 of the model variant that may answer; 0 removes
// it (the model's most accurate variant only).
void SetMinAccuracy(inference::ModelInferRequest* request, double min_accuracy);

// A request carrying images as one raw UINT8 input [n, height, width, 1]
// (gray pixels, a model with input_format PIXELS), asking for `output_name`
// (empty: all outputs). InvalidArgument if `pixels` is not n whole images.
absl::StatusOr<inference::ModelInferRequest> MakeGrayPixelsRequest(
    absl::string_view model, absl::string_view input_name, absl::string_view output_name,
    int64_t height, int64_t width, absl::Span<const uint8_t> pixels);

// A raw INT8 request with an explicit shape, for models of other geometry.
// InvalidArgument if data.size() is not the product of shape.
absl::StatusOr<inference::ModelInferRequest> MakeInt8Request(absl::string_view model,
                                                             absl::string_view input_name,
                                                             std::vector<int64_t> shape,
                                                             absl::Span<const int8_t> data);

// One output tensor of a response, decoded to host values (little-endian
// wire order). Raw contents are read when present, else the typed contents
// field (int_contents / fp32_contents).
template <typename T>
struct OutputTensor {
  std::vector<int64_t> shape;
  std::vector<T> values;  // row-major, product(shape) of them
};

// The output named `name` (empty: the first output) as INT32 / FP32.
// NotFound if there is no such output; InvalidArgument if its datatype is not
// the one asked for, or if its contents do not match its shape.
absl::StatusOr<OutputTensor<int32_t>> ReadInt32Output(const inference::ModelInferResponse& response,
                                                      absl::string_view name = "");
absl::StatusOr<OutputTensor<float>> ReadFp32Output(const inference::ModelInferResponse& response,
                                                   absl::string_view name = "");

// The product of `shape`'s dimensions; -1 if any is negative.
int64_t ElementCount(absl::Span<const int64_t> shape);

// n deterministic pseudo-random images (uniform int8), the same for the same
// seed on every host: n * image_bytes bytes.
std::vector<int8_t> GenerateRandomImages(size_t n, uint64_t seed, size_t image_bytes = kImageBytes);

// The k largest entries of `row` as (class index, value), largest first;
// ties go to the lower class index.
template <typename T>
std::vector<std::pair<int64_t, T>> TopK(absl::Span<const T> row, size_t k) {
  std::vector<std::pair<int64_t, T>> top;
  top.reserve(row.size());
  for (size_t i = 0; i < row.size(); ++i) {
    top.emplace_back(static_cast<int64_t>(i), row[i]);
  }
  k = std::min(k, top.size());
  std::partial_sort(top.begin(), top.begin() + k, top.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  top.resize(k);
  return top;
}

// The logits a correct `verify` response carries for `image`
// (accel/verify_digest.h's ExpectedLogits).
std::vector<int32_t> ExpectedVerifyLogits(absl::Span<const int8_t> image,
                                          int64_t classes = kClasses);

// OK if `row` holds exactly the `verify` digest of `image`; otherwise
// DataLoss naming the first differing class.
absl::Status CheckVerifyRow(absl::Span<const int8_t> image, absl::Span<const int32_t> row);

}  // namespace hgpipe::clients

#endif  // HGPIPE_CLIENTS_TENSORS_H_
