#include "clients/client.h"

#include <utility>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/mutex.h"

namespace hgpipe::clients {

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target,
                                           const ChannelOptions& options) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(options.max_message_bytes);
  // A distinct argument set makes gRPC open a distinct subchannel (its own
  // TCP connection) instead of sharing one with equal channels.
  args.SetInt("hgpipe.connection_index", options.connection_index);
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (options.tls) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = options.tls_root_certs;
    ssl.pem_cert_chain = options.tls_client_cert;
    ssl.pem_private_key = options.tls_client_key;
    credentials = grpc::SslCredentials(ssl);
    if (!options.tls_target_name.empty()) args.SetSslTargetNameOverride(options.tls_target_name);
  }
  return grpc::CreateCustomChannel(target, credentials, args);
}

absl::Status FromGrpcStatus(const grpc::Status& status, absl::string_view rpc,
                            absl::string_view target) {
  if (status.ok()) return absl::OkStatus();
  // gRPC's and absl's canonical codes share their numbering.
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat(rpc, " to ", target, ": ", status.error_message()));
}

std::string StatusCodeName(int code) {
  if (code < 0 || code > static_cast<int>(absl::StatusCode::kUnauthenticated)) {
    return absl::StrCat("CODE_", code);
  }
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

struct InferenceClient::AsyncCall {
  grpc::ClientContext context;
  std::shared_ptr<const inference::ModelInferRequest> request;
  inference::ModelInferResponse response;
  InferCallback done;
  std::shared_ptr<InFlightCounter> in_flight;
};

absl::StatusOr<std::unique_ptr<InferenceClient>> InferenceClient::Create(const std::string& target,
                                                                         const Options& options) {
  if (target.empty()) {
    return absl::InvalidArgumentError("inference client: empty target");
  }
  if (options.channel.max_message_bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("inference client for ", target, ": max_message_bytes must be > 0"));
  }
  return std::unique_ptr<InferenceClient>(new InferenceClient(target, options));
}

InferenceClient::InferenceClient(std::string target, const Options& options)
    : target_(std::move(target)),
      options_(options),
      channel_(MakeChannel(target_, options.channel)),
      stub_(inference::GRPCInferenceService::NewStub(channel_)),
      health_stub_(grpc::health::v1::Health::NewStub(channel_)),
      in_flight_(std::make_shared<InFlightCounter>()) {}

