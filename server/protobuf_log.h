// Protobuf's own log lines, routed to glog. Protobuf logs an error for every
// string field with invalid UTF-8 it parses, so any client could make the
// server write one line per request (a log that grows without bound, and a
// flood that hides real errors): such lines are written at most once per
// interval, with a count of those held back.
#ifndef HGPIPE_SERVER_PROTOBUF_LOG_H_
#define HGPIPE_SERVER_PROTOBUF_LOG_H_

#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "base/mutex.h"

namespace hgpipe::server {

// Admits at most one line per interval. Thread-safe.
class LogRateLimiter {
 public:
  explicit LogRateLimiter(absl::Duration interval) : interval_(interval) {}

  // Whether a line at `now` is written. When it is, *held_back is how many
  // were refused since the last one written.
  bool Admit(absl::Time now, uint64_t* held_back);

 private:
  const absl::Duration interval_;
  hgpipe::Mutex mu_;
  absl::Time last_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  uint64_t refused_ ABSL_GUARDED_BY(mu_) = 0;
};

// Installs the handler (once, before serving: protobuf's SetLogHandler is
// not thread-safe). Lines about client data (invalid UTF-8) share one
// limiter of `interval`; protobuf's other lines are all written.
void RouteProtobufLogs(absl::Duration interval = absl::Minutes(1));

}  // namespace hgpipe::server

#endif  // HGPIPE_SERVER_PROTOBUF_LOG_H_
