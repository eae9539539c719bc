// Whole-file reading and writing, with errors that name the path.
#ifndef HGPIPE_BASE_FILE_H_
#define HGPIPE_BASE_FILE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hgpipe {

// The file's bytes. NotFound / PermissionDenied for a file that cannot be
// opened, InvalidArgument for a directory, Internal for a failed read; each
// message names `path`.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path);
// Replaces the file's contents with `data`. Internal naming `path` on failure.
absl::Status WriteWholeFile(const std::string& path, absl::string_view data);

}  // namespace hgpipe

#endif  // HGPIPE_BASE_FILE_H_
