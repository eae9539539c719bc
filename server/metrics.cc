#include "server/metrics.h"

namespace hgpipe::server {
namespace {

using prometheus::Histogram;

// Request latency: the pipeline alone takes 1.92 ms, so resolution starts
// there and reaches seconds for queues under overload.
const Histogram::BucketBoundaries& RequestBuckets() {
  static const auto* b = new Histogram::BucketBoundaries{
      0.001, 0.002, 0.0025, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02,
      0.03,  0.05,  0.075,  0.1,   0.2,   0.5,   1,      2,    5,     10};
  return *b;
}
const Histogram::BucketBoundaries& QueueBuckets() {
  static const auto* b = new Histogram::BucketBoundaries{
      0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01,
      0.02,    0.05,   0.1,     0.25,   0.5,   1,     2.5,   10};
  return *b;
}
const Histogram::BucketBoundaries& RunImageBuckets() {
  static const auto* b =
      new Histogram::BucketBoundaries{1, 2, 4, 8, 16, 32, 64, 128, 256, 512};
  return *b;
}

}  // namespace

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      requests_(prometheus::BuildCounter()
                    .Name("hgpipe_requests_total")
                    .Help("Inference requests answered, by gRPC status code")
                    .Register(*registry_)),
      images_(prometheus::BuildCounter()
                  .Name("hgpipe_images_total")
                  .Help("Images answered successfully")
                  .Register(*registry_)),
      request_seconds_(prometheus::BuildHistogram()
                           .Name("hgpipe_request_duration_seconds")
                           .Help("Time from request arrival to answer")
                           .Register(*registry_)),
      queue_seconds_(prometheus::BuildHistogram()
                         .Name("hgpipe_queue_duration_seconds")
                         .Help("Time an image waited before its run was submitted")
                         .Register(*registry_)),
      device_seconds_(prometheus::BuildHistogram()
                          .Name("hgpipe_device_duration_seconds")
                          .Help("Time from run submission to its completion")
                          .Register(*registry_)),
      queue_images_(prometheus::BuildGauge()
                        .Name("hgpipe_queue_images")
                        .Help("Images waiting in the model's queue")
                        .Register(*registry_)),
      board_images_(prometheus::BuildCounter()
                        .Name("hgpipe_board_images_total")
                        .Help("Images a board completed")
                        .Register(*registry_)),
      board_runs_(prometheus::BuildCounter()
                      .Name("hgpipe_board_runs_total")
                      .Help("Runs a board completed")
                      .Register(*registry_)),
      board_failed_runs_(prometheus::BuildCounter()
                             .Name("hgpipe_board_failed_runs_total")
                             .Help("Runs that failed on a board")
                             .Register(*registry_)),
      board_run_images_(prometheus::BuildHistogram()
                            .Name("hgpipe_board_run_images")
                            .Help("Images per run")
                            .Register(*registry_)),
      board_in_flight_(prometheus::BuildGauge()
                           .Name("hgpipe_board_images_in_flight")
                           .Help("Images submitted to a board and not yet completed")
                           .Register(*registry_)),
      board_busy_seconds_(prometheus::BuildCounter()
                              .Name("hgpipe_board_busy_seconds_total")
                              .Help("Time a board's input stream was busy; "
                                    "rate() is its utilization")
                              .Register(*registry_)),
      board_healthy_(prometheus::BuildGauge()
                         .Name("hgpipe_board_healthy")
                         .Help("1 while a board accepts runs, 0 after it failed")
                         .Register(*registry_)),
      unknown_(MakeModel("_unknown")) {}

Metrics::ModelMetrics Metrics::MakeModel(const std::string& name) {
  ModelMetrics m;
  for (int c = 0; c < kCodes; ++c) {
    m.requests[c] = &requests_.Add(
        {{"model", name}, {"code", absl::StatusCodeToString(static_cast<absl::StatusCode>(c))}});
  }
  m.images = &images_.Add({{"model", name}});
  m.request_seconds = &request_seconds_.Add({{"model", name}}, RequestBuckets());
  m.queue_seconds = &queue_seconds_.Add({{"model", name}}, QueueBuckets());
  m.device_seconds = &device_seconds_.Add({{"model", name}}, RequestBuckets());
  m.queue_images = &queue_images_.Add({{"model", name}});
  return m;
}

void Metrics::AddModel(int model_id, const std::string& model,
                       const std::vector<std::string>& board_names) {
  if (static_cast<int>(models_.size()) <= model_id) models_.resize(model_id + 1);
  models_[model_id] = MakeModel(model);
  for (const std::string& b : board_names) {
    const prometheus::Labels l{{"board", b}, {"model", model}};
    BoardMetrics bm;
    bm.images = &board_images_.Add(l);
    bm.runs = &board_runs_.Add(l);
    bm.failed_runs = &board_failed_runs_.Add(l);
    bm.run_images = &board_run_images_.Add(l, RunImageBuckets());
    bm.in_flight = &board_in_flight_.Add(l);
    bm.busy_seconds = &board_busy_seconds_.Add(l);
    bm.healthy = &board_healthy_.Add(l);
    bm.healthy->Set(1);
    boards_.push_back(bm);
  }
}

void Metrics::RequestDone(int model_id, absl::StatusCode code, uint32_t images,
                          absl::Duration latency) {
  ModelMetrics& m = model(model_id);
  const int c = static_cast<int>(code);
  m.requests[c >= 0 && c < kCodes ? c : 2]->Increment();
  if (code == absl::StatusCode::kOk) {
    m.images->Increment(images);
    m.request_seconds->Observe(absl::ToDoubleSeconds(latency));
  }
}

void Metrics::QueueDepth(int model_id, uint64_t images) {
  model(model_id).queue_images->Set(static_cast<double>(images));
}

void Metrics::RunStarted(int model_id, int board_id, uint32_t images,
                         absl::Span<const absl::Duration> queue_waits,
                         absl::Duration input_time) {
  ModelMetrics& m = model(model_id);
  for (absl::Duration w : queue_waits) m.queue_seconds->Observe(absl::ToDoubleSeconds(w));
  BoardMetrics& b = boards_[board_id];
  b.in_flight->Increment(images);
  b.busy_seconds->Increment(absl::ToDoubleSeconds(input_time));
  b.run_images->Observe(images);
}

void Metrics::RunFinished(int model_id, int board_id, uint32_t images,
                          absl::Duration device_time, const absl::Status& status) {
  BoardMetrics& b = boards_[board_id];
  b.in_flight->Decrement(images);
  if (status.ok()) {
    b.images->Increment(images);
    b.runs->Increment();
    model(model_id).device_seconds->Observe(absl::ToDoubleSeconds(device_time));
  } else {
    b.failed_runs->Increment();
  }
}

void Metrics::BoardHealth(int model_id, int board_id, bool healthy) {
  boards_[board_id].healthy->Set(healthy ? 1 : 0);
}

}  // namespace hgpipe::server
