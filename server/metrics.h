// Prometheus metrics (prometheus-cpp), served at /metrics on the metrics port.
// Names follow Prometheus conventions: hgpipe_ prefix, base units, _total on
// counters.
//
// Per model {model}: hgpipe_requests_total{code}, hgpipe_images_total,
//   hgpipe_request_duration_seconds, hgpipe_queue_duration_seconds (per
//   image), hgpipe_device_duration_seconds (per run), hgpipe_queue_images,
//   hgpipe_deadline_expired_requests_total and
//   hgpipe_deadline_expired_images_total (requests answered
//   DEADLINE_EXCEEDED after they were queued; those refused at arrival count
//   only in hgpipe_requests_total{code="DEADLINE_EXCEEDED"}),
//   hgpipe_late_results_dropped_images_total (images whose request had been
//   answered DEADLINE_EXCEEDED at its deadline while a board still computed
//   them: their results came late and were dropped),
//   hgpipe_skipped_fill_images_total (images of formed runs not decoded or
//   copied because their request had been answered early or another of its
//   images failed: the fill work saved; mostly withheld too),
//   hgpipe_withheld_images_total (images of filled runs
//   taken out before the run went to a board because their requests had been
//   answered early: board time saved).
// Per model and variant {model, variant}: hgpipe_variant_images_total
//   (images answered OK by each of the model's bitstream variants,
//   docs/serving.md "Variants"; a model without `variants` has one, "default").
//   A variant after the first is also a model of its own in the per-board
//   series, named "MODEL@VARIANT".
// Per board and the model it serves {board, model}: hgpipe_board_images_total,
//   hgpipe_board_runs_total, hgpipe_board_failed_runs_total,
//   hgpipe_board_run_images, hgpipe_board_images_in_flight,
//   hgpipe_board_busy_seconds_total, hgpipe_board_healthy (1 while the board
//   serves the model; 0 while it is programmed, probed or recovered for it,
//   or retired; the series goes away when the board leaves the model).
//   A board reprogrammed for another model starts new {board, model} series;
//   the old ones keep their counts.
// Per board {board}: hgpipe_board_phase{phase} (1 for the board's current
//   phase - serving, idle, draining, programming, probing, recovering,
//   retired - 0 for the others), hgpipe_board_failures_total (runs failed or
//   timed out, failed recovery steps), hgpipe_board_recoveries_total
//   (re-admissions after a failure), hgpipe_board_programmings_total
//   (successful bitstream loads). Per board and model {board, model}:
//   hgpipe_board_canary_failures_total (canary outputs that differed from
//   the known ones; each also logs the board and what differed, and takes
//   the board out of service). A board removed by the scheduler (one made
//   for a load that is gone) loses all its series.
//
// As the server's scheduler::Observer it also logs what happens to boards
// (the scheduler library does not log): a board taken out of service or
// retired, with the reason, and its return to service.
//
// Models and boards may be added while serving (model load, reprogramming).
// Their children are created when they are added, and found on the hot path
// through lock-free tables indexed by id: the hot path only touches atomics
// and histogram buckets.
//
// Thread safety: every method may be called from any thread.
#ifndef HGPIPE_SERVER_METRICS_H_
#define HGPIPE_SERVER_METRICS_H_

#include <array>
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "base/mutex.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "scheduler/scheduler.h"

namespace hgpipe::server {

// Pointers by dense integer id, readable without a lock while another thread
// adds entries. Ids 0 .. kCapacity-1; the pointees are owned elsewhere and
// must outlive the table.
template <typename T>
class IdTable {
 public:
  static constexpr int kChunkBits = 8;
  static constexpr int kChunkSize = 1 << kChunkBits;
  static constexpr int kChunks = 1024;
  static constexpr int kCapacity = kChunkSize * kChunks;

