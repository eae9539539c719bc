#include "server/http_body_coding.h"

#include <zlib.h>

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/client_text.h"

namespace hgpipe::server {

absl::StatusOr<BodyCoding> ParseContentEncoding(absl::string_view value) {
  const absl::string_view v = absl::StripAsciiWhitespace(value);
  if (v.empty() || absl::EqualsIgnoreCase(v, "identity")) return BodyCoding::kIdentity;
  if (absl::EqualsIgnoreCase(v, "gzip") || absl::EqualsIgnoreCase(v, "x-gzip")) {
    return BodyCoding::kGzip;
  }
  if (absl::EqualsIgnoreCase(v, "deflate")) return BodyCoding::kDeflate;
  return absl::UnimplementedError(
      absl::StrCat("Content-Encoding ", Quote(v), " is not supported (gzip, deflate, identity)"));
}

namespace {

// One inflate of `data` with zlib's `window_bits` (format selector).
// `started` tells whether any output or error came past the header, so the
// caller can retry raw deflate only when the zlib header itself was wrong.
absl::StatusOr<std::string> Inflate(absl::string_view data, int window_bits, size_t max_bytes,
                                    bool* header_error) {
  *header_error = false;
  z_stream z{};
  if (inflateInit2(&z, window_bits) != Z_OK) {
    return absl::InternalError("zlib could not start inflating");
  }
  std::string out;
  // Compressed request bodies are images: they barely compress, so start
  // near the input size and grow.
  out.resize(std::min(max_bytes, std::max<size_t>(data.size() * 2, 4096)));
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  size_t produced = 0;
  int rc = Z_OK;
  for (;;) {
    if (produced == out.size()) {
      if (out.size() >= max_bytes) {
        inflateEnd(&z);
        return absl::ResourceExhaustedError(absl::StrCat("the request body inflates to more than ",
                                                         max_bytes,
                                                         " bytes (--http-max-input-size)"));
      }
      out.resize(std::min(max_bytes, out.size() * 2));
    }
    z.next_out = reinterpret_cast<Bytef*>(out.data() + produced);
    z.avail_out = static_cast<uInt>(out.size() - produced);
    rc = inflate(&z, Z_NO_FLUSH);
    produced = out.size() - z.avail_out;
    if (rc == Z_STREAM_END) break;
    if (rc == Z_OK) continue;
    if (rc == Z_BUF_ERROR && z.avail_out == 0) continue;  // needs more room
    *header_error = z.total_out == 0 && rc == Z_DATA_ERROR;
    const std::string why =
        rc == Z_BUF_ERROR ? "it is truncated" : (z.msg != nullptr ? z.msg : "corrupt data");
    inflateEnd(&z);
    return absl::InvalidArgumentError(
        absl::StrCat("the compressed request body does not inflate: ", why));
  }
  const bool trailing = z.avail_in != 0;
  inflateEnd(&z);
  if (trailing) {
    return absl::InvalidArgumentError("the compressed request body has bytes after its end");
  }
  out.resize(produced);
  return out;
}

}  // namespace

absl::StatusOr<std::string> InflateBody(BodyCoding coding, absl::string_view data,
                                        size_t max_bytes) {
  bool header_error = false;
  switch (coding) {
    case BodyCoding::kIdentity:
      if (data.size() > max_bytes) {
        return absl::ResourceExhaustedError(
            absl::StrCat("the request body is larger than ", max_bytes, " bytes"));
      }
      return std::string(data);
    case BodyCoding::kGzip: return Inflate(data, 16 + MAX_WBITS, max_bytes, &header_error);
    case BodyCoding::kDeflate: {
      auto zlib = Inflate(data, MAX_WBITS, max_bytes, &header_error);
      if (zlib.ok() || !header_error) return zlib;
      return Inflate(data, -MAX_WBITS, max_bytes, &header_error);
    }
  }
  return absl::InternalError("unknown body coding");
}

}  // namespace hgpipe::server
