#include "server/model_variants.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/client_text.h"

namespace hgpipe::server {
namespace {

// Fills a variant from a copy of the model entry whose config names the
// variant's bitstream, weights and xclbin: the resolver sees what it always
// sees.
absl::Status ResolveOne(const ModelEntry& model, const std::string& bitstream,
                        const std::string& weights, const std::string& xclbin,
                        const BitstreamResolver& resolve, VariantEntry* v) {
  ModelEntry e;
  e.directory = model.directory;
  e.config_path = model.config_path;
  e.config = model.config;
  e.config.clear_variants();
  e.config.set_bitstream(bitstream);
  e.config.set_weights(weights);
  e.config.set_xclbin(xclbin);
  if (absl::Status s = resolve(&e); !s.ok()) return s;
  v->bitstream = bitstream;
  v->weights = weights;
  v->xclbin = xclbin;
  v->manifest = std::move(e.manifest);
  v->kernel = std::move(e.kernel);
  v->logit_scale = e.logit_scale;
  v->input_scale = e.input_scale;
  v->labels = std::move(e.labels);
  return absl::OkStatus();
}

// The first way `v` cannot stand in for `ref`, as "field: why", or "".
std::string Disagreement(const VariantEntry& ref, const VariantEntry& v) {
  const accel::DeviceGeometry& a = ref.manifest.geometry;
  const accel::DeviceGeometry& b = v.manifest.geometry;
  auto differs = [&](absl::string_view field, auto mine, auto theirs) {
    return absl::StrCat(field, ": ", mine, ", variant '", ref.name, "' has ", theirs,
                        " (variants must agree on inputs and outputs)");
  };
  if (b.tokens != a.tokens) return differs("tokens", b.tokens, a.tokens);
  if (b.token_values != a.token_values) {
    return differs("token_values", b.token_values, a.token_values);
  }
  if (b.classes != a.classes) return differs("classes", b.classes, a.classes);
  // One preprocessing serves every variant, so their inputs mean the same.
  if (std::abs(v.input_scale - ref.input_scale) >
      1e-9 * std::max(std::abs(v.input_scale), std::abs(ref.input_scale))) {
    return differs("input_scale", v.input_scale, ref.input_scale);
  }
  if (v.labels != ref.labels) {
    for (size_t i = 0; i < std::max(v.labels.size(), ref.labels.size()); ++i) {
      const std::string mine = i < v.labels.size() ? Quote(v.labels[i]) : "none";
      const std::string theirs = i < ref.labels.size() ? Quote(ref.labels[i]) : "none";
      if (mine != theirs) return differs(absl::StrCat("labels[", i, "]"), mine, theirs);
    }
  }
  return "";
}

}  // namespace

void AddVariantParameters(const ModelEntry& entry,
                          google::protobuf::Map<std::string, inference::InferParameter>* out) {
  if (entry.variants.empty()) return;
  std::string names;
  for (const VariantEntry& v : entry.variants) {
    absl::StrAppend(&names, names.empty() ? "" : ",", v.name);
    const std::string key = absl::StrCat("variant.", v.name, ".");
    const accel::PipelineTiming& t = v.manifest.timing;
    (*out)[key + "bitstream"].set_string_param(v.bitstream);
    (*out)[key + "interval_cycles"].set_int64_param(static_cast<int64_t>(t.interval_cycles));
    (*out)[key + "latency_cycles"].set_int64_param(static_cast<int64_t>(t.latency_cycles));
    (*out)[key + "clock_hz"].set_double_param(t.clock_hz);
    (*out)[key + "images_per_second"].set_double_param(t.max_images_per_second());
    (*out)[key + "latency_us"].set_double_param(absl::ToDoubleMicroseconds(t.latency()));
    if (v.manifest.accuracy.measured()) {
      (*out)[key + "top1_accuracy"].set_double_param(v.manifest.accuracy.top1);
      (*out)[key + "accuracy_dataset"].set_string_param(v.manifest.accuracy.dataset);
    }
  }
  (*out)["variants"].set_string_param(names);
  (*out)["default_variant"].set_string_param(entry.variants.front().name);
}

bool IsValidVariantName(absl::string_view name) {
  if (name.empty() || name.size() > kMaxVariantNameBytes) return false;
  return std::all_of(name.begin(), name.end(),
                     [](char c) { return absl::ascii_isalnum(c) || c == '_' || c == '-'; });
}

absl::Status ResolveModelVariants(ModelEntry* entry, const BitstreamResolver& resolve) {
  const config::ModelConfig& c = entry->config;
  std::vector<VariantEntry> variants;
  if (c.variants().empty()) {
    VariantEntry v;
    v.name = kDefaultVariantName;
    if (absl::Status s = ResolveOne(*entry, c.bitstream(), c.weights(), c.xclbin(), resolve, &v);
        !s.ok()) {
      return s;
    }
    variants.push_back(std::move(v));
  } else {
    if (!c.weights().empty()) {
      return absl::InvalidArgumentError(
          "weights: give each variant its own (the model has `variants`)");
    }
    if (!c.xclbin().empty()) {
      return absl::InvalidArgumentError(
          "xclbin: give each variant its own (the model has `variants`)");
    }
    if (c.variants_size() > kMaxVariants) {
      return absl::InvalidArgumentError(
          absl::StrCat("variants: ", c.variants_size(), " are more than ", kMaxVariants));
    }
    absl::flat_hash_set<std::string> names;
    for (int i = 0; i < c.variants_size(); ++i) {
      const config::VariantConfig& vc = c.variants(i);
      const std::string where = absl::StrCat("variants[", i, "] ", Quote(vc.name()), ": ");
      if (!IsValidVariantName(vc.name())) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, "name: must be 1 to ", kMaxVariantNameBytes, " letters, digits, '_' or '-'"));
      }
      if (!names.insert(vc.name()).second) {
        return absl::InvalidArgumentError(absl::StrCat(where, "name: appears twice"));
      }
      VariantEntry v;
      v.name = vc.name();
      const std::string& bitstream = vc.bitstream().empty() ? c.bitstream() : vc.bitstream();
      if (absl::Status s = ResolveOne(*entry, bitstream, vc.weights(), vc.xclbin(), resolve, &v);
          !s.ok()) {
        const bool names_field =
            absl::StartsWith(s.message(), "weights:") || absl::StartsWith(s.message(), "xclbin:");
        return absl::Status(
            s.code() == absl::StatusCode::kNotFound ? absl::StatusCode::kInvalidArgument : s.code(),
            absl::StrCat(where, names_field ? "" : "bitstream: ", s.message()));
      }
      if (!v.manifest.accuracy.measured()) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, "accuracy: the manifest of ",
            v.weights.empty() ? absl::StrCat("bitstream '", bitstream, "'") : v.weights,
            " states no measured top-1 accuracy (a weight file's top1_accuracy and "
            "accuracy_dataset, an xclbin manifest's accuracy { }); every variant needs one"));
      }
      if (!variants.empty()) {
        if (std::string why = Disagreement(variants.front(), v); !why.empty()) {
          return absl::InvalidArgumentError(absl::StrCat(where, why));
        }
      }
      variants.push_back(std::move(v));
    }
  }
  const VariantEntry& d = variants.front();
  entry->manifest = d.manifest;
  entry->kernel = d.kernel;
  entry->logit_scale = d.logit_scale;
  entry->input_scale = d.input_scale;
  entry->labels = d.labels;
  entry->variants = std::move(variants);
  return absl::OkStatus();
}

}  // namespace hgpipe::server
