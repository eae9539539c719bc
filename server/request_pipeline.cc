#include "server/request_pipeline.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "base/mutex.h"
#include "scheduler/variant_router.h"
#include "server/client_text.h"
#include "server/infer_request.h"
#include "server/infer_response.h"
#include "server/shared_memory_tensors.h"

namespace hgpipe::server {

// One request from its model's lookup to its answer. Owned by whichever step
// runs it: Infer, then the worker pool's tasks (the last image's task hands
// it on), then the scheduler's answer; Finish or Refuse deletes it after
// `done` returns. Fields are set by Infer before the call is handed on, and
// read-only afterwards unless said otherwise.
struct InferCall {
  InferCall(RequestPipeline* p, inference::ModelInferResponse* resp, InferPipeline::Done d,
            absl::Time t, ModelRef r)
      : pipeline(p), response(resp), done(std::move(d)), start(t), ref(std::move(r)) {}

  RequestPipeline* const pipeline;
  inference::ModelInferResponse* const response;  // the caller's
  InferPipeline::Done done;
  const absl::Time start;
  // `ref.model` stays until the call is deleted (the labels `spec` points
  // to are its); `ref.admission` is let go once the images are queued (or
  // the request fails on the way).
  ModelRef ref;
  // Keeps the request's shared memory regions mapped until the answer.
  SharedMemoryTensors shared;
  // Points into the caller's request (or into its own converted buffers).
  PreparedInput input;
  uint32_t classes = 0;
  int32_t* logits = nullptr;  // in `response`, where the scheduler writes
  OutputSpec spec;            // Finish sets the answering variant's scale
  uint32_t priority = 0;
  absl::Time deadline = absl::InfiniteFuture();
  std::optional<double> min_accuracy;
  // Set by Submit before the scheduler has the request, read by Finish
  // after it answered (the scheduler's lock orders the two): when the
  // images were queued (unix ns, 0: never), and the variant chosen.
  int64_t queued_at_ns = 0;
  int variant = 0;
  // Models with a preprocessor: the images' device patches, flat, and the
  // worker pool's progress on them.
  std::vector<int8_t> patches;
  std::atomic<uint32_t> remaining{0};
  hgpipe::Mutex mu;
  // The lowest-numbered image that failed, and why.
  int64_t failed_image ABSL_GUARDED_BY(mu) = -1;
  absl::Status failure ABSL_GUARDED_BY(mu);
};

namespace {

// OK if a variant of `m` reaches `floor` (its measured top-1); else the
// InvalidArgument the router would answer, said before any work.
absl::Status CheckAccuracyFloor(const LoadedModel& m, double floor) {
  const VariantEntry* best = nullptr;
  for (const VariantEntry& v : m.entry.variants) {
    if (best == nullptr || v.manifest.accuracy.top1 > best->manifest.accuracy.top1) best = &v;
  }
  const std::string& name = m.name();
  if (best == nullptr || !best->manifest.accuracy.measured()) {
    if (best != nullptr && floor <= best->manifest.accuracy.top1) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat("model ", Quote(name),
                                                   ": parameter 'min_accuracy': the model states "
                                                   "no measured top-1 accuracy"));
  }
  return scheduler::CheckAccuracyFloor(Quote(name), floor, best->name,
                                       best->manifest.accuracy.top1);
}

}  // namespace

RequestPipeline::RequestPipeline(ModelManager* models, scheduler::Scheduler* scheduler,
                                 Metrics* metrics, InferStatistics* statistics, WorkerPool* workers,
                                 SharedMemoryRegions* shared_memory,
                                 absl::Duration response_reserve)
    : models_(models),
      scheduler_(scheduler),
      metrics_(metrics),
      statistics_(statistics),
      workers_(workers),
      shared_memory_(shared_memory),
      response_reserve_(response_reserve) {}

