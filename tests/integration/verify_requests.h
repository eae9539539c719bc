// Requests for `verify` models whose every image is distinct, and the check
// that a response holds each image's own digest (accel/verify_digest.h): a
// response for the wrong request, or rows in the wrong order, fails it.
#ifndef HGPIPE_TESTS_INTEGRATION_VERIFY_REQUESTS_H_
#define HGPIPE_TESTS_INTEGRATION_VERIFY_REQUESTS_H_

#include <atomic>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "clients/tensors.h"
#include "proto/grpc_service.pb.h"

namespace hgpipe::testing {

// n random images, each stamped with a number from `stamps` in its first
// 8 bytes, so no two images of a test share a digest.
inline std::vector<int8_t> StampedImages(int n, std::atomic<uint64_t>& stamps) {
  const uint64_t first = stamps.fetch_add(n);
  std::vector<int8_t> images = clients::GenerateRandomImages(n, first + 1);
  for (int i = 0; i < n; ++i) {
    const uint64_t s = first + i;
    std::memcpy(images.data() + i * clients::kImageBytes, &s, sizeof(s));
  }
  return images;
}

// OK if `response` carries one INT32 row per image, each the digest of its
// own image.
inline absl::Status CheckVerifyResponse(const inference::ModelInferResponse& response,
                                        const std::vector<int8_t>& images) {
  const int64_t n = static_cast<int64_t>(images.size() / clients::kImageBytes);
  absl::StatusOr<clients::OutputTensor<int32_t>> out = clients::ReadInt32Output(response);
  if (!out.ok()) return out.status();
  if (out->shape != std::vector<int64_t>{n, clients::kClasses}) {
    return absl::DataLossError("output shape is not [n, 1000]");
  }
  for (int64_t i = 0; i < n; ++i) {
    absl::Status s = clients::CheckVerifyRow(
        absl::MakeConstSpan(images).subspan(i * clients::kImageBytes, clients::kImageBytes),
        absl::MakeConstSpan(out->values).subspan(i * clients::kClasses, clients::kClasses));
    if (!s.ok()) return absl::DataLossError(absl::StrCat("image ", i, ": ", s.message()));
  }
  return absl::OkStatus();
}

}  // namespace hgpipe::testing

#endif  // HGPIPE_TESTS_INTEGRATION_VERIFY_REQUESTS_H_
