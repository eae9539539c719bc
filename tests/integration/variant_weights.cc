#include "variant_weights.h"

#include <fstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "accel/vit/weight_file.h"
#include "gtest/gtest.h"

namespace hgpipe::testing {

void WriteVariantWeights(const std::filesystem::path& path, const std::string& top1,
                         const std::string& interval) {
  auto c = accel::vit::ReadContainer(
      absl::StrCat(HGPIPE_TEST_SOURCE_DIR, "/models/fmnist_vit/fmnist_vit.hgvit"));
  ASSERT_TRUE(c.ok()) << c.status();
  // The committed file states its own measured accuracy: a key twice is a
  // load error, so it is replaced.
  std::erase_if(c->manifest, [](const auto& kv) {
    return kv.first == "top1_accuracy" || kv.first == "accuracy_dataset";
  });
  for (auto& [k, v] : c->manifest) {
    if (k == "interval_cycles" && !interval.empty()) v = interval;
  }
  c->manifest.emplace_back("top1_accuracy", top1);
  c->manifest.emplace_back("accuracy_dataset", "Fashion-MNIST test (10,000 images)");
  std::ofstream(path, std::ios::binary) << accel::vit::SerializeContainer(*c);
}

}  // namespace hgpipe::testing
