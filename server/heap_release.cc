#include "server/heap_release.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace hgpipe::server {
namespace {

// The size="N" attribute of the first `<total type="TYPE" ...>` in `xml`.
absl::StatusOr<size_t> TotalSize(absl::string_view xml, absl::string_view type) {
  const std::string tag = absl::StrCat("<total type=\"", type, "\"");
  const size_t at = xml.find(tag);
  if (at == absl::string_view::npos) {
    return absl::InternalError(absl::StrCat("malloc_info: no total of type ", type));
  }
  const size_t end_of_tag = xml.find('>', at);
  const absl::string_view element = xml.substr(at, end_of_tag - at);
  constexpr absl::string_view kSize = "size=\"";
  const size_t begin = element.find(kSize);
  if (begin == absl::string_view::npos) {
    return absl::InternalError(absl::StrCat("malloc_info: total ", type, " has no size"));
  }
  const absl::string_view rest = element.substr(begin + kSize.size());
  size_t size = 0;
  if (!absl::SimpleAtoi(rest.substr(0, rest.find('"')), &size)) {
    return absl::InternalError(absl::StrCat("malloc_info: total ", type, " has a bad size"));
  }
  return size;
}

}  // namespace

absl::StatusOr<size_t> FreeBytesFromMallocInfo(absl::string_view xml) {
  const size_t last_heap = xml.rfind("</heap>");
  const absl::string_view totals =
      last_heap == absl::string_view::npos ? xml : xml.substr(last_heap);
  size_t free_bytes = 0;
  for (absl::string_view type : {"fast", "rest"}) {
    absl::StatusOr<size_t> size = TotalSize(totals, type);
    if (!size.ok()) return size.status();
    free_bytes += *size;
  }
  return free_bytes;
}

absl::StatusOr<size_t> HeapFreeBytes() {
  char* text = nullptr;
  size_t length = 0;
  FILE* stream = open_memstream(&text, &length);
  if (stream == nullptr) return absl::InternalError("malloc_info: open_memstream failed");
  const int rc = malloc_info(0, stream);
  fclose(stream);  // sets text and length
  const std::unique_ptr<char, decltype(&free)> owned(text, &free);
  if (rc != 0) return absl::InternalError("malloc_info failed");
  return FreeBytesFromMallocInfo(absl::string_view(text, length));
}

bool HeapReleasePolicy::ShouldTrim(absl::Time now, absl::Time last_call,
                                   absl::FunctionRef<size_t()> free_bytes) {
  if (last_call != trimmed_after_call_ && now - last_call > options_.idle) {
    trimmed_after_call_ = last_call;
    last_trim_ = now;
    return true;
  }
  if (now - last_trim_ > options_.interval) {
    // Measured at most once an interval, trimmed or not.
    last_trim_ = now;
    return free_bytes() > options_.min_free_bytes;
  }
  return false;
}

}  // namespace hgpipe::server
