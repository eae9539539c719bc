// Weight files for tests that serve variants: fmnist_vit's committed
// weights with the measured accuracy (and optionally the interval) a test
// states, so that two variants agree on inputs and outputs and differ only
// where the test wants them to.
#ifndef HGPIPE_TESTS_INTEGRATION_VARIANT_WEIGHTS_H_
#define HGPIPE_TESTS_INTEGRATION_VARIANT_WEIGHTS_H_

#include <filesystem>
#include <string>

namespace hgpipe::testing {

// Writes models/fmnist_vit/fmnist_vit.hgvit to `path` with its manifest's
// top1_accuracy set to `top1` (its own measured one replaced),
// accuracy_dataset to the Fashion-MNIST test set, and interval_cycles to
// `interval` unless that is empty. Fails the calling test on error.
void WriteVariantWeights(const std::filesystem::path& path, const std::string& top1,
                         const std::string& interval = "");

}  // namespace hgpipe::testing

#endif  // HGPIPE_TESTS_INTEGRATION_VARIANT_WEIGHTS_H_
