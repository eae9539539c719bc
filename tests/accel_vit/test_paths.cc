#include "tests/accel_vit/test_paths.h"

#include <cstdlib>

namespace hgpipe::accel::vit {

std::string SourceDir() {
  const char* env = std::getenv("HGPIPE_SOURCE_DIR");
  return env != nullptr && *env != '\0' ? env : HGPIPE_VIT_SOURCE_DIR;
}

std::string FmnistWeightsPath() { return SourceDir() + "/models/fmnist_vit/fmnist_vit.hgvit"; }

std::string FmnistGoldenPath() { return SourceDir() + "/models/fmnist_vit/golden.hgvit"; }

std::string DeitTinyWeightsPath() { return SourceDir() + "/models/deit_tiny/deit_tiny.hgvit"; }

std::string DeitTinyGoldenPath() { return SourceDir() + "/models/deit_tiny/golden.hgvit"; }

std::string DeitTinyTracePath() {
  return SourceDir() + "/tests/accel_vit/testdata/deit_tiny_trace.hgvit";
}

}  // namespace hgpipe::accel::vit
