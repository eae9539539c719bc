// Loading a model's config.pbtxt: parse (protobuf text format), Normalize
// (fill defaults from the bitstream's geometry), Validate. Every error names
// the file and the field and says why, e.g.
//   models/verify/config.pbtxt: batching.max_images_per_run: must be > 0
#ifndef HGPIPE_SERVER_MODEL_CONFIG_H_
#define HGPIPE_SERVER_MODEL_CONFIG_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "accel/bitstream.h"
#include "proto/model_config.pb.h"

namespace hgpipe::server {

// Reads and parses `path`. InvalidArgument with line and column on syntax
// errors, NotFound if the file is missing.
absl::StatusOr<config::ModelConfig> ParseModelConfigFile(const std::string& path);

// Fills defaults (model_config.proto's `Default:` lines), with tensor
// shapes taken from the bitstream `manifest`.
void NormalizeModelConfig(const accel::BitstreamManifest& manifest,
                          config::ModelConfig* config);

// Checks a normalized config against its directory name and the bitstream.
// InvalidArgument naming `path` and the field.
absl::Status ValidateModelConfig(const config::ModelConfig& config,
                                 const accel::BitstreamManifest& manifest,
                                 absl::string_view dir_name,
                                 absl::string_view path);

}  // namespace hgpipe::server

#endif  // HGPIPE_SERVER_MODEL_CONFIG_H_
