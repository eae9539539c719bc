#include "server/log_control.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/mutex.h"
#include "glog/logging.h"
#include "server/client_text.h"

namespace hgpipe::server {
namespace {

constexpr char kFile[] = "log_file";
constexpr char kInfo[] = "log_info";
constexpr char kWarning[] = "log_warning";
constexpr char kError[] = "log_error";
constexpr char kVerbose[] = "log_verbose_level";
constexpr char kFormat[] = "log_format";

// Every setting, in the order answers list them.
constexpr const char* kNames[] = {kFile, kInfo, kWarning, kError, kVerbose, kFormat};

const char* FormatName(LogFormat f) { return f == LogFormat::kIso8601 ? "ISO8601" : "default"; }

absl::StatusOr<LogFormat> ParseFormat(const std::string& f) {
  if (f == "default") return LogFormat::kDefault;
  if (f == "ISO8601") return LogFormat::kIso8601;
  return absl::InvalidArgumentError(absl::StrCat(Quote(f), " is not \"default\" or \"ISO8601\""));
}

absl::Status WrongType(const std::string& name, const char* expected) {
  return absl::InvalidArgumentError(
      absl::StrCat("log setting ", Quote(name), ": expected ", expected));
}

// glog's own output, to give back.
struct GlogOutput {
  bool logtostderr;
  int32_t stderrthreshold;
};

}  // namespace

NamedLogSettings DescribeLogSettings(const LogSettings& s) {
  return {{kFile, s.file},
          {kInfo, s.info},
          {kWarning, s.warning},
          {kError, s.error},
          {kVerbose, s.verbose_level},
          {kFormat, std::string(FormatName(s.format))}};
}

absl::StatusOr<LogSettings> ApplyLogSettings(const LogSettings& settings,
                                             const NamedLogSettings& update) {
  LogSettings s = settings;
  for (const auto& [name, value] : update) {
    if (std::find(std::begin(kNames), std::end(kNames), name) == std::end(kNames)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown log setting ", Quote(name), " (known: ", absl::StrJoin(kNames, ", "), ")"));
    }
    if (std::holds_alternative<std::monostate>(value)) continue;  // unchanged
    bool* flag = name == kInfo      ? &s.info
                 : name == kWarning ? &s.warning
                 : name == kError   ? &s.error
                                    : nullptr;
    if (flag != nullptr) {
      const bool* b = std::get_if<bool>(&value);
      if (b == nullptr) return WrongType(name, "a boolean");
      *flag = *b;
    } else if (name == kVerbose) {
      const uint32_t* v = std::get_if<uint32_t>(&value);
      if (v == nullptr) return WrongType(name, "an unsigned integer");
      s.verbose_level = *v;
    } else if (name == kFormat) {
      const std::string* f = std::get_if<std::string>(&value);
      if (f == nullptr) return WrongType(name, "a string");
      absl::StatusOr<LogFormat> format = ParseFormat(*f);
      if (!format.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("log setting log_format: ", format.status().message()));
      }
      s.format = *format;
    } else {  // kFile
      const std::string* f = std::get_if<std::string>(&value);
      if (f == nullptr) return WrongType(name, "a string");
      // A client naming a file the server (often root) would write is a
      // hole, as Triton decided too: logs go where the operator sent them.
      if (*f != s.file) {
        return absl::InvalidArgumentError(absl::StrCat(
            "log setting log_file: the log's destination cannot be changed over the network "
            "(the server writes its log to ",
            s.file.empty() ? "stderr" : Quote(s.file), "; see --log-file)"));
      }
    }
  }
  return s;
}

absl::StatusOr<LogSettings> LogSettingsFromFlags(const std::string& level, int verbose,
                                                 const std::string& format,
                                                 const std::string& file) {
  if (level != "info" && level != "warning" && level != "error") {
    return absl::InvalidArgumentError(
        absl::StrCat("--log-level: ", Quote(level), " is not info, warning or error"));
  }
  LogSettings s;
  s.info = level == "info";
  s.warning = level != "error";
  if (verbose < 0) {
    return absl::InvalidArgumentError(absl::StrCat("--log-verbose: ", verbose, " is below 0"));
  }
  s.verbose_level = static_cast<uint32_t>(verbose);
  absl::StatusOr<LogFormat> f = ParseFormat(format);
  if (!f.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--log-format: ", f.status().message()));
  }
  s.format = *f;
  s.file = file;
  return s;
}

