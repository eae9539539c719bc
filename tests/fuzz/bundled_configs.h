// The configs request-level fuzz targets validate against: the bundled
// verify (INT8 device patches) and fmnist_vit (encoded images) models, and
// fmnist_vit asking for raw pixels (PIXELS). Aborts if a model does not
// load: a fuzz run without its configs would test nothing.
#ifndef HGPIPE_TESTS_FUZZ_BUNDLED_CONFIGS_H_
#define HGPIPE_TESTS_FUZZ_BUNDLED_CONFIGS_H_

#include <cstdlib>
#include <vector>

#include "google/protobuf/stubs/logging.h"
#include "server/model_repository.h"

namespace hgpipe::fuzz {

inline std::vector<config::ModelConfig> BundledConfigs() {
  std::vector<config::ModelConfig> configs;
  for (const char* name : {"verify", "fmnist_vit"}) {
    auto e = server::LoadModelDirectory(HGPIPE_SOURCE_DIR "/models", name,
                                        server::ResolveEmulatedBitstream);
    if (!e.ok()) abort();
    configs.push_back(e->config);
  }
  configs.push_back(configs.back());
  configs.back().set_input_format(config::PIXELS);
  configs.back().mutable_input()->set_datatype("UINT8");
  return configs;
}

// For LLVMFuzzerInitialize: silences protobuf's log (it reports every
// string field with invalid UTF-8 it parses: noise in a fuzz run) and
// loads the configs once, for the whole run.
inline const std::vector<config::ModelConfig>* InitBundledConfigs() {
  google::protobuf::SetLogHandler(nullptr);
  static const auto* configs = new std::vector<config::ModelConfig>(BundledConfigs());
  return configs;
}

}  // namespace hgpipe::fuzz

#endif  // HGPIPE_TESTS_FUZZ_BUNDLED_CONFIGS_H_
