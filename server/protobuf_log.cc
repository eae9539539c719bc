#include "server/protobuf_log.h"

#include <string>

#include "absl/strings/match.h"
#include "glog/logging.h"
#include "google/protobuf/stubs/logging.h"

namespace hgpipe::server {

bool LogRateLimiter::Admit(absl::Time now, uint64_t* held_back) {
  hgpipe::MutexLock l(&mu_);
  if (now - last_ < interval_) {
    ++refused_;
    return false;
  }
  last_ = now;
  *held_back = refused_;
  refused_ = 0;
  return true;
}

namespace {

LogRateLimiter* client_data_limiter = nullptr;

void Handle(google::protobuf::LogLevel level, const char* filename, int line,
            const std::string& message) {
  uint64_t held_back = 0;
  if (absl::StrContains(message, "invalid UTF-8") &&
      !client_data_limiter->Admit(absl::Now(), &held_back)) {
    return;
  }
  // Protobuf aborts after a FATAL line itself; glog's FATAL would abort first.
  const google::LogSeverity severity = level >= google::protobuf::LOGLEVEL_ERROR ? google::ERROR
                                       : level == google::protobuf::LOGLEVEL_WARNING
                                           ? google::WARNING
                                           : google::INFO;
  google::LogMessage(filename, line, severity).stream()
      << "protobuf: " << message
      << (held_back > 0 ? " (and " + std::to_string(held_back) + " more such lines held back)"
                        : "");
}

}  // namespace

void RouteProtobufLogs(absl::Duration interval) {
  if (client_data_limiter == nullptr) client_data_limiter = new LogRateLimiter(interval);
  google::protobuf::SetLogHandler(&Handle);
}

}  // namespace hgpipe::server
