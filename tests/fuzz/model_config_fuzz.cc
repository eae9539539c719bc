// The model config parser: any text as a config.pbtxt, parsed, normalized
// against the verify and fmnist_vit bitstreams and validated, and its
// preprocessing built. Bad configs must be refused naming the field.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "preprocess/preprocessor.h"
#include "server/model_config.h"
#include "server/model_repository.h"

namespace {

std::vector<hgpipe::server::ModelEntry>* entries;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  entries = new std::vector<hgpipe::server::ModelEntry>;
  for (const char* name : {"verify", "fmnist_vit"}) {
    auto e = hgpipe::server::LoadModelDirectory(HGPIPE_SOURCE_DIR "/models", name,
                                                hgpipe::server::ResolveEmulatedBitstream);
    if (!e.ok()) abort();
    entries->push_back(*std::move(e));
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<hgpipe::config::ModelConfig> parsed =
      hgpipe::server::ParseModelConfigText(text, "fuzz/config.pbtxt");
  if (!parsed.ok()) return 0;
  for (const hgpipe::server::ModelEntry& base : *entries) {
    hgpipe::config::ModelConfig c = *parsed;
    hgpipe::server::NormalizeModelConfig(base, &c);
    if (!hgpipe::server::ValidateModelConfig(c, base, c.name(), "fuzz/config.pbtxt").ok()) {
      continue;
    }
    if (c.input_format() != hgpipe::config::DEVICE_PATCHES) {
      auto o = hgpipe::server::PreprocessOptions(c, base.manifest.geometry);
      if (o.ok()) (void)hgpipe::preprocess::Preprocessor::Create(*o);
    }
  }
  return 0;
}
