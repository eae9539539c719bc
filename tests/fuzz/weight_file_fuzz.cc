// The weight (and golden-vector) container loader: any bytes as an .hgvit
// file. Truncated, oversized or inconsistent headers, dims and CRCs must be
// refused with a status.
#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "accel/vit/weight_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::StatusOr<hgpipe::accel::vit::Container> c = hgpipe::accel::vit::ParseContainer(
      absl::string_view(reinterpret_cast<const char*>(data), size), "fuzz.hgvit");
  if (!c.ok()) return 0;
  for (const auto& [name, t] : c->tensors) (void)t.ToInt64();
  // What parses must serialize and parse back the same.
  absl::StatusOr<hgpipe::accel::vit::Container> again =
      hgpipe::accel::vit::ParseContainer(hgpipe::accel::vit::SerializeContainer(*c), "again.hgvit");
  if (!again.ok() || again->tensors.size() != c->tensors.size()) __builtin_trap();
  return 0;
}
