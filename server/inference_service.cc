#include "server/inference_service.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "base/mutex.h"
#include "server/client_text.h"
#include "server/infer_request.h"
#include "server/infer_response.h"
#include "server/shared_memory_api.h"
#include "server/shared_memory_tensors.h"

namespace hgpipe::server {

grpc::Status ToGrpcStatus(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  // absl and gRPC share the canonical code numbering. Messages quote client
  // text through Quote (client_text.h); the bound is a safety net.
  const absl::Status b = BoundedStatus(s);
  return grpc::Status(static_cast<grpc::StatusCode>(b.code()), std::string(b.message()));
}

namespace {

grpc::ServerUnaryReactor* Answer(grpc::CallbackServerContext* ctx, const absl::Status& s) {
  auto* r = ctx->DefaultReactor();
  r->Finish(ToGrpcStatus(s));
  return r;
}

// The call's gRPC deadline, or InfiniteFuture. gRPC reports "no deadline"
// as the largest time point: one this far away is none.
absl::Time CallDeadline(const grpc::CallbackServerContext& ctx) {
  constexpr auto kNoDeadline = std::chrono::hours(24 * 365 * 10);
  const auto deadline = ctx.deadline();
  if (deadline >= std::chrono::system_clock::now() + kNoDeadline) {
    return absl::InfiniteFuture();
  }
  return absl::FromChrono(deadline);
}

// A stream refused before it starts (a restricted API group).
class RefusedStream final : public grpc::ServerBidiReactor<inference::ModelInferRequest,
                                                           inference::ModelStreamInferResponse> {
 public:
  explicit RefusedStream(const absl::Status& s) { Finish(ToGrpcStatus(s)); }
  void OnDone() override { delete this; }
};

absl::Status NotServed(absl::string_view what) {
  return absl::UnimplementedError(
      absl::StrCat(what,
                   " is not supported by hgpipe-server (its extensions: GET v2 or "
                   "ServerMetadata)"));
}

}  // namespace

InferenceService::InferenceService(ModelManager* models, scheduler::Scheduler* scheduler,
                                   Metrics* metrics, InferStatistics* statistics,
                                   WorkerPool* workers, Restrictions restrictions,
                                   SharedMemoryRegions* shared_memory)
    : models_(models),
      scheduler_(scheduler),
      metrics_(metrics),
      statistics_(statistics),
      workers_(workers),
      restrictions_(std::move(restrictions)),
      shared_memory_(shared_memory),
      api_(models, statistics, this) {}

bool InferenceService::Ready() const { return Serving() && models_->AllReady(); }

absl::Status InferenceService::Allowed(const grpc::CallbackServerContext& ctx,
                                       ApiGroup group) const {
  return restrictions_.Check(group,
                             [&ctx](const std::string& name) -> std::optional<absl::string_view> {
                               const auto& md = ctx.client_metadata();
                               auto it = md.find(name);
                               if (it == md.end()) return std::nullopt;
                               return absl::string_view(it->second.data(), it->second.size());
                             });
}

// One ModelStreamInfer call. Requests are read one after another and each
// starts at once, so several are in flight (up to kMaxInFlight requests and
// kMaxBytesHeld bytes of requests and unwritten responses: then reading
// pauses, and gRPC's flow control holds the client back, so a client that
// never reads its responses holds a bounded amount of memory); responses are
// written in the order they complete, one write at a time, each with its
// request's id. A failed request is answered in error_message ("CODE:
// message"), as Triton does, and the stream goes on. The call ends OK once
// the client has half-closed and everything read has been written;
// UNAVAILABLE when the server drains.
class InferenceService::Stream final
    : public grpc::ServerBidiReactor<inference::ModelInferRequest,
                                     inference::ModelStreamInferResponse> {
 public:
  static constexpr int kMaxInFlight = 256;
  static constexpr size_t kMaxBytesHeld = size_t{64} << 20;

  // Registers with `service` (which must outlive it) and starts reading, or
  // ends the call at once if the server is draining. `deadline`: the call's.
  Stream(InferenceService* service, absl::Time deadline) : service_(service), deadline_(deadline) {
    bool draining;
    {
      hgpipe::MutexLock l(&service_->streams_mu_);
      service_->streams_.insert(this);
      draining = service_->draining_.load();
    }
    Actions a;
    {
      hgpipe::MutexLock l(&mu_);
      draining_ = draining_ || draining;  // Drain may already have run
      DecideLocked(&a);
    }
    Act(std::move(a));
  }

  void OnReadDone(bool ok) override {
    Actions a;
    Item* item = nullptr;
    {
      hgpipe::MutexLock l(&mu_);
      if (!ok) {  // the client half-closed, or the call is over
        reads_done_ = true;
        reading_into_.reset();
      } else {
        item = reading_into_.release();  // owned by its completion from here
        item->bytes = item->request.ByteSizeLong();
        bytes_held_ += item->bytes;
        // One for the request, one held by this reaction until its end, so
        // that no other thread finishes (and deletes) the stream under it.
        in_flight_ += 2;
      }
      if (item == nullptr) DecideLocked(&a);
    }
    if (item == nullptr) {
      Act(std::move(a));
      return;
    }
    service_->StartInfer(item->request, item->response.mutable_infer_response(), deadline_,
                         [this, item](absl::Status s) { OnInferDone(item, std::move(s)); });
    {
      hgpipe::MutexLock l(&mu_);
      --in_flight_;
      DecideLocked(&a);
    }
    Act(std::move(a));
  }

  void OnWriteDone(bool ok) override {
    Actions a;
    {
      hgpipe::MutexLock l(&mu_);
      a.remove.push_back(to_write_.front());
      bytes_held_ -= to_write_.front()->bytes;
      to_write_.pop_front();
      --in_flight_;
      if (!ok) write_failed_ = true;
      if (write_failed_) {  // the client is gone: drop what waits
        for (Item* i : to_write_) bytes_held_ -= i->bytes;
        a.remove.insert(a.remove.end(), to_write_.begin(), to_write_.end());
        in_flight_ -= static_cast<int>(to_write_.size());
        to_write_.clear();
      }
      if (!to_write_.empty()) {
        a.write = to_write_.front();
      } else {
        writing_ = false;
      }
      DecideLocked(&a);
    }
    Act(std::move(a));
  }

  void OnDone() override {
    {
      hgpipe::MutexLock l(&service_->streams_mu_);
      service_->streams_.erase(this);
    }
    delete this;
  }

  // The server drains: read no more; finish once what was read is written.
  // Called with the service's streams_mu_ held, which keeps the stream alive
  // (OnDone takes it); Finish never runs OnDone inline.
  void Drain() {
    Actions a;
    {
      hgpipe::MutexLock l(&mu_);
      draining_ = true;
      DecideLocked(&a);
    }
    Act(std::move(a));
  }

 private:
  struct Item {
    inference::ModelInferRequest request;
    inference::ModelStreamInferResponse response;
    // What it holds, counted in bytes_held_: the request until answered,
    // then the response.
    size_t bytes = 0;
  };
  // gRPC calls to make after releasing mu_, in this order.
  struct Actions {
    std::vector<Item*> remove;
    Item* write = nullptr;
    inference::ModelInferRequest* read = nullptr;
    std::optional<grpc::Status> finish;
  };

  void OnInferDone(Item* item, absl::Status s) {
    if (!s.ok()) {
      inference::ModelInferResponse* r = item->response.mutable_infer_response();
      r->Clear();
      r->set_id(item->request.id());
      r->set_model_name(item->request.model_name());
      item->response.set_error_message(
          absl::StrCat(absl::StatusCodeToString(s.code()), ": ", s.message()));
    }
    // The scheduler no longer reads the request's images: free them now
    // rather than when the response is written (a client slow to read
    // would otherwise hold every request it sent).
    inference::ModelInferRequest().Swap(&item->request);
    const size_t response_bytes = item->response.ByteSizeLong();
    Actions a;
    {
      hgpipe::MutexLock l(&mu_);
      bytes_held_ = bytes_held_ - item->bytes + response_bytes;
      item->bytes = response_bytes;
      if (write_failed_) {
        --in_flight_;
        bytes_held_ -= item->bytes;
        a.remove.push_back(item);
      } else {
        to_write_.push_back(item);
        if (!writing_) {
          writing_ = true;
          a.write = item;
        }
      }
      DecideLocked(&a);
    }
    Act(std::move(a));
  }

  // Whether to read the next request, and whether the call can end.
  void DecideLocked(Actions* a) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    // One request is always allowed, whatever its size (gRPC's message
    // limit bounds it).
    if (reading_into_ == nullptr && !reads_done_ && !draining_ && !write_failed_ &&
        in_flight_ < kMaxInFlight && (in_flight_ == 0 || bytes_held_ < kMaxBytesHeld)) {
      reading_into_ = std::make_unique<Item>();
      a->read = &reading_into_->request;
    }
    if (in_flight_ == 0 && !writing_ && (reads_done_ || draining_ || write_failed_)) {
      finished_ = true;
      a->read = nullptr;
      a->finish =
          write_failed_
              ? grpc::Status(grpc::StatusCode::CANCELLED, "the client stopped reading responses")
          : reads_done_
              ? grpc::Status::OK
              : grpc::Status(grpc::StatusCode::UNAVAILABLE, "hgpipe-server is shutting down");
    }
  }

