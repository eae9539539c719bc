#include "server/model_config.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "scheduler/scheduler.h"

namespace hgpipe::server {
namespace {

class CollectErrors : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    if (first_.empty()) {
      first_ = absl::StrCat("line ", line + 1, ", column ", column + 1, ": ", message);
    }
  }
  const std::string& first() const { return first_; }

 private:
  std::string first_;
};

constexpr uint32_t kMaxPriorityLevels = 64;

absl::Status FieldError(absl::string_view path, absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", field, ": ", why));
}

std::string Dims(const google::protobuf::RepeatedField<int64_t>& d) {
  return absl::StrCat("[", absl::StrJoin(d, ", "), "]");
}

}  // namespace

absl::StatusOr<config::ModelConfig> ParseModelConfigFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream text;
  text << in.rdbuf();
  return ParseModelConfigText(text.str(), path);
}

absl::StatusOr<config::ModelConfig> ParseModelConfigText(const std::string& text,
                                                         absl::string_view path) {
  config::ModelConfig config;
  google::protobuf::TextFormat::Parser parser;
  CollectErrors errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text, &config)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a valid ModelConfig: ", errors.first()));
  }
  return config;
}

namespace {

constexpr std::array<float, 3> kImagenetMean = {0.485f, 0.456f, 0.406f};
constexpr std::array<float, 3> kImagenetStd = {0.229f, 0.224f, 0.225f};

// n if n = k * k for an integer k, else 0.
uint32_t ExactSqrt(uint32_t n) {
  uint32_t k = static_cast<uint32_t>(std::lround(std::sqrt(static_cast<double>(n))));
  return k * k == n ? k : 0;
}

void NormalizePreprocess(const ModelEntry& e, config::PreprocessConfig* p) {
  const accel::DeviceGeometry& g = e.manifest.geometry;
  if (p->channels() == 0) p->set_channels(3);
  if (p->cls_placeholder().empty()) p->set_cls_placeholder("replace_first_patch");
  if (p->patch_height() == 0 && p->patch_width() == 0 && g.token_values % p->channels() == 0) {
    const uint32_t side = ExactSqrt(g.token_values / p->channels());
    p->set_patch_height(side);
    p->set_patch_width(side);
  }
  if (p->height() == 0 && p->width() == 0 && p->patch_height() > 0 &&
      p->patch_height() == p->patch_width()) {
    const uint32_t patches = p->cls_placeholder() == "prepend" ? g.tokens - 1 : g.tokens;
    const uint32_t grid = ExactSqrt(patches);
    p->set_height(grid * p->patch_height());
    p->set_width(grid * p->patch_width());
  }
  if (p->resize().empty()) p->set_resize("none");
  if (p->resize_shorter_side() == 0) {
    p->set_resize_shorter_side(
        static_cast<uint32_t>(std::lround(std::max(p->height(), p->width()) * 256.0 / 224.0)));
  }
  if (p->filter().empty()) p->set_filter("bilinear");
  if (p->mean().empty()) {
    if (p->channels() == 1) {
      p->add_mean(0.449f);
    } else {
      for (float m : kImagenetMean) p->add_mean(m);
    }
  }
  if (p->stddev().empty()) {
    if (p->channels() == 1) {
      p->add_stddev(0.226f);
    } else {
      for (float m : kImagenetStd) p->add_stddev(m);
    }
  }
  if (p->quant_scale() == 0) {
    p->set_quant_scale(e.input_scale > 0 ? static_cast<float>(e.input_scale) : 1.0f / 32.0f);
  }
  if (p->max_pixels() == 0) p->set_max_pixels(25'000'000);
  if (p->value_order().empty()) p->set_value_order("hwc");
  if (!p->has_jpeg_scaled_decode()) p->set_jpeg_scaled_decode(true);
}

}  // namespace