void RequestPipeline::Infer(const inference::ModelInferRequest& request,
                            inference::ModelInferResponse* response, absl::Time deadline,
                            Done done) {
  const absl::Time start = absl::Now();
  last_call_ns_.store(absl::ToUnixNanos(start));
  absl::StatusOr<ModelRef> found = models_->Find(request.model_name(), request.model_version());
  if (found.ok() && draining_.load()) {
    found = absl::UnavailableError("hgpipe-server is shutting down");
  }
  if (!found.ok()) {
    metrics_->RequestDone(Metrics::kUnknownModel, found.status().code(), 0, absl::Now() - start);
    done(found.status());
    return;
  }
  auto* call = new InferCall(this, response, std::move(done), start, *std::move(found));
  const LoadedModel& m = *call->ref.model;
  const config::ModelConfig& c = m.entry.config;
  // Tensors in shared memory: the input is read from its region, the output
  // written there.
  absl::StatusOr<SharedMemoryTensors> shared =
      FindSharedMemoryTensors(request, shared_memory_, c.name());
  if (!shared.ok()) return Refuse(call, shared.status());
  call->shared = *std::move(shared);
  absl::StatusOr<PreparedInput> prepared = PrepareInput(request, c, call->shared.input_bytes());
  if (!prepared.ok()) return Refuse(call, prepared.status());
  call->input = *std::move(prepared);
  const uint32_t n = call->input.n_images;
  call->classes = static_cast<uint32_t>(c.output().dims(0));
  const size_t out_bytes = size_t{n} * call->classes * sizeof(int32_t);
  if (absl::Status s = CheckSharedMemoryOutput(call->shared, out_bytes, c.name()); !s.ok()) {
    return Refuse(call, s);
  }
  absl::StatusOr<RequestPolicy> policy = ParseRequestPolicy(request, c);
  if (!policy.ok()) return Refuse(call, policy.status());
  // A floor above every variant is refused before any work (the router
  // would refuse it too).
  if (policy->min_accuracy.has_value()) {
    if (absl::Status s = CheckAccuracyFloor(m, *policy->min_accuracy); !s.ok()) {
      return Refuse(call, s);
    }
  }
  call->priority = policy->priority;
  call->min_accuracy = policy->min_accuracy;
  if (policy->timeout != absl::InfiniteDuration()) call->deadline = start + policy->timeout;
  call->deadline = SchedulerDeadline(start, std::min(call->deadline, deadline), response_reserve_);
  response->set_model_name(c.name());
  response->set_model_version("1");
  response->set_id(request.id());
  call->logits = AddLogitOutput(n, call->classes, c.output().name(), response);
  call->spec.fp32 = c.output().datatype() == "FP32";
  call->spec.logit_scale = m.entry.logit_scale;
  call->spec.classification = call->input.classification;
  call->spec.labels = &m.entry.labels;
  if (m.preprocessor.has_value()) {
    Preprocess(call);
  } else {
    Submit(call, call->input.images);
  }
}

void RequestPipeline::Preprocess(InferCall* call) {
  const LoadedModel& m = *call->ref.model;
  const uint32_t n = call->input.n_images;
  call->patches.resize(size_t{n} * m.preprocessor->input_bytes());
  call->remaining.store(n);
  std::vector<WorkerPool::Task> tasks;
  tasks.reserve(n);
  // Two words: the task is stored inline, not allocated.
  for (uint32_t i = 0; i < n; ++i) {
    tasks.push_back([call, i] { call->pipeline->PreprocessImage(call, i); });
  }
  if (!workers_->TrySubmitAll(std::move(tasks))) {
    Finish(call, absl::ResourceExhaustedError(
                     absl::StrCat("model ", Quote(m.name()),
                                  ": too many images waiting for preprocessing; retry later")));
  }
}

void RequestPipeline::PreprocessImage(InferCall* call, uint32_t i) {
  const LoadedModel& m = *call->ref.model;
  const preprocess::Preprocessor& pre = *m.preprocessor;
  const size_t bytes = pre.input_bytes();
  const PreparedInput& in = call->input;
  const absl::Span<int8_t> out(call->patches.data() + i * bytes, bytes);
  absl::Status s;
  if (!in.encoded.empty()) {
    const absl::string_view e = in.encoded[i];
    s = pre.EncodedToPatches(
        absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(e.data()), e.size()), out);
  } else {
    const size_t pixels = size_t(in.height) * in.width * in.channels;
    s = pre.PixelsToPatches(in.pixels + i * pixels, in.height, in.width, in.channels, out);
  }
  if (!s.ok()) {
    hgpipe::MutexLock l(&call->mu);
    if (call->failed_image < 0 || i < call->failed_image) {
      call->failed_image = i;
      call->failure = s;
    }
  }
  // Only the last image's task goes on: the others may not touch the call
  // after this (it may be answered and deleted already).
  if (call->remaining.fetch_sub(1) != 1) return;
  absl::Status failure;
  int64_t failed_image;
  {
    hgpipe::MutexLock l(&call->mu);
    failure = call->failure;
    failed_image = call->failed_image;
  }
  if (failed_image >= 0) {
    call->ref.admission.reset();
    Finish(call, absl::InvalidArgumentError(absl::StrCat("model ", Quote(m.name()), ": image ",
                                                         failed_image, ": ", failure.message())));
    return;
  }
  Submit(call, call->patches.data());
}

