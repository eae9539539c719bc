#include "server/model_config.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"

namespace hgpipe::server {
namespace {

class CollectErrors : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    if (first_.empty()) {
      first_ = absl::StrCat("line ", line + 1, ", column ", column + 1, ": ",
                            message);
    }
  }
  const std::string& first() const { return first_; }

 private:
  std::string first_;
};

absl::Status FieldError(absl::string_view path, absl::string_view field,
                        absl::string_view why) {
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
  config::ModelConfig config;
  google::protobuf::TextFormat::Parser parser;
  CollectErrors errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text.str(), &config)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a valid ModelConfig: ", errors.first()));
  }
  return config;
}

void NormalizeModelConfig(const accel::BitstreamManifest& manifest,
                          config::ModelConfig* c) {
  const accel::DeviceGeometry& g = manifest.geometry;
  if (c->input().name().empty()) c->mutable_input()->set_name("INPUT");
  if (c->input().datatype().empty()) c->mutable_input()->set_datatype("INT8");
  if (c->input().dims().empty()) {
    c->mutable_input()->add_dims(g.tokens);
    c->mutable_input()->add_dims(g.token_values);
  }
  if (c->output().name().empty()) c->mutable_output()->set_name("OUTPUT");
  if (c->output().datatype().empty()) c->mutable_output()->set_datatype("INT32");
  if (c->output().dims().empty()) c->mutable_output()->add_dims(g.classes);
  config::BatchingConfig* b = c->mutable_batching();
  if (b->max_images_per_run() == 0) b->set_max_images_per_run(32);
  if (b->max_queue_images() == 0) b->set_max_queue_images(4096);
  if (c->max_images_per_request() == 0) c->set_max_images_per_request(256);
}

absl::Status ValidateModelConfig(const config::ModelConfig& c,
                                 const accel::BitstreamManifest& manifest,
                                 absl::string_view dir_name,
                                 absl::string_view path) {
  if (c.name() != dir_name) {
    return FieldError(path, "name",
                      absl::StrCat("'", c.name(), "' must equal the directory name '",
                                   dir_name, "'"));
  }
  const accel::DeviceGeometry& g = manifest.geometry;
  if (c.input().datatype() != "INT8") {
    return FieldError(path, "input.datatype",
                      absl::StrCat("'", c.input().datatype(),
                                   "' is not supported: the device takes INT8 patches"));
  }
  if (c.input().dims().size() != 2 || c.input().dims(0) != g.tokens ||
      c.input().dims(1) != g.token_values) {
    return FieldError(path, "input.dims",
                      absl::StrCat(Dims(c.input().dims()), " does not match bitstream '",
                                   manifest.name, "' ([", g.tokens, ", ",
                                   g.token_values, "])"));
  }
  if (c.output().datatype() != "INT32") {
    return FieldError(path, "output.datatype",
                      absl::StrCat("'", c.output().datatype(),
                                   "' is not supported: logits are INT32"));
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
                      absl::StrCat(c.batching().max_images_per_run(),
                                   " is more than 4096"));
  }
  if (c.batching().max_queue_delay_us() > 10'000'000) {
    return FieldError(path, "batching.max_queue_delay_us",
                      "more than 10 s makes no sense for a streaming pipeline");
  }
  if (c.max_images_per_request() > c.batching().max_queue_images()) {
    return FieldError(path, "max_images_per_request",
                      absl::StrCat(c.max_images_per_request(),
                                   " exceeds batching.max_queue_images (",
                                   c.batching().max_queue_images(),
                                   "): such a request could never be queued"));
  }
  return absl::OkStatus();
}

}  // namespace hgpipe::server