void NormalizeModelConfig(const ModelEntry& e, config::ModelConfig* c) {
  const accel::DeviceGeometry& g = e.manifest.geometry;
  const config::InputFormat format = c->input_format();
  if (format != config::DEVICE_PATCHES) NormalizePreprocess(e, c->mutable_preprocess());
  config::TensorConfig* in = c->mutable_input();
  if (in->name().empty()) in->set_name("INPUT");
  if (in->datatype().empty()) {
    in->set_datatype(format == config::ENCODED_IMAGE ? "BYTES"
                     : format == config::PIXELS      ? "UINT8"
                                                     : "INT8");
  }
  if (in->dims().empty()) {
    if (format == config::ENCODED_IMAGE) {
      in->add_dims(1);
    } else if (format == config::PIXELS) {
      in->add_dims(-1);
      in->add_dims(-1);
      in->add_dims(c->preprocess().channels());
    } else {
      in->add_dims(g.tokens);
      in->add_dims(g.token_values);
    }
  }
  config::TensorConfig* out = c->mutable_output();
  if (out->name().empty()) out->set_name("OUTPUT");
  // Models with a real dequantization scale answer in FP32 by default.
  if (out->datatype().empty()) out->set_datatype(e.logit_scale != 1.0 ? "FP32" : "INT32");
  if (out->dims().empty()) out->add_dims(g.classes);
  config::BatchingConfig* b = c->mutable_batching();
  if (b->max_images_per_run() == 0) b->set_max_images_per_run(32);
  if (b->max_queue_images() == 0) b->set_max_queue_images(4096);
  if (b->priority_levels() == 0) b->set_priority_levels(1);
  if (b->default_priority_level() == 0) {
    b->set_default_priority_level(b->priority_levels());
  }
  // The scheduler's own defaults.
  const scheduler::ModelOptions defaults;
  if (b->max_starvation_us() == 0) {
    b->set_max_starvation_us(absl::ToInt64Microseconds(defaults.max_starvation));
  }
  if (b->low_priority_run_images() == 0) {
    b->set_low_priority_run_images(defaults.low_priority_run_images);
  }
  if (c->max_images_per_request() == 0) c->set_max_images_per_request(256);
  // A model with variants runs its default variant's files.
  if (!c->variants().empty() && !e.variants.empty()) {
    if (c->weights().empty()) c->set_weights(e.variants.front().weights);
    if (c->xclbin().empty()) c->set_xclbin(e.variants.front().xclbin);
  }
}

absl::StatusOr<preprocess::Options> PreprocessOptions(const config::ModelConfig& c,
                                                      const accel::DeviceGeometry& g) {
  const config::PreprocessConfig& p = c.preprocess();
  preprocess::Options o;
  o.tokens = static_cast<int>(g.tokens);
  o.token_values = static_cast<int>(g.token_values);
  o.height = static_cast<int>(p.height());
  o.width = static_cast<int>(p.width());
  o.channels = static_cast<int>(p.channels());
  o.patch_height = static_cast<int>(p.patch_height());
  o.patch_width = static_cast<int>(p.patch_width());
  if (p.cls_placeholder() == "replace_first_patch") {
    o.cls_placeholder = preprocess::ClsPlaceholder::kReplaceFirstPatch;
  } else if (p.cls_placeholder() == "rotate") {
    o.cls_placeholder = preprocess::ClsPlaceholder::kRotate;
  } else if (p.cls_placeholder() == "prepend") {
    o.cls_placeholder = preprocess::ClsPlaceholder::kPrepend;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("preprocess.cls_placeholder: '", p.cls_placeholder(),
                     "' is not replace_first_patch, rotate or prepend"));
  }
  if (p.value_order() == "hwc") {
    o.value_order = preprocess::ValueOrder::kHwc;
  } else if (p.value_order() == "chw") {
    o.value_order = preprocess::ValueOrder::kChw;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("preprocess.value_order: '", p.value_order(), "' is not hwc or chw"));
  }
  if (p.resize() == "none") {
    o.resize = preprocess::ResizeMode::kNone;
  } else if (p.resize() == "exact") {
    o.resize = preprocess::ResizeMode::kExact;
  } else if (p.resize() == "shorter_side_center_crop") {
    o.resize = preprocess::ResizeMode::kShorterSideThenCenterCrop;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "preprocess.resize: '", p.resize(), "' is not none, exact or shorter_side_center_crop"));
  }
  o.resize_shorter_side = static_cast<int>(p.resize_shorter_side());
  if (p.filter() == "bilinear") {
    o.filter = preprocess::ResizeFilter::kBilinear;
  } else if (p.filter() == "bicubic") {
    o.filter = preprocess::ResizeFilter::kBicubic;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("preprocess.filter: '", p.filter(), "' is not bilinear or bicubic"));
  }
  if (p.mean_size() != o.channels || p.stddev_size() != o.channels) {
    return absl::InvalidArgumentError(absl::StrCat(
        "preprocess.mean / preprocess.stddev: need ", o.channels,
        " values each (one per channel), got ", p.mean_size(), " and ", p.stddev_size()));
  }
  for (int i = 0; i < o.channels; ++i) {
    o.mean[i] = p.mean(i);
    o.stddev[i] = p.stddev(i);
  }
  o.quant_scale = p.quant_scale();
  o.quant_zero_point = p.quant_zero_point();
  o.max_pixels = p.max_pixels();
  o.jpeg_scaled_decode = !p.has_jpeg_scaled_decode() || p.jpeg_scaled_decode();
  // Written straight into a board's input slot (the scheduler's fill step).
  o.output_layout = preprocess::OutputLayout::kDevicePacked;
  if (absl::Status s = o.Validate(); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("preprocess: ", s.message()));
  }
  return o;
}

