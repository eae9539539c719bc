// hgpipe-client: talk to a KServe v2 server from the command line.
//
//   hgpipe-client [--url HOST:PORT] live
//   hgpipe-client ready [MODEL]
//   hgpipe-client health [SERVICE]
//   hgpipe-client metadata [MODEL]
//   hgpipe-client infer MODEL (--input FILE | --random N [--seed S])
//       [--priority P] [--timeout-us T]
//   hgpipe-client index
//   hgpipe-client load MODEL
//   hgpipe-client unload MODEL
//   hgpipe-client logging [NAME=VALUE ...]
//
// `infer` sends the images as one request and prints each image's top
// classes; for a model whose platform is "hgpipe/verify" it also checks that
// every output row is the digest of its own input image. Exit status: 0 on
// success, 1 on an error or a mismatch (the error, with its gRPC status code
// name, goes to stderr), 2 on a usage error.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "absl/strings/str_split.h"
#include "base/file.h"
#include "base/flags.h"
#include "clients/client.h"
#include "clients/tensors.h"

ABSL_FLAG(std::string, url, "localhost:8001", "The server's gRPC address.");
ABSL_FLAG(bool, ssl, false, "Connect with TLS (tritonclient's ssl=True).");
ABSL_FLAG(std::string, root_certificates, "",
          "--ssl: PEM file of the CAs trusted for the server (empty: the system's).");
ABSL_FLAG(std::string, private_key, "", "--ssl: PEM file of the client's key (mutual TLS).");
ABSL_FLAG(std::string, certificate_chain, "",
          "--ssl: PEM file of the client's certificate (mutual TLS).");
ABSL_FLAG(std::string, ssl_target_name, "",
          "--ssl: the name the server's certificate carries, if not the --url host.");
ABSL_FLAG(std::vector<std::string>, header, {},
          "KEY=VALUE sent as metadata with every call (comma-separate several), e.g. "
          "triton-grpc-protocol-admin-key=secret for a restricted API group.");
ABSL_FLAG(std::string, input, "",
          "infer: a file of raw int8 images, N * 150528 bytes (flat "
          "[N][196][768] patches).");
ABSL_FLAG(int, random, 0, "infer: send N seeded pseudo-random images.");
ABSL_FLAG(uint64_t, seed, 1, "infer: seed of --random.");
ABSL_FLAG(double, timeout, 30, "Deadline of each call, in seconds.");
ABSL_FLAG(int, top, 5, "infer: classes shown per image.");
ABSL_FLAG(std::vector<std::string>, image, {},
          "infer: image files (JPEG or PNG), comma-separated, for models that "
          "take encoded images.");
ABSL_FLAG(int, top_k, 5,
          "infer --image: classes the server returns per image (Triton's "
          "classification parameter).");
ABSL_FLAG(std::string, model_version, "", "Model version (empty: default).");
ABSL_FLAG(uint64_t, priority, 0,
          "infer: request priority level, 1 highest (0: the model's default).");
ABSL_FLAG(uint64_t, timeout_us, 0,
          "infer: the server answers DEADLINE_EXCEEDED instead of computing a "
          "request it cannot finish within this many microseconds of arrival "
          "(0: the model's default).");

namespace hgpipe::clients {
namespace {

constexpr char kUsage[] =
    "talks to a KServe v2 inference server.\n"
    "  hgpipe-client [--url HOST:PORT] live\n"
    "  hgpipe-client ready [MODEL]\n"
    "  hgpipe-client health [SERVICE]\n"
    "  hgpipe-client metadata [MODEL]\n"
    "  hgpipe-client infer MODEL (--input FILE | --random N [--seed S])\n"
    "  hgpipe-client infer MODEL --image FILE[,FILE...] [--top-k K]\n"
    "      infer options: [--priority P] [--timeout-us T]\n"
    "  hgpipe-client index             (the server's models and their state)\n"
    "  hgpipe-client load MODEL        (load or reload a model)\n"
    "  hgpipe-client unload MODEL\n"
    "  hgpipe-client logging [NAME=VALUE ...]\n"
    "      (show, or change, the server's log settings: log_verbose_level=1,\n"
    "      log_info=false, log_format=ISO8601, ...)\n"
    "  hgpipe-client trace [MODEL] [NAME=VALUE ...]\n"
    "      (show, or change, the global or MODEL's trace settings:\n"
    "      trace_level=TIMESTAMPS, trace_rate=100, trace_count=10; NAME= clears;\n"
    "      a list of values is comma-separated)";

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "hgpipe-client: error: %s: %s\n",
               StatusCodeName(static_cast<int>(status.code())).c_str(),
               std::string(status.message()).c_str());
  return 1;
}

