// The kernels emulated boards can run, by bitstream name: the one table the
// server consults to load a model's kernel, to find a bitstream's built-in
// canary, and to start idle boards. It sits above accel/ and accel/vit/
// because it names kernels from both.
#ifndef HGPIPE_ACCEL_KERNELS_KERNEL_REGISTRY_H_
#define HGPIPE_ACCEL_KERNELS_KERNEL_REGISTRY_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "accel/bitstream.h"
#include "accel/canary.h"
#include "accel/kernel.h"

namespace hgpipe::accel {

// A kernel and what a model needs to know about its numbers.
struct LoadedKernel {
  std::shared_ptr<const Kernel> kernel;
  double logit_scale = 1.0;
  double input_scale = 0.0;  // 0: unknown
  std::vector<std::string> labels;
};

struct KernelEntry {
  // Builds the kernel from a weight file path ("" when the model names none).
  // Errors say what is wrong with the weights, not which model asked.
  std::function<absl::StatusOr<LoadedKernel>(const std::string& weights)> load;
  // A canary the bitstream defines without a golden file (verify's digest);
  // null when only a model's golden file can provide one.
  std::function<Canary(const DeviceGeometry&)> canary;
};

// Built once, then read-only: a const registry may be used from any thread.
class KernelRegistry {
 public:
  // verify (no weights), and HG-PIPE's ViT datapath as "vit" and
  // "deit_tiny" (weights required).
  static const KernelRegistry& Builtin();

  // InvalidArgument for an empty name, an entry without `load`, or a name
  // already registered.
  absl::Status Register(std::string name, KernelEntry entry);

  // NotFound naming the bitstream and the known names; otherwise the
  // entry's load result.
  absl::StatusOr<LoadedKernel> Load(absl::string_view bitstream, const std::string& weights) const;

  // The bitstream's built-in canary for geometry `g`; nullopt if it has none
  // or is unknown.
  std::optional<Canary> BuiltinCanary(absl::string_view bitstream, const DeviceGeometry& g) const;

  // Sorted.
  std::vector<std::string> Names() const;

 private:
  std::map<std::string, KernelEntry, std::less<>> entries_;
};

}  // namespace hgpipe::accel

#endif  // HGPIPE_ACCEL_KERNELS_KERNEL_REGISTRY_H_
