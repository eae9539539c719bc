// The answers of Triton's non-inference calls, free of any wire: server and
// model metadata, model readiness, model config, statistics, and the model
// repository (index, load with Triton's parameters, unload). The gRPC
// service and the REST front end both translate these messages to their
// wire, so both say the same thing.
//
// Thread safety: all methods are thread-safe.
#ifndef HGPIPE_SERVER_TRITON_API_H_
#define HGPIPE_SERVER_TRITON_API_H_

#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/grpc_service.pb.h"
#include "server/infer_pipeline.h"
#include "server/model_manager.h"
#include "server/statistics.h"
#include "server/trace_control.h"

namespace hgpipe::server {

inline constexpr char kServerName[] = "hgpipe-serve";
inline constexpr char kServerVersion[] = "0.1.0";

class TritonApi {
 public:
  using Done = absl::AnyInvocable<void(absl::Status)>;
  // All must outlive the api. `trace`: the server's trace settings (null:
  // TraceSetting is Unimplemented).
  TritonApi(ModelManager* models, const InferStatistics* statistics, const InferPipeline* pipeline,
            TraceControl* trace = nullptr)
      : models_(models), statistics_(statistics), pipeline_(pipeline), trace_(trace) {}

  // Name, version and the extensions served (Triton's names).
  static inference::ServerMetadataResponse ServerMetadata();
  // NotFound for a model that is neither loaded nor in the repository.
  absl::StatusOr<bool> ModelReady(const std::string& name, const std::string& version) const;
  // NotFound for a model that is not loaded.
  absl::StatusOr<inference::ModelMetadataResponse> ModelMetadata(const std::string& name,
                                                                 const std::string& version) const;
  absl::StatusOr<inference::ModelConfigResponse> ModelConfig(const std::string& name,
                                                             const std::string& version) const;
  // Every loaded model when `name` is empty; NotFound for a model not loaded.
  absl::StatusOr<inference::ModelStatisticsResponse> ModelStatistics(
      const std::string& name, const std::string& version) const;

  // InvalidArgument for a non-empty repository_name.
  absl::StatusOr<inference::RepositoryIndexResponse> RepositoryIndex(
      const inference::RepositoryIndexRequest& request) const;
  // Parameters, as Triton's: load takes `config` (a Triton ModelConfig as
  // JSON, server/triton_config.h) and refuses `file:` overrides
  // (InvalidArgument: no override directory); unload takes
  // `unload_dependents` (a bool; no model here has dependents, so it changes
  // nothing). Any other parameter is InvalidArgument. `done` as
  // ModelManager::Load / Unload.
  void Load(const inference::RepositoryModelLoadRequest& request, Done done);
  void Unload(const inference::RepositoryModelUnloadRequest& request, Done done);

  // Triton's trace extension (server/trace_control.h): `model`'s settings
  // ("": the global ones) after `update` (none: only read them). NotFound
  // for a model neither loaded nor in the repository.
  absl::StatusOr<NamedTraceSettings> TraceSetting(const std::string& model,
                                                  const NamedTraceSettings& update);

 private:
  ModelManager* const models_;
  const InferStatistics* const statistics_;
  const InferPipeline* const pipeline_;
  TraceControl* const trace_;
};

}  // namespace hgpipe::server

#endif  // HGPIPE_SERVER_TRITON_API_H_
