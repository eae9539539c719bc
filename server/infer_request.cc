#include "server/infer_request.h"

#include <algorithm>
#include <cstring>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/client_text.h"

namespace hgpipe::server {
namespace {

absl::Status Bad(const config::ModelConfig& c, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("model ", Quote(c.name()), ": ", what));
}

}  // namespace

namespace {

bool HasTyped(const inference::InferTensorContents& t) {
  return t.int_contents_size() > 0 || t.bool_contents_size() > 0 || t.int64_contents_size() > 0 ||
         t.uint_contents_size() > 0 || t.uint64_contents_size() > 0 || t.fp32_contents_size() > 0 ||
         t.fp64_contents_size() > 0 || t.bytes_contents_size() > 0;
}

std::string Shape(const google::protobuf::RepeatedField<int64_t>& s) {
  return absl::StrCat("[", absl::StrJoin(s, ", "), "]");
}

// Splits raw BYTES contents: each element a 4-byte little-endian length,
// then that many bytes.
absl::StatusOr<std::vector<absl::string_view>> SplitBytes(absl::string_view raw, int64_t n) {
  std::vector<absl::string_view> out;
  size_t pos = 0;
  while (pos < raw.size()) {
    if (raw.size() - pos < 4) {
      return absl::InvalidArgumentError(
          absl::StrCat("raw BYTES contents end inside the length of element ", out.size()));
    }
    uint32_t len;
    std::memcpy(&len, raw.data() + pos, 4);  // little-endian hosts
    pos += 4;
    if (len > raw.size() - pos) {
      return absl::InvalidArgumentError(absl::StrCat("raw BYTES element ", out.size(), " claims ",
                                                     len, " bytes but only ", raw.size() - pos,
                                                     " remain"));
    }
    out.emplace_back(raw.data() + pos, len);
    pos += len;
  }
  if (static_cast<int64_t>(out.size()) != n) {
    return absl::InvalidArgumentError(
        absl::StrCat("raw BYTES contents hold ", out.size(), " elements; the shape says ", n));
  }
  return out;
}

absl::Status PrepareDevicePatches(const inference::ModelInferRequest& req,
                                  const config::ModelConfig& c, int64_t n, int64_t per_image,
                                  std::optional<absl::string_view> raw, PreparedInput* p) {
  const auto& in = req.inputs(0);
  const int64_t elements = n * per_image;
  if (raw.has_value()) {
    if (static_cast<int64_t>(raw->size()) != elements) {
      return Bad(c, absl::StrCat("input ", Quote(in.name()), ": raw contents are ", raw->size(),
                                 " bytes; shape ", Shape(in.shape()), " of INT8 needs ", elements));
    }
    p->images = reinterpret_cast<const int8_t*>(raw->data());
    return absl::OkStatus();
  }
  const auto& typed = in.contents();
  if (typed.int_contents_size() != elements) {
    return Bad(
        c, absl::StrCat("input ", Quote(in.name()), ": int_contents holds ",
                        typed.int_contents_size(), " values; shape ", Shape(in.shape()), " needs ",
                        elements, " (INT8 travels in int_contents or raw_input_contents)"));
  }
  p->converted = std::make_unique<std::vector<int8_t>>(elements);
  for (int64_t i = 0; i < elements; ++i) {
    const int32_t v = typed.int_contents(static_cast<int>(i));
    if (v < -128 || v > 127) {
      return Bad(c, absl::StrCat("input ", Quote(in.name()), ": int_contents[", i, "] = ", v,
                                 " is outside INT8"));
    }
    (*p->converted)[i] = static_cast<int8_t>(v);
  }
  p->images = p->converted->data();
  return absl::OkStatus();
}

absl::Status PrepareEncoded(const inference::ModelInferRequest& req, const config::ModelConfig& c,
                            int64_t n, std::optional<absl::string_view> raw, PreparedInput* p) {
  const auto& in = req.inputs(0);
  if (raw.has_value()) {
    auto parts = SplitBytes(*raw, n);
    if (!parts.ok()) {
      return Bad(c, absl::StrCat("input ", Quote(in.name()), ": ", parts.status().message()));
    }
    p->encoded = *std::move(parts);
  } else {
    if (in.contents().bytes_contents_size() != n) {
      return Bad(
          c, absl::StrCat("input ", Quote(in.name()), ": bytes_contents holds ",
                          in.contents().bytes_contents_size(), " elements; the shape says ", n));
    }
    for (const std::string& b : in.contents().bytes_contents()) p->encoded.emplace_back(b);
  }
  for (size_t i = 0; i < p->encoded.size(); ++i) {
    if (p->encoded[i].empty()) {
      return Bad(c, absl::StrCat("input ", Quote(in.name()), ": image ", i, " is empty"));
    }
  }
  return absl::OkStatus();
}

absl::Status PreparePixels(const inference::ModelInferRequest& req, const config::ModelConfig& c,
                           int64_t n, std::optional<absl::string_view> raw, PreparedInput* p) {
  const auto& in = req.inputs(0);
  p->height = static_cast<int>(in.shape(1));
  p->width = static_cast<int>(in.shape(2));
  p->channels = static_cast<int>(in.shape(3));
  if (in.shape(1) < 1 || in.shape(2) < 1 || in.shape(1) > 65535 || in.shape(2) > 65535 ||
      (p->channels != 1 && p->channels != 3 && p->channels != 4)) {
    return Bad(c, absl::StrCat("input ", Quote(in.name()), ": shape ", Shape(in.shape()),
                               " is not [N, height, width, channels] with channels 1, 3 or 4"));
  }
  const int64_t elements = n * p->height * p->width * p->channels;
  if (raw.has_value()) {
    if (static_cast<int64_t>(raw->size()) != elements) {
      return Bad(c,
                 absl::StrCat("input ", Quote(in.name()), ": raw contents are ", raw->size(),
                              " bytes; shape ", Shape(in.shape()), " of UINT8 needs ", elements));
    }
    p->pixels = reinterpret_cast<const uint8_t*>(raw->data());
    return absl::OkStatus();
  }
  const auto& typed = in.contents();
  if (typed.uint_contents_size() != elements) {
    return Bad(c, absl::StrCat("input ", Quote(in.name()), ": uint_contents holds ",
                               typed.uint_contents_size(), " values; shape ", Shape(in.shape()),
                               " needs ", elements));
  }
  p->converted_pixels = std::make_unique<std::vector<uint8_t>>(elements);
  for (int64_t i = 0; i < elements; ++i) {
    const uint32_t v = typed.uint_contents(static_cast<int>(i));
    if (v > 255) {
      return Bad(c, absl::StrCat("input ", Quote(in.name()), ": uint_contents[", i, "] = ", v,
                                 " is outside UINT8"));
    }
    (*p->converted_pixels)[i] = static_cast<uint8_t>(v);
  }
  p->pixels = p->converted_pixels->data();
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<PreparedInput> PrepareInput(const inference::ModelInferRequest& req,
                                           const config::ModelConfig& c,
                                           std::optional<absl::string_view> shared_input) {
  const config::TensorConfig& want = c.input();
  if (req.inputs_size() == 0) {
    return Bad(c, absl::StrCat("the request has no inputs; expected ", Quote(want.name())));
  }
  if (req.inputs_size() != 1) {
    return Bad(c, absl::StrCat("the request has ", req.inputs_size(),
                               " inputs; the model takes one, ", Quote(want.name())));
  }
  PreparedInput p;
  const int64_t classes = c.output().dims(0);
  for (const auto& out : req.outputs()) {
    if (out.name() != c.output().name()) {
      return Bad(c, absl::StrCat("unknown output ", Quote(out.name()), " requested; the model has ",
                                 Quote(c.output().name())));
    }
    auto it = out.parameters().find("classification");
    if (it != out.parameters().end()) {
      const auto& param = it->second;
      const int64_t k = param.has_int64_param()    ? param.int64_param()
                        : param.has_uint64_param() ? static_cast<int64_t>(param.uint64_param())
                                                   : -1;
      if (k < 1 || k > classes) {
        return Bad(c, absl::StrCat("output ", Quote(out.name()),
                                   ": classification must be an integer from 1 to ", classes));
      }
      p.classification = static_cast<uint32_t>(k);
    }
  }
  const auto& in = req.inputs(0);
  if (in.name() != want.name()) {
    return Bad(c,
               absl::StrCat("unknown input ", Quote(in.name()), "; expected ", Quote(want.name())));
  }
  if (in.datatype() != want.datatype()) {
    return Bad(c, absl::StrCat("input ", Quote(in.name()), ": datatype ", in.datatype(),
                               " does not match the model's ", want.datatype()));
  }
  // Shape: [N] + dims, where a dim of -1 takes any size. An encoded-image
  // input ([N, 1]) also takes plain [N].
  const config::InputFormat format = c.input_format();
  const bool bare_bytes = format == config::ENCODED_IMAGE && in.shape_size() == 1;
  // Only for an error: every request passes here.
  auto want_shape = [&] { return absl::StrCat("[N, ", absl::StrJoin(want.dims(), ", "), "]"); };
  if (in.shape_size() != want.dims_size() + 1 && !bare_bytes) {
    return Bad(c, absl::StrCat("input ", Quote(in.name()), ": shape ", Shape(in.shape()),
                               " does not match ", want_shape()));
  }
  int64_t per_image = 1;
  for (int i = 0; i + 1 < in.shape_size(); ++i) {
    if (want.dims(i) != -1 && in.shape(i + 1) != want.dims(i)) {
      return Bad(c, absl::StrCat("input ", Quote(in.name()), ": shape ", Shape(in.shape()),
                                 " does not match ", want_shape()));
    }
    per_image *= in.shape(i + 1);
  }
  const int64_t n = in.shape(0);
  if (n < 1 || n > c.max_images_per_request()) {
    return Bad(c, absl::StrCat("input ", Quote(in.name()), ": ", n,
                               " images; a request carries 1 to ", c.max_images_per_request()));
  }
  p.n_images = static_cast<uint32_t>(n);
  std::optional<absl::string_view> raw = shared_input;
  if (shared_input.has_value()) {
    // As Triton: a tensor in shared memory carries no contents of its own.
    if (HasTyped(in.contents()) || req.raw_input_contents_size() > 0) {
      return Bad(c, absl::StrCat("input ", Quote(in.name()),
                                 " is in shared memory and the request also carries its "
                                 "contents; use one or the other"));
    }
  } else if (req.raw_input_contents_size() > 0) {
    raw = req.raw_input_contents(0);
    if (HasTyped(in.contents())) {
      return Bad(c, absl::StrCat("input ", Quote(in.name()),
                                 ": has typed contents and the request also has "
                                 "raw_input_contents; use one or the other"));
    }
    if (req.raw_input_contents_size() != 1) {
      return Bad(c, absl::StrCat("raw_input_contents has ", req.raw_input_contents_size(),
                                 " entries for 1 input"));
    }
  }
  absl::Status s;
  switch (format) {
    case config::ENCODED_IMAGE: s = PrepareEncoded(req, c, n, raw, &p); break;
    case config::PIXELS: s = PreparePixels(req, c, n, raw, &p); break;
    default: s = PrepareDevicePatches(req, c, n, per_image, raw, &p);
  }
  if (!s.ok()) return s;
  return p;
}

namespace {

// The non-negative integer value of a request parameter, or InvalidArgument
// naming it.
absl::StatusOr<uint64_t> UnsignedParameter(const config::ModelConfig& c, absl::string_view name,
                                           const inference::InferParameter& p,
                                           absl::string_view unit) {
  switch (p.parameter_choice_case()) {
    case inference::InferParameter::kUint64Param: return p.uint64_param();
    case inference::InferParameter::kInt64Param:
      if (p.int64_param() < 0) {
        return Bad(c, absl::StrCat("parameter ", Quote(name), ": ", p.int64_param(),
                                   " is negative; expected ", unit));
      }
      return static_cast<uint64_t>(p.int64_param());
    case inference::InferParameter::kBoolParam:
    case inference::InferParameter::kStringParam:
    case inference::InferParameter::kDoubleParam:
      return Bad(c, absl::StrCat("parameter ", Quote(name),
                                 ": must be an int64 or uint64 parameter (", unit, ")"));
    case inference::InferParameter::PARAMETER_CHOICE_NOT_SET: break;
  }
  return Bad(c, absl::StrCat("parameter ", Quote(name), ": no value; expected ", unit));
}

constexpr uint64_t kMaxTimeoutUs = 3'600'000'000;  // an hour

}  // namespace

absl::StatusOr<RequestPolicy> ParseRequestPolicy(const inference::ModelInferRequest& req,
                                                 const config::ModelConfig& c) {
  RequestPolicy policy;
  const uint32_t levels = c.batching().priority_levels();
  if (auto it = req.parameters().find("priority"); it != req.parameters().end()) {
    const std::string unit =
        absl::StrCat("a level from 1 (highest) to ", levels, ", or 0 for the model's default");
    absl::StatusOr<uint64_t> v = UnsignedParameter(c, "priority", it->second, unit);
    if (!v.ok()) return v.status();
    // As Triton: a level the model does not have is its default level.
    policy.priority = *v > levels ? 0 : static_cast<uint32_t>(*v);
  }
  uint64_t timeout_us = c.batching().default_timeout_us();
  if (auto it = req.parameters().find("timeout"); it != req.parameters().end()) {
    const std::string unit = "microseconds, 0 for the model's default";
    absl::StatusOr<uint64_t> v = UnsignedParameter(c, "timeout", it->second, unit);
    if (!v.ok()) return v.status();
    if (*v > kMaxTimeoutUs) {
      return Bad(c,
                 absl::StrCat("parameter 'timeout': ", *v, " microseconds is more than an hour"));
    }
    if (*v > 0) timeout_us = *v;
  }
  if (timeout_us > 0) {
    policy.timeout = absl::Microseconds(static_cast<int64_t>(timeout_us));
  }
  if (auto it = req.parameters().find("min_accuracy"); it != req.parameters().end()) {
    const inference::InferParameter& p = it->second;
    double v = 0;
    bool number = true;
    if (p.parameter_choice_case() == inference::InferParameter::kDoubleParam) {
      v = p.double_param();
    } else if (p.parameter_choice_case() == inference::InferParameter::kStringParam) {
      number = absl::SimpleAtod(p.string_param(), &v);
    } else {
      number = false;
    }
    if (!number || !(v > 0 && v <= 1)) {
      return Bad(c,
                 "parameter 'min_accuracy': must be a double (or decimal string) in "
                 "(0, 1], the least top-1 accuracy of the variant that answers");
    }
    policy.min_accuracy = v;
  }
  return policy;
}

absl::Time SchedulerDeadline(absl::Time arrival, absl::Time deadline, absl::Duration reserve) {
  if (deadline == absl::InfiniteFuture() || reserve <= absl::ZeroDuration()) return deadline;
  const absl::Duration quarter = std::max(absl::ZeroDuration(), (deadline - arrival) / 4);
  return deadline - std::min(reserve, quarter);
}

}  // namespace hgpipe::server
