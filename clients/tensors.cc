#include "clients/tensors.h"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "accel/verify_digest.h"

namespace hgpipe::clients {
namespace {

// Raw tensor contents are little-endian on the wire; decoding them with
// memcpy is only right on a little-endian host (x86, ARM as deployed).
static_assert(std::endian::native == std::endian::little,
              "raw tensor decoding assumes a little-endian host");

std::string ShapeString(absl::Span<const int64_t> shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ","), "]");
}

// Finds the output named `name` (empty: the first one).
absl::StatusOr<int> FindOutput(const inference::ModelInferResponse& response,
                               absl::string_view name) {
  if (response.outputs_size() == 0) {
    return absl::NotFoundError(
        absl::StrCat("response of model '", response.model_name(), "' has no outputs"));
  }
  if (name.empty()) return 0;
  for (int i = 0; i < response.outputs_size(); ++i) {
    if (response.outputs(i).name() == name) return i;
  }
  std::vector<std::string> names;
  for (const auto& o : response.outputs()) names.push_back(o.name());
  return absl::NotFoundError(absl::StrCat("response of model '", response.model_name(),
                                          "' has no output '", name,
                                          "' (outputs: ", absl::StrJoin(names, ", "), ")"));
}

template <typename T>
absl::StatusOr<OutputTensor<T>> ReadOutput(const inference::ModelInferResponse& response,
                                           absl::string_view name, absl::string_view datatype) {
  absl::StatusOr<int> index = FindOutput(response, name);
  if (!index.ok()) return index.status();
  const auto& tensor = response.outputs(*index);
  const std::string where =
      absl::StrCat("output '", tensor.name(), "' of model '", response.model_name(), "'");
  if (tensor.datatype() != datatype) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, " is ", tensor.datatype(), ", not ", datatype));
  }
  OutputTensor<T> out;
  out.shape.assign(tensor.shape().begin(), tensor.shape().end());
  const int64_t count = ElementCount(out.shape);
  if (count < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, " has a negative dimension in shape ", ShapeString(out.shape)));
  }
  if (response.raw_output_contents_size() > 0) {
    // One raw entry per output, in the order of `outputs`.
    if (response.raw_output_contents_size() != response.outputs_size()) {
      return absl::InvalidArgumentError(absl::StrCat("response of model '", response.model_name(),
                                                     "' has ", response.raw_output_contents_size(),
                                                     " raw_output_contents for ",
                                                     response.outputs_size(), " outputs"));
    }
    const std::string& raw = response.raw_output_contents(*index);
    if (raw.size() != static_cast<size_t>(count) * sizeof(T)) {
      return absl::InvalidArgumentError(absl::StrCat(where, " has ", raw.size(),
                                                     " raw bytes, shape ", ShapeString(out.shape),
                                                     " needs ", count * sizeof(T)));
    }
    out.values.resize(count);
    if (count > 0) std::memcpy(out.values.data(), raw.data(), raw.size());
    return out;
  }
  // Typed contents.
  if constexpr (std::is_same_v<T, int32_t>) {
    const auto& v = tensor.contents().int_contents();
    out.values.assign(v.begin(), v.end());
  } else {
    const auto& v = tensor.contents().fp32_contents();
    out.values.assign(v.begin(), v.end());
  }
  if (out.values.size() != static_cast<size_t>(count)) {
    return absl::InvalidArgumentError(absl::StrCat(where, " has ", out.values.size(),
                                                   " values, shape ", ShapeString(out.shape),
                                                   " needs ", count));
  }
  return out;
}

}  // namespace

int64_t ElementCount(absl::Span<const int64_t> shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) return -1;
    n *= d;
  }
  return n;
}

absl::StatusOr<inference::ModelInferRequest> MakeInt8Request(absl::string_view model,
                                                             absl::string_view input_name,
                                                             std::vector<int64_t> shape,
                                                             absl::Span<const int8_t> data) {
  const int64_t count = ElementCount(shape);
  if (shape.empty() || count < 0 || static_cast<size_t>(count) != data.size()) {
    return absl::InvalidArgumentError(absl::StrCat("request for model '", model, "': input '",
                                                   input_name, "' of shape ", ShapeString(shape),
                                                   " cannot hold ", data.size(), " bytes"));
  }
  inference::ModelInferRequest request;
  request.set_model_name(std::string(model));
  auto* input = request.add_inputs();
  input->set_name(std::string(input_name));
  input->set_datatype("INT8");
  for (int64_t d : shape) input->add_shape(d);
  request.add_raw_input_contents()->assign(reinterpret_cast<const char*>(data.data()), data.size());
  return request;
}

