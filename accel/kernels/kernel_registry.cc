#include "accel/kernels/kernel_registry.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "accel/vit/vit_kernel.h"
#include "base/status_macros.h"

namespace hgpipe::accel {
namespace {

absl::StatusOr<LoadedKernel> LoadVerify(const std::string& /*weights*/) {
  LoadedKernel k;
  k.kernel = VerifyKernel();
  return k;
}

KernelEntry VitEntry(std::string name) {
  KernelEntry e;
  e.load = [name = std::move(name)](const std::string& weights) -> absl::StatusOr<LoadedKernel> {
    if (weights.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("weights: bitstream '", name, "' needs a weight file"));
    }
    ASSIGN_OR_RETURN(std::shared_ptr<const vit::VitKernel> vit, vit::LoadVitKernel(weights));
    LoadedKernel k;
    k.logit_scale = vit->logit_scale();
    k.input_scale = vit->input_scale();
    k.labels = vit->labels();
    k.kernel = std::move(vit);
    return k;
  };
  return e;
}

KernelRegistry MakeBuiltin() {
  KernelRegistry r;
  // Built-in names are distinct and non-empty: Register cannot fail here.
  (void)r.Register("verify", KernelEntry{LoadVerify, MakeVerifyCanary});
  (void)r.Register("vit", VitEntry("vit"));
  (void)r.Register("deit_tiny", VitEntry("deit_tiny"));
  return r;
}

}  // namespace

const KernelRegistry& KernelRegistry::Builtin() {
  static const KernelRegistry* const kBuiltin = new KernelRegistry(MakeBuiltin());
  return *kBuiltin;
}

absl::Status KernelRegistry::Register(std::string name, KernelEntry entry) {
  if (name.empty()) return absl::InvalidArgumentError("kernel registry: empty name");
  if (!entry.load) {
    return absl::InvalidArgumentError(absl::StrCat("kernel registry: '", name, "' has no loader"));
  }
  if (entries_.contains(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("kernel registry: '", name, "' registered twice"));
  }
  entries_.emplace(std::move(name), std::move(entry));
  return absl::OkStatus();
}

absl::StatusOr<LoadedKernel> KernelRegistry::Load(absl::string_view bitstream,
                                                  const std::string& weights) const {
  auto it = entries_.find(bitstream);
  if (it == entries_.end()) {
    // Bounded: a bad name is cut, and the known names are few.
    return absl::NotFoundError(absl::StrCat("no emulated kernel for bitstream '",
                                            bitstream.substr(0, 64),
                                            "' (known: ", absl::StrJoin(Names(), ", "), ")"));
  }
  return it->second.load(weights);
}

std::optional<Canary> KernelRegistry::BuiltinCanary(absl::string_view bitstream,
                                                    const DeviceGeometry& g) const {
  auto it = entries_.find(bitstream);
  if (it == entries_.end() || !it->second.canary) return std::nullopt;
  return it->second.canary(g);
}

std::vector<std::string> KernelRegistry::Names() const {
  std::vector<std::string> names;
  names.reserve(entries_.size());
  for (const auto& [name, entry] : entries_) names.push_back(name);
  return names;
}

}  // namespace hgpipe::accel
