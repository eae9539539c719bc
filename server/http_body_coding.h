// Request bodies that clients compress: Content-Encoding gzip or deflate, as
// Triton's HTTP client sends them with request_compression_algorithm. The
// REST transport (http_server.h) inflates them before the handler sees the
// body; the inflated size is bounded, so a small body cannot inflate into
// unbounded memory.
#ifndef HGPIPE_SERVER_HTTP_BODY_CODING_H_
#define HGPIPE_SERVER_HTTP_BODY_CODING_H_

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hgpipe::server {

enum class BodyCoding { kIdentity, kGzip, kDeflate };

// A Content-Encoding header's value: "identity", "gzip" (or "x-gzip"),
// "deflate", case-insensitive. Anything else (including a list of codings)
// is UNIMPLEMENTED with a message naming it (HTTP 415).
absl::StatusOr<BodyCoding> ParseContentEncoding(absl::string_view value);

// `data` inflated. "deflate" is the zlib format (RFC 9110) and, as browsers
// and servers accept, also raw deflate. Errors: INVALID_ARGUMENT for data
// that is corrupt, truncated or followed by trailing bytes (HTTP 400);
// RESOURCE_EXHAUSTED when it would inflate beyond `max_bytes` (HTTP 413).
absl::StatusOr<std::string> InflateBody(BodyCoding coding, absl::string_view data,
                                        size_t max_bytes);

}  // namespace hgpipe::server

#endif  // HGPIPE_SERVER_HTTP_BODY_CODING_H_
