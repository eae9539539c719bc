// Where the tests find the committed model files.
#ifndef HGPIPE_TESTS_ACCEL_VIT_TEST_PATHS_H_
#define HGPIPE_TESTS_ACCEL_VIT_TEST_PATHS_H_

#include <string>

namespace hgpipe::accel::vit {

// $HGPIPE_SOURCE_DIR (set by ctest), else the source tree this was built from.
std::string SourceDir();
// models/fmnist_vit/fmnist_vit.hgvit and its golden vectors.
std::string FmnistWeightsPath();
std::string FmnistGoldenPath();
// models/deit_tiny/: the HG-PIPE authors' DeiT-tiny, its golden image, and
// tests/accel_vit/testdata/deit_tiny_trace.hgvit, every stage's golden output.
std::string DeitTinyWeightsPath();
std::string DeitTinyGoldenPath();
std::string DeitTinyTracePath();

}  // namespace hgpipe::accel::vit

#endif  // HGPIPE_TESTS_ACCEL_VIT_TEST_PATHS_H_
