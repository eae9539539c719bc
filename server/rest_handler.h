// The KServe v2 REST API with Triton's extensions, on HttpServer: routes,
// restrictions, and the translation of each call to TritonApi (metadata,
// config, statistics, repository) or to the request pipeline (infer), the
// same ones gRPC calls. Errors are {"error": "..."} with Triton's status
// codes: 400 bad request, 403 restricted, 404 unknown model or route, 405
// wrong method, 501 unsupported extension, 503 unavailable, queue full or
// timeout (Triton reports all three as UNAVAILABLE), 500 internal.
//
//   GET  v2                                      server metadata
//   GET  v2/health/live | v2/health/ready        200 or 400, no body
//   GET  v2/models/M[/versions/V]                model metadata
//   GET  v2/models/M[/versions/V]/ready          200 or 400
//   GET  v2/models/M[/versions/V]/config         Triton's ModelConfig
//   GET  v2/models[/M[/versions/V]]/stats        statistics
//   POST v2/models/M[/versions/V]/infer          inference
//   POST v2/repository/index                     [{name, version, state, reason}]
//   POST v2/repository/models/M/load | unload    {"parameters": {...}}
//   v2/systemsharedmemory/...                    server/shared_memory_api.h
//   GET | POST v2/logging                        log settings (server/log_control.h)
//   GET | POST v2[/models/M]/trace/setting       trace settings (server/trace_control.h)
//   v2/cudasharedmemory/...                      501
//
// Thread safety: Handle may be called concurrently.
#ifndef HGPIPE_SERVER_REST_HANDLER_H_
#define HGPIPE_SERVER_REST_HANDLER_H_

#include <memory>

#include "absl/status/status.h"
#include "server/http_server.h"
#include "server/infer_pipeline.h"
#include "server/log_control.h"
#include "server/restrictions.h"
#include "server/shared_memory_regions.h"
#include "server/triton_api.h"

namespace hgpipe::server {

// Triton's HTTP status for an error code.
unsigned HttpStatus(absl::StatusCode code);

class RestHandler final : public HttpHandler {
 public:
  // `pipeline`, `api`, `shared_memory` (may be null: no regions) and `log`
  // (may be null: v2/logging is 501) must outlive the handler.
  RestHandler(InferPipeline* pipeline, TritonApi* api, Restrictions restrictions,
              SharedMemoryRegions* shared_memory = nullptr, LogControl* log = nullptr)
      : pipeline_(pipeline),
        api_(api),
        restrictions_(std::move(restrictions)),
        shared_memory_(shared_memory),
        log_(log) {}

  void Handle(std::unique_ptr<HttpRequest> request, Reply reply) override;

 private:
  void Infer(std::unique_ptr<HttpRequest> request, const std::string& model,
             const std::string& version, Reply reply);
  void Repository(std::unique_ptr<HttpRequest> request, const std::string& model,
                  const std::string& action, Reply reply);

  InferPipeline* const pipeline_;
  TritonApi* const api_;
  const Restrictions restrictions_;
  SharedMemoryRegions* const shared_memory_;
  LogControl* const log_;
};

}  // namespace hgpipe::server

#endif  // HGPIPE_SERVER_REST_HANDLER_H_
