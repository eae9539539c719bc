// A model's bitstream variants (config `variants`, docs/serving.md
// "Variants"): one model, several bitstreams computing the same inputs and
// outputs at different cost and accuracy. Loading resolves every variant's
// bitstream and checks that each can stand in for the others: the same
// geometry, input scale and class names, and a measured top-1 accuracy in
// every manifest. The first variant listed is the model's default: the
// operator's choice, not re-ranked when a measurement changes. Which
// variant answers a request is the scheduler's choice; until it routes,
// boards run the default variant.
#ifndef HGPIPE_SERVER_MODEL_VARIANTS_H_
#define HGPIPE_SERVER_MODEL_VARIANTS_H_

#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "proto/grpc_service.pb.h"
#include "server/model_config.h"
#include "server/model_repository.h"

namespace hgpipe::server {

// The one variant of a config without `variants`.
inline constexpr char kDefaultVariantName[] = "default";
inline constexpr int kMaxVariants = 16;
inline constexpr size_t kMaxVariantNameBytes = 64;

// Resolves entry->config's variants with `resolve` (each variant's
// bitstream, weights and xclbin standing in for the model's) into
// entry->variants, in config order, and copies the default variant's (the
// first's) kernel, manifest, scales and labels into entry. A config without
// `variants` gives one variant, "default", from the model's own fields, with
// `resolve`'s error unchanged. Other errors are InvalidArgument (or the
// resolver's code) naming the variant and the field, not the config file
// (the caller adds it), e.g.
//   weights: give each variant its own (the model has `variants`)
//   variants[1] 'skip1': name: appears twice
//   variants[1] 'skip1': weights: <the resolver's message>
//   variants[2] 'taylor': accuracy: its manifest states no measured top-1 ...
//   variants[2] 'taylor': classes: 12, variant 'full' has 10 (variants must
//     agree on inputs and outputs)
absl::Status ResolveModelVariants(ModelEntry* entry, const BitstreamResolver& resolve);

// The variants of a loaded model as model metadata parameters (gRPC
// ModelMetadataResponse.parameters, REST "parameters"): "variants" (names,
// comma-separated, in config order: the default first), "default_variant",
// and per variant
// "variant.NAME.KEY" for bitstream, interval_cycles, latency_cycles,
// clock_hz, images_per_second, latency_us and, when measured,
// top1_accuracy (a fraction) and accuracy_dataset.
void AddVariantParameters(
    const ModelEntry& entry,
    google::protobuf::Map<std::string, inference::InferParameter>* parameters);

// Whether `name` can name a variant: 1..kMaxVariantNameBytes of letters,
// digits, '_' and '-' (no '.' or ',': metadata keys and lists use them).
bool IsValidVariantName(absl::string_view name);

}  // namespace hgpipe::server

#endif  // HGPIPE_SERVER_MODEL_VARIANTS_H_
