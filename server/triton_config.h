// Our model config (proto/model_config.proto) seen as Triton's ModelConfig
// (proto/triton_model_config.proto), both ways: what the ModelConfig RPC and
// GET v2/models/M/config answer, and what a load's `config` override (a
// Triton ModelConfig as JSON, as tritonclient's load_model(config=...) sends
// it) changes. Pure functions.
#ifndef HGPIPE_SERVER_TRITON_CONFIG_H_
#define HGPIPE_SERVER_TRITON_CONFIG_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/model_config.pb.h"
#include "proto/triton_model_config.pb.h"

namespace hgpipe::server {

// Triton's data type for a KServe datatype string ("INT8" -> TYPE_INT8,
// "BYTES" -> TYPE_STRING); TYPE_INVALID for anything else.
inference::DataType TritonDataType(absl::string_view datatype);

// A normalized config as Triton's ModelConfig:
//   name, platform "hgpipe/<bitstream>", backend "hgpipe",
//   max_batch_size = max_images_per_request (the leading N of every tensor),
//   input / output with data_type and dims (a PIXELS input is FORMAT_NHWC),
//   dynamic_batching: max_queue_delay_microseconds, priority_levels,
//     default_priority_level, default_queue_policy (REJECT,
//     default_timeout_microseconds, allow_timeout_override, max_queue_size =
//     max_queue_images),
//   parameters: what has no Triton field (bitstream, input_format,
//     max_images_per_run, max_starvation_us, low_priority_run_images,
//     weights, xclbin, preprocess as protobuf text).
inference::ModelConfig ToTritonConfig(const config::ModelConfig& config);

// Applies a Triton ModelConfig given as JSON (protobuf's JSON mapping; field
// names as in Triton's model_config.proto, fields this server does not know
// are ignored) to `config`, a model's parsed config.pbtxt, before it is
// normalized and validated. Every field given replaces ours as
// ToTritonConfig maps them; `platform` "hgpipe/X" selects bitstream X.
// InvalidArgument naming the field for malformed JSON, another model's name,
// another platform or backend, more than one input or output, or what this
// server cannot honour (preferred_batch_size, timeout_action DELAY,
// priority_queue_policy, an unknown parameter).
absl::Status ApplyTritonConfigJson(absl::string_view json, config::ModelConfig* config);

}  // namespace hgpipe::server

#endif  // HGPIPE_SERVER_TRITON_CONFIG_H_