  IdTable() = default;
  ~IdTable() {
    for (auto& c : chunks_) delete c.load(std::memory_order_relaxed);
  }
  IdTable(const IdTable&) = delete;
  IdTable& operator=(const IdTable&) = delete;

  // nullptr for an id never set or out of range.
  T* Get(int id) const {
    if (id < 0 || id >= kCapacity) return nullptr;
    const Chunk* c = chunks_[id >> kChunkBits].load(std::memory_order_acquire);
    if (c == nullptr) return nullptr;
    return (*c)[id & (kChunkSize - 1)].load(std::memory_order_acquire);
  }
  // Writers must be serialized by the caller. False if `id` is out of range.
  bool Set(int id, T* value) {
    if (id < 0 || id >= kCapacity) return false;
    std::atomic<Chunk*>& slot = chunks_[id >> kChunkBits];
    Chunk* c = slot.load(std::memory_order_acquire);
    if (c == nullptr) {
      c = new Chunk();
      slot.store(c, std::memory_order_release);
    }
    (*c)[id & (kChunkSize - 1)].store(value, std::memory_order_release);
    return true;
  }

 private:
  using Chunk = std::array<std::atomic<T*>, kChunkSize>;
  std::array<std::atomic<Chunk*>, kChunks> chunks_{};
};

class Metrics final : public scheduler::Observer {
 public:
  // Model id used for requests naming no loaded model.
  static constexpr int kUnknownModel = -1;

  Metrics();
  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  // Names the scheduler's model `model_id` (its series carry `model`).
  // Models with the same name (a reload) share their series. Called by the
  // scheduler (Observer::ModelAdded) before it reports anything about the
  // id; calling again for the same id renames it.
  void AddModel(int model_id, const std::string& model);
  // Names the scheduler's board `board_id` and creates its per-board series
  // (Observer::BoardAdded, before anything else about the id).
  void AddBoard(int board_id, const std::string& board);

  // One answered request (any outcome).
  void RequestDone(int model_id, absl::StatusCode code, uint32_t images, absl::Duration latency);
  // The hgpipe_variant_images_total{model, variant} child (images answered
  // OK by `variant` of `model`); valid as long as the Metrics. For a caller
  // to keep: a lookup costs a label hash and a lock.
  prometheus::Counter* VariantImagesCounter(const std::string& model, const std::string& variant);

  // scheduler::Observer
  void ModelAdded(int model_id, absl::string_view name) override {
    AddModel(model_id, std::string(name));
  }
  void BoardAdded(int board_id, absl::string_view name) override {
    AddBoard(board_id, std::string(name));
  }
  void QueueDepth(int model_id, uint64_t images) override;
  void RunStarted(int model_id, int board_id, uint32_t images,
                  absl::Span<const absl::Duration> queue_waits, absl::Duration input_time) override;
  void RunFinished(int model_id, int board_id, uint32_t images, absl::Duration device_time,
                   const absl::Status& status) override;
  void BoardPhaseChanged(int board_id, int model_id, scheduler::BoardPhase phase,
                         const absl::Status& why, const scheduler::BoardCounts& counts) override;
  void DeadlineExpired(int model_id, uint32_t images) override;
  void LateResultsDropped(int model_id, uint32_t images) override;
  void FillsSkipped(int model_id, uint32_t images) override;
  void ImagesWithheld(int model_id, uint32_t images) override;
  void CanaryFailed(int board_id, int model_id, const absl::Status& what) override;