void RequestPipeline::Submit(InferCall* call, const int8_t* images) {
  const LoadedModel& m = *call->ref.model;
  auto job = std::make_unique<scheduler::BufferRequest>();
  job->images = images;
  job->n_images = call->input.n_images;
  job->logits = call->logits;
  job->priority = call->priority;
  job->deadline = call->deadline;
  // One word: stored inline, not allocated.
  job->done = [call](absl::Status s) { call->pipeline->Finish(call, std::move(s)); };
  call->queued_at_ns = absl::ToUnixNanos(absl::Now());
  // Which variant: the router's choice (docs/serving.md, "Variants"), known
  // before queueing so that the answer decodes with its scales.
  scheduler::ModelHandle target = m.handle;
  absl::Status s;
  if (m.router != nullptr) {
    absl::StatusOr<int> v =
        m.router->Choose(job->n_images, call->priority, call->deadline, call->min_accuracy);
    if (v.ok()) {
      call->variant = *v;
      target = m.variant_handles[*v];
    } else {
      s = v.status();
    }
  }
  // Handed over (or refused) below: an unload need not wait for this
  // request. Taken out of the call first: once the scheduler has the
  // request, the call may be answered and deleted before Enqueue returns.
  std::shared_ptr<const void> admission = std::move(call->ref.admission);
  if (s.ok()) s = scheduler_->Enqueue(target, std::move(job));
  admission.reset();
  if (s.ok()) return;
  // Refused: the call is still ours.
  if (absl::IsNotFound(s)) {
    s = absl::UnavailableError(absl::StrCat("model ", Quote(m.name()), " was unloaded"));
  }
  Finish(call, std::move(s));
}

void RequestPipeline::Finish(InferCall* call, absl::Status status) {
  std::unique_ptr<InferCall> owned(call);
  const absl::Time computed = absl::Now();
  const LoadedModel& m = *call->ref.model;
  const uint32_t n = call->input.n_images;
  // The variant that answered: its own dequantization, named in the
  // response and counted once the answer stands.
  const int vi = call->variant;
  const std::vector<VariantEntry>& vs = m.entry.variants;
  const bool known_variant = vi >= 0 && vi < static_cast<int>(vs.size());
  if (status.ok()) {
    if (known_variant) call->spec.logit_scale = vs[vi].logit_scale;
    FinishLogitOutput(call->spec, n, call->classes, call->response);
    WriteSharedMemoryOutput(call->shared, call->response);
    // Only now: a shrunk region faults during the write as during the read.
    status = CheckSharedMemoryIntact(call->shared, m.name());
  }
  if (status.ok() && known_variant) {
    (*call->response->mutable_parameters())["variant"].set_string_param(vs[vi].name);
    if (static_cast<size_t>(vi) < m.variant_images.size()) m.variant_images[vi]->Increment(n);
  }
  const absl::Time end = absl::Now();
  metrics_->RequestDone(m.model_id(), status.code(), n, end - call->start);
  statistics_->RequestDone(
      m.model_id(), status.ok(), n,
      {end - call->start,
       call->queued_at_ns > 0 ? absl::FromUnixNanos(call->queued_at_ns) - call->start
                              : absl::ZeroDuration(),
       end - computed});
  call->done(std::move(status));
}

void RequestPipeline::Refuse(InferCall* call, absl::Status status) {
  std::unique_ptr<InferCall> owned(call);
  const absl::Duration took = absl::Now() - call->start;
  const int model_id = call->ref.model->model_id();
  metrics_->RequestDone(model_id, status.code(), 0, took);
  statistics_->RequestDone(model_id, false, 0, {took, {}, {}});
  call->done(std::move(status));
}

}  // namespace hgpipe::server