int UsageError(const std::string& message) {
  std::fprintf(stderr, "hgpipe-client: %s\nusage: %s\n", message.c_str(), kUsage);
  return 2;
}

std::string Shape(const google::protobuf::RepeatedField<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

int Live(InferenceClient& client) {
  absl::StatusOr<bool> live = client.Live();
  if (!live.ok()) return Fail(live.status());
  std::printf("live: %s\n", *live ? "true" : "false");
  return *live ? 0 : 1;
}

int Ready(InferenceClient& client, const std::vector<std::string>& args) {
  if (args.size() > 1) return UsageError("ready takes at most one MODEL");
  if (args.empty()) {
    absl::StatusOr<bool> ready = client.Ready();
    if (!ready.ok()) return Fail(ready.status());
    std::printf("ready: %s\n", *ready ? "true" : "false");
    return *ready ? 0 : 1;
  }
  absl::StatusOr<bool> ready = client.ModelReady(args[0], absl::GetFlag(FLAGS_model_version));
  if (!ready.ok()) return Fail(ready.status());
  std::printf("model %s ready: %s\n", args[0].c_str(), *ready ? "true" : "false");
  return *ready ? 0 : 1;
}

int Health(InferenceClient& client, const std::vector<std::string>& args) {
  if (args.size() > 1) return UsageError("health takes at most one SERVICE");
  const std::string service = args.empty() ? "" : args[0];
  absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> status =
      client.Health(service);
  if (!status.ok()) return Fail(status.status());
  std::printf("health('%s'): %s\n", service.c_str(),
              grpc::health::v1::HealthCheckResponse::ServingStatus_Name(*status).c_str());
  return *status == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : 1;
}

int Metadata(InferenceClient& client, const std::vector<std::string>& args) {
  if (args.size() > 1) return UsageError("metadata takes at most one MODEL");
  if (args.empty()) {
    absl::StatusOr<inference::ServerMetadataResponse> m = client.ServerMetadata();
    if (!m.ok()) return Fail(m.status());
    std::printf("server: %s\nversion: %s\nextensions: %s\n", m->name().c_str(),
                m->version().c_str(), absl::StrJoin(m->extensions(), ", ").c_str());
    return 0;
  }
  absl::StatusOr<inference::ModelMetadataResponse> m =
      client.ModelMetadata(args[0], absl::GetFlag(FLAGS_model_version));
  if (!m.ok()) return Fail(m.status());
  std::printf("model: %s\nversions: %s\nplatform: %s\n", m->name().c_str(),
              absl::StrJoin(m->versions(), ", ").c_str(), m->platform().c_str());
  for (const auto& t : m->inputs()) {
    std::printf("input: %s %s %s\n", t.name().c_str(), t.datatype().c_str(),
                Shape(t.shape()).c_str());
  }
  for (const auto& t : m->outputs()) {
    std::printf("output: %s %s %s\n", t.name().c_str(), t.datatype().c_str(),
                Shape(t.shape()).c_str());
  }
  return 0;
}

absl::StatusOr<std::vector<int8_t>> LoadImages(size_t image_bytes) {
  const std::string path = absl::GetFlag(FLAGS_input);
  const int random = absl::GetFlag(FLAGS_random);
  if (path.empty() == (random <= 0)) {
    return absl::InvalidArgumentError(
        "infer needs exactly one of --input FILE or --random N (N > 0)");
  }
  if (random > 0) {
    return GenerateRandomImages(random, absl::GetFlag(FLAGS_seed), image_bytes);
  }
  absl::StatusOr<std::string> read = ReadWholeFile(path);
  if (!read.ok()) {
    return absl::Status(read.status().code(), absl::StrCat("--input ", read.status().message()));
  }
  const std::string& bytes = *read;
  if (bytes.empty() || bytes.size() % image_bytes != 0) {
    return absl::InvalidArgumentError(absl::StrCat("--input ", path, " holds ", bytes.size(),
                                                   " bytes, not a whole, non-zero number of ",
                                                   image_bytes, "-byte images"));
  }
  return std::vector<int8_t>(bytes.begin(), bytes.end());
}

// The logits of `response` as [n, classes] rows of doubles for printing,
// whatever their datatype (INT32 or FP32).
absl::StatusOr<std::vector<std::vector<double>>> LogitRows(
    const inference::ModelInferResponse& response, const std::string& output, int64_t n,
    std::vector<std::vector<int32_t>>* int_rows) {
  std::vector<int64_t> shape;
  std::vector<double> values;
  std::string datatype;
  for (const auto& o : response.outputs()) {
    if (o.name() == output) datatype = o.datatype();
  }
  if (datatype == "FP32") {
    absl::StatusOr<OutputTensor<float>> t = ReadFp32Output(response, output);
    if (!t.ok()) return t.status();
    shape = t->shape;
    values.assign(t->values.begin(), t->values.end());
  } else {
    absl::StatusOr<OutputTensor<int32_t>> t = ReadInt32Output(response, output);
    if (!t.ok()) return t.status();
    shape = t->shape;
    values.assign(t->values.begin(), t->values.end());
    if (shape.size() == 2 && shape[0] == n) {
      for (int64_t i = 0; i < n; ++i) {
        int_rows->emplace_back(t->values.begin() + i * shape[1],
                               t->values.begin() + (i + 1) * shape[1]);
      }
    }
  }
  if (shape.size() != 2 || shape[0] != n) {
    return absl::DataLossError(absl::StrCat("output '", output, "' has shape [",
                                            absl::StrJoin(shape, ", "), "], expected [", n,
                                            ", classes]"));
  }
  std::vector<std::vector<double>> rows;
  for (int64_t i = 0; i < n; ++i) {
    rows.emplace_back(values.begin() + i * shape[1], values.begin() + (i + 1) * shape[1]);
  }
  return rows;
}

// Models taking encoded images (a BYTES input): sends --image files and
// asks the server for the top --top-k classes of each.
int InferEncoded(InferenceClient& client, const std::string& model,
                 const inference::ModelMetadataResponse& metadata) {
  const std::vector<std::string> files = absl::GetFlag(FLAGS_image);
  if (files.empty()) {
    return UsageError(
        absl::StrCat("model ", model, " takes encoded images: use --image FILE[,FILE...]"));
  }
  inference::ModelInferRequest request;
  request.set_model_name(model);
  request.set_model_version(absl::GetFlag(FLAGS_model_version));
  auto* in = request.add_inputs();
  in->set_name(metadata.inputs(0).name());
  in->set_datatype("BYTES");
  in->add_shape(static_cast<int64_t>(files.size()));
  in->add_shape(1);
  std::string* raw = request.add_raw_input_contents();
  for (const std::string& path : files) {
    absl::StatusOr<std::string> read = ReadWholeFile(path);
    if (!read.ok()) {
      return Fail(
          absl::Status(read.status().code(), absl::StrCat("--image ", read.status().message())));
    }
    const std::string& bytes = *read;
    const uint32_t len = static_cast<uint32_t>(bytes.size());
    raw->append(reinterpret_cast<const char*>(&len), 4);  // little-endian
    raw->append(bytes);
  }
  SetPriority(&request, absl::GetFlag(FLAGS_priority));
  SetTimeoutMicros(&request, absl::GetFlag(FLAGS_timeout_us));
  auto* out = request.add_outputs();
  out->set_name(metadata.outputs(0).name());
  (*out->mutable_parameters())["classification"].set_int64_param(
      std::max(1, absl::GetFlag(FLAGS_top_k)));
  const absl::Time start = absl::Now();
  auto response = client.Infer(request, absl::Seconds(absl::GetFlag(FLAGS_timeout)));
  if (!response.ok()) return Fail(response.status());
  std::printf("model %s (%s): %zu image%s in %.2f ms\n", model.c_str(), metadata.platform().c_str(),
              files.size(), files.size() == 1 ? "" : "s",
              absl::ToDoubleMilliseconds(absl::Now() - start));
  const auto& tensor = response->outputs(0);
  if (tensor.datatype() != "BYTES" || tensor.shape_size() != 2 ||
      response->raw_output_contents_size() != 1) {
    return Fail(absl::DataLossError("the server did not answer with classifications"));
  }
  const std::string& r = response->raw_output_contents(0);
  const int64_t k = tensor.shape(1);
  size_t pos = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    std::printf("%s:\n", files[i].c_str());
    for (int64_t j = 0; j < k && pos + 4 <= r.size(); ++j) {
      uint32_t len;
      std::memcpy(&len, r.data() + pos, 4);
      // Triton's classification string: score:index[:label].
      const std::vector<std::string> f =
          absl::StrSplit(r.substr(pos + 4, len), absl::MaxSplits(':', 2));
      pos += 4 + len;
      std::printf("  %lld. %s%s (class %s, score %s)\n", static_cast<long long>(j + 1),
                  f.size() > 2 ? f[2].c_str() : "", f.size() > 2 ? "" : "class",
                  f.size() > 1 ? f[1].c_str() : "?", f[0].c_str());
    }
  }
  return 0;
}

