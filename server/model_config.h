// A model's configuration: models/<name>/config.pbtxt (protobuf text format,
// proto/model_config.proto). Loading parses it, resolves its bitstream
// (model_repository.h), Normalizes it (fills defaults from the bitstream) and
// Validates it. Every error names the file and the field and says why, e.g.
//   models/verify/config.pbtxt: batching.max_images_per_run: must be > 0
#ifndef HGPIPE_SERVER_MODEL_CONFIG_H_
#define HGPIPE_SERVER_MODEL_CONFIG_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "accel/bitstream.h"
#include "accel/kernel.h"
#include "preprocess/options.h"
#include "proto/model_config.pb.h"

namespace hgpipe::server {

// One bitstream variant of a loaded model (config `variants`,
// server/model_variants.h): what boards programmed with it run, and what its
// manifest promises (timing, measured accuracy).
struct VariantEntry {
  std::string name;
  // As in the config: the bitstream, and the weights and xclbin relative to
  // the model's directory (empty if none).
  std::string bitstream;
  std::string weights;
  std::string xclbin;
  accel::BitstreamManifest manifest;
  std::shared_ptr<const accel::Kernel> kernel;  // for emulated boards
  // The variant's own dequantization: FP32 logits of an image answered by
  // this variant are its words times this variant's logit_scale.
  double logit_scale = 1.0;
  double input_scale = 0.0;
  std::vector<std::string> labels;
};

// A loaded model: its config and what its bitstream is.
struct ModelEntry {
  config::ModelConfig config;  // normalized and validated once loaded
  std::string directory;
  std::string config_path;
  // The fields below, up to `labels`, are the default variant's
  // (variants[0]): what the model's boards run.
  accel::BitstreamManifest manifest;
  // What emulated boards run for this model; shared by all of them.
  std::shared_ptr<const accel::Kernel> kernel;
  // Real value of a logit 1 (FP32 outputs), and of an input int8 1.
  double logit_scale = 1.0;
  double input_scale = 0.0;  // 0: unknown
  // Class names, one per class, or empty.
  std::vector<std::string> labels;
  // Every variant, at least one, in config order; the first is the default.
  std::vector<VariantEntry> variants;
};

// Reads and parses `path`. InvalidArgument with line and column on syntax
// errors, NotFound if the file is missing.
absl::StatusOr<config::ModelConfig> ParseModelConfigFile(const std::string& path);
// The same for text held in memory; `path` names it in errors.
absl::StatusOr<config::ModelConfig> ParseModelConfigText(const std::string& text,
                                                         absl::string_view path);

// Fills defaults (model_config.proto's `Default:` lines) from the resolved
// bitstream in `entry` into `config`.
void NormalizeModelConfig(const ModelEntry& entry, config::ModelConfig* config);

// Checks a normalized config against its directory name and the bitstream.
// InvalidArgument naming `path` and the field.
absl::Status ValidateModelConfig(const config::ModelConfig& config, const ModelEntry& entry,
                                 absl::string_view dir_name, absl::string_view path);

// The preprocessing of a normalized ENCODED_IMAGE or PIXELS model.
// InvalidArgument naming the `preprocess` field.
absl::StatusOr<preprocess::Options> PreprocessOptions(const config::ModelConfig& config,
                                                      const accel::DeviceGeometry& geometry);

}  // namespace hgpipe::server

#endif  // HGPIPE_SERVER_MODEL_CONFIG_H_
