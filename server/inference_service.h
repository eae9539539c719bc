// The KServe v2 GRPCInferenceService on gRPC's callback API. Handlers never
// block: ModelInfer validates, hands the request to the scheduler and
// returns; the scheduler's completion finishes the call from a board thread.
// ModelStreamInfer (Triton's streaming extension) does the same per request
// read from the stream, several in flight, and writes each response (or its
// error, in error_message) as it completes.
// Model loads and unloads finish their calls from the model manager's
// loader thread or the scheduler's.
// Internal absl::Status codes become gRPC codes here (they share numbering).
// The non-inference calls are answered by TritonApi (shared with the REST
// front end); calls in an API group restricted by --grpc-restricted-protocol
// are refused unless they carry the group's header (server/restrictions.h).
#ifndef HGPIPE_SERVER_INFERENCE_SERVICE_H_
#define HGPIPE_SERVER_INFERENCE_SERVICE_H_

#include <atomic>
#include <string>
#include <vector>

#include <memory>
#include <optional>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "base/mutex.h"
#include "preprocess/preprocessor.h"
#include "proto/grpc_service.grpc.pb.h"
#include "scheduler/scheduler.h"
#include "server/metrics.h"
#include "server/infer_pipeline.h"
#include "server/infer_request.h"
#include "server/model_manager.h"
#include "server/model_repository.h"
#include "server/restrictions.h"
#include "server/shared_memory_regions.h"
#include "server/statistics.h"
#include "server/triton_api.h"
#include "server/worker_pool.h"

namespace hgpipe::server {

class InferenceService final : public inference::GRPCInferenceService::CallbackService,
                               public InferPipeline {
 public:
  // `models`, `scheduler`, `metrics`, `statistics` and `workers` (which
  // preprocesses images) must outlive the service. `restrictions`: the
  // parsed --grpc-restricted-protocol. `shared_memory`: the system shared
  // memory regions requests may name (null: none; it must outlive the
  // service).
  InferenceService(ModelManager* models, scheduler::Scheduler* scheduler, Metrics* metrics,
                   InferStatistics* statistics, WorkerPool* workers, Restrictions restrictions = {},
                   SharedMemoryRegions* shared_memory = nullptr);

  // ServerReady reports this (and every loaded model ready). Thread-safe.
  void SetReady(bool ready) { ready_.store(ready); }

  // The answers of the non-inference calls, for other front ends.
  TritonApi* api() { return &api_; }

  // InferPipeline: what ModelInfer and every stream request run; the REST
  // front end calls it too. Thread-safe.
  void Infer(const inference::ModelInferRequest& request, inference::ModelInferResponse* response,
             absl::Time deadline, Done done) override {
    StartInfer(request, response, deadline, std::move(done));
  }
  bool Ready() const override;
  bool Serving() const override { return ready_.load() && !draining_.load(); }
  bool Draining() const override { return draining_.load(); }

  // From now on ModelInfer answers UNAVAILABLE ("shutting down"), which
  // clients and load balancers retry elsewhere; calls already accepted are
  // finished. Open streams stop reading, write what they accepted, then end
  // with UNAVAILABLE. Thread-safe.
  void StartDraining();
  // When the last ModelInfer call arrived (accepted or refused).
  absl::Time last_infer_call() const { return absl::FromUnixNanos(last_call_ns_.load()); }

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
  grpc::ServerUnaryReactor* LogSettings(grpc::CallbackServerContext* ctx,
                                        const inference::LogSettingsRequest*,
                                        inference::LogSettingsResponse*) override;

 private:
  class Stream;  // one ModelStreamInfer call (inference_service.cc)
  // Called exactly once per request with its outcome.
  using Finish = absl::AnyInvocable<void(absl::Status)>;
  // What a request asks of the scheduler.
  struct Policy {
    uint32_t priority = 0;
    absl::Time deadline = absl::InfiniteFuture();
    // Where Submit records when the images reached the scheduler (unix ns,
    // for the statistics); owned by the request's completion.
    std::atomic<int64_t>* queued_at_ns = nullptr;
    // The request's accuracy floor, and where Submit records the index of
    // the variant it was queued on (owned by the request's completion).
    std::optional<double> min_accuracy;
    std::atomic<int>* variant = nullptr;
  };
  // One inference, for ModelInfer and for each request of a stream:
  // validates `req` and queues its images; `done` is called exactly once
  // (possibly before this returns), with `resp` filled if OK. `req` and
  // `resp` must stay valid until then. `call_deadline` bounds the request's
  // own timeout.
  void StartInfer(const inference::ModelInferRequest& req, inference::ModelInferResponse* resp,
                  absl::Time call_deadline, Finish done);
  // Decodes and preprocesses the request's images on the worker pool, then
  // Submits them.
  void Preprocess(ModelRef ref, PreparedInput input, int32_t* logits, Policy policy, Finish finish);
  // Hands n images to the scheduler, then lets go of the model's admission;
  // `keep` is released when they are done.
  void Submit(ModelRef ref, const int8_t* images, uint32_t n, int32_t* logits, Policy policy,
              std::shared_ptr<void> keep, Finish finish);

  // OK, or PERMISSION_DENIED if `group` is restricted and the call lacks
  // its header.
  absl::Status Allowed(const grpc::CallbackServerContext& ctx, ApiGroup group) const;

  ModelManager* const models_;
  scheduler::Scheduler* const scheduler_;
  Metrics* const metrics_;
  InferStatistics* const statistics_;
  WorkerPool* const workers_;
  const Restrictions restrictions_;
  SharedMemoryRegions* const shared_memory_;
  TritonApi api_;
  std::atomic<bool> ready_{false};
  std::atomic<bool> draining_{false};
  std::atomic<int64_t> last_call_ns_{0};
  // Open streams, told when the server starts draining.
  hgpipe::Mutex streams_mu_;
  absl::flat_hash_set<Stream*> streams_ ABSL_GUARDED_BY(streams_mu_);
};

grpc::Status ToGrpcStatus(const absl::Status& s);

}  // namespace hgpipe::server

#endif  // HGPIPE_SERVER_INFERENCE_SERVICE_H_