  // Finish last: OnDone (on another thread) may delete the stream after it.
  void Act(Actions a) {
    for (Item* i : a.remove) delete i;
    if (a.write != nullptr) StartWrite(&a.write->response);
    if (a.read != nullptr) StartRead(a.read);
    if (a.finish.has_value()) Finish(*std::move(a.finish));
  }

  InferenceService* const service_;
  const absl::Time deadline_;
  hgpipe::Mutex mu_;
  // The request the outstanding read fills; null while none is (paused,
  // or reads are over).
  std::unique_ptr<Item> reading_into_ ABSL_GUARDED_BY(mu_);
  // Requests read and not yet written or dropped (+1 during OnReadDone).
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  // Bytes of the requests and responses of those (Item::bytes).
  size_t bytes_held_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<Item*> to_write_ ABSL_GUARDED_BY(mu_);  // front: being written
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool write_failed_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

void InferenceService::StartDraining() {
  ready_.store(false);
  draining_.store(true);
  hgpipe::MutexLock l(&streams_mu_);
  for (Stream* s : streams_) s->Drain();
}

grpc::ServerBidiReactor<inference::ModelInferRequest, inference::ModelStreamInferResponse>*
InferenceService::ModelStreamInfer(grpc::CallbackServerContext* ctx) {
  if (absl::Status s = Allowed(*ctx, ApiGroup::kInference); !s.ok()) {
    return new RefusedStream(s);
  }
  return new Stream(this, CallDeadline(*ctx));
}

grpc::ServerUnaryReactor* InferenceService::ServerLive(grpc::CallbackServerContext* ctx,
                                                       const inference::ServerLiveRequest*,
                                                       inference::ServerLiveResponse* resp) {
  resp->set_live(true);
  return Answer(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* InferenceService::ServerReady(grpc::CallbackServerContext* ctx,
                                                        const inference::ServerReadyRequest*,
                                                        inference::ServerReadyResponse* resp) {
  resp->set_ready(ready_.load() && models_->AllReady());
  return Answer(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* InferenceService::ModelReady(grpc::CallbackServerContext* ctx,
                                                       const inference::ModelReadyRequest* req,
                                                       inference::ModelReadyResponse* resp) {
  absl::StatusOr<bool> ready = models_->ModelReady(req->name(), req->version());
  if (!ready.ok()) return Answer(ctx, ready.status());
  resp->set_ready(ready_.load() && *ready);
  return Answer(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* InferenceService::ServerMetadata(
    grpc::CallbackServerContext* ctx, const inference::ServerMetadataRequest*,
    inference::ServerMetadataResponse* resp) {
  if (absl::Status s = Allowed(*ctx, ApiGroup::kMetadata); !s.ok()) return Answer(ctx, s);
  *resp = TritonApi::ServerMetadata();
  return Answer(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* InferenceService::ModelMetadata(
    grpc::CallbackServerContext* ctx, const inference::ModelMetadataRequest* req,
    inference::ModelMetadataResponse* resp) {
  if (absl::Status s = Allowed(*ctx, ApiGroup::kMetadata); !s.ok()) return Answer(ctx, s);
  absl::StatusOr<inference::ModelMetadataResponse> meta =
      api_.ModelMetadata(req->name(), req->version());
  if (!meta.ok()) return Answer(ctx, meta.status());
  *resp = *std::move(meta);
  return Answer(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* InferenceService::ModelConfig(grpc::CallbackServerContext* ctx,
                                                        const inference::ModelConfigRequest* req,
                                                        inference::ModelConfigResponse* resp) {
  if (absl::Status s = Allowed(*ctx, ApiGroup::kModelConfig); !s.ok()) return Answer(ctx, s);
  absl::StatusOr<inference::ModelConfigResponse> config =
      api_.ModelConfig(req->name(), req->version());
  if (!config.ok()) return Answer(ctx, config.status());
  *resp = *std::move(config);
  return Answer(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* InferenceService::ModelStatistics(
    grpc::CallbackServerContext* ctx, const inference::ModelStatisticsRequest* req,
    inference::ModelStatisticsResponse* resp) {
  if (absl::Status s = Allowed(*ctx, ApiGroup::kStatistics); !s.ok()) return Answer(ctx, s);
  absl::StatusOr<inference::ModelStatisticsResponse> stats =
      api_.ModelStatistics(req->name(), req->version());
  if (!stats.ok()) return Answer(ctx, stats.status());
  *resp = *std::move(stats);
  return Answer(ctx, absl::OkStatus());
}

#define HGPIPE_NOT_SERVED(RPC, GROUP, WHAT)                                              \
  grpc::ServerUnaryReactor* InferenceService::RPC(grpc::CallbackServerContext* ctx,      \
                                                  const inference::RPC##Request*,        \
                                                  inference::RPC##Response*) {           \
    if (absl::Status s = Allowed(*ctx, ApiGroup::GROUP); !s.ok()) return Answer(ctx, s); \
    return Answer(ctx, NotServed(WHAT));                                                 \
  }
HGPIPE_NOT_SERVED(CudaSharedMemoryStatus, kSharedMemory, "CUDA shared memory")
HGPIPE_NOT_SERVED(CudaSharedMemoryRegister, kSharedMemory, "CUDA shared memory")
HGPIPE_NOT_SERVED(CudaSharedMemoryUnregister, kSharedMemory, "CUDA shared memory")
HGPIPE_NOT_SERVED(TraceSetting, kTrace, "tracing")
HGPIPE_NOT_SERVED(LogSettings, kLogging, "changing log settings at run time (use --log-level)")
#undef HGPIPE_NOT_SERVED

grpc::ServerUnaryReactor* InferenceService::SystemSharedMemoryStatus(
    grpc::CallbackServerContext* ctx, const inference::SystemSharedMemoryStatusRequest* req,
    inference::SystemSharedMemoryStatusResponse* resp) {
  if (absl::Status s = Allowed(*ctx, ApiGroup::kSharedMemory); !s.ok()) return Answer(ctx, s);
  auto status = server::SystemSharedMemoryStatus(shared_memory_, *req);
  if (status.ok()) *resp = *std::move(status);
  return Answer(ctx, status.status());
}

grpc::ServerUnaryReactor* InferenceService::SystemSharedMemoryRegister(
    grpc::CallbackServerContext* ctx, const inference::SystemSharedMemoryRegisterRequest* req,
    inference::SystemSharedMemoryRegisterResponse*) {
  if (absl::Status s = Allowed(*ctx, ApiGroup::kSharedMemory); !s.ok()) return Answer(ctx, s);
  return Answer(ctx, server::SystemSharedMemoryRegister(shared_memory_, *req));
}

grpc::ServerUnaryReactor* InferenceService::SystemSharedMemoryUnregister(
    grpc::CallbackServerContext* ctx, const inference::SystemSharedMemoryUnregisterRequest* req,
    inference::SystemSharedMemoryUnregisterResponse*) {
  if (absl::Status s = Allowed(*ctx, ApiGroup::kSharedMemory); !s.ok()) return Answer(ctx, s);
  return Answer(ctx, server::SystemSharedMemoryUnregister(shared_memory_, *req));
}

grpc::ServerUnaryReactor* InferenceService::ModelInfer(grpc::CallbackServerContext* ctx,
                                                       const inference::ModelInferRequest* req,
                                                       inference::ModelInferResponse* resp) {
  if (absl::Status s = Allowed(*ctx, ApiGroup::kInference); !s.ok()) return Answer(ctx, s);
  auto* reactor = ctx->DefaultReactor();
  StartInfer(*req, resp, CallDeadline(*ctx),
             [reactor](absl::Status s) { reactor->Finish(ToGrpcStatus(s)); });
  return reactor;
}

void InferenceService::StartInfer(const inference::ModelInferRequest& req,
                                  inference::ModelInferResponse* resp, absl::Time call_deadline,
                                  Finish done) {
  const absl::Time start = absl::Now();
  last_call_ns_.store(absl::ToUnixNanos(start));
  absl::StatusOr<ModelRef> found = models_->Find(req.model_name(), req.model_version());
  if (found.ok() && draining_.load()) {
    found = absl::UnavailableError("hgpipe-server is shutting down");
  }
  if (!found.ok()) {
    metrics_->RequestDone(Metrics::kUnknownModel, found.status().code(), 0, absl::Now() - start);
    done(found.status());
    return;
  }
  ModelRef ref = *std::move(found);
  const LoadedModel& m = *ref.model;
  const config::ModelConfig& c = m.entry.config;
  // Tensors in shared memory: the input is read from its region, the output
  // written there; `shared` keeps both mapped until the request is done.
  absl::StatusOr<SharedMemoryTensors> shared =
      FindSharedMemoryTensors(req, shared_memory_, c.name());
  absl::StatusOr<PreparedInput> prepared =
      shared.ok() ? PrepareInput(req, c, shared->input_bytes()) : shared.status();
  if (prepared.ok()) {
    const size_t out_bytes = size_t{prepared->n_images} * c.output().dims(0) * sizeof(int32_t);
    if (absl::Status s = CheckSharedMemoryOutput(*shared, out_bytes, c.name()); !s.ok()) {
      prepared = s;
    }
  }
  absl::StatusOr<RequestPolicy> requested =
      prepared.ok() ? ParseRequestPolicy(req, c) : prepared.status();
  if (!requested.ok()) {
    const absl::Duration took = absl::Now() - start;
    metrics_->RequestDone(m.model_id(), requested.status().code(), 0, took);
    statistics_->RequestDone(m.model_id(), false, 0, {took, {}, {}});
    done(requested.status());
    return;
  }
  // A floor above every variant is refused before any work (the router
  // would refuse it too).
  if (requested->min_accuracy.has_value()) {
    const VariantEntry* best = nullptr;
    for (const VariantEntry& v : m.entry.variants) {
      if (best == nullptr || v.manifest.accuracy.top1 > best->manifest.accuracy.top1) best = &v;
    }
    if (best == nullptr || *requested->min_accuracy > best->manifest.accuracy.top1) {
      const absl::Status bad = absl::InvalidArgumentError(
          best == nullptr || !best->manifest.accuracy.measured()
              ? absl::StrCat("model ", Quote(c.name()),
                             ": parameter 'min_accuracy': the model states no measured "
                             "top-1 accuracy")
              : absl::StrFormat("model %s: no variant reaches the minimum accuracy %.4f; "
                                "the best available is '%s' with top-1 %.4f",
                                Quote(c.name()), *requested->min_accuracy, best->name,
                                best->manifest.accuracy.top1));
      const absl::Duration took = absl::Now() - start;
      metrics_->RequestDone(m.model_id(), bad.code(), 0, took);
      statistics_->RequestDone(m.model_id(), false, 0, {took, {}, {}});
      done(bad);
      return;
    }
  }
  Policy policy;
  policy.priority = requested->priority;
  policy.min_accuracy = requested->min_accuracy;
  if (requested->timeout != absl::InfiniteDuration()) {
    policy.deadline = start + requested->timeout;
  }
  policy.deadline = std::min(policy.deadline, call_deadline);
  const uint32_t n = prepared->n_images;
  const uint32_t classes = static_cast<uint32_t>(c.output().dims(0));
  resp->set_model_name(c.name());
  resp->set_model_version("1");
  resp->set_id(req.id());
  int32_t* logits = AddLogitOutput(n, classes, c.output().name(), resp);
  OutputSpec spec;
  spec.fp32 = c.output().datatype() == "FP32";
  spec.logit_scale = m.entry.logit_scale;
  spec.classification = prepared->classification;
  spec.labels = &m.entry.labels;
  // Set by Submit; read by `finish`, which owns it.
  auto queued_at = std::make_unique<std::atomic<int64_t>>(0);
  policy.queued_at_ns = queued_at.get();
  auto variant = std::make_unique<std::atomic<int>>(0);
  policy.variant = variant.get();
  // `model` keeps the labels `spec` points to.
  Finish finish = [this, done = std::move(done), resp, n, classes, start, spec, model = ref.model,
                   queued_at = std::move(queued_at), variant = std::move(variant),
                   shared = *std::move(shared)](absl::Status s) mutable {
    const absl::Time computed = absl::Now();
    if (s.ok()) {
      // The variant that answered: its own dequantization, named in the
      // response and counted.
      const int vi = variant->load();
      const std::vector<VariantEntry>& vs = model->entry.variants;
      if (vi >= 0 && vi < static_cast<int>(vs.size())) {
        spec.logit_scale = vs[vi].logit_scale;
        (*resp->mutable_parameters())["variant"].set_string_param(vs[vi].name);
        if (static_cast<size_t>(vi) < model->variant_images.size()) {
          model->variant_images[vi]->Increment(n);
        }
      }
      FinishLogitOutput(spec, n, classes, resp);
      WriteSharedMemoryOutput(shared, resp);
    }
    const absl::Time end = absl::Now();
    metrics_->RequestDone(model->model_id(), s.code(), n, end - start);
    const int64_t queued_ns = queued_at->load();
    statistics_->RequestDone(
        model->model_id(), s.ok(), n,
        {end - start, queued_ns > 0 ? absl::FromUnixNanos(queued_ns) - start : absl::ZeroDuration(),
         end - computed});
    done(std::move(s));
  };
  if (m.preprocessor.has_value()) {
    Preprocess(std::move(ref), *std::move(prepared), logits, policy, std::move(finish));
  } else {
    const int8_t* images = prepared->images;
    Submit(std::move(ref), images, n, logits, policy,
           std::shared_ptr<void>(std::move(prepared->converted)), std::move(finish));
  }
}

void InferenceService::Submit(ModelRef ref, const int8_t* images, uint32_t n, int32_t* logits,
                              Policy policy, std::shared_ptr<void> keep, Finish finish) {
  // Shared so that a refused Enqueue can still answer through it.
  auto shared = std::make_shared<Finish>(std::move(finish));
  auto job = std::make_unique<scheduler::BufferRequest>();
  job->images = images;
  job->n_images = n;
  job->logits = logits;
  job->priority = policy.priority;
  job->deadline = policy.deadline;
  job->done = [shared, keep = std::move(keep)](absl::Status s) { (*shared)(s); };
  if (policy.queued_at_ns != nullptr) policy.queued_at_ns->store(absl::ToUnixNanos(absl::Now()));
  // Which variant: the router's choice (docs/serving.md, "Variants"), known
  // before queueing so that the completion decodes with its scales.
  scheduler::ModelHandle target = ref.model->handle;
  absl::Status s;
  if (ref.model->router != nullptr) {
    absl::StatusOr<int> v =
        ref.model->router->Choose(n, policy.priority, policy.deadline, policy.min_accuracy);
    if (v.ok()) {
      if (policy.variant != nullptr) policy.variant->store(*v);
      target = ref.model->variant_handles[*v];
    } else {
      s = v.status();
    }
  }
  if (s.ok()) s = scheduler_->Enqueue(target, std::move(job));
  // Handed over (or refused): an unload need not wait for this request.
  ref.admission.reset();
  if (!s.ok()) {
    if (absl::IsNotFound(s)) {
      s = absl::UnavailableError(absl::StrCat("model ", Quote(ref.model->name()), " was unloaded"));
    }
    (*shared)(s);
  }
}

namespace {

// One request's images being preprocessed on the pool.
struct PreprocessJob {
  ModelRef ref;  // moved out by the last image's task
  PreparedInput input;
  std::vector<int8_t> patches;  // n x input_bytes, flat
  std::atomic<uint32_t> remaining;
  hgpipe::Mutex mu;
  // The lowest-numbered image that failed, and why.
  int64_t failed_image ABSL_GUARDED_BY(mu) = -1;
  absl::Status failure ABSL_GUARDED_BY(mu);
};

}  // namespace

void InferenceService::Preprocess(ModelRef ref, PreparedInput input, int32_t* logits, Policy policy,
                                  Finish finish) {
  // Both stay valid while the job holds `ref`, and after it through `finish`.
  const LoadedModel* m = ref.model.get();
  const preprocess::Preprocessor* pre = &*m->preprocessor;
  const size_t bytes = pre->input_bytes();
  const uint32_t n = input.n_images;
  auto job = std::make_shared<PreprocessJob>();
  job->ref = std::move(ref);
  job->input = std::move(input);
  job->patches.resize(size_t{n} * bytes);
  job->remaining.store(n);
  auto shared_finish = std::make_shared<Finish>(std::move(finish));
  std::vector<WorkerPool::Task> tasks;
  tasks.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    tasks.push_back([this, m, pre, job, i, bytes, logits, policy, shared_finish] {
      const PreparedInput& in = job->input;
      const absl::Span<int8_t> out(job->patches.data() + i * bytes, bytes);
      absl::Status s;
      if (!in.encoded.empty()) {
        const absl::string_view e = in.encoded[i];
        s = pre->EncodedToPatches(
            absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(e.data()), e.size()), out);
      } else {
        const size_t pixels = size_t(in.height) * in.width * in.channels;
        s = pre->PixelsToPatches(in.pixels + i * pixels, in.height, in.width, in.channels, out);
      }
      if (!s.ok()) {
        hgpipe::MutexLock l(&job->mu);
        if (job->failed_image < 0 || i < job->failed_image) {
          job->failed_image = i;
          job->failure = s;
        }
      }
      if (job->remaining.fetch_sub(1) != 1) return;
      // The last image of the request: fail it, or queue it for the boards.
      absl::Status failure;
      int64_t failed_image;
      {
        hgpipe::MutexLock l(&job->mu);
        failure = job->failure;
        failed_image = job->failed_image;
      }
      ModelRef ref = std::move(job->ref);
      if (failed_image >= 0) {
        ref.admission.reset();
        (*shared_finish)(absl::InvalidArgumentError(absl::StrCat(
            "model ", Quote(m->name()), ": image ", failed_image, ": ", failure.message())));
        return;
      }
      Submit(std::move(ref), job->patches.data(), job->input.n_images, logits, policy, job,
             [shared_finish](absl::Status st) { (*shared_finish)(st); });
    });
  }
  if (!workers_->TrySubmitAll(std::move(tasks))) {
    (*shared_finish)(absl::ResourceExhaustedError(absl::StrCat(
        "model ", Quote(m->name()), ": too many images waiting for preprocessing; retry later")));
  }
}

grpc::ServerUnaryReactor* InferenceService::RepositoryIndex(
    grpc::CallbackServerContext* ctx, const inference::RepositoryIndexRequest* req,
    inference::RepositoryIndexResponse* resp) {
  if (absl::Status s = Allowed(*ctx, ApiGroup::kModelRepository); !s.ok()) {
    return Answer(ctx, s);
  }
  absl::StatusOr<inference::RepositoryIndexResponse> index = api_.RepositoryIndex(*req);
  if (!index.ok()) return Answer(ctx, index.status());
  *resp = *std::move(index);
  return Answer(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* InferenceService::RepositoryModelLoad(
    grpc::CallbackServerContext* ctx, const inference::RepositoryModelLoadRequest* req,
    inference::RepositoryModelLoadResponse*) {
  if (absl::Status s = Allowed(*ctx, ApiGroup::kModelRepository); !s.ok()) {
    return Answer(ctx, s);
  }
  auto* reactor = ctx->DefaultReactor();
  api_.Load(*req, [reactor](absl::Status st) { reactor->Finish(ToGrpcStatus(st)); });
  return reactor;
}

grpc::ServerUnaryReactor* InferenceService::RepositoryModelUnload(
    grpc::CallbackServerContext* ctx, const inference::RepositoryModelUnloadRequest* req,
    inference::RepositoryModelUnloadResponse*) {
  if (absl::Status s = Allowed(*ctx, ApiGroup::kModelRepository); !s.ok()) {
    return Answer(ctx, s);
  }
  auto* reactor = ctx->DefaultReactor();
  api_.Unload(*req, [reactor](absl::Status st) { reactor->Finish(ToGrpcStatus(st)); });
  return reactor;
}

}  // namespace hgpipe::server
