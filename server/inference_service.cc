#include "server/inference_service.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/infer_request.h"

namespace hgpipe::server {

grpc::Status ToGrpcStatus(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  // absl and gRPC share the canonical code numbering.
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()),
                      std::string(s.message()));
}

InferenceService::InferenceService(std::vector<LoadedModel> models,
                                   scheduler::Scheduler* scheduler,
                                   Metrics* metrics)
    : scheduler_(scheduler), metrics_(metrics) {
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
  const int64_t classes = c.output().dims(0);
  resp->set_model_name(c.name());
  resp->set_model_version("1");
  resp->set_id(req->id());
  auto* out = resp->add_outputs();
  out->set_name(c.output().name());
  out->set_datatype("INT32");
  out->add_shape(n);
  out->add_shape(classes);
  std::string* raw = resp->add_raw_output_contents();
  raw->resize(size_t{n} * classes * sizeof(int32_t));

  auto job = std::make_unique<scheduler::InferRequest>();
  job->images = prepared->images;
  job->n_images = n;
  // Logits are decoded straight into the response (little-endian hosts).
  job->logits = reinterpret_cast<int32_t*>(raw->data());
  job->done = [this, reactor, n, start, model_id = m.model_id,
               keep = std::move(prepared->converted)](absl::Status s) {
    metrics_->RequestDone(model_id, s.code(), n, absl::Now() - start);
    reactor->Finish(ToGrpcStatus(s));
  };
  if (absl::Status s = scheduler_->Enqueue(c.name(), std::move(job)); !s.ok()) {
    metrics_->RequestDone(m.model_id, s.code(), 0, absl::Now() - start);
    reactor->Finish(ToGrpcStatus(s));
  }
  return reactor;
}

}  // namespace hgpipe::server
