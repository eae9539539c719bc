// Where a model's canary comes from (accel/canary.h), generically for every
// model of the repository:
//   1. `golden.hgvit` in the model's directory (the weight container with
//      tensors `input`, int8 [n][tokens * token_values] in device order, and
//      `output`, int32 [n][classes] device words; docs/datapath.md, "Golden
//      vectors"): its first image. A model gets its authors' golden image as
//      soon as the file is in its directory. If the kernel that emulated
//      boards run for the model disagrees with the file, the model gets no
//      canary and the load logs an error: a stale file must not take every
//      board out of service.
//   2. Otherwise, for the `verify` bitstream: an image whose digest the host
//      computes (accel/verify_digest.h).
//   3. Otherwise none: the probe after programming runs a zero image
//      without checking its output.
#ifndef HGPIPE_SERVER_CANARY_H_
#define HGPIPE_SERVER_CANARY_H_

#include <memory>

#include "absl/status/statusor.h"
#include "accel/canary.h"
#include "server/model_config.h"

namespace hgpipe::server {

inline constexpr char kGoldenFile[] = "golden.hgvit";
// Images of a golden file the canary runs (the first ones).
inline constexpr uint32_t kCanaryImages = 1;

// The model's canary, or null when it has none. InvalidArgument naming the
// file for a golden file that cannot be read or does not fit the model.
absl::StatusOr<std::shared_ptr<const accel::Canary>> LoadModelCanary(const ModelEntry& entry);

}  // namespace hgpipe::server

#endif  // HGPIPE_SERVER_CANARY_H_
