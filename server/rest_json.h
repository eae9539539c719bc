// KServe v2 REST bodies with Triton's extensions, to and from the gRPC
// messages the request pipeline takes: inference requests (JSON tensor data
// or binary tensor data after an Inference-Header-Content-Length JSON
// header), inference responses (JSON or binary outputs), and any other
// response message as JSON (protobuf field names, 64-bit integers as JSON
// numbers, every scalar present). Pure functions, RapidJSON.
#ifndef HGPIPE_SERVER_REST_JSON_H_
#define HGPIPE_SERVER_REST_JSON_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"
#include "proto/grpc_service.pb.h"
#include "server/log_control.h"
#include "server/trace_control.h"

namespace hgpipe::server {

// An inference request read from REST, and how its outputs go back.
struct RestInferRequest {
  inference::ModelInferRequest request;
  // The request parameter binary_data_output: outputs not named in
  // `outputs` (or named without binary_data) come back binary.
  bool binary_output = false;
  // Outputs named in the request with their binary_data parameter.
  std::vector<std::pair<std::string, bool>> output_binary;
};

// Reads `json` (the body, or its JSON header; parsed in place, so it is
// changed) and `binary` (the rest of the body after
// Inference-Header-Content-Length; moved into the request when it is the
// one input's data) into `out`, for model `model` version `version`.
// InvalidArgument saying what and where for: malformed JSON, a missing or
// mistyped field, data whose element count does not match the shape or
// whose values do not fit the datatype, a binary_data_size that overruns
// the binary data or leaves some unused, binary data without
// binary_data_size.
absl::Status ParseRestInferRequest(std::string& json, std::string binary, const std::string& model,
                                   const std::string& version, RestInferRequest* out);

// A response to a REST inference: the JSON (or JSON header) and, for
// outputs sent binary, views into `response`'s raw contents, in order.
struct RestInferReply {
  std::string json;
  std::vector<absl::string_view> binary;
};
RestInferReply WriteRestInferResponse(const inference::ModelInferResponse& response,
                                      const RestInferRequest& request);

// `message` as JSON (see the top of the file).
std::string MessageToJson(const google::protobuf::Message& message);
// The repeated message field `field` of `message` as a JSON array (the
// repository index is one on REST).
std::string RepeatedToJsonArray(const google::protobuf::Message& message, absl::string_view field);

// Triton's v2/logging bodies: a JSON object of settings (booleans, unsigned
// integers, strings) to a list of them, InvalidArgument saying what is
// wrong for anything else; and the list back as such an object.
absl::StatusOr<NamedLogSettings> ParseLogSettingsJson(absl::string_view json);
std::string LogSettingsToJson(const NamedLogSettings& settings);

// Triton's trace setting body (server/trace_control.h): an object of
// settings, each a string, an array of strings, or null (cleared).
// InvalidArgument naming the setting for any other value.
absl::StatusOr<NamedTraceSettings> ParseTraceSettingsJson(absl::string_view json);
// trace_level as an array, the others as strings, as Triton answers.
std::string TraceSettingsToJson(const NamedTraceSettings& settings);

// {"error": message}.
std::string ErrorJson(absl::string_view message);

}  // namespace hgpipe::server

#endif  // HGPIPE_SERVER_REST_JSON_H_
