#include "server/inference_service.h"

#include <algorithm>
#include <atomic>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "base/mutex.h"
#include "server/infer_request.h"
#include "server/infer_response.h"

namespace hgpipe::server {

grpc::Status ToGrpcStatus(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  // absl and gRPC share the canonical code numbering.
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()),
                      std::string(s.message()));
}

namespace {

// Scheduler messages name the model as the scheduler knows it; a model
// reloaded while its previous load drains is "NAME#GENERATION" there.
absl::Status Renamed(const absl::Status& s, const LoadedModel& m) {
  if (s.ok() || m.scheduler_name == m.name()) return s;
  return absl::Status(s.code(), absl::StrReplaceAll(s.message(),
                                                    {{m.scheduler_name, m.name()}}));
}

grpc::ServerUnaryReactor* Answer(grpc::CallbackServerContext* ctx, const absl::Status& s) {
  auto* r = ctx->DefaultReactor();
  r->Finish(ToGrpcStatus(s));
  return r;
}

// A gRPC deadline this far away is none (gRPC reports "no deadline" as the
// largest time point).
constexpr auto kNoDeadline = std::chrono::hours(24 * 365 * 10);

}  // namespace

InferenceService::InferenceService(ModelManager* models,
                                   scheduler::Scheduler* scheduler,
                                   Metrics* metrics, WorkerPool* workers)
    : models_(models), scheduler_(scheduler), metrics_(metrics), workers_(workers) {}

void InferenceService::StartDraining() {
  ready_.store(false);
  draining_.store(true);
}

