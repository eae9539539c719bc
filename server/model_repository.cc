#include "server/model_repository.h"

#include <algorithm>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "accel/kernels/kernel_registry.h"
#include "base/status_macros.h"
#include "server/client_text.h"
#include "server/model_config.h"
#include "server/model_variants.h"

namespace hgpipe::server {

namespace fs = std::filesystem;

absl::Status ResolveEmulatedBitstream(ModelEntry* e) {
  const std::string& bitstream = e->config.bitstream();
  const std::string weights = e->config.weights().empty() || e->config.weights()[0] == '/'
                                  ? e->config.weights()
                                  : absl::StrCat(e->directory, "/", e->config.weights());
  ASSIGN_OR_RETURN(accel::LoadedKernel k,
                   accel::KernelRegistry::Builtin().Load(bitstream, weights));
  e->kernel = std::move(k.kernel);
  e->logit_scale = k.logit_scale;
  e->input_scale = k.input_scale;
  e->labels = std::move(k.labels);
  e->manifest = e->kernel->manifest();
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ListModelDirectories(const std::string& root) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    return absl::NotFoundError(absl::StrCat("model repository ", root, ": not a directory"));
  }
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    std::error_code ec2;
    if (e.is_directory(ec2) && fs::exists(e.path() / "config.pbtxt", ec2)) {
      names.push_back(e.path().filename().string());
    }
  }
  if (ec) {
    return absl::InternalError(absl::StrCat("model repository ", root, ": ", ec.message()));
  }
  std::sort(names.begin(), names.end());
  return names;
}

absl::StatusOr<ModelEntry> LoadModelDirectory(const std::string& root, const std::string& name,
                                              const BitstreamResolver& resolve,
                                              const ConfigEdit& edit) {
  const fs::path dir = fs::path(root) / name;
  std::error_code ec;
  if (!IsValidModelName(name) || !fs::exists(dir / "config.pbtxt", ec)) {
    return absl::NotFoundError(absl::StrCat("model repository ", root, ": no model ", Quote(name),
                                            " (a directory with config.pbtxt)"));
  }
  ModelEntry m;
  m.directory = dir.string();
  m.config_path = (dir / "config.pbtxt").string();
  ASSIGN_OR_RETURN(m.config, ParseModelConfigFile(m.config_path));
  if (edit) {
    if (absl::Status s = edit(&m.config); !s.ok()) {
      return absl::Status(s.code(),
                          absl::StrCat(m.config_path, " with the load's config: ", s.message()));
    }
  }
  if (m.config.bitstream().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(m.config_path, ": bitstream: missing"));
  }
  if (absl::Status s = ResolveModelVariants(&m, resolve); !s.ok()) {
    const bool names_field = absl::StartsWith(s.message(), "weights:") ||
                             absl::StartsWith(s.message(), "xclbin:") ||
                             absl::StartsWith(s.message(), "variants");
    return absl::Status(
        s.code() == absl::StatusCode::kNotFound ? absl::StatusCode::kInvalidArgument : s.code(),
        absl::StrCat(m.config_path, names_field ? ": " : ": bitstream: ", s.message()));
  }
  NormalizeModelConfig(m, &m.config);
  RETURN_IF_ERROR(ValidateModelConfig(m.config, m, name, m.config_path));
  return m;
}

absl::StatusOr<std::vector<ModelEntry>> LoadModelRepository(const std::string& root,
                                                            const BitstreamResolver& resolve) {
  ASSIGN_OR_RETURN(std::vector<std::string> names, ListModelDirectories(root));
  if (names.empty()) {
    return absl::NotFoundError(
        absl::StrCat("model repository ", root, ": no model (a directory with config.pbtxt)"));
  }
  std::vector<ModelEntry> models;
  for (const std::string& name : names) {
    ASSIGN_OR_RETURN(ModelEntry m, LoadModelDirectory(root, name, resolve));
    models.push_back(std::move(m));
  }
  return models;
}

}  // namespace hgpipe::server
