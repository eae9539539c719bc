#include "server/model_repository.h"

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "accel/kernel.h"
#include "base/status_macros.h"
#include "server/model_config.h"

namespace hgpipe::server {

namespace fs = std::filesystem;

absl::StatusOr<accel::BitstreamManifest> ResolveEmulatedBitstream(
    const std::string& bitstream) {
  ASSIGN_OR_RETURN(auto kernel, accel::FindEmulatedKernel(bitstream));
  return kernel->manifest();
}

absl::StatusOr<std::vector<ModelEntry>> LoadModelRepository(
    const std::string& root, const BitstreamResolver& resolve) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    return absl::NotFoundError(
        absl::StrCat("model repository ", root, ": not a directory"));
  }
  std::vector<fs::path> dirs;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    if (e.is_directory() && fs::exists(e.path() / "config.pbtxt")) {
      dirs.push_back(e.path());
    }
  }
  if (ec) {
    return absl::InternalError(
        absl::StrCat("model repository ", root, ": ", ec.message()));
  }
  std::sort(dirs.begin(), dirs.end());
  if (dirs.empty()) {
    return absl::NotFoundError(absl::StrCat(
        "model repository ", root, ": no model (a directory with config.pbtxt)"));
  }
  std::vector<ModelEntry> models;
  for (const fs::path& dir : dirs) {
    ModelEntry m;
    m.directory = dir.string();
    m.config_path = (dir / "config.pbtxt").string();
    ASSIGN_OR_RETURN(m.config, ParseModelConfigFile(m.config_path));
    if (m.config.bitstream().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(m.config_path, ": bitstream: missing"));
    }
    auto manifest = resolve(m.config.bitstream());
    if (!manifest.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          m.config_path, ": bitstream: ", manifest.status().message()));
    }
    m.manifest = *std::move(manifest);
    NormalizeModelConfig(m.manifest, &m.config);
    RETURN_IF_ERROR(ValidateModelConfig(m.config, m.manifest,
                                        dir.filename().string(), m.config_path));
    models.push_back(std::move(m));
  }
  return models;
}

}  // namespace hgpipe::server
