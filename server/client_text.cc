#include "server/client_text.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace hgpipe::server {

std::string Quote(absl::string_view text) {
  if (text.size() <= kMaxQuotedBytes) {
    return absl::StrCat("'", absl::CHexEscape(text), "'");
  }
  return absl::StrCat("'", absl::CHexEscape(text.substr(0, kMaxQuotedBytes)), "...' (", text.size(),
                      " bytes)");
}

bool IsValidModelName(absl::string_view name) {
  if (name.empty() || name.size() > 255 || name == "." || name == "..") return false;
  for (char c : name) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f || c == '/') return false;
  }
  return true;
}

absl::Status BoundedStatus(const absl::Status& s) {
  if (s.message().size() <= kMaxStatusMessageBytes) return s;
  return absl::Status(
      s.code(), absl::StrCat(s.message().substr(0, kMaxStatusMessageBytes - 16), "... (cut)"));
}

}  // namespace hgpipe::server
