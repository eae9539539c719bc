// Client-supplied text (model, tensor and parameter names, ...) quoted in
// status messages and logs. A status message goes back in a gRPC trailer:
// echoing a 10 KB name at full length makes it too large for default
// clients, which then see RESOURCE_EXHAUSTED instead of the real error. Every
// message that quotes client text goes through Quote, so no message grows
// with the request.
#ifndef HGPIPE_SERVER_CLIENT_TEXT_H_
#define HGPIPE_SERVER_CLIENT_TEXT_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace hgpipe::server {

// The longest client text quoted, in bytes before escaping.
inline constexpr size_t kMaxQuotedBytes = 128;
// The longest status message sent to a client; longer ones are cut (a
// safety net: Quote keeps every message well below it).
inline constexpr size_t kMaxStatusMessageBytes = 2048;

// 'text' in single quotes, C-escaped (NUL, control and non-ASCII bytes
// are visible), with text past kMaxQuotedBytes replaced by
// "...' (N bytes)".
std::string Quote(absl::string_view text);

// Whether `name` can name a model directory: 1..255 bytes, no '/', no NUL
// or other control character (the file system would cut a name at a NUL),
// not "." or "..". Other names are unknown models.
bool IsValidModelName(absl::string_view name);

// `s` with its message cut to kMaxStatusMessageBytes.
absl::Status BoundedStatus(const absl::Status& s);

}  // namespace hgpipe::server

#endif  // HGPIPE_SERVER_CLIENT_TEXT_H_
