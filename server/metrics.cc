#include "server/metrics.h"

#include "glog/logging.h"

namespace hgpipe::server {
namespace {

using prometheus::Histogram;

// Request latency: the pipeline alone takes 1.92 ms, so resolution starts
// there and reaches seconds for queues under overload.
const Histogram::BucketBoundaries& RequestBuckets() {
  // Fine where an HG-PIPE request lands (latency 1.92 ms plus host and
  // queueing), so p50/p99 read from the histogram are good to a few percent.
  static const auto* b = new Histogram::BucketBoundaries{
      0.001,  0.0015,  0.002, 0.0021, 0.0022, 0.0023, 0.0024, 0.0025, 0.00275, 0.003, 0.00325,
      0.0035, 0.00375, 0.004, 0.0045, 0.005,  0.006,  0.0075, 0.01,   0.0125,  0.015, 0.02,
      0.03,   0.05,    0.075, 0.1,    0.2,    0.5,    1,      2,      5,       10};
  return *b;
}
const Histogram::BucketBoundaries& QueueBuckets() {
  static const auto* b =
      new Histogram::BucketBoundaries{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01,
                                      0.02,    0.05,   0.1,     0.25,   0.5,   1,     2.5,   10};
  return *b;
}
const Histogram::BucketBoundaries& RunImageBuckets() {
  static const auto* b = new Histogram::BucketBoundaries{1, 2, 4, 8, 16, 32, 64, 128, 256, 512};
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
      variant_images_(
          prometheus::BuildCounter()
              .Name("hgpipe_variant_images_total")
              .Help("Images answered successfully, by the model's variant that answered")
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
      expired_requests_(prometheus::BuildCounter()
                            .Name("hgpipe_deadline_expired_requests_total")
                            .Help("Queued requests answered DEADLINE_EXCEEDED "
                                  "because they could not finish in time")
                            .Register(*registry_)),
      expired_images_(prometheus::BuildCounter()
                          .Name("hgpipe_deadline_expired_images_total")
                          .Help("Images of queued requests that expired")
                          .Register(*registry_)),
      late_images_(prometheus::BuildCounter()
                       .Name("hgpipe_late_results_dropped_images_total")
                       .Help("Board results dropped because their request had "
                             "already been answered DEADLINE_EXCEEDED")
                       .Register(*registry_)),
      skipped_fills_(prometheus::BuildCounter()
                         .Name("hgpipe_skipped_fill_images_total")
                         .Help("Images of formed runs not decoded or copied because their "
                               "request had been answered early or another of its images failed")
                         .Register(*registry_)),
      withheld_images_(prometheus::BuildCounter()
                           .Name("hgpipe_withheld_images_total")
                           .Help("Images of filled runs not sent to a board because their "
                                 "request had been answered early")
                           .Register(*registry_)),
      canary_failures_(prometheus::BuildCounter()
                           .Name("hgpipe_board_canary_failures_total")
                           .Help("Canary runs whose output differed from the known one")
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
                         .Help("1 while a board serves the model, 0 while it is "
                               "programmed, probed or recovered for it, or retired")
                         .Register(*registry_)),
      board_phase_(prometheus::BuildGauge()
                       .Name("hgpipe_board_phase")
                       .Help("1 for the board's current phase (serving, idle, "
                             "draining, programming, probing, recovering, "
                             "retired), 0 for the others")
                       .Register(*registry_)),
      board_failures_(prometheus::BuildCounter()
                          .Name("hgpipe_board_failures_total")
                          .Help("Times a board failed: a run failed or timed "
                                "out, or a recovery step failed")
                          .Register(*registry_)),
      board_recoveries_(prometheus::BuildCounter()
                            .Name("hgpipe_board_recoveries_total")
                            .Help("Times a board was re-admitted after a failure")
                            .Register(*registry_)),
      board_programmings_(prometheus::BuildCounter()
                              .Name("hgpipe_board_programmings_total")
                              .Help("Bitstreams loaded onto a board at run time "
                                    "(reprogramming and recovery)")
                              .Register(*registry_)),
      unknown_(MakeModel("_unknown")) {}

std::unique_ptr<Metrics::ModelMetrics> Metrics::MakeModel(const std::string& name) {
  auto m = std::make_unique<ModelMetrics>();
  m->name = name;
  for (int c = 0; c < kCodes; ++c) {
    m->requests[c] = &requests_.Add(
        {{"model", name}, {"code", absl::StatusCodeToString(static_cast<absl::StatusCode>(c))}});
  }
  m->images = &images_.Add({{"model", name}});
  m->request_seconds = &request_seconds_.Add({{"model", name}}, RequestBuckets());
  m->queue_seconds = &queue_seconds_.Add({{"model", name}}, QueueBuckets());
  m->device_seconds = &device_seconds_.Add({{"model", name}}, RequestBuckets());
  m->queue_images = &queue_images_.Add({{"model", name}});
  m->expired_requests = &expired_requests_.Add({{"model", name}});
  m->expired_images = &expired_images_.Add({{"model", name}});
  m->late_images = &late_images_.Add({{"model", name}});
  m->skipped_fills = &skipped_fills_.Add({{"model", name}});
  m->withheld_images = &withheld_images_.Add({{"model", name}});
  return m;
}

void Metrics::AddModel(int model_id, const std::string& model) {
  std::unique_ptr<ModelMetrics> m = MakeModel(model);
  hgpipe::MutexLock l(&mu_);
  models_.Set(model_id, m.get());
  model_store_.push_back(std::move(m));
}

void Metrics::AddBoard(int board_id, const std::string& board) {
  auto b = std::make_unique<BoardMetrics>();
  b->name = board;
  for (int p = 0; p < kPhases; ++p) {
    const auto phase = static_cast<scheduler::BoardPhase>(p);
    b->phase[p] = &board_phase_.Add(
        {{"board", board}, {"phase", std::string(scheduler::BoardPhaseName(phase))}});
    b->phase[p]->Set(phase == scheduler::BoardPhase::kIdle ? 1 : 0);
  }
  b->failures = &board_failures_.Add({{"board", board}});
  b->recoveries = &board_recoveries_.Add({{"board", board}});
  b->programmings = &board_programmings_.Add({{"board", board}});
  hgpipe::MutexLock l(&mu_);
  boards_.Set(board_id, b.get());
  board_store_.push_back(std::move(b));
  board_state_[board_id];
}

Metrics::BoardModelMetrics* Metrics::BoardModelLocked(int board_id, BoardMetrics& b, int model_id) {
  std::unique_ptr<BoardModelMetrics>& bm = board_state_[board_id].by_model[model_id];
  if (bm == nullptr) {
    const prometheus::Labels l{{"board", b.name}, {"model", model(model_id)->name}};
    bm = std::make_unique<BoardModelMetrics>();
    bm->model_id = model_id;
    bm->images = &board_images_.Add(l);
    bm->runs = &board_runs_.Add(l);
    bm->failed_runs = &board_failed_runs_.Add(l);
    bm->run_images = &board_run_images_.Add(l, RunImageBuckets());
    bm->in_flight = &board_in_flight_.Add(l);
    bm->busy_seconds = &board_busy_seconds_.Add(l);
  }
  return bm.get();
}

Metrics::BoardModelMetrics* Metrics::BoardModel(int board_id, BoardMetrics& b, int model_id) {
  BoardModelMetrics* bm = b.current.load(std::memory_order_acquire);
  if (bm != nullptr && bm->model_id == model_id) return bm;
  // A run of a model the board no longer (or not yet) serves: rare.
  hgpipe::MutexLock l(&mu_);
  return BoardModelLocked(board_id, b, model_id);
}

void Metrics::RequestDone(int model_id, absl::StatusCode code, uint32_t images,
                          absl::Duration latency) {
  ModelMetrics& m = *model(model_id);
  const int c = static_cast<int>(code);
  m.requests[c >= 0 && c < kCodes ? c : 2]->Increment();
  if (code == absl::StatusCode::kOk) {
    m.images->Increment(images);
    m.request_seconds->Observe(absl::ToDoubleSeconds(latency));
  }
}

prometheus::Counter* Metrics::VariantImagesCounter(const std::string& model,
                                                   const std::string& variant) {
  return &variant_images_.Add({{"model", model}, {"variant", variant}});
}

void Metrics::QueueDepth(int model_id, uint64_t images) {
  model(model_id)->queue_images->Set(static_cast<double>(images));
}

void Metrics::RunStarted(int model_id, int board_id, uint32_t images,
                         absl::Span<const absl::Duration> queue_waits, absl::Duration input_time) {
  ModelMetrics& m = *model(model_id);
  for (absl::Duration w : queue_waits) m.queue_seconds->Observe(absl::ToDoubleSeconds(w));
  BoardMetrics* b = boards_.Get(board_id);
  if (b == nullptr) return;
  BoardModelMetrics& bm = *BoardModel(board_id, *b, model_id);
  bm.in_flight->Increment(images);
  bm.busy_seconds->Increment(absl::ToDoubleSeconds(input_time));
  bm.run_images->Observe(images);
}

void Metrics::RunFinished(int model_id, int board_id, uint32_t images, absl::Duration device_time,
                          const absl::Status& status) {
  BoardMetrics* b = boards_.Get(board_id);
  if (b == nullptr) return;
  BoardModelMetrics& bm = *BoardModel(board_id, *b, model_id);
  bm.in_flight->Decrement(images);
  if (status.ok()) {
    bm.images->Increment(images);
    bm.runs->Increment();
    model(model_id)->device_seconds->Observe(absl::ToDoubleSeconds(device_time));
  } else {
    bm.failed_runs->Increment();
  }
}

void Metrics::BoardPhaseChanged(int board_id, int model_id, scheduler::BoardPhase phase,
                                const absl::Status& why, const scheduler::BoardCounts& counts) {
  using scheduler::BoardPhase;
  BoardMetrics* b = boards_.Get(board_id);
  if (b == nullptr) return;
  hgpipe::MutexLock l(&mu_);
  BoardState& s = board_state_[board_id];
  if (phase == BoardPhase::kRemoved) {
    RemoveBoardLocked(board_id, *b, s);
    return;
  }
  if (phase == BoardPhase::kRetired) {
    LOG(ERROR) << "board " << b->name << ": retired after " << counts.failures
               << " failure(s): " << why.message();
  } else if (!why.ok()) {
    LOG(WARNING) << "board " << b->name << ": out of service, recovering: " << why.message();
  } else if (phase == BoardPhase::kServing && counts.recoveries > s.counted.recoveries) {
    LOG(INFO) << "board " << b->name << ": back in service for model " << model(model_id)->name;
  }
  const int index = static_cast<int>(phase);
  for (int p = 0; p < kPhases; ++p) b->phase[p]->Set(p == index ? 1 : 0);

  // The scheduler counts; the counters follow by the difference. Events may
  // arrive out of order (delivered from several threads): an older count
  // changes nothing.
  auto follow = [](prometheus::Counter* c, uint64_t now, uint64_t& counted) {
    if (now <= counted) return;
    c->Increment(static_cast<double>(now - counted));
    counted = now;
  };
  follow(b->failures, counts.failures, s.counted.failures);
  follow(b->recoveries, counts.recoveries, s.counted.recoveries);
  follow(b->programmings, counts.programmings, s.counted.programmings);

  // Runs abandoned by a failure are never reported finished, and a board
  // (re-)admitted has none in flight.
  if (phase == BoardPhase::kRecovering || phase == BoardPhase::kRetired ||
      phase == BoardPhase::kServing) {
    for (auto& [id, bm] : s.by_model) bm->in_flight->Set(0);
  }
  b->current.store(phase == BoardPhase::kServing && model_id >= 0
                       ? BoardModelLocked(board_id, *b, model_id)
                       : nullptr,
                   std::memory_order_release);

  // hgpipe_board_healthy{board, model}: only while the board belongs to a
  // model, so a board that moves on leaves no stale 0 behind.
  if (s.healthy != nullptr && s.healthy_model != model_id) {
    board_healthy_.Remove(s.healthy);
    s.healthy = nullptr;
    s.healthy_model = -1;
  }
  if (model_id >= 0) {
    if (s.healthy == nullptr) {
      BoardModelLocked(board_id, *b, model_id);  // its series exist from now on
      s.healthy = &board_healthy_.Add({{"board", b->name}, {"model", model(model_id)->name}});
      s.healthy_model = model_id;
    }
    s.healthy->Set(phase == BoardPhase::kServing ? 1 : 0);
  }
}

void Metrics::RemoveBoardLocked(int board_id, BoardMetrics& b, BoardState& s) {
  // The published phases are those before kRemoved: a removed board has no
  // series at all.
  static_assert(static_cast<int>(scheduler::BoardPhase::kRemoved) == kPhases);
  // Nothing reports about the board any more (it ran nothing since it went
  // idle), so its series can go: boards made per load would otherwise pile
  // up in /metrics with every reload. The BoardMetrics stays allocated.
  boards_.Set(board_id, nullptr);
  b.current.store(nullptr, std::memory_order_release);
  for (prometheus::Gauge* g : b.phase) board_phase_.Remove(g);
  board_failures_.Remove(b.failures);
  board_recoveries_.Remove(b.recoveries);
  board_programmings_.Remove(b.programmings);
  for (auto& [model_id, bm] : s.by_model) {
    board_images_.Remove(bm->images);
    board_runs_.Remove(bm->runs);
    board_failed_runs_.Remove(bm->failed_runs);
    board_run_images_.Remove(bm->run_images);
    board_in_flight_.Remove(bm->in_flight);
    board_busy_seconds_.Remove(bm->busy_seconds);
  }
  if (s.healthy != nullptr) board_healthy_.Remove(s.healthy);
  board_state_.erase(board_id);
}

void Metrics::DeadlineExpired(int model_id, uint32_t images) {
  ModelMetrics& m = *model(model_id);
  m.expired_requests->Increment();
  m.expired_images->Increment(images);
}

void Metrics::CanaryFailed(int board_id, int model_id, const absl::Status& what) {
  const BoardMetrics* b = boards_.Get(board_id);
  const std::string board = b != nullptr ? b->name : absl::StrCat("#", board_id);
  canary_failures_.Add({{"board", board}, {"model", model(model_id)->name}}).Increment();
  LOG(ERROR) << "board " << board << ": canary failed, taken out of service: " << what.message();
}

void Metrics::LateResultsDropped(int model_id, uint32_t images) {
  model(model_id)->late_images->Increment(images);
}

void Metrics::FillsSkipped(int model_id, uint32_t images) {
  model(model_id)->skipped_fills->Increment(images);
}

void Metrics::ImagesWithheld(int model_id, uint32_t images) {
  model(model_id)->withheld_images->Increment(images);
}

}  // namespace hgpipe::server
