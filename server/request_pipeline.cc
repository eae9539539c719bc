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
#include "accel/device_layout.h"
#include "scheduler/variant_router.h"
#include "server/client_text.h"
#include "server/infer_request.h"
#include "server/infer_response.h"
#include "server/log_control.h"
#include "server/shared_memory_tensors.h"
#include "server/trace_control.h"

namespace hgpipe::server {

// One request from its model's lookup to its answer. Owned by whichever step
// runs it: Infer, then the scheduler (through CallRequest) until it
// answers; Finish or Refuse deletes it after `done` returns. Fields are set
// by Infer before the call is handed on, and read-only afterwards unless
// said otherwise.
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
  // Set by Infer when the request is sampled (trace_control.h); marked by
  // the steps after it, on their threads.
  std::unique_ptr<RequestTrace> trace;
};

// An encoded image's bytes, as the decoder takes them.
inline absl::Span<const uint8_t> EncodedBytes(absl::string_view e) {
  return absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(e.data()), e.size());
}

// A call as the scheduler sees it. Fill writes one image into a board slot
// when its run is formed: device patches are copied (in the device's
// order), an encoded or pixel image is decoded and preprocessed straight
// into the slot (heavy: on the scheduler's fill executor, possibly several
// images of a call at once). Fill only reads the call's input and model,
// which stay unchanged until Done; Output writes the image's own logits.
class CallRequest final : public scheduler::InferRequest {
 public:
  explicit CallRequest(InferCall* call) : call_(call) {}

  absl::Status Fill(uint32_t index, const accel::DeviceGeometry& g,
                    absl::Span<int8_t> slot) override {
    RequestTrace* trace = call_->trace.get();
    if (trace != nullptr) trace->Mark(TraceStep::kComputeStart);
    absl::Status s = FillSlot(index, g, slot);
    if (trace != nullptr) trace->Mark(TraceStep::kComputeInputEnd);
    return s;
  }
  void Output(uint32_t index, const accel::DeviceGeometry& g,
              absl::Span<const uint32_t> words) override {
    RequestTrace* trace = call_->trace.get();
    if (trace != nullptr) trace->Mark(TraceStep::kComputeOutputStart);
    accel::DecodeLogits(words.first(g.classes), call_->logits + size_t{index} * g.classes);
    if (trace != nullptr) trace->Mark(TraceStep::kComputeEnd);
  }
  void Done(absl::Status status) override { call_->pipeline->Finish(call_, std::move(status)); }

  // InvalidArgument naming the model and the image.
  static absl::Status ImageError(const LoadedModel& m, uint32_t index, const absl::Status& s) {
    return absl::InvalidArgumentError(
        absl::StrCat("model ", Quote(m.name()), ": image ", index, ": ", s.message()));
  }

 private:
  absl::Status FillSlot(uint32_t index, const accel::DeviceGeometry& g, absl::Span<int8_t> slot) {
    const LoadedModel& m = *call_->ref.model;
    const PreparedInput& in = call_->input;
    if (!m.preprocessor.has_value()) {
      accel::PackImage(g, in.images + size_t{index} * g.input_bytes(), slot.data());
      return absl::OkStatus();
    }
    const preprocess::Preprocessor& pre = *m.preprocessor;
    absl::Status s;
    if (!in.encoded.empty()) {
      s = pre.EncodedToPatches(EncodedBytes(in.encoded[index]), slot);
    } else {
      const size_t pixels = size_t(in.height) * in.width * in.channels;
      s = pre.PixelsToPatches(in.pixels + index * pixels, in.height, in.width, in.channels, slot);
    }
    if (s.ok()) return s;
    return ImageError(m, index, s);
  }

  InferCall* const call_;
};