int Infer(InferenceClient& client, const std::vector<std::string>& args) {
  if (args.size() != 1) return UsageError("infer takes exactly one MODEL");
  const std::string& model = args[0];
  const std::string version = absl::GetFlag(FLAGS_model_version);
  absl::StatusOr<inference::ModelMetadataResponse> metadata = client.ModelMetadata(model, version);
  if (!metadata.ok()) return Fail(metadata.status());
  if (metadata->inputs_size() != 1 || metadata->outputs_size() < 1) {
    return Fail(absl::FailedPreconditionError(
        absl::StrCat("model ", model, " has ", metadata->inputs_size(), " inputs and ",
                     metadata->outputs_size(), " outputs; hgpipe-client sends one image input")));
  }
  const auto& input = metadata->inputs(0);
  if (input.datatype() == "BYTES") return InferEncoded(client, model, *metadata);
  if (input.datatype() != "INT8") {
    return Fail(absl::FailedPreconditionError(absl::StrCat("model ", model, " input '",
                                                           input.name(), "' is ", input.datatype(),
                                                           ", hgpipe-client sends INT8 images")));
  }
  ImageRequestOptions options;
  options.input_name = input.name();
  options.output_name = metadata->outputs(0).name();
  options.priority = absl::GetFlag(FLAGS_priority);
  options.timeout_us = absl::GetFlag(FLAGS_timeout_us);
  if (input.shape_size() == 3 && input.shape(1) > 0 && input.shape(2) > 0) {
    options.tokens = input.shape(1);
    options.token_values = input.shape(2);
  }
  const size_t image_bytes = static_cast<size_t>(options.tokens) * options.token_values;
  absl::StatusOr<std::vector<int8_t>> images = LoadImages(image_bytes);
  if (!images.ok()) {
    if (absl::IsInvalidArgument(images.status()) && absl::GetFlag(FLAGS_input).empty()) {
      return UsageError(std::string(images.status().message()));
    }
    return Fail(images.status());
  }
  const int64_t n = static_cast<int64_t>(images->size() / image_bytes);
  absl::StatusOr<inference::ModelInferRequest> request = MakeImageRequest(model, *images, options);
  if (!request.ok()) return Fail(request.status());
  request->set_model_version(version);

  const absl::Time start = absl::Now();
  absl::StatusOr<inference::ModelInferResponse> response =
      client.Infer(*request, absl::Seconds(absl::GetFlag(FLAGS_timeout)));
  const absl::Duration round_trip = absl::Now() - start;
  if (!response.ok()) return Fail(response.status());

  std::vector<std::vector<int32_t>> int_rows;
  absl::StatusOr<std::vector<std::vector<double>>> rows =
      LogitRows(*response, options.output_name, n, &int_rows);
  if (!rows.ok()) return Fail(rows.status());

  std::printf("model %s (%s): %lld image%s in %.2f ms\n", model.c_str(),
              metadata->platform().c_str(), static_cast<long long>(n), n == 1 ? "" : "s",
              absl::ToDoubleMilliseconds(round_trip));
  const bool check = metadata->platform() == kVerifyPlatform;
  int mismatches = 0;
  for (int64_t i = 0; i < n; ++i) {
    std::vector<std::string> top;
    for (const auto& [cls, value] :
         TopK<double>((*rows)[i], std::max(0, absl::GetFlag(FLAGS_top)))) {
      top.push_back(absl::StrFormat("%d (%g)", cls, value));
    }
    std::printf("image %lld: top-%zu: %s\n", static_cast<long long>(i), top.size(),
                absl::StrJoin(top, ", ").c_str());
    if (!check) continue;
    absl::Status s =
        int_rows.empty()
            ? absl::InvalidArgumentError("verify output is not INT32")
            : CheckVerifyRow(absl::MakeConstSpan(*images).subspan(i * image_bytes, image_bytes),
                             int_rows[i]);
    if (s.ok()) {
      std::printf("image %lld: matches its input digest\n", static_cast<long long>(i));
    } else {
      ++mismatches;
      std::printf("image %lld: MISMATCH: %s\n", static_cast<long long>(i),
                  std::string(s.message()).c_str());
    }
  }
  if (mismatches > 0) {
    return Fail(absl::DataLossError(
        absl::StrCat(mismatches, " of ", n, " images do not match their input digest")));
  }
  return 0;
}

