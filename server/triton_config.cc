#include "server/triton_config.h"

#include <array>
#include <cstdint>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/json_util.h"

namespace hgpipe::server {
namespace {

constexpr std::array<std::pair<absl::string_view, inference::DataType>, 14> kTypes = {{
    {"BOOL", inference::TYPE_BOOL},
    {"UINT8", inference::TYPE_UINT8},
    {"UINT16", inference::TYPE_UINT16},
    {"UINT32", inference::TYPE_UINT32},
    {"UINT64", inference::TYPE_UINT64},
    {"INT8", inference::TYPE_INT8},
    {"INT16", inference::TYPE_INT16},
    {"INT32", inference::TYPE_INT32},
    {"INT64", inference::TYPE_INT64},
    {"FP16", inference::TYPE_FP16},
    {"FP32", inference::TYPE_FP32},
    {"FP64", inference::TYPE_FP64},
    {"BYTES", inference::TYPE_STRING},
    {"BF16", inference::TYPE_BF16},
}};

absl::string_view KserveDataType(inference::DataType t) {
  for (const auto& [name, type] : kTypes) {
    if (type == t) return name;
  }
  return "";
}

absl::Status Bad(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("config ", field, ": ", why));
}

absl::StatusOr<uint32_t> U32(absl::string_view field, uint64_t v) {
  if (v > UINT32_MAX) return Bad(field, absl::StrCat(v, " is too large"));
  return static_cast<uint32_t>(v);
}

// Our tensor from Triton's (name, data_type, dims).
absl::Status ApplyTensor(absl::string_view field, const std::string& name, inference::DataType type,
                         const google::protobuf::RepeatedField<int64_t>& dims,
                         config::TensorConfig* t) {
  if (!name.empty()) t->set_name(name);
  if (type != inference::TYPE_INVALID) {
    const absl::string_view dt = KserveDataType(type);
    if (dt.empty()) return Bad(field, "unknown data_type");
    t->set_datatype(std::string(dt));
  }
  if (!dims.empty()) {
    t->clear_dims();
    for (int64_t d : dims) t->add_dims(d);
  }
  return absl::OkStatus();
}

absl::Status ApplyParameter(const std::string& key, const std::string& value,
                            config::ModelConfig* c) {
  const std::string field = absl::StrCat("parameters.", key);
  uint64_t n = 0;
  const bool numeric = absl::SimpleAtoi(value, &n);
  auto need_number = [&]() -> absl::Status {
    return numeric ? absl::OkStatus() : Bad(field, absl::StrCat("'", value, "' is not a number"));
  };
  if (key == "bitstream") {
    c->set_bitstream(value);
  } else if (key == "weights") {
    c->set_weights(value);
  } else if (key == "xclbin") {
    c->set_xclbin(value);
  } else if (key == "input_format") {
    config::InputFormat f;
    if (!config::InputFormat_Parse(value, &f)) {
      return Bad(field,
                 absl::StrCat("'", value, "' is not DEVICE_PATCHES, ENCODED_IMAGE or PIXELS"));
    }
    c->set_input_format(f);
  } else if (key == "max_images_per_run") {
    if (absl::Status s = need_number(); !s.ok()) return s;
    auto v = U32(field, n);
    if (!v.ok()) return v.status();
    c->mutable_batching()->set_max_images_per_run(*v);
  } else if (key == "max_starvation_us") {
    if (absl::Status s = need_number(); !s.ok()) return s;
    c->mutable_batching()->set_max_starvation_us(n);
  } else if (key == "low_priority_run_images") {
    if (absl::Status s = need_number(); !s.ok()) return s;
    auto v = U32(field, n);
    if (!v.ok()) return v.status();
    c->mutable_batching()->set_low_priority_run_images(*v);
  } else if (key == "preprocess") {
    config::PreprocessConfig p;
    if (!google::protobuf::TextFormat::ParseFromString(value, &p)) {
      return Bad(field, "not a PreprocessConfig in protobuf text format");
    }
    *c->mutable_preprocess() = std::move(p);
  } else {
    return Bad(field,
               "unknown parameter (known: bitstream, input_format, "
               "max_images_per_run, max_starvation_us, "
               "low_priority_run_images, weights, xclbin, preprocess)");
  }
  return absl::OkStatus();
}

}  // namespace

inference::DataType TritonDataType(absl::string_view datatype) {
  for (const auto& [name, type] : kTypes) {
    if (name == datatype) return type;
  }
  return inference::TYPE_INVALID;
}

