// The HTTP/1.1 transport of the REST front end (KServe v2 REST with Triton's
// extensions; the routes are rest_handler.h): Boost.Beast's parser for
// request headers on Boost.Asio, plain or TLS (optionally requiring client
// certificates), a fixed pool of I/O threads. docs/serving.md says why
// Beast.
//
// Bodies: a request's body is read straight from the socket into its final
// buffers, never through the HTTP parser: with Triton's
// Inference-Header-Content-Length the JSON header and the binary tensor data
// land in two separate strings (the binary one is later moved, not copied,
// into the inference request). Responses are written as one gather write of
// a status line, the JSON and the binary outputs where they already are.
// A chunked body (Transfer-Encoding: chunked, as curl sends from a pipe) or
// a compressed one (Content-Encoding gzip / deflate, as Triton's HTTP client
// sends with request_compression_algorithm) is read whole, inflated
// (http_body_coding.h) and then split, at the cost of one copy.
//
// Limits, each answered with a JSON error and the connection closed:
//   Content-Length above max_input_bytes      413 (before reading the body)
//   a chunked or inflated body above it        413 (as soon as it is)
//   bodies in flight above max_pending_bytes   503 (memory stays bounded)
//   a Content-Encoding other than gzip, deflate or identity   415
//   a compressed body that does not inflate    400
//   a malformed chunked body                   400
//   an Inference-Header-Content-Length larger than the body, or not a number  400
//   a request not fully received within request_timeout (a slow or stalled
//   client)                                    408
//   a malformed request line or headers        400
// Handlers are never called on those.
//
// Thread safety: Start/Stop from one thread; the handler is called on the
// I/O threads and may reply from any thread.
#ifndef HGPIPE_SERVER_HTTP_SERVER_H_
#define HGPIPE_SERVER_HTTP_SERVER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace hgpipe::server {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // without the query
  // Header names lower-cased, in arrival order.
  std::vector<std::pair<std::string, std::string>> headers;
  // The body, or with Inference-Header-Content-Length its JSON part.
  std::string body;
  // With Inference-Header-Content-Length: the rest of the body.
  std::string binary;
  bool has_inference_header = false;

  // The first value of header `name` (lower case), or nullopt.
  std::optional<absl::string_view> Header(absl::string_view name) const;
};

struct HttpResponse {
  unsigned status = 200;
  std::string content_type = "application/json";
  // The body; with binary parts, the JSON header that precedes them.
  std::string body;
  // Sent after `body`, where they lie (kept alive by `keep`); with any,
  // the response carries Inference-Header-Content-Length = body.size().
  std::vector<absl::string_view> binary;
  std::shared_ptr<void> keep;
  bool binary_format = false;  // send Inference-Header-Content-Length
};

class HttpHandler {
 public:
  using Reply = absl::AnyInvocable<void(HttpResponse)>;
  virtual ~HttpHandler() = default;
  // Called once per request; `reply` must be called exactly once, from any
  // thread, and must not be waited for.
  virtual void Handle(std::unique_ptr<HttpRequest> request, Reply reply) = 0;
};

class HttpServer {
 public:
  struct Options {
    std::string host = "0.0.0.0";
    int port = 8000;  // 0: pick a free one
    int threads = 2;
    // Largest body accepted (Triton's --http-max-input-size). Default 64 MiB.
    uint64_t max_input_bytes = uint64_t{64} << 20;
    // Bodies being received or served at once, bytes. Default 1 GiB.
    uint64_t max_pending_bytes = uint64_t{1} << 30;
    // A request must arrive whole within this. Default 60 s.
    absl::Duration request_timeout = absl::Seconds(60);
    // TLS: PEM files. Empty cert: plain HTTP. root_cert with mutual: the CA
    // client certificates must be signed by (required).
    std::string cert_file, key_file, root_cert_file;
    bool mutual_tls = false;
  };

  // Listens and starts the I/O threads. Unavailable if the address cannot be
  // bound; InvalidArgument for unreadable certificates or keys.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const Options& options,
                                                           HttpHandler* handler);
  // Stops (if not yet stopped), without waiting for requests.
  virtual ~HttpServer() = default;

  // The port listened on.
  virtual int port() const = 0;
  // Stops accepting, waits until `deadline` for requests handed to the
  // handler to be answered and written, then closes every connection and
  // joins the threads.
  virtual void Stop(absl::Time deadline) = 0;

 protected:
  HttpServer() = default;
};

}  // namespace hgpipe::server

#endif  // HGPIPE_SERVER_HTTP_SERVER_H_