 private:
  static constexpr int kCodes = 17;  // gRPC status codes 0..16
  static constexpr int kPhases = 7;  // scheduler::BoardPhase values
  struct ModelMetrics {
    std::string name;
    std::array<prometheus::Counter*, kCodes> requests;
    prometheus::Counter* images;
    prometheus::Histogram* request_seconds;
    prometheus::Histogram* queue_seconds;
    prometheus::Histogram* device_seconds;
    prometheus::Gauge* queue_images;
    prometheus::Counter* expired_requests;
    prometheus::Counter* expired_images;
    prometheus::Counter* late_images;
    prometheus::Counter* skipped_fills;
    prometheus::Counter* withheld_images;
  };
  // A board's series for one model it serves or served.
  struct BoardModelMetrics {
    int model_id;
    prometheus::Counter* images;
    prometheus::Counter* runs;
    prometheus::Counter* failed_runs;
    prometheus::Histogram* run_images;
    prometheus::Gauge* in_flight;
    prometheus::Counter* busy_seconds;
  };
  struct BoardMetrics {
    std::string name;
    std::array<prometheus::Gauge*, kPhases> phase;
    prometheus::Counter* failures;
    prometheus::Counter* recoveries;
    prometheus::Counter* programmings;
    // The series of the model the board serves now (hot path).
    std::atomic<BoardModelMetrics*> current{nullptr};
  };
  // What BoardPhaseChanged remembers per board, under mu_.
  struct BoardState {
    absl::flat_hash_map<int, std::unique_ptr<BoardModelMetrics>> by_model;
    // The scheduler's counts the counters have reached.
    scheduler::BoardCounts counted;
    prometheus::Gauge* healthy = nullptr;
    int healthy_model = -1;
  };

  std::unique_ptr<ModelMetrics> MakeModel(const std::string& model);
  ModelMetrics* model(int id) const {
    if (id < 0) return unknown_.get();
    ModelMetrics* m = models_.Get(id);
    return m != nullptr ? m : unknown_.get();
  }
  // The series of board `b` for model `model_id`, created if needed.
  BoardModelMetrics* BoardModel(int board_id, BoardMetrics& b, int model_id);
  BoardModelMetrics* BoardModelLocked(int board_id, BoardMetrics& b, int model_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A board the scheduler removed: drops all its series.
  void RemoveBoardLocked(int board_id, BoardMetrics& b, BoardState& s)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Counter>& images_;
  prometheus::Family<prometheus::Counter>& variant_images_;
  prometheus::Family<prometheus::Histogram>& request_seconds_;
  prometheus::Family<prometheus::Histogram>& queue_seconds_;
  prometheus::Family<prometheus::Histogram>& device_seconds_;
  prometheus::Family<prometheus::Gauge>& queue_images_;
  prometheus::Family<prometheus::Counter>& expired_requests_;
  prometheus::Family<prometheus::Counter>& expired_images_;
  prometheus::Family<prometheus::Counter>& late_images_;
  prometheus::Family<prometheus::Counter>& skipped_fills_;
  prometheus::Family<prometheus::Counter>& withheld_images_;
  prometheus::Family<prometheus::Counter>& canary_failures_;
  prometheus::Family<prometheus::Counter>& board_images_;
  prometheus::Family<prometheus::Counter>& board_runs_;
  prometheus::Family<prometheus::Counter>& board_failed_runs_;
  prometheus::Family<prometheus::Histogram>& board_run_images_;
  prometheus::Family<prometheus::Gauge>& board_in_flight_;
  prometheus::Family<prometheus::Counter>& board_busy_seconds_;
  prometheus::Family<prometheus::Gauge>& board_healthy_;
  prometheus::Family<prometheus::Gauge>& board_phase_;
  prometheus::Family<prometheus::Counter>& board_failures_;
  prometheus::Family<prometheus::Counter>& board_recoveries_;
  prometheus::Family<prometheus::Counter>& board_programmings_;

  const std::unique_ptr<ModelMetrics> unknown_;
  IdTable<ModelMetrics> models_;
  IdTable<BoardMetrics> boards_;

  hgpipe::Mutex mu_;
  // Owners of what the tables point to; never shrink.
  std::vector<std::unique_ptr<ModelMetrics>> model_store_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<BoardMetrics>> board_store_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<int, BoardState> board_state_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hgpipe::server

#endif  // HGPIPE_SERVER_METRICS_H_