int Index(InferenceClient& client, const std::vector<std::string>& args) {
  if (!args.empty()) return UsageError("index takes no arguments");
  absl::StatusOr<inference::RepositoryIndexResponse> index = client.RepositoryIndex();
  if (!index.ok()) return Fail(index.status());
  for (const auto& m : index->models()) {
    std::printf("%-24s %-3s %-12s %s\n", m.name().c_str(), m.version().c_str(), m.state().c_str(),
                m.reason().c_str());
  }
  return 0;
}

int LoadOrUnload(InferenceClient& client, const std::string& command,
                 const std::vector<std::string>& args) {
  if (args.size() != 1) return UsageError(absl::StrCat(command, " takes exactly one MODEL"));
  const absl::Duration timeout = absl::Seconds(absl::GetFlag(FLAGS_timeout));
  absl::Status s =
      command == "load" ? client.LoadModel(args[0], timeout) : client.UnloadModel(args[0], timeout);
  if (!s.ok()) return Fail(s);
  std::printf("model %s %s\n", args[0].c_str(), command == "load" ? "loaded" : "unloaded");
  return 0;
}

// Values typed as tritonclient types them: true / false a bool, digits an
// unsigned integer, anything else a string; the server checks each against
// its setting.
int Logging(InferenceClient& client, const std::vector<std::string>& args) {
  inference::LogSettingsRequest request;
  for (const std::string& a : args) {
    const size_t eq = a.find('=');
    if (eq == std::string::npos || eq == 0) {
      return UsageError(absl::StrCat("logging: '", a, "': expected NAME=VALUE"));
    }
    const std::string value = a.substr(eq + 1);
    auto& setting = (*request.mutable_settings())[a.substr(0, eq)];
    uint32_t number = 0;
    if (value == "true" || value == "false") {
      setting.set_bool_param(value == "true");
    } else if (!value.empty() && absl::ascii_isdigit(value[0]) &&
               absl::SimpleAtoi(value, &number)) {
      setting.set_uint32_param(number);
    } else {
      setting.set_string_param(value);
    }
  }
  absl::StatusOr<inference::LogSettingsResponse> now = client.LogSettings(request);
  if (!now.ok()) return Fail(now.status());
  std::map<std::string, std::string> lines;  // sorted by name
  for (const auto& [name, v] : now->settings()) {
    using V = inference::LogSettingsResponse::SettingValue;
    switch (v.parameter_choice_case()) {
      case V::kBoolParam: lines[name] = v.bool_param() ? "true" : "false"; break;
      case V::kUint32Param: lines[name] = absl::StrCat(v.uint32_param()); break;
      default: lines[name] = absl::StrCat("\"", v.string_param(), "\"");
    }
  }
  for (const auto& [name, value] : lines) std::printf("%s %s\n", name.c_str(), value.c_str());
  return 0;
}

