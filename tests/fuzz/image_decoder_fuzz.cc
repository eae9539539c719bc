// Image decoding and preprocessing: any bytes as an encoded image (PNG,
// JPEG, ...), decoded and turned into device patches as fmnist_vit's
// requests are. Corrupt, truncated or huge images must be refused.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <vector>

#include "preprocess/image_decoder.h"
#include "preprocess/preprocessor.h"
#include "server/model_config.h"
#include "server/model_repository.h"

namespace {

std::optional<hgpipe::preprocess::Preprocessor>* pre;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  auto e = hgpipe::server::LoadModelDirectory(HGPIPE_SOURCE_DIR "/models", "fmnist_vit",
                                              hgpipe::server::ResolveEmulatedBitstream);
  if (!e.ok()) abort();
  auto o = hgpipe::server::PreprocessOptions(e->config, e->manifest.geometry);
  if (!o.ok()) abort();
  auto p = hgpipe::preprocess::Preprocessor::Create(*o);
  if (!p.ok()) abort();
  pre = new std::optional<hgpipe::preprocess::Preprocessor>(*std::move(p));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::Span<const uint8_t> bytes(data, size);
  hgpipe::preprocess::DecodeOptions o;
  o.max_pixels = 4'000'000;  // the fuzzer's memory limit, not the server's
  o.want_gray = size > 0 && (data[size - 1] & 1);
  hgpipe::preprocess::ScratchBuffer buffer;
  (void)hgpipe::preprocess::DecodeImage(bytes, o, &buffer);
  std::vector<int8_t> patches((*pre)->input_bytes());
  (void)(*pre)->EncodedToPatches(bytes, absl::MakeSpan(patches));
  return 0;
}