void LogInferAnswer(absl::string_view model, absl::string_view id, uint32_t images,
                    const absl::Status& status, absl::Duration took, const char* file, int line) {
  if (!VerboseLogOn(status.ok() ? 2 : 1)) return;
  google::LogMessage(file, line, google::GLOG_INFO).stream()
      << "infer " << model << (id.empty() ? "" : absl::StrCat(" id ", Quote(id))) << ": "
      << (status.ok() ? absl::StrCat(images, " images answered") : BoundedStatus(status).ToString())
      << " after " << absl::FormatDuration(took);
}

class LogControl::Sink final : public google::LogSink {
 public:
  explicit Sink(std::FILE* out) : out_(out) {}

  void send(google::LogSeverity severity, const char* /*full_filename*/, const char* base_filename,
            int line, const google::LogMessageTime& time, const char* message,
            size_t message_len) override {
    LogFormat format;
    {
      MutexLock l(&mu_);
      const bool on = severity == google::GLOG_INFO      ? settings_.info
                      : severity == google::GLOG_WARNING ? settings_.warning
                      : severity == google::GLOG_ERROR   ? settings_.error
                                                         : true;  // FATAL
      if (!on) return;
      format = settings_.format;
    }
    std::string text;
    if (format == LogFormat::kDefault) {
      text = ToString(severity, base_filename, line, time, message, message_len);
    } else {
      // UTC to the second, as Triton writes ISO8601 lines.
      std::tm utc;
      const std::time_t seconds = time.timestamp();
      gmtime_r(&seconds, &utc);
      text = absl::StrFormat("%04d-%02d-%02dT%02d:%02d:%02dZ %c %d %s:%d] %s", utc.tm_year + 1900,
                             utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                             google::GetLogSeverityName(severity)[0],
                             static_cast<int>(syscall(SYS_gettid)), base_filename, line,
                             absl::string_view(message, message_len));
    }
    text.push_back('\n');
    // One write per line, so concurrent lines do not interleave.
    std::fwrite(text.data(), 1, text.size(), out_);
    std::fflush(out_);
  }

  LogSettings Get() const {
    MutexLock l(&mu_);
    return settings_;
  }
  void Set(const LogSettings& s) {
    MutexLock l(&mu_);
    SetLocked(s);
  }
  // Under the lock, so that of two updates at once the second applies to
  // the first's result.
  absl::StatusOr<LogSettings> Update(const NamedLogSettings& update) {
    MutexLock l(&mu_);
    absl::StatusOr<LogSettings> s = ApplyLogSettings(settings_, update);
    if (s.ok()) SetLocked(*s);
    return s;
  }

  std::FILE* const out_;
  GlogOutput glog_{};

 private:
  void SetLocked(const LogSettings& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    settings_ = s;
    log_internal::verbose_level.store(s.verbose_level, std::memory_order_relaxed);
  }

  mutable Mutex mu_;
  LogSettings settings_ ABSL_GUARDED_BY(mu_);
};

LogControl::LogControl(const LogSettings& initial, std::FILE* out)
    : sink_(std::make_unique<Sink>(out)) {
  sink_->Set(initial);
  sink_->glog_ = {FLAGS_logtostderr, FLAGS_stderrthreshold};
  // glog writes nothing itself: no stderr (a threshold above FATAL) and no
  // log files (an empty destination turns a severity's file off); every
  // line reaches the sink, which filters.
  for (google::LogSeverity s :
       {google::GLOG_INFO, google::GLOG_WARNING, google::GLOG_ERROR, google::GLOG_FATAL}) {
    google::SetLogDestination(s, "");
  }
  FLAGS_logtostderr = false;
  FLAGS_stderrthreshold = google::NUM_SEVERITIES;
  google::AddLogSink(sink_.get());
}

LogControl::~LogControl() {
  google::RemoveLogSink(sink_.get());
  FLAGS_stderrthreshold = sink_->glog_.stderrthreshold;
  FLAGS_logtostderr = sink_->glog_.logtostderr;
  log_internal::verbose_level.store(0, std::memory_order_relaxed);
}

LogSettings LogControl::Get() const { return sink_->Get(); }

absl::StatusOr<LogSettings> LogControl::Update(const NamedLogSettings& update) {
  return sink_->Update(update);
}

}  // namespace hgpipe::server
