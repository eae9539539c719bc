// Prometheus metrics (prometheus-cpp), served at /metrics on the metrics port.
// Names follow Prometheus conventions: hgpipe_ prefix, base units, _total on
// counters. Every child is created when its model or board is added, so the
// hot path only touches atomics and histogram buckets by index.
//
// Per model {model}: hgpipe_requests_total{code}, hgpipe_images_total,
//   hgpipe_request_duration_seconds, hgpipe_queue_duration_seconds (per
//   image), hgpipe_device_duration_seconds (per run), hgpipe_queue_images.
// Per board {board, model}: hgpipe_board_images_total, hgpipe_board_runs_total,
//   hgpipe_board_failed_runs_total, hgpipe_board_run_images,
//   hgpipe_board_images_in_flight, hgpipe_board_busy_seconds_total,
//   hgpipe_board_healthy.
//
// Thread safety: AddModel before serving; everything else from any thread.
#ifndef HGPIPE_SERVER_METRICS_H_
#define HGPIPE_SERVER_METRICS_H_

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "scheduler/scheduler.h"

namespace hgpipe::server {

class Metrics final : public scheduler::Observer {
 public:
  // Model id used for requests naming no loaded model.
  static constexpr int kUnknownModel = -1;

  Metrics();
  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  // Must be called in scheduler model-id order; `board_names` in board-id
  // order.
  void AddModel(int model_id, const std::string& model,
                const std::vector<std::string>& board_names);

  // One answered request (any outcome).
  void RequestDone(int model_id, absl::StatusCode code, uint32_t images,
                   absl::Duration latency);

  // scheduler::Observer
  void QueueDepth(int model_id, uint64_t images) override;
  void RunStarted(int model_id, int board_id, uint32_t images,
                  absl::Span<const absl::Duration> queue_waits,
                  absl::Duration input_time) override;
  void RunFinished(int model_id, int board_id, uint32_t images,
                   absl::Duration device_time, const absl::Status& status) override;
  void BoardHealth(int model_id, int board_id, bool healthy) override;

 private:
  static constexpr int kCodes = 17;  // gRPC status codes 0..16
  struct ModelMetrics {
    std::array<prometheus::Counter*, kCodes> requests;
    prometheus::Counter* images;
    prometheus::Histogram* request_seconds;
    prometheus::Histogram* queue_seconds;
    prometheus::Histogram* device_seconds;
    prometheus::Gauge* queue_images;
  };
  struct BoardMetrics {
    prometheus::Counter* images;
    prometheus::Counter* runs;
    prometheus::Counter* failed_runs;
    prometheus::Histogram* run_images;
    prometheus::Gauge* in_flight;
    prometheus::Counter* busy_seconds;
    prometheus::Gauge* healthy;
  };
  ModelMetrics MakeModel(const std::string& model);
  ModelMetrics& model(int id) { return id < 0 ? unknown_ : models_[id]; }

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Counter>& images_;
  prometheus::Family<prometheus::Histogram>& request_seconds_;
  prometheus::Family<prometheus::Histogram>& queue_seconds_;
  prometheus::Family<prometheus::Histogram>& device_seconds_;
  prometheus::Family<prometheus::Gauge>& queue_images_;
  prometheus::Family<prometheus::Counter>& board_images_;
  prometheus::Family<prometheus::Counter>& board_runs_;
  prometheus::Family<prometheus::Counter>& board_failed_runs_;
  prometheus::Family<prometheus::Histogram>& board_run_images_;
  prometheus::Family<prometheus::Gauge>& board_in_flight_;
  prometheus::Family<prometheus::Counter>& board_busy_seconds_;
  prometheus::Family<prometheus::Gauge>& board_healthy_;

  // Filled by AddModel before serving, read-only after.
  ModelMetrics unknown_;
  std::vector<ModelMetrics> models_;
  std::vector<BoardMetrics> boards_;
};

}  // namespace hgpipe::server

#endif  // HGPIPE_SERVER_METRICS_H_
