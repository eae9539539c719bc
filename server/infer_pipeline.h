// The request pipeline as front ends see it: one narrow interface that the
// gRPC service (ModelInfer, ModelStreamInfer) and the REST front end
// (POST v2/models/M/infer) both call, so that validation, preprocessing,
// scheduling, metrics and statistics are the same whatever the wire.
// RequestPipeline (server/request_pipeline.h) is the implementation.
#ifndef HGPIPE_SERVER_INFER_PIPELINE_H_
#define HGPIPE_SERVER_INFER_PIPELINE_H_

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "proto/grpc_service.pb.h"

namespace hgpipe::server {

// Where a request came from, for its trace (server/trace_control.h): the
// wire, and when the front end had all of it (the HTTP body read), or
// InfinitePast for the time Infer is called (the gRPC handler's call).
struct InferOrigin {
  enum class Wire { kGrpc, kHttp };
  Wire wire = Wire::kGrpc;
  absl::Time received = absl::InfinitePast();
};

class InferPipeline {
 public:
  using Done = absl::AnyInvocable<void(absl::Status)>;
  virtual ~InferPipeline() = default;

  // One inference: validates `request` and queues its images; never blocks
  // (decoding and boards run elsewhere). `done` is called exactly once,
  // possibly before this returns, on any thread, with `response` filled if
  // OK; it must not block. `request` and `response` must stay valid until
  // then. `deadline` (the caller's own, e.g. the gRPC call's) bounds the
  // request's `timeout` parameter.
  virtual void Infer(const inference::ModelInferRequest& request,
                     inference::ModelInferResponse* response, absl::Time deadline,
                     const InferOrigin& origin, Done done) = 0;
  // ServerReady: started, not draining, every loaded model can be served.
  virtual bool Ready() const = 0;
  // Started and not draining (what ModelReady adds to the model's own state).
  virtual bool Serving() const = 0;
  // Shutting down: new work is refused with UNAVAILABLE.
  virtual bool Draining() const = 0;
};

}  // namespace hgpipe::server

#endif  // HGPIPE_SERVER_INFER_PIPELINE_H_
