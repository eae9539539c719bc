// The model repository: one directory per model, each with a config.pbtxt
// (server/model_config.h). Loaded once at start-up; any bad model fails the
// whole load with an error naming its file.
#ifndef HGPIPE_SERVER_MODEL_REPOSITORY_H_
#define HGPIPE_SERVER_MODEL_REPOSITORY_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "accel/bitstream.h"
#include "proto/model_config.pb.h"

namespace hgpipe::server {

struct ModelEntry {
  config::ModelConfig config;  // normalized and validated
  std::string directory;
  std::string config_path;
  accel::BitstreamManifest manifest;
};

// Finds a bitstream's manifest by the name a config gives in `bitstream`.
using BitstreamResolver =
    std::function<absl::StatusOr<accel::BitstreamManifest>(const std::string&)>;

// The manifests of the kernels emulated boards run.
absl::StatusOr<accel::BitstreamManifest> ResolveEmulatedBitstream(
    const std::string& bitstream);

// Loads every sub-directory of `root` holding a config.pbtxt, sorted by name.
// NotFound if `root` is not a directory or holds no model; InvalidArgument
// naming the file and field for a bad config.
absl::StatusOr<std::vector<ModelEntry>> LoadModelRepository(
    const std::string& root, const BitstreamResolver& resolve);

}  // namespace hgpipe::server

#endif  // HGPIPE_SERVER_MODEL_REPOSITORY_H_