absl::Status ValidateModelConfig(const config::ModelConfig& c, const ModelEntry& e,
                                 absl::string_view dir_name, absl::string_view path) {
  if (c.name() != dir_name) {
    return FieldError(
        path, "name",
        absl::StrCat("'", c.name(), "' must equal the directory name '", dir_name, "'"));
  }
  const accel::BitstreamManifest& manifest = e.manifest;
  const accel::DeviceGeometry& g = manifest.geometry;
  const config::InputFormat format = c.input_format();
  const char* want_type = format == config::ENCODED_IMAGE ? "BYTES"
                          : format == config::PIXELS      ? "UINT8"
                                                          : "INT8";
  if (c.input().datatype() != want_type) {
    return FieldError(path, "input.datatype",
                      absl::StrCat("'", c.input().datatype(), "' does not fit input_format ",
                                   config::InputFormat_Name(format), " (", want_type, ")"));
  }
  if (format == config::DEVICE_PATCHES &&
      (c.input().dims().size() != 2 || c.input().dims(0) != g.tokens ||
       c.input().dims(1) != g.token_values)) {
    return FieldError(path, "input.dims",
                      absl::StrCat(Dims(c.input().dims()), " does not match bitstream '",
                                   manifest.name, "' ([", g.tokens, ", ", g.token_values, "])"));
  }
  if (format == config::ENCODED_IMAGE && (c.input().dims().size() != 1 || c.input().dims(0) != 1)) {
    return FieldError(path, "input.dims",
                      absl::StrCat(Dims(c.input().dims()),
                                   ": an encoded image input is [1] (one file per image)"));
  }
  if (format == config::PIXELS) {
    const auto& d = c.input().dims();
    const bool ok = d.size() == 3 &&
                    std::all_of(d.begin(), d.end(), [](int64_t v) { return v == -1 || v > 0; }) &&
                    (d[2] == -1 || d[2] == 1 || d[2] == 3 || d[2] == 4);
    if (!ok) {
      return FieldError(path, "input.dims",
                        absl::StrCat(Dims(d),
                                     ": pixels are [height, width, channels] "
                                     "(-1 for any; channels 1, 3 or 4)"));
    }
  }
  if (format != config::DEVICE_PATCHES) {
    auto o = PreprocessOptions(c, g);
    if (!o.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", o.status().message()));
  }
  if (c.output().datatype() != "INT32" && c.output().datatype() != "FP32") {
    return FieldError(
        path, "output.datatype",
        absl::StrCat("'", c.output().datatype(), "' is not supported: logits are INT32 or FP32"));
  }
  if (c.output().dims().size() != 1 || c.output().dims(0) != g.classes) {
    return FieldError(path, "output.dims",
                      absl::StrCat(Dims(c.output().dims()), " does not match bitstream '",
                                   manifest.name, "' ([", g.classes, "])"));
  }
  if (c.input().name() == c.output().name()) {
    return FieldError(path, "output.name", "must differ from input.name");
  }
  if (c.batching().max_images_per_run() > 4096) {
    return FieldError(path, "batching.max_images_per_run",
                      absl::StrCat(c.batching().max_images_per_run(), " is more than 4096"));
  }
  if (c.batching().max_queue_delay_us() > 10'000'000) {
    return FieldError(path, "batching.max_queue_delay_us",
                      "more than 10 s makes no sense for a streaming pipeline");
  }
  const config::BatchingConfig& b = c.batching();
  if (b.priority_levels() > kMaxPriorityLevels) {
    return FieldError(path, "batching.priority_levels",
                      absl::StrCat(b.priority_levels(), " is more than ", kMaxPriorityLevels));
  }
  if (b.default_priority_level() < 1 || b.default_priority_level() > b.priority_levels()) {
    return FieldError(path, "batching.default_priority_level",
                      absl::StrCat(b.default_priority_level(), " is outside the levels 1..",
                                   b.priority_levels(), " (batching.priority_levels)"));
  }
  if (b.max_starvation_us() > 60'000'000) {
    return FieldError(path, "batching.max_starvation_us",
                      "more than 60 s would let a level starve for good");
  }
  if (b.low_priority_run_images() > 4096) {
    return FieldError(path, "batching.low_priority_run_images",
                      absl::StrCat(b.low_priority_run_images(), " is more than 4096"));
  }
  if (b.default_timeout_us() > 3'600'000'000) {
    return FieldError(path, "batching.default_timeout_us",
                      "more than an hour; use 0 for no timeout");
  }
  if (c.max_images_per_request() > c.batching().max_queue_images()) {
    return FieldError(
        path, "max_images_per_request",
        absl::StrCat(c.max_images_per_request(), " exceeds batching.max_queue_images (",
                     c.batching().max_queue_images(), "): such a request could never be queued"));
  }
  return absl::OkStatus();
}

}  // namespace hgpipe::server
