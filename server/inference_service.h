// The KServe v2 GRPCInferenceService on gRPC's callback API: the wire only.
// Each handler checks the call's restrictions, hands the message to the
// request pipeline (server/request_pipeline.h), TritonApi or the shared
// memory registry, and turns the answer into a gRPC status. Handlers never
// block: ModelInfer hands the request to the pipeline and returns; the
// pipeline's `done` finishes the call, from a worker or board thread.
// ModelStreamInfer runs a StreamReactor (server/stream_reactor.h), which
// does the same per request read from the stream.
// Model loads and unloads finish their calls from the model manager's
// loader thread or the scheduler's.
// Internal absl::Status codes become gRPC codes here (they share numbering).
// The non-inference calls are answered by TritonApi (shared with the REST
// front end); calls in an API group restricted by --grpc-restricted-protocol
// are refused unless they carry the group's header (server/restrictions.h).
#ifndef HGPIPE_SERVER_INFERENCE_SERVICE_H_
#define HGPIPE_SERVER_INFERENCE_SERVICE_H_

#include <utility>

#include "absl/status/status.h"
#include "proto/grpc_service.grpc.pb.h"
#include "server/log_control.h"
#include "server/request_pipeline.h"
#include "server/restrictions.h"
#include "server/shared_memory_regions.h"
#include "server/stream_reactor.h"
#include "server/triton_api.h"

namespace hgpipe::server {

class InferenceService final : public inference::GRPCInferenceService::CallbackService {
 public:
  // `pipeline` and `api` must outlive the service. `restrictions`: the
  // parsed --grpc-restricted-protocol. `shared_memory`: the system shared
  // memory regions the extension's calls manage (null: none; it must
  // outlive the service). `log`: the process's log settings LogSettings
  // reads and changes (null: LogSettings is UNIMPLEMENTED; it must outlive
  // the service).
  InferenceService(RequestPipeline* pipeline, TritonApi* api, Restrictions restrictions = {},
                   SharedMemoryRegions* shared_memory = nullptr, LogControl* log = nullptr)
      : pipeline_(pipeline),
        api_(api),
        restrictions_(std::move(restrictions)),
        shared_memory_(shared_memory),
        log_(log) {}

  // From now on ModelInfer answers UNAVAILABLE ("shutting down"), which
  // clients and load balancers retry elsewhere; calls already accepted are
  // finished (RequestPipeline::StartDraining). Open streams stop reading,
  // write what they accepted, then end with UNAVAILABLE. Thread-safe.
  void StartDraining();

  grpc::ServerUnaryReactor* ServerLive(grpc::CallbackServerContext* ctx,
                                       const inference::ServerLiveRequest* req,
                                       inference::ServerLiveResponse* resp) override;
  grpc::ServerUnaryReactor* ServerReady(grpc::CallbackServerContext* ctx,
                                        const inference::ServerReadyRequest* req,
                                        inference::ServerReadyResponse* resp) override;
  grpc::ServerUnaryReactor* ModelReady(grpc::CallbackServerContext* ctx,
                                       const inference::ModelReadyRequest* req,
                                       inference::ModelReadyResponse* resp) override;
  grpc::ServerUnaryReactor* ServerMetadata(grpc::CallbackServerContext* ctx,
                                           const inference::ServerMetadataRequest* req,
                                           inference::ServerMetadataResponse* resp) override;
  grpc::ServerUnaryReactor* ModelMetadata(grpc::CallbackServerContext* ctx,
                                          const inference::ModelMetadataRequest* req,
                                          inference::ModelMetadataResponse* resp) override;
  // Request parameters `priority` and `timeout` (server/infer_request.h)
  // become the scheduler request's priority and deadline: arrival +
  // timeout, or the call's own gRPC deadline if that is earlier.
  grpc::ServerUnaryReactor* ModelInfer(grpc::CallbackServerContext* ctx,
                                       const inference::ModelInferRequest* req,
                                       inference::ModelInferResponse* resp) override;
  grpc::ServerBidiReactor<inference::ModelInferRequest, inference::ModelStreamInferResponse>*
  ModelStreamInfer(grpc::CallbackServerContext* ctx) override;

