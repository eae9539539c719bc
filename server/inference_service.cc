#include "server/inference_service.h"

#include <chrono>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "server/client_text.h"
#include "server/shared_memory_api.h"

namespace hgpipe::server {

grpc::Status ToGrpcStatus(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  // absl and gRPC share the canonical code numbering. Messages quote client
  // text through Quote (client_text.h); the bound is a safety net.
  const absl::Status b = BoundedStatus(s);
  return grpc::Status(static_cast<grpc::StatusCode>(b.code()), std::string(b.message()));
}

namespace {

grpc::ServerUnaryReactor* Answer(grpc::CallbackServerContext* ctx, const absl::Status& s) {
  auto* r = ctx->DefaultReactor();
  r->Finish(ToGrpcStatus(s));
  return r;
}

// The call's gRPC deadline, or InfiniteFuture. gRPC reports "no deadline"
// as the largest time point: one this far away is none.
absl::Time CallDeadline(const grpc::CallbackServerContext& ctx) {
  constexpr auto kNoDeadline = std::chrono::hours(24 * 365 * 10);
  const auto deadline = ctx.deadline();
  if (deadline >= std::chrono::system_clock::now() + kNoDeadline) {
    return absl::InfiniteFuture();
  }
  return absl::FromChrono(deadline);
}

// A stream refused before it starts (a restricted API group).
class RefusedStream final : public grpc::ServerBidiReactor<inference::ModelInferRequest,
                                                           inference::ModelStreamInferResponse> {
 public:
  explicit RefusedStream(const absl::Status& s) { Finish(ToGrpcStatus(s)); }
  void OnDone() override { delete this; }
};

absl::Status NotServed(absl::string_view what) {
  return absl::UnimplementedError(
      absl::StrCat(what,
                   " is not supported by hgpipe-server (its extensions: GET v2 or "
                   "ServerMetadata)"));
}

}  // namespace

absl::Status InferenceService::Allowed(const grpc::CallbackServerContext& ctx,
                                       ApiGroup group) const {
  return restrictions_.Check(group,
                             [&ctx](const std::string& name) -> std::optional<absl::string_view> {
                               const auto& md = ctx.client_metadata();
                               auto it = md.find(name);
                               if (it == md.end()) return std::nullopt;
                               return absl::string_view(it->second.data(), it->second.size());
                             });
}

void InferenceService::StartDraining() {
  pipeline_->StartDraining();
  streams_.DrainAll();
}

grpc::ServerBidiReactor<inference::ModelInferRequest, inference::ModelStreamInferResponse>*
InferenceService::ModelStreamInfer(grpc::CallbackServerContext* ctx) {
  if (absl::Status s = Allowed(*ctx, ApiGroup::kInference); !s.ok()) {
    return new RefusedStream(s);
  }
  return new StreamReactor(pipeline_, &streams_, CallDeadline(*ctx));
}

grpc::ServerUnaryReactor* InferenceService::ServerLive(grpc::CallbackServerContext* ctx,
                                                       const inference::ServerLiveRequest*,
                                                       inference::ServerLiveResponse* resp) {
  resp->set_live(true);
  return Answer(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* InferenceService::ServerReady(grpc::CallbackServerContext* ctx,
                                                        const inference::ServerReadyRequest*,
                                                        inference::ServerReadyResponse* resp) {
  resp->set_ready(pipeline_->Ready());
  return Answer(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* InferenceService::ModelReady(grpc::CallbackServerContext* ctx,
                                                       const inference::ModelReadyRequest* req,
                                                       inference::ModelReadyResponse* resp) {
  absl::StatusOr<bool> ready = api_->ModelReady(req->name(), req->version());
  if (!ready.ok()) return Answer(ctx, ready.status());
  resp->set_ready(*ready);
  return Answer(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* InferenceService::ServerMetadata(
    grpc::CallbackServerContext* ctx, const inference::ServerMetadataRequest*,
    inference::ServerMetadataResponse* resp) {
  if (absl::Status s = Allowed(*ctx, ApiGroup::kMetadata); !s.ok()) return Answer(ctx, s);
  *resp = TritonApi::ServerMetadata();
  return Answer(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* InferenceService::ModelMetadata(
    grpc::CallbackServerContext* ctx, const inference::ModelMetadataRequest* req,
    inference::ModelMetadataResponse* resp) {
  if (absl::Status s = Allowed(*ctx, ApiGroup::kMetadata); !s.ok()) return Answer(ctx, s);
  absl::StatusOr<inference::ModelMetadataResponse> meta =
      api_->ModelMetadata(req->name(), req->version());
  if (!meta.ok()) return Answer(ctx, meta.status());
  *resp = *std::move(meta);
  return Answer(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* InferenceService::ModelConfig(grpc::CallbackServerContext* ctx,
                                                        const inference::ModelConfigRequest* req,
                                                        inference::ModelConfigResponse* resp) {
  if (absl::Status s = Allowed(*ctx, ApiGroup::kModelConfig); !s.ok()) return Answer(ctx, s);
  absl::StatusOr<inference::ModelConfigResponse> config =
      api_->ModelConfig(req->name(), req->version());
  if (!config.ok()) return Answer(ctx, config.status());
  *resp = *std::move(config);
  return Answer(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* InferenceService::ModelStatistics(
    grpc::CallbackServerContext* ctx, const inference::ModelStatisticsRequest* req,
    inference::ModelStatisticsResponse* resp) {
  if (absl::Status s = Allowed(*ctx, ApiGroup::kStatistics); !s.ok()) return Answer(ctx, s);
  absl::StatusOr<inference::ModelStatisticsResponse> stats =
      api_->ModelStatistics(req->name(), req->version());
  if (!stats.ok()) return Answer(ctx, stats.status());
  *resp = *std::move(stats);
  return Answer(ctx, absl::OkStatus());
}

#define HGPIPE_NOT_SERVED(RPC, GROUP, WHAT)                                              \
  grpc::ServerUnaryReactor* InferenceService::RPC(grpc::CallbackServerContext* ctx,      \
                                                  const inference::RPC##Request*,        \
                                                  inference::RPC##Response*) {           \
    if (absl::Status s = Allowed(*ctx, ApiGroup::GROUP); !s.ok()) return Answer(ctx, s); \
    return Answer(ctx, NotServed(WHAT));                                                 \
  }
HGPIPE_NOT_SERVED(CudaSharedMemoryStatus, kSharedMemory, "CUDA shared memory")
HGPIPE_NOT_SERVED(CudaSharedMemoryRegister, kSharedMemory, "CUDA shared memory")
HGPIPE_NOT_SERVED(CudaSharedMemoryUnregister, kSharedMemory, "CUDA shared memory")
#undef HGPIPE_NOT_SERVED

grpc::ServerUnaryReactor* InferenceService::TraceSetting(grpc::CallbackServerContext* ctx,
                                                         const inference::TraceSettingRequest* req,
                                                         inference::TraceSettingResponse* resp) {
  if (absl::Status s = Allowed(*ctx, ApiGroup::kTrace); !s.ok()) return Answer(ctx, s);
  NamedTraceSettings update;
  for (const auto& [name, value] : req->settings()) {
    // No values: cleared (what tritonclient sends for None).
    TraceSettingValue v;
    if (value.value_size() > 0) v.emplace(value.value().begin(), value.value().end());
    update.emplace_back(name, std::move(v));
  }
  absl::StatusOr<NamedTraceSettings> now = api_->TraceSetting(req->model_name(), update);
  if (!now.ok()) return Answer(ctx, now.status());
  for (const auto& [name, values] : *now) {
    auto* out = (*resp->mutable_settings())[name].mutable_value();
    for (const std::string& v : values.value_or(std::vector<std::string>())) out->Add()->assign(v);
  }
  return Answer(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* InferenceService::LogSettings(grpc::CallbackServerContext* ctx,
                                                        const inference::LogSettingsRequest* req,
                                                        inference::LogSettingsResponse* resp) {
  if (absl::Status s = Allowed(*ctx, ApiGroup::kLogging); !s.ok()) return Answer(ctx, s);
  if (log_ == nullptr) return Answer(ctx, NotServed("changing log settings at run time"));
  NamedLogSettings update;
  for (const auto& [name, value] : req->settings()) {
    using V = inference::LogSettingsRequest::SettingValue;
    switch (value.parameter_choice_case()) {
      case V::kBoolParam: update.emplace_back(name, value.bool_param()); break;
      case V::kUint32Param: update.emplace_back(name, value.uint32_param()); break;
      case V::kStringParam: update.emplace_back(name, value.string_param()); break;
      case V::PARAMETER_CHOICE_NOT_SET: update.emplace_back(name, std::monostate()); break;
    }
  }
  absl::StatusOr<server::LogSettings> now = log_->Update(update);
  if (!now.ok()) return Answer(ctx, now.status());
  for (const auto& [name, value] : DescribeLogSettings(*now)) {
    auto& out = (*resp->mutable_settings())[name];
    if (const bool* b = std::get_if<bool>(&value)) {
      out.set_bool_param(*b);
    } else if (const uint32_t* u = std::get_if<uint32_t>(&value)) {
      out.set_uint32_param(*u);
    } else if (const std::string* str = std::get_if<std::string>(&value)) {
      out.set_string_param(*str);
    }
  }
  return Answer(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* InferenceService::SystemSharedMemoryStatus(
    grpc::CallbackServerContext* ctx, const inference::SystemSharedMemoryStatusRequest* req,
    inference::SystemSharedMemoryStatusResponse* resp) {
  if (absl::Status s = Allowed(*ctx, ApiGroup::kSharedMemory); !s.ok()) return Answer(ctx, s);
  auto status = server::SystemSharedMemoryStatus(shared_memory_, *req);
  if (status.ok()) *resp = *std::move(status);
  return Answer(ctx, status.status());
}

grpc::ServerUnaryReactor* InferenceService::SystemSharedMemoryRegister(
    grpc::CallbackServerContext* ctx, const inference::SystemSharedMemoryRegisterRequest* req,
    inference::SystemSharedMemoryRegisterResponse*) {
  if (absl::Status s = Allowed(*ctx, ApiGroup::kSharedMemory); !s.ok()) return Answer(ctx, s);
  return Answer(ctx, server::SystemSharedMemoryRegister(shared_memory_, *req));
}

grpc::ServerUnaryReactor* InferenceService::SystemSharedMemoryUnregister(
    grpc::CallbackServerContext* ctx, const inference::SystemSharedMemoryUnregisterRequest* req,
    inference::SystemSharedMemoryUnregisterResponse*) {
  if (absl::Status s = Allowed(*ctx, ApiGroup::kSharedMemory); !s.ok()) return Answer(ctx, s);
  return Answer(ctx, server::SystemSharedMemoryUnregister(shared_memory_, *req));
}

grpc::ServerUnaryReactor* InferenceService::ModelInfer(grpc::CallbackServerContext* ctx,
                                                       const inference::ModelInferRequest* req,
                                                       inference::ModelInferResponse* resp) {
  if (absl::Status s = Allowed(*ctx, ApiGroup::kInference); !s.ok()) return Answer(ctx, s);
  auto* reactor = ctx->DefaultReactor();
  pipeline_->Infer(*req, resp, CallDeadline(*ctx), {InferOrigin::Wire::kGrpc},
                   [reactor](absl::Status s) { reactor->Finish(ToGrpcStatus(s)); });
  return reactor;
}

grpc::ServerUnaryReactor* InferenceService::RepositoryIndex(
    grpc::CallbackServerContext* ctx, const inference::RepositoryIndexRequest* req,
    inference::RepositoryIndexResponse* resp) {
  if (absl::Status s = Allowed(*ctx, ApiGroup::kModelRepository); !s.ok()) {
    return Answer(ctx, s);
  }
  absl::StatusOr<inference::RepositoryIndexResponse> index = api_->RepositoryIndex(*req);
  if (!index.ok()) return Answer(ctx, index.status());
  *resp = *std::move(index);
  return Answer(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* InferenceService::RepositoryModelLoad(
    grpc::CallbackServerContext* ctx, const inference::RepositoryModelLoadRequest* req,
    inference::RepositoryModelLoadResponse*) {
  if (absl::Status s = Allowed(*ctx, ApiGroup::kModelRepository); !s.ok()) {
    return Answer(ctx, s);
  }
  auto* reactor = ctx->DefaultReactor();
  api_->Load(*req, [reactor](absl::Status st) { reactor->Finish(ToGrpcStatus(st)); });
  return reactor;
}

grpc::ServerUnaryReactor* InferenceService::RepositoryModelUnload(
    grpc::CallbackServerContext* ctx, const inference::RepositoryModelUnloadRequest* req,
    inference::RepositoryModelUnloadResponse*) {
  if (absl::Status s = Allowed(*ctx, ApiGroup::kModelRepository); !s.ok()) {
    return Answer(ctx, s);
  }
  auto* reactor = ctx->DefaultReactor();
  api_->Unload(*req, [reactor](absl::Status st) { reactor->Finish(ToGrpcStatus(st)); });
  return reactor;
}

}  // namespace hgpipe::server
