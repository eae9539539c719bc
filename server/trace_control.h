// Triton's trace extension (TraceSetting over gRPC, v2[/models/M]/trace/setting
// over REST): sampled inference requests leave a record of when each step
// of their way through the server happened, written as Triton's JSON trace
// file, so that Triton's trace tools read it.
//
// Settings, as Triton names them (every value a string, trace_level a list):
//   trace_level    ["OFF"] or ["TIMESTAMPS"]; TENSORS is refused (an image
//                  tensor is 150 KB of numbers per trace)
//   trace_rate     trace one request in N (N >= 1), counted per model, or
//                  over every model that follows the global rate
//   trace_count    traces still to collect (-1: no limit); counts down, and
//                  tracing stops at 0
//   log_frequency  traces per file (0: one file, complete at shutdown);
//                  global only, the file being the server's
//   trace_file     --trace-file's path; fixed at start-up, as log_file is
//   trace_mode     "triton" (OpenTelemetry is not served)
// A model's settings are the global ones except those set for it; a setting
// sent without a value (JSON null, an empty gRPC list) goes back to the
// global value for a model, to the start-up value globally (as Triton does).
//
// The file: a JSON array; per trace one object naming the model and the
// request, and one with its timestamps (ns since the Unix epoch):
//   GRPC_WAITREAD_START,  the front end had the whole request: the gRPC
//   GRPC_WAITREAD_END     handler was called (gRPC's callback API hands over
//   (or HTTP_RECV_START,  a parsed message, so the read itself is not seen:
//   HTTP_RECV_END)        both are that time), or the HTTP body was read
//   REQUEST_START         the call reached the pipeline
//   QUEUE_START           its images were queued for a board
//   COMPUTE_START         the first of its images began to be written into a
//                         board slot (a copy, or decoding and preprocessing)
//   COMPUTE_INPUT_END     the last of its images was in a slot
//   COMPUTE_OUTPUT_START  the first board result for it was read
//   COMPUTE_END           the last one was
//   REQUEST_END           the answer was ready
// A request refused or ended before a step has no timestamp for it. With
// log_frequency N > 0 the traces go to FILE.0, FILE.1, ... N each, every one
// a complete array once its N-th trace is in; with 0 to FILE, complete when
// the server stops. A change of log_frequency completes the file being
// written; later traces start the next numbered one.
//
// Thread safety: every method is thread-safe. While no tracing is on,
// Sample costs one relaxed atomic load. Writing a trace holds the file's
// own lock, not the one sampling takes.
#ifndef HGPIPE_SERVER_TRACE_CONTROL_H_
#define HGPIPE_SERVER_TRACE_CONTROL_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "base/mutex.h"
#include "server/infer_pipeline.h"

namespace hgpipe::server {

struct TraceSettings {
  bool timestamps = false;  // trace_level TIMESTAMPS (false: OFF)
  uint32_t rate = 1000;
  int64_t count = -1;
  uint32_t log_frequency = 0;
  std::string file;  // "": none, and tracing cannot be turned on
  friend bool operator==(const TraceSettings&, const TraceSettings&) = default;
};

// A setting's values as the calls carry them (nullopt: none, which clears
// the setting), and settings by name: a request's, or all six for an
// answer.
using TraceSettingValue = std::optional<std::vector<std::string>>;
using NamedTraceSettings = std::vector<std::pair<std::string, TraceSettingValue>>;

// The settings the server starts with, from Triton's (older) flags:
// --trace-file, --trace-level (OFF or TIMESTAMPS), --trace-rate (>= 1),
// --trace-count (>= -1), --trace-log-frequency (>= 0). InvalidArgument
// naming the flag for a value out of those, or for a level other than OFF
// without a file.
absl::StatusOr<TraceSettings> TraceSettingsFromFlags(const std::string& file,
                                                     const std::string& level, int64_t rate,
                                                     int64_t count, int64_t log_frequency);

// The steps of a request a trace records, in the order of the table above
// (kReceived is the front end's pair).
enum class TraceStep {
  kReceived,
  kRequestStart,
  kQueueStart,
  kComputeStart,
  kComputeInputEnd,
  kComputeOutputStart,
  kComputeEnd,
  kRequestEnd,
};
inline constexpr int kTraceSteps = 8;
using TraceWire = InferOrigin::Wire;

// One sampled request's trace. Mark may be called from several threads at
// once (the images of a call are filled and read out on different threads);
// a step keeps its earliest time if it starts something (…_START), its
// latest if it ends something.
class RequestTrace {
 public:
  RequestTrace(uint64_t id, std::string model, std::string request_id, TraceWire wire)
      : id_(id), model_(std::move(model)), request_id_(std::move(request_id)), wire_(wire) {}
  void Mark(TraceStep step, absl::Time t);
  void Mark(TraceStep step) { Mark(step, absl::Now()); }
  // The trace's two objects of the file's array, comma-separated.
  std::string ToJson() const;
  uint64_t id() const { return id_; }