inference::ModelConfig ToTritonConfig(const config::ModelConfig& c) {
  inference::ModelConfig t;
  t.set_name(c.name());
  t.set_platform(absl::StrCat("hgpipe/", c.bitstream()));
  t.set_backend("hgpipe");
  t.set_max_batch_size(static_cast<int32_t>(c.max_images_per_request()));
  inference::ModelInput* in = t.add_input();
  in->set_name(c.input().name());
  in->set_data_type(TritonDataType(c.input().datatype()));
  if (c.input_format() == config::PIXELS) in->set_format(inference::ModelInput::FORMAT_NHWC);
  for (int64_t d : c.input().dims()) in->add_dims(d);
  inference::ModelOutput* out = t.add_output();
  out->set_name(c.output().name());
  out->set_data_type(TritonDataType(c.output().datatype()));
  for (int64_t d : c.output().dims()) out->add_dims(d);

  const config::BatchingConfig& b = c.batching();
  inference::ModelDynamicBatching* db = t.mutable_dynamic_batching();
  db->set_max_queue_delay_microseconds(b.max_queue_delay_us());
  db->set_priority_levels(b.priority_levels());
  db->set_default_priority_level(b.default_priority_level());
  inference::ModelQueuePolicy* q = db->mutable_default_queue_policy();
  q->set_timeout_action(inference::ModelQueuePolicy::REJECT);
  q->set_default_timeout_microseconds(b.default_timeout_us());
  q->set_allow_timeout_override(true);
  q->set_max_queue_size(b.max_queue_images());

  auto& p = *t.mutable_parameters();
  p["bitstream"].set_string_value(c.bitstream());
  p["input_format"].set_string_value(config::InputFormat_Name(c.input_format()));
  p["max_images_per_run"].set_string_value(absl::StrCat(b.max_images_per_run()));
  p["max_starvation_us"].set_string_value(absl::StrCat(b.max_starvation_us()));
  p["low_priority_run_images"].set_string_value(absl::StrCat(b.low_priority_run_images()));
  if (!c.weights().empty()) p["weights"].set_string_value(c.weights());
  if (!c.xclbin().empty()) p["xclbin"].set_string_value(c.xclbin());
  if (c.has_preprocess()) {
    google::protobuf::TextFormat::Printer printer;
    printer.SetSingleLineMode(true);
    std::string text;
    printer.PrintToString(c.preprocess(), &text);
    p["preprocess"].set_string_value(std::string(absl::StripTrailingAsciiWhitespace(text)));
  }
  return t;
}

absl::Status ApplyTritonConfigJson(absl::string_view json, config::ModelConfig* c) {
  inference::ModelConfig t;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  const auto parsed = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), &t, options);
  if (!parsed.ok()) {
    return Bad("", absl::StrCat("not a Triton ModelConfig in JSON: ",
                                std::string(parsed.message()).substr(0, 200)));
  }
  if (!t.name().empty() && t.name() != c->name()) {
    return Bad("name",
               absl::StrCat("'", t.name(), "' is not the model being loaded, '", c->name(), "'"));
  }
  if (!t.backend().empty() && t.backend() != "hgpipe") {
    return Bad("backend", absl::StrCat("'", t.backend(), "': this server runs 'hgpipe' only"));
  }
  if (!t.platform().empty()) {
    absl::string_view bitstream = t.platform();
    if (!absl::ConsumePrefix(&bitstream, "hgpipe/") || bitstream.empty()) {
      return Bad("platform", absl::StrCat("'", t.platform(), "' is not hgpipe/<bitstream>"));
    }
    c->set_bitstream(std::string(bitstream));
  }
  if (t.max_batch_size() < 0) return Bad("max_batch_size", "is negative");
  if (t.max_batch_size() > 0) c->set_max_images_per_request(t.max_batch_size());
  if (t.input_size() > 1) return Bad("input", "the model takes one input");
  if (t.output_size() > 1) return Bad("output", "the model has one output");
  if (t.input_size() == 1) {
    const inference::ModelInput& in = t.input(0);
    if (absl::Status s =
            ApplyTensor("input", in.name(), in.data_type(), in.dims(), c->mutable_input());
        !s.ok()) {
      return s;
    }
  }
  if (t.output_size() == 1) {
    const inference::ModelOutput& out = t.output(0);
    if (absl::Status s =
            ApplyTensor("output", out.name(), out.data_type(), out.dims(), c->mutable_output());
        !s.ok()) {
      return s;
    }
  }
  if (t.has_dynamic_batching()) {
    const inference::ModelDynamicBatching& db = t.dynamic_batching();
    config::BatchingConfig* b = c->mutable_batching();
    if (db.preferred_batch_size_size() > 0) {
      return Bad("dynamic_batching.preferred_batch_size",
                 "not supported: a run takes what is queued, up to max_images_per_run");
    }
    if (!db.priority_queue_policy().empty()) {
      return Bad("dynamic_batching.priority_queue_policy",
                 "not supported: one queue policy for every level");
    }
    b->set_max_queue_delay_us(db.max_queue_delay_microseconds());
    if (db.priority_levels() > 0) {
      auto v = U32("dynamic_batching.priority_levels", db.priority_levels());
      if (!v.ok()) return v.status();
      b->set_priority_levels(*v);
    }
    if (db.default_priority_level() > 0) {
      auto v = U32("dynamic_batching.default_priority_level", db.default_priority_level());
      if (!v.ok()) return v.status();
      b->set_default_priority_level(*v);
    }
    if (db.has_default_queue_policy()) {
      const inference::ModelQueuePolicy& q = db.default_queue_policy();
      if (q.timeout_action() == inference::ModelQueuePolicy::DELAY) {
        return Bad("dynamic_batching.default_queue_policy.timeout_action",
                   "DELAY is not supported: a request past its timeout is rejected");
      }
      b->set_default_timeout_us(q.default_timeout_microseconds());
      if (q.max_queue_size() > 0) b->set_max_queue_images(q.max_queue_size());
    }
  }
  for (const auto& [key, value] : t.parameters()) {
    if (absl::Status s = ApplyParameter(key, value.string_value(), c); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace hgpipe::server
