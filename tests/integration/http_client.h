// HTTP for integration tests: libcurl calls (plain or TLS, with client
// certificates) and raw TCP exchanges for requests no well-behaved client
// sends (lying headers, bodies that stall).
#ifndef HGPIPE_TESTS_INTEGRATION_HTTP_CLIENT_H_
#define HGPIPE_TESTS_INTEGRATION_HTTP_CLIENT_H_

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"

namespace hgpipe::testing {

struct HttpResult {
  long status = 0;  // 0: no HTTP response (see error)
  std::string body;
  std::map<std::string, std::string> headers;  // names lower case
  std::string error;                           // curl's, when the transfer failed
};

struct HttpOptions {
  std::vector<std::string> headers;  // "Name: value"
  // TLS: CA file to trust, client certificate and key (PEM files).
  std::string ca_file, cert_file, key_file;
  long timeout_s = 60;
};

HttpResult HttpCall(const std::string& method, const std::string& url, const std::string& body = "",
                    const HttpOptions& options = {});

// Options with these headers ("Name: value") and nothing else set.
inline HttpOptions WithHeaders(std::vector<std::string> headers) {
  HttpOptions o;
  o.headers = std::move(headers);
  return o;
}

// Connects to 127.0.0.1:`port`, sends `bytes`, then reads until the server
// closes the connection or `timeout` passes; returns what was read.
std::string RawExchange(int port, const std::string& bytes,
                        absl::Duration timeout = absl::Seconds(60));

// `data` compressed as HTTP's Content-Encoding `coding` ("gzip" or
// "deflate", the zlib format), as Triton's HTTP client compresses requests.
std::string Compress(const std::string& coding, const std::string& data);

// `body` framed as a chunked HTTP body in chunks of `chunk` bytes.
std::string Chunked(const std::string& body, size_t chunk);

// The JSON error message of an error body {"error": "..."}, or "" if the
// body is not one.
std::string ErrorMessage(const std::string& body);

// Resident memory of process `pid`, bytes (0 if unknown).
long ResidentBytes(int pid);

}  // namespace hgpipe::testing

#endif  // HGPIPE_TESTS_INTEGRATION_HTTP_CLIENT_H_