 private:
  const uint64_t id_;
  const std::string model_;
  const std::string request_id_;
  const TraceWire wire_;
  std::array<std::atomic<int64_t>, kTraceSteps> ns_{};  // 0: not reached
};

class TraceControl {
 public:
  explicit TraceControl(TraceSettings initial);
  // Completes the file being written.
  ~TraceControl();
  TraceControl(const TraceControl&) = delete;
  TraceControl& operator=(const TraceControl&) = delete;

  // The settings in effect for `model` ("": the global ones), all six.
  NamedTraceSettings Get(absl::string_view model) const;
  // Applies `update` to `model`'s settings ("": the global ones), all or
  // nothing, and returns what Get returns after it. InvalidArgument naming
  // the setting for an unknown name, a value that does not parse or is out
  // of range, more than one value for a one-value setting, TENSORS,
  // another trace_file or trace_mode, log_frequency for a model, or a level
  // turned on without a trace file. The caller checks that `model` exists.
  absl::StatusOr<NamedTraceSettings> Update(absl::string_view model,
                                            const NamedTraceSettings& update);

  // A trace for the request about to start, or null if it is not sampled.
  // The trace keeps the first 1 KiB of `request_id` (client text).
  std::unique_ptr<RequestTrace> Sample(absl::string_view model, absl::string_view request_id,
                                       TraceWire wire);
  // Writes a finished trace to the file.
  void Write(const RequestTrace& trace);

 private:
  // A model's own settings; unset ones follow the global.
  struct ModelSettings {
    std::optional<bool> timestamps;
    std::optional<uint32_t> rate;
    std::optional<int64_t> count;
    uint64_t seen = 0;  // requests counted against its own rate
  };
  // The sampling settings that apply to a model with `own` settings (null:
  // none of its own).
  struct Sampling {
    bool timestamps;
    uint32_t rate;
    int64_t count;
    bool on() const { return timestamps && count != 0; }
  };
  Sampling SamplingLocked(const ModelSettings* own) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `model`'s own settings, or null ("" or none set).
  ModelSettings* FindLocked(absl::string_view model) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  const ModelSettings* FindLocked(absl::string_view model) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether any request may be sampled now.
  bool AnyOnLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CloseFileLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(file_mu_);

  const TraceSettings initial_;  // its file is the trace file, fixed
  std::atomic<bool> any_on_{false};
  mutable hgpipe::Mutex mu_;
  TraceSettings global_ ABSL_GUARDED_BY(mu_);
  uint64_t global_seen_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, ModelSettings> models_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  // The file being written, under its own lock: a request being sampled
  // never waits for the disk. Its traces per file (global_.log_frequency's
  // copy), whether it is open, how many traces it holds, and the next
  // numbered file's index.
  hgpipe::Mutex file_mu_ ABSL_ACQUIRED_AFTER(mu_);
  uint32_t log_frequency_ ABSL_GUARDED_BY(file_mu_);
  std::FILE* out_ ABSL_GUARDED_BY(file_mu_) = nullptr;
  uint32_t in_file_ ABSL_GUARDED_BY(file_mu_) = 0;
  uint32_t next_index_ ABSL_GUARDED_BY(file_mu_) = 0;
  bool base_used_ ABSL_GUARDED_BY(file_mu_) = false;
};

}  // namespace hgpipe::server

#endif  // HGPIPE_SERVER_TRACE_CONTROL_H_
