// The model repository: one directory per model, each with a config.pbtxt
// (server/model_config.h). The server loads every model at start-up (any
// bad model fails the start with an error naming its file), or, with
// --model-control-mode=explicit, the models it is told to, one directory at
// a time (server/model_manager.h).
#ifndef HGPIPE_SERVER_MODEL_REPOSITORY_H_
#define HGPIPE_SERVER_MODEL_REPOSITORY_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "accel/bitstream.h"
#include "accel/kernel.h"
#include "proto/model_config.pb.h"
#include "server/model_config.h"

namespace hgpipe::server {

// Fills entry->kernel, manifest, scales and labels from entry->config (its
// `bitstream`, and `weights` relative to entry->directory). Errors say what
// is wrong without naming the config file: the caller adds it.
using BitstreamResolver = std::function<absl::Status(ModelEntry* entry)>;

// The kernels emulated boards run, from accel::KernelRegistry::Builtin():
// "verify", and HG-PIPE's datapath ("vit" or "deit_tiny") with the config's
// `weights` file (required).
absl::Status ResolveEmulatedBitstream(ModelEntry* entry);

// The names of the sub-directories of `root` holding a config.pbtxt, sorted.
// NotFound if `root` is not a directory; an empty list if it holds no model.
absl::StatusOr<std::vector<std::string>> ListModelDirectories(const std::string& root);

// Changes a parsed config before it is resolved, normalized and validated
// (a load's config override); an error fails the load with its message.
using ConfigEdit = std::function<absl::Status(config::ModelConfig* config)>;

// Loads the model in `root`/`name`: parses its config.pbtxt, applies `edit`
// (if any), resolves its bitstream (every variant's: model_variants.h),
// normalizes and validates. NotFound if
// there is no such directory with a config.pbtxt; InvalidArgument naming the
// file and field for a bad config or bitstream.
absl::StatusOr<ModelEntry> LoadModelDirectory(const std::string& root, const std::string& name,
                                              const BitstreamResolver& resolve,
                                              const ConfigEdit& edit = nullptr);

// Loads every sub-directory of `root` holding a config.pbtxt, sorted by name.
// NotFound if `root` is not a directory or holds no model; InvalidArgument
// naming the file and field for a bad config or bitstream.
absl::StatusOr<std::vector<ModelEntry>> LoadModelRepository(const std::string& root,
                                                            const BitstreamResolver& resolve);

}  // namespace hgpipe::server

#endif  // HGPIPE_SERVER_MODEL_REPOSITORY_H_
