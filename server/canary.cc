#include "server/canary.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <optional>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "accel/kernels/kernel_registry.h"
#include "accel/vit/weight_file.h"
#include "glog/logging.h"

namespace hgpipe::server {

namespace {

namespace fs = std::filesystem;
using accel::vit::DType;

absl::StatusOr<std::shared_ptr<const accel::Canary>> FromGolden(const std::string& path,
                                                                const ModelEntry& entry) {
  auto bad = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": canary: ", what));
  };
  absl::StatusOr<accel::vit::Container> c = accel::vit::ReadContainer(path);
  if (!c.ok()) return bad(c.status().message());
  const accel::DeviceGeometry& g = entry.manifest.geometry;
  auto in = c->tensors.find("input");
  auto out = c->tensors.find("output");
  if (in == c->tensors.end() || out == c->tensors.end()) {
    return bad("needs tensors 'input' and 'output'");
  }
  const accel::vit::Tensor& ti = in->second;
  const accel::vit::Tensor& to = out->second;
  if (ti.dtype != DType::kInt8 || ti.dims.size() != 2 || ti.dims[1] != g.input_bytes()) {
    return bad(absl::StrCat("input is ", accel::vit::DTypeName(ti.dtype), " [",
                            absl::StrJoin(ti.dims, ", "), "], want int8 [n, ", g.input_bytes(),
                            "]"));
  }
  if (to.dtype != DType::kInt32 || to.dims.size() != 2 || to.dims[1] != g.classes ||
      to.dims[0] != ti.dims[0]) {
    return bad(absl::StrCat("output is ", accel::vit::DTypeName(to.dtype), " [",
                            absl::StrJoin(to.dims, ", "), "], want int32 [", ti.dims[0], ", ",
                            g.classes, "]"));
  }
  if (ti.dims[0] == 0) return bad("holds no image");
  auto canary = std::make_shared<accel::Canary>();
  canary->source = path;
  canary->images = std::min<uint32_t>(kCanaryImages, ti.dims[0]);
  canary->input.resize(size_t{canary->images} * g.input_bytes());
  std::memcpy(canary->input.data(), ti.bytes.data(), canary->input.size());
  canary->output.resize(size_t{canary->images} * g.output_words());
  // Little-endian int32 device words, as the board writes them.
  std::memcpy(canary->output.data(), to.bytes.data(), canary->output.size() * 4);
  // The kernel this server's emulated boards run must agree with the file,
  // or every board would be taken out of service for a stale file.
  if (entry.kernel != nullptr) {
    std::vector<uint32_t> host(canary->output.size());
    entry.kernel->Compute(canary->input.data(), canary->images, host.data());
    const std::string diff = accel::CompareCanaryOutput(*canary, g, host);
    if (!diff.empty()) {
      LOG(ERROR) << path << ": canary off: this server's kernel for bitstream "
                 << entry.config.bitstream() << " disagrees with the file (" << diff
                 << "); regenerate the golden file or fix the kernel";
      return std::shared_ptr<const accel::Canary>();
    }
  }
  return canary;
}

}  // namespace

absl::StatusOr<std::shared_ptr<const accel::Canary>> LoadModelCanary(const ModelEntry& entry) {
  const fs::path golden = fs::path(entry.directory) / kGoldenFile;
  std::error_code ec;
  if (fs::exists(golden, ec)) return FromGolden(golden.string(), entry);
  if (std::optional<accel::Canary> c = accel::KernelRegistry::Builtin().BuiltinCanary(
          entry.config.bitstream(), entry.manifest.geometry)) {
    return std::make_shared<const accel::Canary>(*std::move(c));
  }
  return std::shared_ptr<const accel::Canary>();
}

}  // namespace hgpipe::server
