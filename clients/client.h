// A client of the KServe v2 gRPC protocol (inference.GRPCInferenceService)
// and of grpc.health.v1: what hgpipe-client, the tests and applications use
// to talk to hgpipe-server (or any KServe v2 server, e.g. Triton).
//
// Errors: every call returns an absl::Status whose code is the gRPC status
// code and whose message names the RPC and the target, followed by the
// server's own message.
//
// Thread safety: all methods may be called concurrently from any thread.
#ifndef HGPIPE_CLIENTS_CLIENT_H_
#define HGPIPE_CLIENTS_CLIENT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "base/mutex.h"
#include "proto/grpc_service.grpc.pb.h"
#include "proto/health.grpc.pb.h"

namespace hgpipe::clients {

struct ChannelOptions {
  // Largest message sent or received. Default: 256 MiB (a request of 64
  // images is 9.6 MB; gRPC's own default of 4 MiB would refuse 28 images).
  int max_message_bytes = 256 << 20;
  // Channels with different indexes never share a TCP connection; channels
  // with the same index to the same target may. Default: 0.
  int connection_index = 0;
  // TLS (PEM text): the CAs trusted for the server's certificate (empty:
  // the system's), and for mutual TLS the client's certificate and key.
  bool tls = false;
  std::string tls_root_certs, tls_client_cert, tls_client_key;
  // The name the server's certificate must carry, if not the target's host.
  std::string tls_target_name;
};

// A channel to `target` ("host:port", or any gRPC target URI) with
// `options`, insecure unless options.tls. Connects lazily, on the first call.
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target,
                                           const ChannelOptions& options = {});

// A gRPC status as an absl::Status with the same code; the message is
// "<rpc> to <target>: <server's message>". OK stays OK.
absl::Status FromGrpcStatus(const grpc::Status& status, absl::string_view rpc,
                            absl::string_view target);

// The canonical name of a gRPC / absl status code ("UNAVAILABLE", ...).
std::string StatusCodeName(int code);

class InferenceClient {
 public:
  struct Options {
    ChannelOptions channel;
    // The deadline of each call is now + this, unless the call takes its own
    // timeout. Default: 30 s.
    absl::Duration timeout = absl::Seconds(30);
    // Sent with every call (e.g. the header of a restricted API group:
    // {"triton-grpc-protocol-KEY", "VALUE"}). Keys lower case.
    std::vector<std::pair<std::string, std::string>> metadata;
  };

  // InvalidArgument if target is empty. Does not connect: a server that is
  // not there shows as UNAVAILABLE on the first call.
  static absl::StatusOr<std::unique_ptr<InferenceClient>> Create(const std::string& target,
                                                                 const Options& options);
  static absl::StatusOr<std::unique_ptr<InferenceClient>> Create(const std::string& target) {
    return Create(target, Options());
  }

  // Waits until every InferAsync callback has returned. Must not be called
  // from inside one.
  ~InferenceClient();
  InferenceClient(const InferenceClient&) = delete;
  InferenceClient& operator=(const InferenceClient&) = delete;

  const std::string& target() const { return target_; }

  // ServerLive / ServerReady / ModelReady: the server's answer, or the RPC's
  // error (UNAVAILABLE when nothing listens at the target).
  absl::StatusOr<bool> Live();
  absl::StatusOr<bool> Ready();
  absl::StatusOr<bool> ModelReady(absl::string_view model, absl::string_view version = "");
  absl::StatusOr<inference::ServerMetadataResponse> ServerMetadata();
  // NOT_FOUND (from the server) for an unknown model.
  absl::StatusOr<inference::ModelMetadataResponse> ModelMetadata(absl::string_view model,
                                                                 absl::string_view version = "");
  // grpc.health.v1 Check of `service` ("" is the server as a whole).
  absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> Health(
      absl::string_view service = "");