absl::StatusOr<inference::ModelInferRequest> MakeImageRequest(absl::string_view model,
                                                              absl::Span<const int8_t> images,
                                                              const ImageRequestOptions& options) {
  if (options.tokens <= 0 || options.token_values <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("request for model '", model,
                                                   "': image geometry ", options.tokens, " x ",
                                                   options.token_values, " must be positive"));
  }
  const size_t image_bytes = static_cast<size_t>(options.tokens) * options.token_values;
  if (images.empty() || images.size() % image_bytes != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("request for model '", model, "': ", images.size(),
                     " bytes are not a whole, non-zero number of ", image_bytes, "-byte images"));
  }
  const int64_t n = static_cast<int64_t>(images.size() / image_bytes);
  absl::StatusOr<inference::ModelInferRequest> request =
      MakeInt8Request(model, options.input_name, {n, options.tokens, options.token_values}, images);
  if (!request.ok()) return request.status();
  request->set_id(options.id);
  if (!options.output_name.empty()) {
    request->add_outputs()->set_name(options.output_name);
  }
  SetPriority(&*request, options.priority);
  SetTimeoutMicros(&*request, options.timeout_us);
  return request;
}

void SetPriority(inference::ModelInferRequest* request, uint64_t priority) {
  if (priority == 0) {
    request->mutable_parameters()->erase("priority");
  } else {
    (*request->mutable_parameters())["priority"].set_uint64_param(priority);
  }
}

void SetTimeoutMicros(inference::ModelInferRequest* request, uint64_t timeout_us) {
  if (timeout_us == 0) {
    request->mutable_parameters()->erase("timeout");
  } else {
    // Triton's clients send it as int64.
    (*request->mutable_parameters())["timeout"].set_int64_param(
        static_cast<int64_t>(std::min<uint64_t>(timeout_us, INT64_MAX)));
  }
}

void SetMinAccuracy(inference::ModelInferRequest* request, double min_accuracy) {
  if (min_accuracy == 0) {
    request->mutable_parameters()->erase("min_accuracy");
  } else {
    (*request->mutable_parameters())["min_accuracy"].set_double_param(min_accuracy);
  }
}

absl::StatusOr<inference::ModelInferRequest> MakeGrayPixelsRequest(
    absl::string_view model, absl::string_view input_name, absl::string_view output_name,
    int64_t height, int64_t width, absl::Span<const uint8_t> pixels) {
  const int64_t image_bytes = height > 0 && width > 0 ? height * width : 0;
  if (image_bytes == 0 || pixels.empty() || pixels.size() % image_bytes != 0) {
    return absl::InvalidArgumentError(absl::StrCat("request for model '", model,
                                                   "': ", pixels.size(),
                                                   " bytes are not a whole, "
                                                   "non-zero number of ",
                                                   height, " x ", width, " gray images"));
  }
  inference::ModelInferRequest request;
  request.set_model_name(std::string(model));
  auto* input = request.add_inputs();
  input->set_name(std::string(input_name));
  input->set_datatype("UINT8");
  for (int64_t d : {static_cast<int64_t>(pixels.size()) / image_bytes, height, width, int64_t{1}}) {
    input->add_shape(d);
  }
  request.add_raw_input_contents()->assign(reinterpret_cast<const char*>(pixels.data()),
                                           pixels.size());
  if (!output_name.empty()) request.add_outputs()->set_name(std::string(output_name));
  return request;
}

absl::StatusOr<OutputTensor<int32_t>> ReadInt32Output(const inference::ModelInferResponse& response,
                                                      absl::string_view name) {
  return ReadOutput<int32_t>(response, name, "INT32");
}

absl::StatusOr<OutputTensor<float>> ReadFp32Output(const inference::ModelInferResponse& response,
                                                   absl::string_view name) {
  return ReadOutput<float>(response, name, "FP32");
}

std::vector<int8_t> GenerateRandomImages(size_t n, uint64_t seed, size_t image_bytes) {
  std::vector<int8_t> out(n * image_bytes);
  // SplitMix64 in counter mode: fast (8 bytes per step) and defined the same
  // everywhere, unlike the standard library's distributions.
  uint64_t counter = seed * 0xD1B54A32D192ED03ull;
  size_t i = 0;
  for (; i + 8 <= out.size(); i += 8) {
    const uint64_t w = verify::SplitMix64(counter++);
    std::memcpy(out.data() + i, &w, 8);
  }
  if (i < out.size()) {
    const uint64_t w = verify::SplitMix64(counter++);
    std::memcpy(out.data() + i, &w, out.size() - i);
  }
  return out;
}

std::vector<int32_t> ExpectedVerifyLogits(absl::Span<const int8_t> image, int64_t classes) {
  std::vector<int32_t> logits(classes);
  verify::ExpectedLogits(image.data(), image.size(), static_cast<uint32_t>(classes), logits.data());
  return logits;
}

absl::Status CheckVerifyRow(absl::Span<const int8_t> image, absl::Span<const int32_t> row) {
  if (row.empty()) return absl::InvalidArgumentError("empty logits row");
  const std::vector<int32_t> expected = ExpectedVerifyLogits(image, row.size());
  for (size_t j = 0; j < row.size(); ++j) {
    if (row[j] != expected[j]) {
      return absl::DataLossError(
          absl::StrCat("logit ", j, " is ", row[j], ", the input's digest gives ", expected[j]));
    }
  }
  return absl::OkStatus();
}

}  // namespace hgpipe::clients