// A first argument without '=' names the model; each NAME=VALUE sets a
// setting to VALUE's comma-separated values, NAME= clears it.
int Trace(InferenceClient& client, const std::vector<std::string>& args) {
  inference::TraceSettingRequest request;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    const size_t eq = a.find('=');
    if (i == 0 && eq == std::string::npos) {
      request.set_model_name(a);
      continue;
    }
    if (eq == std::string::npos || eq == 0) {
      return UsageError(absl::StrCat("trace: '", a, "': expected NAME=VALUE"));
    }
    auto* values = (*request.mutable_settings())[a.substr(0, eq)].mutable_value();
    if (eq + 1 == a.size()) continue;
    for (absl::string_view v : absl::StrSplit(absl::string_view(a).substr(eq + 1), ',')) {
      values->Add(std::string(v));
    }
  }
  absl::StatusOr<inference::TraceSettingResponse> now = client.TraceSetting(request);
  if (!now.ok()) return Fail(now.status());
  std::map<std::string, std::string> lines;  // sorted by name
  for (const auto& [name, v] : now->settings()) lines[name] = absl::StrJoin(v.value(), ",");
  for (const auto& [name, value] : lines) std::printf("%s %s\n", name.c_str(), value.c_str());
  return 0;
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  hgpipe::HandleHelpFlag(argc, argv, __FILE__);
  DashesToUnderscores(argc, argv);
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() < 2) return UsageError("missing a command");
  const std::string command = positional[1];
  const std::vector<std::string> args(positional.begin() + 2, positional.end());
  InferenceClient::Options options;
  options.timeout = absl::Seconds(absl::GetFlag(FLAGS_timeout));
  if (absl::GetFlag(FLAGS_ssl)) {
    options.channel.tls = true;
    auto read = [](const std::string& path, std::string* out) {
      if (path.empty()) return true;
      absl::StatusOr<std::string> text = ReadWholeFile(path);
      if (text.ok()) *out = *std::move(text);
      return text.ok();
    };
    const std::string root = absl::GetFlag(FLAGS_root_certificates);
    const std::string key = absl::GetFlag(FLAGS_private_key);
    const std::string chain = absl::GetFlag(FLAGS_certificate_chain);
    for (const auto& [path, out] : {std::pair{root, &options.channel.tls_root_certs},
                                    std::pair{key, &options.channel.tls_client_key},
                                    std::pair{chain, &options.channel.tls_client_cert}}) {
      if (!read(path, out))
        return Fail(absl::InvalidArgumentError(absl::StrCat("cannot read ", path)));
    }
    options.channel.tls_target_name = absl::GetFlag(FLAGS_ssl_target_name);
  }
  for (const std::string& h : absl::GetFlag(FLAGS_header)) {
    const size_t eq = h.find('=');
    if (eq == std::string::npos || eq == 0)
      return UsageError(absl::StrCat("--header '", h, "': expected KEY=VALUE"));
    options.metadata.emplace_back(absl::AsciiStrToLower(h.substr(0, eq)), h.substr(eq + 1));
  }
  absl::StatusOr<std::unique_ptr<InferenceClient>> client =
      InferenceClient::Create(absl::GetFlag(FLAGS_url), options);
  if (!client.ok()) return Fail(client.status());
  if (command == "live") {
    if (!args.empty()) return UsageError("live takes no arguments");
    return Live(**client);
  }
  if (command == "ready") return Ready(**client, args);
  if (command == "health") return Health(**client, args);
  if (command == "metadata") return Metadata(**client, args);
  if (command == "infer") return Infer(**client, args);
  if (command == "index") return Index(**client, args);
  if (command == "logging") return Logging(**client, args);
  if (command == "trace") return Trace(**client, args);
  if (command == "load" || command == "unload") {
    return LoadOrUnload(**client, command, args);
  }
  return UsageError(absl::StrCat("unknown command '", command, "'"));
}

}  // namespace
}  // namespace hgpipe::clients

int main(int argc, char** argv) { return hgpipe::clients::Main(argc, argv); }