  // The model repository extension (Triton's): RepositoryIndex lists the
  // server's models with their state (READY, UNAVAILABLE, LOADING,
  // UNLOADING) and, if not ready, why; `ready_only` asks for the READY ones
  // only. LoadModel loads (or reloads) a model, UnloadModel unloads it once
  // the requests it accepted are answered; both return when the server has
  // done it. A server that does not allow them (hgpipe-server in
  // --model-control-mode=none) answers UNAVAILABLE. `timeout` as Infer's.
  absl::StatusOr<inference::RepositoryIndexResponse> RepositoryIndex(bool ready_only = false);
  // `config_json`, if not empty, is sent as Triton's `config` parameter (a
  // Triton ModelConfig as JSON overriding the model's config for this load).
  absl::Status LoadModel(absl::string_view model, absl::Duration timeout = absl::ZeroDuration(),
                         absl::string_view config_json = "");
  absl::Status UnloadModel(absl::string_view model, absl::Duration timeout = absl::ZeroDuration());

  // Triton's model configuration and statistics extensions. NOT_FOUND for a
  // model that is not loaded; ModelStatistics("") is every loaded model.
  absl::StatusOr<inference::ModelConfig> ModelConfig(absl::string_view model);
  absl::StatusOr<inference::ModelStatisticsResponse> ModelStatistics(absl::string_view model);

  // Triton's logging extension: applies `request`'s settings (none: only
  // reads them) and returns all settings as the server now has them.
  absl::StatusOr<inference::LogSettingsResponse> LogSettings(
      const inference::LogSettingsRequest& request);
  // Triton's trace extension: applies `request`'s settings to its model's
  // (no model: the global ones; no settings: only reads them) and returns
  // them as the server now has them.
  absl::StatusOr<inference::TraceSettingResponse> TraceSetting(
      const inference::TraceSettingRequest& request);

  // Triton's system shared memory extension: register `byte_size` bytes at
  // `offset` of the POSIX shared memory object `key` (clients/shared_memory.h
  // makes one) under `name`; unregister `name` ("": all); the regions the
  // server holds ("": all). The server's error otherwise (UNIMPLEMENTED if
  // it does not allow client shared memory).
  absl::Status RegisterSystemSharedMemory(absl::string_view name, absl::string_view key,
                                          uint64_t byte_size, uint64_t offset = 0);
  absl::Status UnregisterSystemSharedMemory(absl::string_view name = "");
  absl::StatusOr<inference::SystemSharedMemoryStatusResponse> SystemSharedMemoryStatus(
      absl::string_view name = "");

  // One inference, blocking until the response or the deadline (now +
  // timeout; the client's default when timeout is absl::ZeroDuration()).
  absl::StatusOr<inference::ModelInferResponse> Infer(
      const inference::ModelInferRequest& request, absl::Duration timeout = absl::ZeroDuration());

  // One inference without blocking, on gRPC's callback API. `done` is called
  // exactly once, on a gRPC thread, with the response or the error; it must
  // not block (it may start further InferAsync calls). The request is shared,
  // not copied, so one request message can be sent many times.
  using InferCallback = absl::AnyInvocable<void(absl::StatusOr<inference::ModelInferResponse>)>;
  void InferAsync(std::shared_ptr<const inference::ModelInferRequest> request, InferCallback done,
                  absl::Duration timeout = absl::ZeroDuration());
  void InferAsync(inference::ModelInferRequest request, InferCallback done,
                  absl::Duration timeout = absl::ZeroDuration());

  // InferAsync calls whose callback has not returned yet.
  int64_t InFlight() const;

 private:
  struct AsyncCall;
  // Counts calls in flight. Shared with each call, so that the last callback
  // to finish never touches a mutex the destructor has already freed.
  struct InFlightCounter {
    hgpipe::Mutex mu;
    int64_t calls ABSL_GUARDED_BY(mu) = 0;
  };
  InferenceClient(std::string target, const Options& options);
  absl::Time DeadlineFor(absl::Duration timeout) const;
  // Sets the call's deadline and options_.metadata.
  void Prepare(grpc::ClientContext& context, absl::Time deadline) const;

  // Constant after construction.
  const std::string target_;
  const Options options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<inference::GRPCInferenceService::Stub> stub_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_stub_;
  const std::shared_ptr<InFlightCounter> in_flight_;
};

}  // namespace hgpipe::clients

#endif  // HGPIPE_CLIENTS_CLIENT_H_
