// Triton's statistics extension (ModelStatistics RPC, GET v2/models/M/stats):
// per model, counts and cumulative nanoseconds of each phase of the request
// path, and per run size the board runs that carried it.
//
// What each field counts (Triton's names, our phases):
//   inference_count      images answered OK
//   execution_count      board runs finished OK
//   last_inference       when the last request was answered, ms since epoch
//   success / fail       requests, arrival to answer
//   compute_input        requests, arrival until their images are queued for
//                        a board (validation, encoded images' headers)
//   queue                images, from queued until their run left for a
//                        board, with the fill step (a copy into the board's
//                        slot, or decoding and preprocessing into it)
//   compute_infer        images, the device time of the run that carried each
//                        (a run of 8 images adds 8 x its time, as Triton adds a
//                        batch's time to each request in it)
//   compute_output       requests, from the boards' last result to the answer
//                        being ready (dequantizing, top-K classes)
//   batch_stats          per run size: compute_input = the run's host-to-board
//                        input time, compute_infer = its device time, counted
//                        per run
// With one image per request (perf_analyzer's default) every count is per
// request, as in Triton.
//
// Statistics belong to one load of a model (its scheduler id): a reload starts
// from zero, as Triton's do.
//
// Thread safety: every method may be called from any thread. The hot path
// touches atomics only, plus one uncontended mutex per run for batch_stats.
#ifndef HGPIPE_SERVER_STATISTICS_H_
#define HGPIPE_SERVER_STATISTICS_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "base/mutex.h"
#include "proto/grpc_service.pb.h"
#include "scheduler/scheduler.h"
#include "server/metrics.h"

namespace hgpipe::server {

class InferStatistics final : public scheduler::Observer {
 public:
  // One request's phases, measured by the request pipeline.
  struct RequestTimes {
    absl::Duration total;   // arrival to answer
    absl::Duration input;   // arrival to queued for a board (0 if it never was)
    absl::Duration output;  // finishing the response after the boards
  };

  InferStatistics() = default;
  InferStatistics(const InferStatistics&) = delete;
  InferStatistics& operator=(const InferStatistics&) = delete;

  // One answered request of scheduler model `model_id` (ignored if < 0).
  void RequestDone(int model_id, bool ok, uint32_t images, const RequestTimes& times);

  // scheduler::Observer
  void RunStarted(int model_id, int board_id, uint32_t images,
                  absl::Span<const absl::Duration> queue_waits, absl::Duration input_time) override;
  void RunFinished(int model_id, int board_id, uint32_t images, absl::Duration device_time,
                   const absl::Status& status) override;

  // Writes model `model_id`'s statistics into `out` (name and version are the
  // caller's); all zero for a model with no traffic yet.
  void Fill(int model_id, inference::ModelStatistics* out) const;

 private:
  struct Duration {
    std::atomic<uint64_t> count{0};
    std::atomic<uint64_t> ns{0};
    void Add(uint64_t n, absl::Duration d);
    void Fill(inference::StatisticDuration* out) const;
  };
  struct Batch {
    uint64_t input_count = 0, input_ns = 0, infer_count = 0, infer_ns = 0;
  };
  struct Model {
    std::atomic<uint64_t> inference_count{0};
    std::atomic<uint64_t> execution_count{0};
    std::atomic<int64_t> last_inference_ms{0};
    Duration success, fail, compute_input, queue, compute_infer, compute_output;
    mutable hgpipe::Mutex batch_mu;
    std::map<uint32_t, Batch> batches ABSL_GUARDED_BY(batch_mu);
  };
  // The model's entry, created on first use; nullptr for a bad id.
  Model* Get(int model_id);
  const Model* Find(int model_id) const { return models_.Get(model_id); }

  IdTable<Model> models_;
  hgpipe::Mutex mu_;  // serializes additions to models_
  std::vector<std::unique_ptr<Model>> owned_ ABSL_GUARDED_BY(mu_);
};

// Hands every scheduler event to several observers, in order (the scheduler
// takes one). The observers must outlive it. Every method of
// scheduler::Observer is forwarded (statistics_test checks each one).
class ObserverFanout final : public scheduler::Observer {
 public:
  explicit ObserverFanout(std::vector<scheduler::Observer*> observers)
      : observers_(std::move(observers)) {}
  void ModelAdded(int model_id, absl::string_view name) override;
  void BoardAdded(int board_id, absl::string_view name) override;
  void QueueDepth(int model_id, uint64_t images) override;
  void RunStarted(int model_id, int board_id, uint32_t images,
                  absl::Span<const absl::Duration> queue_waits, absl::Duration input_time) override;
  void RunFinished(int model_id, int board_id, uint32_t images, absl::Duration device_time,
                   const absl::Status& status) override;
  void BoardPhaseChanged(int board_id, int model_id, scheduler::BoardPhase phase,
                         const absl::Status& why, const scheduler::BoardCounts& counts) override;
  void CanaryFailed(int board_id, int model_id, const absl::Status& what) override;
  void DeadlineExpired(int model_id, uint32_t images) override;
  void LateResultsDropped(int model_id, uint32_t images) override;
  void FillsSkipped(int model_id, uint32_t images) override;
  void ImagesWithheld(int model_id, uint32_t images) override;

 private:
  const std::vector<scheduler::Observer*> observers_;
};

}  // namespace hgpipe::server

#endif  // HGPIPE_SERVER_STATISTICS_H_
