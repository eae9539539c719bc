// The request pipeline: what one inference goes through between a front end
// and the boards, free of any wire. The gRPC service (ModelInfer and each
// request of ModelStreamInfer) and the REST front end both call Infer.
//
// Per request, in order: find the model (NotFound / Unavailable while it
// unloads, or while the server drains); locate shared-memory tensors and
// check the input (server/infer_request.h, shared_memory_tensors.h),
// including what the preprocessor refuses without decoding (an encoded
// image's header, a pixel image's size); parse its policy (priority,
// timeout, min_accuracy, refused at once when no variant reaches the
// floor); set up the response; pick the variant and queue the images in the
// scheduler. When the scheduler forms a run, its fill step writes each
// image into the board's slot (scheduler/infer_request.h): device patches
// are copied from the request, encoded and pixel images decoded and
// preprocessed straight into the slot on the scheduler's fill executor (the
// server's worker pool); an image that fails to decode there fails its
// request alone. When the scheduler answers: decode the logits with the
// answering variant's scale, write a shared-memory output, count the
// request in the metrics and the statistics, write its trace if it was
// sampled (server/trace_control.h), and call `done`.
//
// Each request is one InferCall (request_pipeline.cc), allocated when the
// model is found and deleted right after `done` returns: it holds the model,
// the prepared input and every piece of state the steps share.
//
// Threads: Infer never blocks and may be called concurrently from any
// thread; the steps after it run on scheduler, fill executor or board
// threads.
#ifndef HGPIPE_SERVER_REQUEST_PIPELINE_H_
#define HGPIPE_SERVER_REQUEST_PIPELINE_H_

#include <atomic>
#include <cstdint>

#include "absl/time/time.h"
#include "proto/grpc_service.pb.h"
#include "scheduler/scheduler.h"
#include "server/infer_pipeline.h"
#include "server/metrics.h"
#include "server/model_manager.h"
#include "server/shared_memory_regions.h"
#include "server/statistics.h"
#include "server/trace_control.h"

namespace hgpipe::server {

struct InferCall;
class CallRequest;

class RequestPipeline final : public InferPipeline {
 public:
  // All must outlive the pipeline. Models with a preprocessor need the
  // scheduler to have a fill executor (else images are decoded on the
  // caller of Infer). `shared_memory`: the regions requests may name
  // (null: none);
  // `response_reserve`: the time kept back from each deadline for the
  // answer's way back to the client (SchedulerDeadline, infer_request.h);
  // `trace`: samples requests for Triton's trace file (null: none).
  RequestPipeline(ModelManager* models, scheduler::Scheduler* scheduler, Metrics* metrics,
                  InferStatistics* statistics, SharedMemoryRegions* shared_memory = nullptr,
                  absl::Duration response_reserve = absl::ZeroDuration(),
                  TraceControl* trace = nullptr);
  RequestPipeline(const RequestPipeline&) = delete;
  RequestPipeline& operator=(const RequestPipeline&) = delete;

  // InferPipeline. `done` is called exactly once, with `response` filled if
  // OK: before Infer returns (on the caller's thread) when the request is
  // refused before reaching the scheduler, else on a scheduler, fill
  // executor or board thread. `request` and `response` are the caller's and
  // must stay valid until `done` is called (the fill step reads the
  // request's images); the pipeline neither reads nor writes them after it.
  // Request parameters `priority` and `timeout` become the scheduler
  // request's priority and deadline: arrival + timeout, or `deadline` if
  // that is earlier, less the response reserve. Every request is counted
  // once in the metrics (hgpipe_requests_total) and, once its model is
  // found, in the model's statistics, before `done` runs.
  void Infer(const inference::ModelInferRequest& request, inference::ModelInferResponse* response,
             absl::Time deadline, const InferOrigin& origin, Done done) override;
  bool Ready() const override { return Serving() && models_->AllReady(); }
  bool Serving() const override { return ready_.load() && !draining_.load(); }
  bool Draining() const override { return draining_.load(); }

  // Serving from now on (once the front ends listen). Thread-safe.
  void SetReady(bool ready) { ready_.store(ready); }
  // From now on Infer refuses requests with UNAVAILABLE ("shutting down");
  // those accepted before are finished. Thread-safe.
  void StartDraining() {
    ready_.store(false);
    draining_.store(true);
  }
  // When Infer was last called (accepted or refused).
  absl::Time last_infer_call() const { return absl::FromUnixNanos(last_call_ns_.load()); }

 private:
  friend class CallRequest;  // answers through Finish

  // After validation: queues the call's images, or ends it.
  void Submit(InferCall* call);
  // The answer after the call reached the scheduler: logits, metrics,
  // statistics, `done`; deletes `call`.
  void Finish(InferCall* call, absl::Status status);
  // The answer to a request refused before any work (bad input, policy):
  // counted with no images; deletes `call`.
  void Refuse(InferCall* call, absl::Status status);
  // Ends a sampled call's trace at `end` and writes it.
  void WriteTrace(InferCall& call, absl::Time end);

  ModelManager* const models_;
  scheduler::Scheduler* const scheduler_;
  Metrics* const metrics_;
  InferStatistics* const statistics_;
  SharedMemoryRegions* const shared_memory_;
  const absl::Duration response_reserve_;
  TraceControl* const trace_;
  std::atomic<bool> ready_{false};
  std::atomic<bool> draining_{false};
  std::atomic<int64_t> last_call_ns_{0};
};

}  // namespace hgpipe::server

#endif  // HGPIPE_SERVER_REQUEST_PIPELINE_H_
