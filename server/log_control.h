// Triton's logging extension (LogSettings over gRPC, v2/logging over REST)
// on glog: which severities are written, the verbose level and the line
// format, changed while the server runs. The server's LogControl takes over
// glog's output (every LOG line passes its sink) and writes the lines the
// settings let through to stderr, or to --log-file's file.
//
// Settings, as Triton names and types them:
//   log_info, log_warning, log_error  bool    write INFO / WARNING / ERROR lines
//   log_verbose_level                 uint32  write verbose lines of level n <= it
//   log_format                        string  "default" (glog's prefix) or "ISO8601"
//   log_file                          string  where the log goes: --log-file's
//                                             path, "" for stderr; the network
//                                             cannot point the server elsewhere
// FATAL lines are always written.
//
// Thread safety: LogControl's methods, VerboseLogOn and the sink are
// thread-safe; one LogControl exists at a time (glog's output is the
// process's).
#ifndef HGPIPE_SERVER_LOG_CONTROL_H_
#define HGPIPE_SERVER_LOG_CONTROL_H_

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace hgpipe::server {

enum class LogFormat { kDefault, kIso8601 };

struct LogSettings {
  bool info = true;
  bool warning = true;
  bool error = true;
  uint32_t verbose_level = 0;
  LogFormat format = LogFormat::kDefault;
  // The file the log is written to ("": stderr). Fixed at start-up.
  std::string file;
  friend bool operator==(const LogSettings&, const LogSettings&) = default;
};

// A setting's value as Triton's calls carry it (monostate: none given, a
// JSON null or an unset gRPC value, as tritonclient sends for None), and a
// list of settings by name (a request's, in its order, or all of them for
// an answer, which never holds monostate).
using LogSettingValue = std::variant<std::monostate, bool, uint32_t, std::string>;
using NamedLogSettings = std::vector<std::pair<std::string, LogSettingValue>>;

// All six settings, in the order of the table above.
NamedLogSettings DescribeLogSettings(const LogSettings& settings);

// `settings` with `update` applied, all or nothing; a known setting without
// a value stays as it is (what tritonclient sends for None; whether
// Triton itself does the same was not checked). InvalidArgument naming the
// setting for an unknown name, a value of the wrong type, a format other
// than "default" / "ISO8601", or a log_file other than `settings.file`.
absl::StatusOr<LogSettings> ApplyLogSettings(const LogSettings& settings,
                                             const NamedLogSettings& update);

// The settings the server starts with, from Triton's flags: --log-level
// ("info" writes all three severities, "warning" WARNING and ERROR, "error"
// ERROR alone), --log-verbose (at least 0), --log-format and --log-file.
// InvalidArgument naming the flag for a value out of those.
absl::StatusOr<LogSettings> LogSettingsFromFlags(const std::string& level, int verbose,
                                                 const std::string& format,
                                                 const std::string& file);

// Whether verbose lines of `level` (>= 1) are written now.
namespace log_internal {
inline std::atomic<uint32_t> verbose_level{0};
}
inline bool VerboseLogOn(uint32_t level) {
  return level <= log_internal::verbose_level.load(std::memory_order_relaxed);
}

// The verbose line for an inference call's answer, an INFO line: level 1
// writes failed calls (with the status sent), level 2 every call; one
// atomic load when the level is lower. `model` is the model's
// name, or the client's text quoted for a model not found; `id` the
// request's id (may be empty). The line names the caller's file and line
// (the builtins, not std::source_location: Debian's clang 14 lacks it).
void LogInferAnswer(absl::string_view model, absl::string_view id, uint32_t images,
                    const absl::Status& status, absl::Duration took,
                    const char* file = __builtin_FILE(), int line = __builtin_LINE());

class LogControl {
 public:
  // Routes glog's output through the settings to `out` (stderr, or the
  // file `initial.file` names, opened by the caller); glog writes nothing
  // itself from now on.
  explicit LogControl(const LogSettings& initial, std::FILE* out = stderr);
  // Gives the output back to glog's stderr flags as they were (its log
  // files stay off).
  ~LogControl();
  LogControl(const LogControl&) = delete;
  LogControl& operator=(const LogControl&) = delete;

  LogSettings Get() const;
  // ApplyLogSettings on the current settings; the settings after it.
  absl::StatusOr<LogSettings> Update(const NamedLogSettings& update);

 private:
  class Sink;
  std::unique_ptr<Sink> sink_;
};

}  // namespace hgpipe::server

#endif  // HGPIPE_SERVER_LOG_CONTROL_H_