namespace {

// What the preprocessor refuses without decoding (an encoded image's header,
// a pixel image's size): refused before the images are queued, so that a
// board slot is never held for an image that cannot be served.
absl::Status CheckImages(const LoadedModel& m, const PreparedInput& in) {
  if (!m.preprocessor.has_value()) return absl::OkStatus();
  const preprocess::Preprocessor& pre = *m.preprocessor;
  for (uint32_t i = 0; i < in.encoded.size(); ++i) {
    absl::Status s = pre.CheckEncoded(EncodedBytes(in.encoded[i]));
    if (!s.ok()) return CallRequest::ImageError(m, i, s);
  }
  if (in.encoded.empty()) {
    // The size is the whole tensor's: no one image to name.
    if (absl::Status s = pre.CheckPixels(in.height, in.width, in.channels); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("model ", Quote(m.name()), ": ", s.message()));
    }
  }
  return absl::OkStatus();
}

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
                                 Metrics* metrics, InferStatistics* statistics,
                                 SharedMemoryRegions* shared_memory,
                                 absl::Duration response_reserve, TraceControl* trace)
    : models_(models),
      scheduler_(scheduler),
      metrics_(metrics),
      statistics_(statistics),
      shared_memory_(shared_memory),
      response_reserve_(response_reserve),
      trace_(trace) {}

void RequestPipeline::Infer(const inference::ModelInferRequest& request,
                            inference::ModelInferResponse* response, absl::Time deadline,
                            const InferOrigin& origin, Done done) {
  const absl::Time start = absl::Now();
  last_call_ns_.store(absl::ToUnixNanos(start));
  absl::StatusOr<ModelRef> found = models_->Find(request.model_name(), request.model_version());
  if (found.ok() && draining_.load()) {
    found = absl::UnavailableError("hgpipe-server is shutting down");
  }
  if (!found.ok()) {
    const absl::Duration took = absl::Now() - start;
    metrics_->RequestDone(Metrics::kUnknownModel, found.status().code(), 0, took);
    LogInferAnswer(Quote(request.model_name()), request.id(), 0, found.status(), took);
    done(found.status());
    return;
  }
  // The id first: verbose lines name it, also for a request refused.
  response->set_id(request.id());
  auto* call = new InferCall(this, response, std::move(done), start, *std::move(found));
  const LoadedModel& m = *call->ref.model;
  const config::ModelConfig& c = m.entry.config;
  if (trace_ != nullptr) call->trace = trace_->Sample(m.name(), request.id(), origin.wire);
  if (call->trace != nullptr) {
    call->trace->Mark(TraceStep::kReceived,
                      origin.received == absl::InfinitePast() ? start : origin.received);
    call->trace->Mark(TraceStep::kRequestStart, start);
  }
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
  if (absl::Status s = CheckImages(m, call->input); !s.ok()) return Refuse(call, s);
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
  call->logits = AddLogitOutput(n, call->classes, c.output().name(), response);
  call->spec.fp32 = c.output().datatype() == "FP32";
  call->spec.logit_scale = m.entry.logit_scale;
  call->spec.classification = call->input.classification;
  call->spec.labels = &m.entry.labels;
  Submit(call);
}

void RequestPipeline::Submit(InferCall* call) {
  const LoadedModel& m = *call->ref.model;
  auto job = std::make_unique<CallRequest>(call);
  job->n_images = call->input.n_images;
  job->priority = call->priority;
  job->deadline = call->deadline;
  // Decoding and preprocessing: on the scheduler's fill executor.
  job->heavy_fill = m.preprocessor.has_value();
  const absl::Time queued = absl::Now();
  call->queued_at_ns = absl::ToUnixNanos(queued);
  if (call->trace != nullptr) call->trace->Mark(TraceStep::kQueueStart, queued);
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
  LogInferAnswer(m.name(), call->response->id(), n, status, end - call->start);
  WriteTrace(*call, end);
  call->done(std::move(status));
}

void RequestPipeline::Refuse(InferCall* call, absl::Status status) {
  std::unique_ptr<InferCall> owned(call);
  const absl::Duration took = absl::Now() - call->start;
  const int model_id = call->ref.model->model_id();
  metrics_->RequestDone(model_id, status.code(), 0, took);
  statistics_->RequestDone(model_id, false, 0, {took, {}, {}});
  LogInferAnswer(call->ref.model->name(), call->response->id(), 0, status, took);
  WriteTrace(*call, call->start + took);
  call->done(std::move(status));
}

void RequestPipeline::WriteTrace(InferCall& call, absl::Time end) {
  if (call.trace == nullptr) return;
  call.trace->Mark(TraceStep::kRequestEnd, end);
  trace_->Write(*call.trace);
}

}  // namespace hgpipe::server