grpc::ServerUnaryReactor* InferenceService::ServerLive(
    grpc::CallbackServerContext* ctx, const inference::ServerLiveRequest*,
    inference::ServerLiveResponse* resp) {
  resp->set_live(true);
  return Answer(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* InferenceService::ServerReady(
    grpc::CallbackServerContext* ctx, const inference::ServerReadyRequest*,
    inference::ServerReadyResponse* resp) {
  resp->set_ready(ready_.load() && models_->AllReady());
  return Answer(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* InferenceService::ModelReady(
    grpc::CallbackServerContext* ctx, const inference::ModelReadyRequest* req,
    inference::ModelReadyResponse* resp) {
  absl::StatusOr<bool> ready = models_->ModelReady(req->name(), req->version());
  if (!ready.ok()) return Answer(ctx, ready.status());
  resp->set_ready(ready_.load() && *ready);
  return Answer(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* InferenceService::ServerMetadata(
    grpc::CallbackServerContext* ctx, const inference::ServerMetadataRequest*,
    inference::ServerMetadataResponse* resp) {
  resp->set_name(kServerName);
  resp->set_version(kServerVersion);
  for (const char* e : {"classification", "model_repository", "schedule_policy"}) {
    resp->add_extensions(e);
  }
  return Answer(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* InferenceService::ModelMetadata(
    grpc::CallbackServerContext* ctx, const inference::ModelMetadataRequest* req,
    inference::ModelMetadataResponse* resp) {
  absl::StatusOr<ModelRef> found = models_->Find(req->name(), req->version());
  if (!found.ok()) return Answer(ctx, found.status());
  const config::ModelConfig& c = found->model->entry.config;
  resp->set_name(c.name());
  resp->add_versions("1");
  resp->set_platform(absl::StrCat("hgpipe/", c.bitstream()));
  auto add = [](const config::TensorConfig& t, auto* meta) {
    meta->set_name(t.name());
    meta->set_datatype(t.datatype());
    meta->add_shape(-1);
    for (int64_t d : t.dims()) meta->add_shape(d);
  };
  add(c.input(), resp->add_inputs());
  add(c.output(), resp->add_outputs());
  return Answer(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* InferenceService::ModelInfer(
    grpc::CallbackServerContext* ctx, const inference::ModelInferRequest* req,
    inference::ModelInferResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  const absl::Time start = absl::Now();
  last_call_ns_.store(absl::ToUnixNanos(start));
  absl::StatusOr<ModelRef> found = models_->Find(req->model_name(), req->model_version());
  if (found.ok() && draining_.load()) {
    found = absl::UnavailableError("hgpipe-server is shutting down");
  }
  if (!found.ok()) {
    metrics_->RequestDone(Metrics::kUnknownModel, found.status().code(), 0,
                          absl::Now() - start);
    reactor->Finish(ToGrpcStatus(found.status()));
    return reactor;
  }
  ModelRef ref = *std::move(found);
  const LoadedModel& m = *ref.model;
  const config::ModelConfig& c = m.entry.config;
  absl::StatusOr<PreparedInput> prepared = PrepareInput(*req, c);
  absl::StatusOr<RequestPolicy> requested =
      prepared.ok() ? ParseRequestPolicy(*req, c) : prepared.status();
  if (!requested.ok()) {
    metrics_->RequestDone(m.model_id, requested.status().code(), 0, absl::Now() - start);
    reactor->Finish(ToGrpcStatus(requested.status()));
    return reactor;
  }
  Policy policy;
  policy.priority = requested->priority;
  if (requested->timeout != absl::InfiniteDuration()) {
    policy.deadline = start + requested->timeout;
  }
  const auto call_deadline = ctx->deadline();
  if (call_deadline < std::chrono::system_clock::now() + kNoDeadline) {
    policy.deadline = std::min(policy.deadline, absl::FromChrono(call_deadline));
  }
  const uint32_t n = prepared->n_images;
  const uint32_t classes = static_cast<uint32_t>(c.output().dims(0));
  resp->set_model_name(c.name());
  resp->set_model_version("1");
  resp->set_id(req->id());
  int32_t* logits = AddLogitOutput(n, classes, c.output().name(), resp);
  OutputSpec spec;
  spec.fp32 = c.output().datatype() == "FP32";
  spec.logit_scale = m.entry.logit_scale;
  spec.classification = prepared->classification;
  spec.labels = &m.entry.labels;
  // `model` keeps the labels `spec` points to.
  Finish finish = [this, reactor, resp, n, classes, start, spec,
                   model = ref.model](absl::Status s) {
    if (s.ok()) FinishLogitOutput(spec, n, classes, resp);
    s = Renamed(s, *model);
    metrics_->RequestDone(model->model_id, s.code(), n, absl::Now() - start);
    reactor->Finish(ToGrpcStatus(s));
  };
  if (m.preprocessor.has_value()) {
    Preprocess(std::move(ref), *std::move(prepared), logits, policy, std::move(finish));
  } else {
    const int8_t* images = prepared->images;
    Submit(std::move(ref), images, n, logits, policy,
           std::shared_ptr<void>(std::move(prepared->converted)), std::move(finish));
  }
  return reactor;
}

void InferenceService::Submit(ModelRef ref, const int8_t* images, uint32_t n,
                              int32_t* logits, Policy policy,
                              std::shared_ptr<void> keep, Finish finish) {
  // Shared so that a refused Enqueue can still answer through it.
  auto shared = std::make_shared<Finish>(std::move(finish));
  auto job = std::make_unique<scheduler::InferRequest>();
  job->images = images;
  job->n_images = n;
  job->logits = logits;
  job->priority = policy.priority;
  job->deadline = policy.deadline;
  job->done = [shared, keep = std::move(keep)](absl::Status s) { (*shared)(s); };
  absl::Status s = scheduler_->Enqueue(ref.model->scheduler_name, std::move(job));
  // Handed over (or refused): an unload need not wait for this request.
  ref.admission.reset();
  if (!s.ok()) {
    if (absl::IsNotFound(s)) {
      s = absl::UnavailableError(
          absl::StrCat("model '", ref.model->name(), "' was unloaded"));
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

void InferenceService::Preprocess(ModelRef ref, PreparedInput input, int32_t* logits,
                                  Policy policy, Finish finish) {
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
        s = pre->PixelsToPatches(in.pixels + i * pixels, in.height, in.width, in.channels,
                                 out);
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
        (*shared_finish)(absl::InvalidArgumentError(
            absl::StrCat("model '", m->name(), "': image ", failed_image,
                         ": ", failure.message())));
        return;
      }
      Submit(std::move(ref), job->patches.data(), job->input.n_images, logits, policy,
             job, [shared_finish](absl::Status st) { (*shared_finish)(st); });
    });
  }
  if (!workers_->TrySubmitAll(std::move(tasks))) {
    (*shared_finish)(absl::ResourceExhaustedError(absl::StrCat(
        "model '", m->name(),
        "': too many images waiting for preprocessing; retry later")));
  }
}

grpc::ServerUnaryReactor* InferenceService::RepositoryIndex(
    grpc::CallbackServerContext* ctx, const inference::RepositoryIndexRequest* req,
    inference::RepositoryIndexResponse* resp) {
  if (!req->repository_name().empty()) {
    return Answer(ctx, absl::InvalidArgumentError(absl::StrCat(
                           "repository_name '", req->repository_name(),
                           "': hgpipe-server has one repository; leave it empty")));
  }
  absl::StatusOr<std::vector<ModelManager::IndexEntry>> index = models_->Index(req->ready());
  if (!index.ok()) return Answer(ctx, index.status());
  for (const ModelManager::IndexEntry& e : *index) {
    auto* m = resp->add_models();
    m->set_name(e.name);
    m->set_version(e.version);
    m->set_state(e.state);
    m->set_reason(e.reason);
  }
  return Answer(ctx, absl::OkStatus());
}

namespace {

// Checks what a load or unload request may carry.
template <typename Request>
absl::Status CheckControlRequest(const Request& req) {
  if (!req.repository_name().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "repository_name '", req.repository_name(),
        "': hgpipe-server has one repository; leave it empty"));
  }
  if (req.model_name().empty()) {
    return absl::InvalidArgumentError("model_name is empty");
  }
  if (!req.parameters().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "parameter '", req.parameters().begin()->first, "' is not supported"));
  }
  return absl::OkStatus();
}

}  // namespace

grpc::ServerUnaryReactor* InferenceService::RepositoryModelLoad(
    grpc::CallbackServerContext* ctx, const inference::RepositoryModelLoadRequest* req,
    inference::RepositoryModelLoadResponse*) {
  auto* reactor = ctx->DefaultReactor();
  absl::Status s = CheckControlRequest(*req);
  if (s.ok() && draining_.load()) s = absl::UnavailableError("hgpipe-server is shutting down");
  if (!s.ok()) {
    reactor->Finish(ToGrpcStatus(s));
    return reactor;
  }
  models_->Load(req->model_name(),
                [reactor](absl::Status st) { reactor->Finish(ToGrpcStatus(st)); });
  return reactor;
}

grpc::ServerUnaryReactor* InferenceService::RepositoryModelUnload(
    grpc::CallbackServerContext* ctx, const inference::RepositoryModelUnloadRequest* req,
    inference::RepositoryModelUnloadResponse*) {
  auto* reactor = ctx->DefaultReactor();
  absl::Status s = CheckControlRequest(*req);
  if (!s.ok()) {
    reactor->Finish(ToGrpcStatus(s));
    return reactor;
  }
  models_->Unload(req->model_name(),
                  [reactor](absl::Status st) { reactor->Finish(ToGrpcStatus(st)); });
  return reactor;
}

}  // namespace hgpipe::server
