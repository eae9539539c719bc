#include "server/triton_api.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/triton_config.h"
#include "server/client_text.h"
#include "server/model_variants.h"

namespace hgpipe::server {
namespace {

absl::Status OneRepository(const std::string& repository_name) {
  if (repository_name.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("repository_name ", Quote(repository_name),
                   ": hgpipe-server has one repository; leave it empty"));
}

template <typename Request>
absl::Status CheckControlRequest(const Request& req) {
  if (absl::Status s = OneRepository(req.repository_name()); !s.ok()) return s;
  if (req.model_name().empty()) return absl::InvalidArgumentError("model_name is empty");
  return absl::OkStatus();
}

absl::Status UnknownParameter(const std::string& name, absl::string_view known) {
  return absl::InvalidArgumentError(
      absl::StrCat("parameter ", Quote(name), " is not supported (", known, ")"));
}

}  // namespace

inference::ServerMetadataResponse TritonApi::ServerMetadata() {
  inference::ServerMetadataResponse resp;
  resp.set_name(kServerName);
  resp.set_version(kServerVersion);
  for (const char* e : {"classification", "model_repository", "model_repository(unload_dependents)",
                        "schedule_policy", "model_configuration", "binary_tensor_data",
                        "parameters", "statistics", "system_shared_memory", "logging", "trace"}) {
    resp.add_extensions(e);
  }
  return resp;
}

absl::StatusOr<bool> TritonApi::ModelReady(const std::string& name,
                                           const std::string& version) const {
  absl::StatusOr<bool> ready = models_->ModelReady(name, version);
  if (!ready.ok()) return ready.status();
  return pipeline_->Serving() && *ready;
}

absl::StatusOr<inference::ModelMetadataResponse> TritonApi::ModelMetadata(
    const std::string& name, const std::string& version) const {
  absl::StatusOr<ModelRef> found = models_->Find(name, version);
  if (!found.ok()) return found.status();
  const config::ModelConfig& c = found->model->entry.config;
  inference::ModelMetadataResponse resp;
  resp.set_name(c.name());
  resp.add_versions("1");
  resp.set_platform(absl::StrCat("hgpipe/", c.bitstream()));
  auto add = [](const config::TensorConfig& t, auto* meta) {
    meta->set_name(t.name());
    meta->set_datatype(t.datatype());
    meta->add_shape(-1);
    for (int64_t d : t.dims()) meta->add_shape(d);
  };
  add(c.input(), resp.add_inputs());
  add(c.output(), resp.add_outputs());
  AddVariantParameters(found->model->entry, resp.mutable_parameters());
  return resp;
}

absl::StatusOr<inference::ModelConfigResponse> TritonApi::ModelConfig(
    const std::string& name, const std::string& version) const {
  absl::StatusOr<ModelRef> found = models_->Find(name, version);
  if (!found.ok()) return found.status();
  inference::ModelConfigResponse resp;
  *resp.mutable_config() = ToTritonConfig(found->model->entry.config);
  return resp;
}

absl::StatusOr<inference::ModelStatisticsResponse> TritonApi::ModelStatistics(
    const std::string& name, const std::string& version) const {
  std::vector<std::string> names;
  if (name.empty()) {
    names = models_->LoadedNames();
  } else {
    names.push_back(name);
  }
  inference::ModelStatisticsResponse resp;
  for (const std::string& n : names) {
    absl::StatusOr<ModelRef> found = models_->Find(n, name.empty() ? "" : version);
    if (!found.ok()) {
      if (name.empty()) continue;  // unloaded meanwhile
      return found.status();
    }
    inference::ModelStatistics* s = resp.add_model_stats();
    s->set_name(n);
    s->set_version("1");
    statistics_->Fill(found->model->model_id(), s);
  }
  return resp;
}

absl::StatusOr<inference::RepositoryIndexResponse> TritonApi::RepositoryIndex(
    const inference::RepositoryIndexRequest& req) const {
  if (absl::Status s = OneRepository(req.repository_name()); !s.ok()) return s;
  absl::StatusOr<std::vector<ModelManager::IndexEntry>> index = models_->Index(req.ready());
  if (!index.ok()) return index.status();
  inference::RepositoryIndexResponse resp;
  for (const ModelManager::IndexEntry& e : *index) {
    auto* m = resp.add_models();
    m->set_name(e.name);
    m->set_version(e.version);
    m->set_state(e.state);
    m->set_reason(e.reason);
  }
  return resp;
}

void TritonApi::Load(const inference::RepositoryModelLoadRequest& req, Done done) {
  absl::Status s = CheckControlRequest(req);
  ConfigEdit edit;
  for (const auto& [key, value] : req.parameters()) {
    if (!s.ok()) break;
    if (key == "config") {
      if (!value.has_string_param()) {
        s = absl::InvalidArgumentError(
            "parameter 'config': must be a string (a Triton ModelConfig as JSON)");
        break;
      }
      edit = [json = value.string_param()](config::ModelConfig* c) {
        return ApplyTritonConfigJson(json, c);
      };
    } else if (absl::StartsWith(key, "file:")) {
      s = absl::InvalidArgumentError(
          absl::StrCat("parameter ", Quote(key),
                       ": override files are not supported; models load from the repository "
                       "directory (a 'config' override is)"));
    } else {
      s = UnknownParameter(key, "load takes 'config'");
    }
  }
  if (s.ok() && pipeline_->Draining()) {
    s = absl::UnavailableError("hgpipe-server is shutting down");
  }
  if (!s.ok()) {
    done(std::move(s));
    return;
  }
  models_->Load(req.model_name(), std::move(done), std::move(edit));
}

void TritonApi::Unload(const inference::RepositoryModelUnloadRequest& req, Done done) {
  absl::Status s = CheckControlRequest(req);
  for (const auto& [key, value] : req.parameters()) {
    if (!s.ok()) break;
    if (key == "unload_dependents") {
      // No model here is part of an ensemble: there is nothing more to unload.
      if (!value.has_bool_param()) {
        s = absl::InvalidArgumentError("parameter 'unload_dependents': must be a bool");
      }
    } else {
      s = UnknownParameter(key, "unload takes 'unload_dependents'");
    }
  }
  if (!s.ok()) {
    done(std::move(s));
    return;
  }
  models_->Unload(req.model_name(), std::move(done));
}

absl::StatusOr<NamedTraceSettings> TritonApi::TraceSetting(const std::string& model,
                                                           const NamedTraceSettings& update) {
  if (trace_ == nullptr) return absl::UnimplementedError("tracing is not served here");
  if (!model.empty()) {
    absl::StatusOr<bool> known = models_->ModelReady(model, "");
    if (!known.ok()) return known.status();
  }
  if (update.empty()) return trace_->Get(model);
  return trace_->Update(model, update);
}

}  // namespace hgpipe::server
