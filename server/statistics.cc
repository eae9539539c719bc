#include "server/statistics.h"

#include "absl/time/clock.h"

namespace hgpipe::server {
namespace {

uint64_t Ns(absl::Duration d) {
  return d <= absl::ZeroDuration() ? 0 : static_cast<uint64_t>(absl::ToInt64Nanoseconds(d));
}

}  // namespace

void InferStatistics::Duration::Add(uint64_t n, absl::Duration d) {
  count.fetch_add(n, std::memory_order_relaxed);
  ns.fetch_add(n * Ns(d), std::memory_order_relaxed);
}

void InferStatistics::Duration::Fill(inference::StatisticDuration* out) const {
  out->set_count(count.load(std::memory_order_relaxed));
  out->set_ns(ns.load(std::memory_order_relaxed));
}

InferStatistics::Model* InferStatistics::Get(int model_id) {
  if (Model* m = models_.Get(model_id)) return m;
  if (model_id < 0 || model_id >= IdTable<Model>::kCapacity) return nullptr;
  hgpipe::MutexLock l(&mu_);
  if (Model* m = models_.Get(model_id)) return m;  // another thread won
  owned_.push_back(std::make_unique<Model>());
  models_.Set(model_id, owned_.back().get());
  return owned_.back().get();
}

void InferStatistics::RequestDone(int model_id, bool ok, uint32_t images, const RequestTimes& t) {
  Model* m = Get(model_id);
  if (m == nullptr) return;
  m->last_inference_ms.store(absl::ToUnixMillis(absl::Now()), std::memory_order_relaxed);
  if (!ok) {
    m->fail.Add(1, t.total);
    return;
  }
  m->inference_count.fetch_add(images, std::memory_order_relaxed);
  m->success.Add(1, t.total);
  m->compute_input.Add(1, t.input);
  m->compute_output.Add(1, t.output);
}

void InferStatistics::RunStarted(int model_id, int, uint32_t images,
                                 absl::Span<const absl::Duration> queue_waits,
                                 absl::Duration input_time) {
  Model* m = Get(model_id);
  if (m == nullptr) return;
  uint64_t wait_ns = 0;
  for (absl::Duration w : queue_waits) wait_ns += Ns(w);
  m->queue.count.fetch_add(queue_waits.size(), std::memory_order_relaxed);
  m->queue.ns.fetch_add(wait_ns, std::memory_order_relaxed);
  hgpipe::MutexLock l(&m->batch_mu);
  Batch& b = m->batches[images];
  ++b.input_count;
  b.input_ns += Ns(input_time);
}

void InferStatistics::RunFinished(int model_id, int, uint32_t images, absl::Duration device_time,
                                  const absl::Status& status) {
  if (!status.ok()) return;
  Model* m = Get(model_id);
  if (m == nullptr) return;
  m->execution_count.fetch_add(1, std::memory_order_relaxed);
  m->compute_infer.Add(images, device_time);
  hgpipe::MutexLock l(&m->batch_mu);
  Batch& b = m->batches[images];
  ++b.infer_count;
  b.infer_ns += Ns(device_time);
}

void InferStatistics::Fill(int model_id, inference::ModelStatistics* out) const {
  inference::InferStatistics* s = out->mutable_inference_stats();
  // Every duration present, zero or not: clients index them unconditionally.
  for (auto* d : {s->mutable_success(), s->mutable_fail(), s->mutable_queue(),
                  s->mutable_compute_input(), s->mutable_compute_infer(),
                  s->mutable_compute_output(), s->mutable_cache_hit(), s->mutable_cache_miss()}) {
    d->set_count(0);
  }
  const Model* m = Find(model_id);
  if (m == nullptr) return;
  out->set_last_inference(
      static_cast<uint64_t>(m->last_inference_ms.load(std::memory_order_relaxed)));
  out->set_inference_count(m->inference_count.load(std::memory_order_relaxed));
  out->set_execution_count(m->execution_count.load(std::memory_order_relaxed));
  m->success.Fill(s->mutable_success());
  m->fail.Fill(s->mutable_fail());
  m->queue.Fill(s->mutable_queue());
  m->compute_input.Fill(s->mutable_compute_input());
  m->compute_infer.Fill(s->mutable_compute_infer());
  m->compute_output.Fill(s->mutable_compute_output());
  hgpipe::MutexLock l(&m->batch_mu);
  for (const auto& [size, b] : m->batches) {
    inference::InferBatchStatistics* bs = out->add_batch_stats();
    bs->set_batch_size(size);
    bs->mutable_compute_input()->set_count(b.input_count);
    bs->mutable_compute_input()->set_ns(b.input_ns);
    bs->mutable_compute_infer()->set_count(b.infer_count);
    bs->mutable_compute_infer()->set_ns(b.infer_ns);
    bs->mutable_compute_output()->set_count(0);
  }
}

void ObserverFanout::ModelAdded(int model_id, absl::string_view name) {
  for (auto* o : observers_) o->ModelAdded(model_id, name);
}
void ObserverFanout::BoardAdded(int board_id, absl::string_view name) {
  for (auto* o : observers_) o->BoardAdded(board_id, name);
}
void ObserverFanout::QueueDepth(int model_id, uint64_t images) {
  for (auto* o : observers_) o->QueueDepth(model_id, images);
}
void ObserverFanout::RunStarted(int model_id, int board_id, uint32_t images,
                                absl::Span<const absl::Duration> queue_waits,
                                absl::Duration input_time) {
  for (auto* o : observers_) o->RunStarted(model_id, board_id, images, queue_waits, input_time);
}
void ObserverFanout::RunFinished(int model_id, int board_id, uint32_t images,
                                 absl::Duration device_time, const absl::Status& status) {
  for (auto* o : observers_) o->RunFinished(model_id, board_id, images, device_time, status);
}
void ObserverFanout::BoardPhaseChanged(int board_id, int model_id, scheduler::BoardPhase phase,
                                       const absl::Status& why,
                                       const scheduler::BoardCounts& counts) {
  for (auto* o : observers_) o->BoardPhaseChanged(board_id, model_id, phase, why, counts);
}
void ObserverFanout::CanaryFailed(int board_id, int model_id, const absl::Status& what) {
  for (auto* o : observers_) o->CanaryFailed(board_id, model_id, what);
}
void ObserverFanout::DeadlineExpired(int model_id, uint32_t images) {
  for (auto* o : observers_) o->DeadlineExpired(model_id, images);
}
void ObserverFanout::LateResultsDropped(int model_id, uint32_t images) {
  for (auto* o : observers_) o->LateResultsDropped(model_id, images);
}
void ObserverFanout::FillsSkipped(int model_id, uint32_t images) {
  for (auto* o : observers_) o->FillsSkipped(model_id, images);
}
void ObserverFanout::ImagesWithheld(int model_id, uint32_t images) {
  for (auto* o : observers_) o->ImagesWithheld(model_id, images);
}

}  // namespace hgpipe::server
