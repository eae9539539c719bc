// Starts the real hgpipe-server binary for integration tests: on free ports
// (it is started with port 0 and reports the ports it took in its ready
// line), logging to a file, stopped with a signal.
#ifndef HGPIPE_TESTS_INTEGRATION_SERVER_PROCESS_H_
#define HGPIPE_TESTS_INTEGRATION_SERVER_PROCESS_H_

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace hgpipe::testing {

// build/bin and the source tree, from the environment ctest sets.
std::string BinDir();
std::string SourceDir();

struct ExitResult {
  bool exited = false;  // false: killed by a signal or timed out
  int code = -1;
  std::string log;
};

// Runs `binary` with `args` to completion (killed after `timeout`).
ExitResult RunToExit(const std::string& binary, const std::vector<std::string>& args,
                     absl::Duration timeout = absl::Seconds(120));

class ServerProcess {
 public:
  // Starts hgpipe-server with `args` plus --grpc-port 0 --http-port 0
  // --metrics-port 0 --host 127.0.0.1 and waits for its ready line (a later
  // --http-port=-1 in `args` turns HTTP off; with --log-file=PATH the log,
  // and the ready line, are read from PATH, which the caller removes). FailedPrecondition with
  // the server's log if it exits or is not ready within `timeout`.
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(
      const std::vector<std::string>& args, absl::Duration timeout = absl::Seconds(120));
  // Kills the server if it still runs.
  ~ServerProcess();

  std::string grpc_target() const;
  std::string metrics_url() const;
  // "http://127.0.0.1:PORT" (plain HTTP; use https:// with TLS flags).
  std::string http_url() const;
  int grpc_port() const { return grpc_port_; }
  int http_port() const { return http_port_; }
  pid_t pid() const { return pid_; }

  // Sends `signal` and waits for the exit (killed after `timeout`).
  ExitResult Stop(int signal, absl::Duration timeout = absl::Seconds(120));
  // The server's log, then (with --log-file) what it wrote to stderr.
  std::string Log() const;

 private:
  ServerProcess() = default;
  pid_t pid_ = -1;
  int grpc_port_ = 0;
  int http_port_ = 0;
  int metrics_port_ = 0;
  std::string log_path_;
  std::string stderr_path_;
};

// A model repository in a new temporary directory holding one model `name`
// whose config.pbtxt is `config`; returns the repository's path.
std::string WriteModelRepository(const std::string& name, const std::string& config);

// The same with several models: (name, config) pairs.
std::string WriteModelRepository(const std::vector<std::pair<std::string, std::string>>& models);

// GET `url`; the body, or Unavailable.
absl::StatusOr<std::string> HttpGet(const std::string& url);

// The value of the sample `name{labels}` in a Prometheus text exposition,
// where `labels` is the exact label text, e.g. model="verify",code="OK".
// NotFound if absent.
absl::StatusOr<double> MetricValue(const std::string& exposition, const std::string& name,
                                   const std::string& labels);

// Polls the Prometheus exposition at `url` until the sample name{labels}
// satisfies `ok` (an absent sample does not), then returns its value;
// DeadlineExceeded with the last exposition after `timeout`.
absl::StatusOr<double> WaitForMetric(const std::string& url, const std::string& name,
                                     const std::string& labels,
                                     const std::function<bool(double)>& ok,
                                     absl::Duration timeout = absl::Seconds(180));

}  // namespace hgpipe::testing

#endif  // HGPIPE_TESTS_INTEGRATION_SERVER_PROCESS_H_
