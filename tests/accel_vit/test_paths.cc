#include "tests/accel_vit/test_paths.h"

#include <cstdlib>

namespace hgpipe::accel::vit {

std::string SourceDir() {
  const char* env = std::getenv("HGPIPE_SOURCE_DIR");
  return env != nullptr && *env != '\0' ? env : HGPIPE_VIT_SOURCE_DIR;
}

std::string FmnistWeightsPath() {
  return SourceDir() + "/models/fmnist_vit/fmnist_vit.hgvit";
}

std::string FmnistGoldenPath() {
  return SourceDir() + "/models/fmnist_vit/golden.hgvit";
}

}  // namespace hgpipe::accel::vit
