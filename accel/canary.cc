#include "accel/canary.h"

#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "accel/device_layout.h"
#include "accel/verify_digest.h"

namespace hgpipe::accel {

absl::Status ValidateCanary(const Canary& c, const DeviceGeometry& g) {
  if (c.images == 0 || c.input.size() != c.images * g.input_bytes() ||
      c.output.size() != c.images * g.output_words()) {
    return absl::InvalidArgumentError(
        absl::StrCat("canary ", c.source, ": ", c.images, " image(s), ", c.input.size(),
                     " input bytes and ", c.output.size(), " output words do not fit ", g.tokens,
                     "x", g.token_values, " -> ", g.classes));
  }
  return absl::OkStatus();
}

Canary MakeVerifyCanary(const DeviceGeometry& g) {
  Canary c;
  c.source = "verify digest";
  c.images = 1;
  std::vector<int8_t> flat(g.input_bytes());
  std::mt19937_64 rng(0x43414e415259);  // fixed: the same canary every run
  for (int8_t& v : flat) v = static_cast<int8_t>(rng());
  c.input.resize(g.input_bytes());
  PackImage(g, flat.data(), c.input.data());
  const uint64_t h = verify::ImageHash(flat.data(), flat.size());
  c.output.resize(g.output_words());
  for (uint32_t j = 0; j < g.classes; ++j) c.output[j] = verify::DigestWord(h, j);
  return c;
}

std::string CompareCanaryOutput(const Canary& c, const DeviceGeometry& g,
                                absl::Span<const uint32_t> got) {
  const size_t n = std::min(got.size(), c.output.size());
  size_t first = n, differ = 0;
  for (size_t i = 0; i < n; ++i) {
    if (got[i] != c.output[i]) {
      if (first == n) first = i;
      ++differ;
    }
  }
  if (differ == 0 && got.size() == c.output.size()) return "";
  if (differ == 0) {
    return absl::StrCat(got.size(), " output words, want ", c.output.size());
  }
  const size_t words = g.output_words();
  return absl::StrFormat("image %d word %d: got 0x%05x, want 0x%05x (%d of %d words differ)",
                         first / words, first % words, got[first], c.output[first], differ,
                         c.output.size());
}

}  // namespace hgpipe::accel
