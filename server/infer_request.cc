#include "server/infer_request.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace hgpipe::server {
namespace {

absl::Status Bad(const config::ModelConfig& c, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("model '", c.name(), "': ", what));
}

}  // namespace

absl::StatusOr<PreparedInput> PrepareInput(const inference::ModelInferRequest& req,
                                           const config::ModelConfig& c) {
  const config::TensorConfig& want = c.input();
  if (req.inputs_size() == 0) {
    return Bad(c, absl::StrCat("the request has no inputs; expected '",
                               want.name(), "'"));
  }
  if (req.inputs_size() != 1) {
    return Bad(c, absl::StrCat("the request has ", req.inputs_size(),
                               " inputs; the model takes one, '", want.name(), "'"));
  }
  for (const auto& out : req.outputs()) {
    if (out.name() != c.output().name()) {
      return Bad(c, absl::StrCat("unknown output '", out.name(), "' requested; the model has '",
                                 c.output().name(), "'"));
    }
  }
  const auto& in = req.inputs(0);
  const std::string where = absl::StrCat("input '", in.name(), "'");
  if (in.name() != want.name()) {
    return Bad(c, absl::StrCat("unknown input '", in.name(), "'; expected '",
                               want.name(), "'"));
  }
  if (in.datatype() != want.datatype()) {
    return Bad(c, absl::StrCat(where, ": datatype ", in.datatype(),
                               " does not match the model's ", want.datatype()));
  }
  const std::string want_shape =
      absl::StrCat("[N, ", absl::StrJoin(want.dims(), ", "), "]");
  if (in.shape_size() != want.dims_size() + 1) {
    return Bad(c, absl::StrCat(where, ": shape [", absl::StrJoin(in.shape(), ", "),
                               "] does not match ", want_shape));
  }
  int64_t per_image = 1;
  for (int i = 0; i < want.dims_size(); ++i) {
    if (in.shape(i + 1) != want.dims(i)) {
      return Bad(c, absl::StrCat(where, ": shape [", absl::StrJoin(in.shape(), ", "),
                                 "] does not match ", want_shape));
    }
    per_image *= want.dims(i);
  }
  const int64_t n = in.shape(0);
  if (n < 1 || n > c.max_images_per_request()) {
    return Bad(c, absl::StrCat(where, ": ", n, " images; a request carries 1 to ",
                               c.max_images_per_request()));
  }
  const int64_t elements = n * per_image;
  PreparedInput p;
  p.n_images = static_cast<uint32_t>(n);
  const auto& typed = in.contents();
  const bool has_typed = typed.int_contents_size() > 0 || typed.bool_contents_size() > 0 ||
                         typed.int64_contents_size() > 0 || typed.uint_contents_size() > 0 ||
                         typed.uint64_contents_size() > 0 || typed.fp32_contents_size() > 0 ||
                         typed.fp64_contents_size() > 0 || typed.bytes_contents_size() > 0;
  if (req.raw_input_contents_size() > 0) {
    if (has_typed) {
      return Bad(c, absl::StrCat(where, ": has typed contents and the request also has "
                                        "raw_input_contents; use one or the other"));
    }
    if (req.raw_input_contents_size() != 1) {
      return Bad(c, absl::StrCat("raw_input_contents has ", req.raw_input_contents_size(),
                                 " entries for 1 input"));
    }
    const std::string& raw = req.raw_input_contents(0);
    if (static_cast<int64_t>(raw.size()) != elements) {
      return Bad(c, absl::StrCat(where, ": raw contents are ", raw.size(),
                                 " bytes; shape [", absl::StrJoin(in.shape(), ", "),
                                 "] of INT8 needs ", elements));
    }
    p.images = reinterpret_cast<const int8_t*>(raw.data());
    return p;
  }
  if (typed.int_contents_size() != elements) {
    return Bad(c, absl::StrCat(where, ": int_contents holds ", typed.int_contents_size(),
                               " values; shape [", absl::StrJoin(in.shape(), ", "),
                               "] needs ", elements, " (INT8 travels in int_contents "
                               "or raw_input_contents)"));
  }
  p.converted = std::make_unique<std::vector<int8_t>>(elements);
  for (int64_t i = 0; i < elements; ++i) {
    const int32_t v = typed.int_contents(static_cast<int>(i));
    if (v < -128 || v > 127) {
      return Bad(c, absl::StrCat(where, ": int_contents[", i, "] = ", v,
                                 " is outside INT8"));
    }
    (*p.converted)[i] = static_cast<int8_t>(v);
  }
  p.images = p.converted->data();
  return p;
}

}  // namespace hgpipe::server