InferenceClient::~InferenceClient() {
  hgpipe::MutexLock l(&in_flight_->mu);
  in_flight_->mu.Await(absl::Condition(
      +[](InFlightCounter* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(c->mu) { return c->calls == 0; },
      in_flight_.get()));
}

absl::Time InferenceClient::DeadlineFor(absl::Duration timeout) const {
  return absl::Now() + (timeout == absl::ZeroDuration() ? options_.timeout : timeout);
}

void InferenceClient::Prepare(grpc::ClientContext& context, absl::Time deadline) const {
  context.set_deadline(absl::ToChronoTime(deadline));
  for (const auto& [key, value] : options_.metadata) context.AddMetadata(key, value);
}

absl::StatusOr<bool> InferenceClient::Live() {
  grpc::ClientContext context;
  Prepare(context, DeadlineFor(absl::ZeroDuration()));
  inference::ServerLiveResponse response;
  grpc::Status s = stub_->ServerLive(&context, inference::ServerLiveRequest(), &response);
  if (!s.ok()) return FromGrpcStatus(s, "ServerLive", target_);
  return response.live();
}

absl::StatusOr<bool> InferenceClient::Ready() {
  grpc::ClientContext context;
  Prepare(context, DeadlineFor(absl::ZeroDuration()));
  inference::ServerReadyResponse response;
  grpc::Status s = stub_->ServerReady(&context, inference::ServerReadyRequest(), &response);
  if (!s.ok()) return FromGrpcStatus(s, "ServerReady", target_);
  return response.ready();
}

absl::StatusOr<bool> InferenceClient::ModelReady(absl::string_view model,
                                                 absl::string_view version) {
  grpc::ClientContext context;
  Prepare(context, DeadlineFor(absl::ZeroDuration()));
  inference::ModelReadyRequest request;
  request.set_name(std::string(model));
  request.set_version(std::string(version));
  inference::ModelReadyResponse response;
  grpc::Status s = stub_->ModelReady(&context, request, &response);
  if (!s.ok()) {
    return FromGrpcStatus(s, absl::StrCat("ModelReady(", model, ")"), target_);
  }
  return response.ready();
}

absl::StatusOr<inference::ServerMetadataResponse> InferenceClient::ServerMetadata() {
  grpc::ClientContext context;
  Prepare(context, DeadlineFor(absl::ZeroDuration()));
  inference::ServerMetadataResponse response;
  grpc::Status s = stub_->ServerMetadata(&context, inference::ServerMetadataRequest(), &response);
  if (!s.ok()) return FromGrpcStatus(s, "ServerMetadata", target_);
  return response;
}

absl::StatusOr<inference::ModelMetadataResponse> InferenceClient::ModelMetadata(
    absl::string_view model, absl::string_view version) {
  grpc::ClientContext context;
  Prepare(context, DeadlineFor(absl::ZeroDuration()));
  inference::ModelMetadataRequest request;
  request.set_name(std::string(model));
  request.set_version(std::string(version));
  inference::ModelMetadataResponse response;
  grpc::Status s = stub_->ModelMetadata(&context, request, &response);
  if (!s.ok()) {
    return FromGrpcStatus(s, absl::StrCat("ModelMetadata(", model, ")"), target_);
  }
  return response;
}

absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> InferenceClient::Health(
    absl::string_view service) {
  grpc::ClientContext context;
  Prepare(context, DeadlineFor(absl::ZeroDuration()));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(std::string(service));
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status s = health_stub_->Check(&context, request, &response);
  if (!s.ok()) {
    return FromGrpcStatus(s, absl::StrCat("Health.Check('", service, "')"), target_);
  }
  return response.status();
}

absl::StatusOr<inference::RepositoryIndexResponse> InferenceClient::RepositoryIndex(
    bool ready_only) {
  grpc::ClientContext context;
  Prepare(context, DeadlineFor(absl::ZeroDuration()));
  inference::RepositoryIndexRequest request;
  request.set_ready(ready_only);
  inference::RepositoryIndexResponse response;
  grpc::Status s = stub_->RepositoryIndex(&context, request, &response);
  if (!s.ok()) return FromGrpcStatus(s, "RepositoryIndex", target_);
  return response;
}

absl::Status InferenceClient::LoadModel(absl::string_view model, absl::Duration timeout,
                                        absl::string_view config_json) {
  grpc::ClientContext context;
  Prepare(context, DeadlineFor(timeout));
  inference::RepositoryModelLoadRequest request;
  request.set_model_name(std::string(model));
  if (!config_json.empty()) {
    (*request.mutable_parameters())["config"].set_string_param(std::string(config_json));
  }
  inference::RepositoryModelLoadResponse response;
  grpc::Status s = stub_->RepositoryModelLoad(&context, request, &response);
  return FromGrpcStatus(s, absl::StrCat("RepositoryModelLoad(", model, ")"), target_);
}

absl::StatusOr<inference::ModelConfig> InferenceClient::ModelConfig(absl::string_view model) {
  grpc::ClientContext context;
  Prepare(context, DeadlineFor(absl::ZeroDuration()));
  inference::ModelConfigRequest request;
  request.set_name(std::string(model));
  inference::ModelConfigResponse response;
  grpc::Status s = stub_->ModelConfig(&context, request, &response);
  if (!s.ok()) return FromGrpcStatus(s, absl::StrCat("ModelConfig(", model, ")"), target_);
  return response.config();
}

absl::Status InferenceClient::RegisterSystemSharedMemory(absl::string_view name,
                                                         absl::string_view key, uint64_t byte_size,
                                                         uint64_t offset) {
  grpc::ClientContext context;
  Prepare(context, DeadlineFor(absl::ZeroDuration()));
  inference::SystemSharedMemoryRegisterRequest request;
  request.set_name(std::string(name));
  request.set_key(std::string(key));
  request.set_offset(offset);
  request.set_byte_size(byte_size);
  inference::SystemSharedMemoryRegisterResponse response;
  grpc::Status s = stub_->SystemSharedMemoryRegister(&context, request, &response);
  return FromGrpcStatus(s, absl::StrCat("SystemSharedMemoryRegister(", name, ")"), target_);
}

absl::Status InferenceClient::UnregisterSystemSharedMemory(absl::string_view name) {
  grpc::ClientContext context;
  Prepare(context, DeadlineFor(absl::ZeroDuration()));
  inference::SystemSharedMemoryUnregisterRequest request;
  request.set_name(std::string(name));
  inference::SystemSharedMemoryUnregisterResponse response;
  grpc::Status s = stub_->SystemSharedMemoryUnregister(&context, request, &response);
  return FromGrpcStatus(s, absl::StrCat("SystemSharedMemoryUnregister(", name, ")"), target_);
}

absl::StatusOr<inference::SystemSharedMemoryStatusResponse>
InferenceClient::SystemSharedMemoryStatus(absl::string_view name) {
  grpc::ClientContext context;
  Prepare(context, DeadlineFor(absl::ZeroDuration()));
  inference::SystemSharedMemoryStatusRequest request;
  request.set_name(std::string(name));
  inference::SystemSharedMemoryStatusResponse response;
  grpc::Status s = stub_->SystemSharedMemoryStatus(&context, request, &response);
  if (!s.ok()) {
    return FromGrpcStatus(s, absl::StrCat("SystemSharedMemoryStatus(", name, ")"), target_);
  }
  return response;
}

absl::StatusOr<inference::ModelStatisticsResponse> InferenceClient::ModelStatistics(
    absl::string_view model) {
  grpc::ClientContext context;
  Prepare(context, DeadlineFor(absl::ZeroDuration()));
  inference::ModelStatisticsRequest request;
  request.set_name(std::string(model));
  inference::ModelStatisticsResponse response;
  grpc::Status s = stub_->ModelStatistics(&context, request, &response);
  if (!s.ok()) {
    return FromGrpcStatus(s, absl::StrCat("ModelStatistics(", model, ")"), target_);
  }
  return response;
}

absl::StatusOr<inference::LogSettingsResponse> InferenceClient::LogSettings(
    const inference::LogSettingsRequest& request) {
  grpc::ClientContext context;
  Prepare(context, DeadlineFor(absl::ZeroDuration()));
  inference::LogSettingsResponse response;
  grpc::Status s = stub_->LogSettings(&context, request, &response);
  if (!s.ok()) return FromGrpcStatus(s, "LogSettings", target_);
  return response;
}

absl::StatusOr<inference::TraceSettingResponse> InferenceClient::TraceSetting(
    const inference::TraceSettingRequest& request) {
  grpc::ClientContext context;
  Prepare(context, DeadlineFor(absl::ZeroDuration()));
  inference::TraceSettingResponse response;
  grpc::Status s = stub_->TraceSetting(&context, request, &response);
  if (!s.ok()) return FromGrpcStatus(s, "TraceSetting", target_);
  return response;
}

absl::Status InferenceClient::UnloadModel(absl::string_view model, absl::Duration timeout) {
  grpc::ClientContext context;
  Prepare(context, DeadlineFor(timeout));
  inference::RepositoryModelUnloadRequest request;
  request.set_model_name(std::string(model));
  inference::RepositoryModelUnloadResponse response;
  grpc::Status s = stub_->RepositoryModelUnload(&context, request, &response);
  return FromGrpcStatus(s, absl::StrCat("RepositoryModelUnload(", model, ")"), target_);
}

absl::StatusOr<inference::ModelInferResponse> InferenceClient::Infer(
    const inference::ModelInferRequest& request, absl::Duration timeout) {
  grpc::ClientContext context;
  Prepare(context, DeadlineFor(timeout));
  inference::ModelInferResponse response;
  grpc::Status s = stub_->ModelInfer(&context, request, &response);
  if (!s.ok()) {
    return FromGrpcStatus(s, absl::StrCat("ModelInfer(", request.model_name(), ")"), target_);
  }
  return response;
}

void InferenceClient::InferAsync(std::shared_ptr<const inference::ModelInferRequest> request,
                                 InferCallback done, absl::Duration timeout) {
  {
    hgpipe::MutexLock l(&in_flight_->mu);
    ++in_flight_->calls;
  }
  auto* call = new AsyncCall;
  Prepare(call->context, DeadlineFor(timeout));
  call->request = std::move(request);
  call->done = std::move(done);
  call->in_flight = in_flight_;
  stub_->async()->ModelInfer(
      &call->context, call->request.get(), &call->response,
      [call, target = target_](grpc::Status s) {
        std::unique_ptr<AsyncCall> owned(call);
        absl::StatusOr<inference::ModelInferResponse> result;
        if (s.ok()) {
          result = std::move(owned->response);
        } else {
          result = FromGrpcStatus(s, absl::StrCat("ModelInfer(", owned->request->model_name(), ")"),
                                  target);
        }
        InferCallback user_done = std::move(owned->done);
        std::shared_ptr<InFlightCounter> in_flight = std::move(owned->in_flight);
        owned.reset();
        user_done(std::move(result));
        hgpipe::MutexLock l(&in_flight->mu);
        --in_flight->calls;
      });
}

void InferenceClient::InferAsync(inference::ModelInferRequest request, InferCallback done,
                                 absl::Duration timeout) {
  InferAsync(std::make_shared<const inference::ModelInferRequest>(std::move(request)),
             std::move(done), timeout);
}

int64_t InferenceClient::InFlight() const {
  hgpipe::MutexLock l(&in_flight_->mu);
  return in_flight_->calls;
}

}  // namespace hgpipe::clients
