// Checking a KServe v2 ModelInferRequest against a model's config and
// locating its image bytes. Pure functions: no gRPC calls, no scheduler.
#ifndef HGPIPE_SERVER_INFER_REQUEST_H_
#define HGPIPE_SERVER_INFER_REQUEST_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "proto/grpc_service.pb.h"
#include "proto/model_config.pb.h"

namespace hgpipe::server {

// Where a request's images are; every pointer and view points into the
// request (or into `converted`), so the request must outlive it.
struct PreparedInput {
  uint32_t n_images = 0;
  // DEVICE_PATCHES: n_images flat int8 images, from the raw contents or
  // from `converted` when the client sent typed contents.
  const int8_t* images = nullptr;
  std::unique_ptr<std::vector<int8_t>> converted;
  // ENCODED_IMAGE: one encoded file per image.
  std::vector<absl::string_view> encoded;
  // PIXELS: n_images images of height x width x channels uint8.
  const uint8_t* pixels = nullptr;
  std::unique_ptr<std::vector<uint8_t>> converted_pixels;
  int height = 0, width = 0, channels = 0;
  // The `classification` parameter of the requested output: answer with
  // the top K classes instead of logits. 0: logits.
  uint32_t classification = 0;
};

// OK with the images, or InvalidArgument saying what is wrong (no inputs,
// unknown input or output name, datatype, shape, raw size, raw and typed
// contents together, values out of range, malformed BYTES, too many images,
// a bad classification count). `shared_input`: the input's bytes when they
// are in a shared memory region (server/shared_memory_tensors.h), checked
// as raw contents would be; the request may then carry no contents for it.
absl::StatusOr<PreparedInput> PrepareInput(
    const inference::ModelInferRequest& request, const config::ModelConfig& config,
    std::optional<absl::string_view> shared_input = std::nullopt);

// What a request asks of the scheduler through its `parameters`, as
// Triton's clients send them:
//   priority  uint64 or int64: 1 (highest) .. the model's
//             batching.priority_levels; 0, absent or above the levels (as
//             Triton): the model's default.
//   timeout   uint64 or int64 microseconds from arrival; 0 or absent: the
//             model's batching.default_timeout_us (0 there too: none).
//   min_accuracy  double (or a decimal string, as REST clients may send):
//             the least measured top-1 (a fraction in (0, 1]) of the variant
//             that may answer (docs/serving.md, "Variants"); absent: the
//             model's most accurate variant only.
// Other parameters are ignored (as Triton leaves them to backends).
struct RequestPolicy {
  uint32_t priority = 0;  // 0: the model's default level
  // absl::InfiniteDuration(): no timeout.
  absl::Duration timeout = absl::InfiniteDuration();
  std::optional<double> min_accuracy;
};

// InvalidArgument naming the parameter for a value of another type (bool,
// string, double), a negative value, a timeout beyond an hour, or a
// min_accuracy that is not a number in (0, 1].
absl::StatusOr<RequestPolicy> ParseRequestPolicy(const inference::ModelInferRequest& request,
                                                 const config::ModelConfig& config);

// The deadline the scheduler admits, routes and expires a request against:
// the client's `deadline` less `reserve`, the time its answer needs to get
// from the board's result back to the client (decoding, the response, the
// transport), so that an answer admitted against a full queue still
// arrives in time (docs/serving.md, "Deadlines"). The reserve takes at most
// a quarter of the time from `arrival` to `deadline`, so a short timeout is
// not refused on the reserve alone. InfiniteFuture stays InfiniteFuture.
absl::Time SchedulerDeadline(absl::Time arrival, absl::Time deadline, absl::Duration reserve);

}  // namespace hgpipe::server

#endif  // HGPIPE_SERVER_INFER_REQUEST_H_
