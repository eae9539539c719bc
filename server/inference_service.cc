#include "server/inference_service.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include <atomic>

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

InferenceService::InferenceService(std::vector<LoadedModel> models,
                                   scheduler::Scheduler* scheduler,
                                   Metrics* metrics, WorkerPool* workers)
    : scheduler_(scheduler), metrics_(metrics), workers_(workers) {
  for (auto& m : models) {
    std::string name = m.entry.config.name();
    models_.emplace(std::move(name), std::move(m));
  }
}

absl::StatusOr<const InferenceService::LoadedModel*> InferenceService::Find(
    const std::string& name, const std::string& version) const {
  auto it = models_.find(name);
  if (it == models_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown model '", name, "'"));
  }
  if (!version.empty() && version != "1") {
    return absl::NotFoundError(absl::StrCat(
        "model '", name, "' has no version '", version, "' (versions: 1)"));
  }
  return &it->second;
}

void InferenceService::StartDraining() {
  ready_.store(false);
  draining_.store(true);
}

grpc::ServerUnaryReactor* InferenceService::ServerLive(
    grpc::CallbackServerContext* ctx, const inference::ServerLiveRequest*,
    inference::ServerLiveResponse* resp) {
  resp->set_live(true);
  auto* r = ctx->DefaultReactor();
  r->Finish(grpc::Status::OK);
  return r;
}

grpc::ServerUnaryReactor* InferenceService::ServerReady(
    grpc::CallbackServerContext* ctx, const inference::ServerReadyRequest*,
    inference::ServerReadyResponse* resp) {
  bool ready = ready_.load();
  for (const auto& [name, m] : models_) ready = ready && scheduler_->ModelReady(name);
  resp->set_ready(ready);
  auto* r = ctx->DefaultReactor();
  r->Finish(grpc::Status::OK);
  return r;
}

grpc::ServerUnaryReactor* InferenceService::ModelReady(
    grpc::CallbackServerContext* ctx, const inference::ModelReadyRequest* req,
    inference::ModelReadyResponse* resp) {
  auto* r = ctx->DefaultReactor();
  auto m = Find(req->name(), req->version());
  if (!m.ok()) {
    r->Finish(ToGrpcStatus(m.status()));
    return r;
  }
  resp->set_ready(ready_.load() && scheduler_->ModelReady(req->name()));
  r->Finish(grpc::Status::OK);
  return r;
}

grpc::ServerUnaryReactor* InferenceService::ServerMetadata(
    grpc::CallbackServerContext* ctx, const inference::ServerMetadataRequest*,
    inference::ServerMetadataResponse* resp) {
  resp->set_name(kServerName);
  resp->set_version(kServerVersion);
  auto* r = ctx->DefaultReactor();
  r->Finish(grpc::Status::OK);
  return r;
}

grpc::ServerUnaryReactor* InferenceService::ModelMetadata(
    grpc::CallbackServerContext* ctx, const inference::ModelMetadataRequest* req,
    inference::ModelMetadataResponse* resp) {
  auto* r = ctx->DefaultReactor();
  auto found = Find(req->name(), req->version());
  if (!found.ok()) {
    r->Finish(ToGrpcStatus(found.status()));
    return r;
  }
  const config::ModelConfig& c = (*found)->entry.config;
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
  r->Finish(grpc::Status::OK);
  return r;
}