  // Model repository extension (server/model_manager.h, parameters as
  // TritonApi takes them). The server has one repository: a non-empty
  // repository_name is INVALID_ARGUMENT.
  grpc::ServerUnaryReactor* RepositoryIndex(grpc::CallbackServerContext* ctx,
                                            const inference::RepositoryIndexRequest* req,
                                            inference::RepositoryIndexResponse* resp) override;
  grpc::ServerUnaryReactor* RepositoryModelLoad(
      grpc::CallbackServerContext* ctx, const inference::RepositoryModelLoadRequest* req,
      inference::RepositoryModelLoadResponse* resp) override;
  grpc::ServerUnaryReactor* RepositoryModelUnload(
      grpc::CallbackServerContext* ctx, const inference::RepositoryModelUnloadRequest* req,
      inference::RepositoryModelUnloadResponse* resp) override;
  // Model configuration and statistics extensions (TritonApi).
  grpc::ServerUnaryReactor* ModelConfig(grpc::CallbackServerContext* ctx,
                                        const inference::ModelConfigRequest* req,
                                        inference::ModelConfigResponse* resp) override;
  grpc::ServerUnaryReactor* ModelStatistics(grpc::CallbackServerContext* ctx,
                                            const inference::ModelStatisticsRequest* req,
                                            inference::ModelStatisticsResponse* resp) override;
  // System shared memory extension (server/shared_memory_api.h).
  grpc::ServerUnaryReactor* SystemSharedMemoryStatus(
      grpc::CallbackServerContext* ctx, const inference::SystemSharedMemoryStatusRequest*,
      inference::SystemSharedMemoryStatusResponse*) override;
  grpc::ServerUnaryReactor* SystemSharedMemoryRegister(
      grpc::CallbackServerContext* ctx, const inference::SystemSharedMemoryRegisterRequest*,
      inference::SystemSharedMemoryRegisterResponse*) override;
  grpc::ServerUnaryReactor* SystemSharedMemoryUnregister(
      grpc::CallbackServerContext* ctx, const inference::SystemSharedMemoryUnregisterRequest*,
      inference::SystemSharedMemoryUnregisterResponse*) override;
  // Not served: UNIMPLEMENTED, saying so.
  grpc::ServerUnaryReactor* CudaSharedMemoryStatus(
      grpc::CallbackServerContext* ctx, const inference::CudaSharedMemoryStatusRequest*,
      inference::CudaSharedMemoryStatusResponse*) override;
  grpc::ServerUnaryReactor* CudaSharedMemoryRegister(
      grpc::CallbackServerContext* ctx, const inference::CudaSharedMemoryRegisterRequest*,
      inference::CudaSharedMemoryRegisterResponse*) override;
  grpc::ServerUnaryReactor* CudaSharedMemoryUnregister(
      grpc::CallbackServerContext* ctx, const inference::CudaSharedMemoryUnregisterRequest*,
      inference::CudaSharedMemoryUnregisterResponse*) override;
  grpc::ServerUnaryReactor* TraceSetting(grpc::CallbackServerContext* ctx,
                                         const inference::TraceSettingRequest*,
                                         inference::TraceSettingResponse*) override;
  // Triton's logging extension (server/log_control.h): applies the
  // request's settings, all or nothing (INVALID_ARGUMENT naming the
  // setting), and answers all settings as they now are.
  grpc::ServerUnaryReactor* LogSettings(grpc::CallbackServerContext* ctx,
                                        const inference::LogSettingsRequest*,
                                        inference::LogSettingsResponse*) override;

 private:
  // OK, or PERMISSION_DENIED if `group` is restricted and the call lacks
  // its header.
  absl::Status Allowed(const grpc::CallbackServerContext& ctx, ApiGroup group) const;

  RequestPipeline* const pipeline_;
  TritonApi* const api_;
  const Restrictions restrictions_;
  SharedMemoryRegions* const shared_memory_;
  LogControl* const log_;
  OpenStreams streams_;
};

grpc::Status ToGrpcStatus(const absl::Status& s);

}  // namespace hgpipe::server

#endif  // HGPIPE_SERVER_INFERENCE_SERVICE_H_
