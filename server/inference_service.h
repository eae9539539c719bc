// The KServe v2 GRPCInferenceService on gRPC's callback API. Handlers never
// block: ModelInfer validates, hands the request to the scheduler and
// returns; the scheduler's completion finishes the call from a board thread.
// ModelStreamInfer (Triton's streaming extension) does the same per request
// read from the stream, several in flight, and writes each response (or its
// error, in error_message) as it completes.
// Model loads and unloads finish their calls from the model manager's
// loader thread or the scheduler's.
// Internal absl::Status codes become gRPC codes here (they share numbering).
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
#include "server/infer_request.h"
#include "server/model_manager.h"
#include "server/model_repository.h"
#include "server/worker_pool.h"

namespace hgpipe::server {

inline constexpr char kServerName[] = "hgpipe-serve";
inline constexpr char kServerVersion[] = "0.1.0";

class InferenceService final
    : public inference::GRPCInferenceService::CallbackService {
 public:
  // `models`, `scheduler`, `metrics` and `workers` (which preprocesses
  // images) must outlive the service.
  InferenceService(ModelManager* models, scheduler::Scheduler* scheduler,
                   Metrics* metrics, WorkerPool* workers);

  // ServerReady reports this (and every loaded model ready). Thread-safe.
  void SetReady(bool ready) { ready_.store(ready); }

  // From now on ModelInfer answers UNAVAILABLE ("shutting down"), which
  // clients and load balancers retry elsewhere; calls already accepted are
  // finished. Open streams stop reading, write what they accepted, then end
  // with UNAVAILABLE. Thread-safe.
  void StartDraining();
  // When the last ModelInfer call arrived (accepted or refused).
  absl::Time last_infer_call() const {
    return absl::FromUnixNanos(last_call_ns_.load());
  }

  grpc::ServerUnaryReactor* ServerLive(grpc::CallbackServerContext* ctx,
                                       const inference::ServerLiveRequest* req,
                                       inference::ServerLiveResponse* resp) override;
  grpc::ServerUnaryReactor* ServerReady(grpc::CallbackServerContext* ctx,
                                        const inference::ServerReadyRequest* req,
                                        inference::ServerReadyResponse* resp) override;
  grpc::ServerUnaryReactor* ModelReady(grpc::CallbackServerContext* ctx,
                                       const inference::ModelReadyRequest* req,
                                       inference::ModelReadyResponse* resp) override;
  grpc::ServerUnaryReactor* ServerMetadata(
      grpc::CallbackServerContext* ctx, const inference::ServerMetadataRequest* req,
      inference::ServerMetadataResponse* resp) override;
  grpc::ServerUnaryReactor* ModelMetadata(
      grpc::CallbackServerContext* ctx, const inference::ModelMetadataRequest* req,
      inference::ModelMetadataResponse* resp) override;
  // Request parameters `priority` and `timeout` (server/infer_request.h)
  // become the scheduler request's priority and deadline: arrival +
  // timeout, or the call's own gRPC deadline if that is earlier.
  grpc::ServerUnaryReactor* ModelInfer(grpc::CallbackServerContext* ctx,
                                       const inference::ModelInferRequest* req,
                                       inference::ModelInferResponse* resp) override;
  grpc::ServerBidiReactor<inference::ModelInferRequest, inference::ModelStreamInferResponse>*
  ModelStreamInfer(grpc::CallbackServerContext* ctx) override;

  // Model repository extension (server/model_manager.h). The server has one
  // repository: a non-empty repository_name is INVALID_ARGUMENT, as are
  // load / unload parameters (none is supported).
  grpc::ServerUnaryReactor* RepositoryIndex(
      grpc::CallbackServerContext* ctx, const inference::RepositoryIndexRequest* req,
      inference::RepositoryIndexResponse* resp) override;
  grpc::ServerUnaryReactor* RepositoryModelLoad(
      grpc::CallbackServerContext* ctx, const inference::RepositoryModelLoadRequest* req,
      inference::RepositoryModelLoadResponse* resp) override;
  grpc::ServerUnaryReactor* RepositoryModelUnload(
      grpc::CallbackServerContext* ctx,
      const inference::RepositoryModelUnloadRequest* req,
      inference::RepositoryModelUnloadResponse* resp) override;

 private:
  class Stream;  // one ModelStreamInfer call (inference_service.cc)
  // Called exactly once per request with its outcome.
  using Finish = absl::AnyInvocable<void(absl::Status)>;
  // What a request asks of the scheduler.
  struct Policy {
    uint32_t priority = 0;
    absl::Time deadline = absl::InfiniteFuture();
  };
  // One inference, for ModelInfer and for each request of a stream:
  // validates `req` and queues its images; `done` is called exactly once
  // (possibly before this returns), with `resp` filled if OK. `req` and
  // `resp` must stay valid until then. `call_deadline` bounds the request's
  // own timeout.
  void StartInfer(const inference::ModelInferRequest& req,
                  inference::ModelInferResponse* resp, absl::Time call_deadline,
                  Finish done);
  // Decodes and preprocesses the request's images on the worker pool, then
  // Submits them.
  void Preprocess(ModelRef ref, PreparedInput input, int32_t* logits,
                  Policy policy, Finish finish);
  // Hands n images to the scheduler, then lets go of the model's admission;
  // `keep` is released when they are done.
  void Submit(ModelRef ref, const int8_t* images, uint32_t n, int32_t* logits,
              Policy policy, std::shared_ptr<void> keep, Finish finish);

  ModelManager* const models_;
  scheduler::Scheduler* const scheduler_;
  Metrics* const metrics_;
  WorkerPool* const workers_;
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