grpc::ServerUnaryReactor* InferenceService::ModelInfer(
    grpc::CallbackServerContext* ctx, const inference::ModelInferRequest* req,
    inference::ModelInferResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  const absl::Time start = absl::Now();
  last_call_ns_.store(absl::ToUnixNanos(start));
  auto found = Find(req->model_name(), req->model_version());
  if (found.ok() && draining_.load()) {
    found = absl::UnavailableError("hgpipe-server is shutting down");
  }
  if (!found.ok()) {
    metrics_->RequestDone(Metrics::kUnknownModel, found.status().code(), 0,
                          absl::Now() - start);
    reactor->Finish(ToGrpcStatus(found.status()));
    return reactor;
  }
  const LoadedModel& m = **found;
  const config::ModelConfig& c = m.entry.config;
  auto prepared = PrepareInput(*req, c);
  if (!prepared.ok()) {
    metrics_->RequestDone(m.model_id, prepared.status().code(), 0, absl::Now() - start);
    reactor->Finish(ToGrpcStatus(prepared.status()));
    return reactor;
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
  Finish finish = [this, reactor, resp, n, classes, start, spec,
                   model_id = m.model_id](absl::Status s) {
    if (s.ok()) FinishLogitOutput(spec, n, classes, resp);
    metrics_->RequestDone(model_id, s.code(), n, absl::Now() - start);
    reactor->Finish(ToGrpcStatus(s));
  };
  if (m.preprocessor.has_value()) {
    Preprocess(m, *std::move(prepared), logits, std::move(finish));
  } else {
    const int8_t* images = prepared->images;
    Submit(m, images, n, logits, std::shared_ptr<void>(std::move(prepared->converted)),
           std::move(finish));
  }
  return reactor;
}

void InferenceService::Submit(const LoadedModel& m, const int8_t* images, uint32_t n,
                              int32_t* logits, std::shared_ptr<void> keep,
                              Finish finish) {
  // Shared so that a refused Enqueue can still answer through it.
  auto shared = std::make_shared<Finish>(std::move(finish));
  auto job = std::make_unique<scheduler::InferRequest>();
  job->images = images;
  job->n_images = n;
  job->logits = logits;
  job->done = [shared, keep = std::move(keep)](absl::Status s) { (*shared)(s); };
  if (absl::Status s = scheduler_->Enqueue(m.entry.config.name(), std::move(job));
      !s.ok()) {
    (*shared)(s);
  }
}

namespace {

// One request's images being preprocessed on the pool.
struct PreprocessJob {
  PreparedInput input;
  std::vector<int8_t> patches;  // n x input_bytes, flat
  std::atomic<uint32_t> remaining;
  hgpipe::Mutex mu;
  // The lowest-numbered image that failed, and why.
  int64_t failed_image ABSL_GUARDED_BY(mu) = -1;
  absl::Status failure ABSL_GUARDED_BY(mu);
};

}  // namespace

void InferenceService::Preprocess(const LoadedModel& m, PreparedInput input,
                                  int32_t* logits, Finish finish) {
  const preprocess::Preprocessor& pre = *m.preprocessor;
  const size_t bytes = pre.input_bytes();
  const uint32_t n = input.n_images;
  auto job = std::make_shared<PreprocessJob>();
  job->input = std::move(input);
  job->patches.resize(size_t{n} * bytes);
  job->remaining.store(n);
  auto shared_finish = std::make_shared<Finish>(std::move(finish));
  std::vector<WorkerPool::Task> tasks;
  tasks.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    tasks.push_back([this, &m, &pre, job, i, bytes, logits, shared_finish] {
      const PreparedInput& in = job->input;
      const absl::Span<int8_t> out(job->patches.data() + i * bytes, bytes);
      absl::Status s;
      if (!in.encoded.empty()) {
        const absl::string_view e = in.encoded[i];
        s = pre.EncodedToPatches(
            absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(e.data()), e.size()), out);
      } else {
        const size_t pixels = size_t(in.height) * in.width * in.channels;
        s = pre.PixelsToPatches(in.pixels + i * pixels, in.height, in.width, in.channels,
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
      if (failed_image >= 0) {
        (*shared_finish)(absl::InvalidArgumentError(
            absl::StrCat("model '", m.entry.config.name(), "': image ", failed_image,
                         ": ", failure.message())));
        return;
      }
      Submit(m, job->patches.data(), job->input.n_images, logits, job,
             [shared_finish](absl::Status st) { (*shared_finish)(st); });
    });
  }
  if (!workers_->TrySubmitAll(std::move(tasks))) {
    (*shared_finish)(absl::ResourceExhaustedError(absl::StrCat(
        "model '", m.entry.config.name(),
        "': too many images waiting for preprocessing; retry later")));
  }
}

}  // namespace hgpipe::server
