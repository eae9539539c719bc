// The load generator behind hgpipe-perf: drives ModelInfer on a KServe v2
// server in a closed loop (a fixed number of requests outstanding) or an open
// loop (requests issued on a schedule), and measures throughput and latency,
// in the spirit of Triton's perf_analyzer.
//
// Cost on the client is kept low on purpose, because on a small machine the
// client shares cores with the server it measures:
//  - a small pool of distinct requests is generated and serialized once; each
//    call sends one of those serialized buffers (gRPC references it, no copy
//    and no protobuf work per request);
//  - calls go through gRPC's callback API on a generic stub, so gRPC's own
//    threads complete them and issue the next ones (no thread per request);
//  - responses are not parsed unless `verify` is set (or streaming, where
//    the id says which request a response answers); then each output row is
//    compared with the `verify` digest of its input, computed once per pool
//    image before the run.
// With system shared memory (perf_analyzer's --shared-memory=system) the pool's
// images are written once into a shared memory object the generator creates
// and registers; each request names its images' range there and an output
// range of its own in a second object, and carries no tensor bytes. With
// streaming (perf_analyzer's --streaming) requests go over ModelStreamInfer,
// one bidirectional stream per connection.
//
// Thread safety: RunLoad blocks until the run is over; concurrent runs are
// independent.
#ifndef HGPIPE_CLIENTS_LOAD_GENERATOR_H_
#define HGPIPE_CLIENTS_LOAD_GENERATOR_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace hgpipe::clients {

struct LoadOptions {
  std::string target = "localhost:8001";
  std::string model = "verify";
  // Images per ModelInfer request (the input's first dimension). Default: 1.
  int images_per_request = 1;
  // Closed loop: requests kept outstanding. Used when rate == 0. Default: 1.
  int concurrency = 1;
  // Open loop: requests per second; 0 selects the closed loop. Default: 0.
  double rate = 0;
  // Open loop arrivals: exponential gaps (a Poisson process, the default) or
  // evenly spaced ones.
  enum class Arrivals { kPoisson, kConstant };
  Arrivals arrivals = Arrivals::kPoisson;
  // Open loop: requests outstanding at most. When the server lags this far,
  // the next request waits for a response and is counted late; its latency
  // is still measured from its scheduled time. Default: 1024.
  int max_outstanding = 1024;
  // Measured time, after `warmup` (not counted). Defaults: 10 s and 2 s.
  absl::Duration duration = absl::Seconds(10);
  absl::Duration warmup = absl::Seconds(2);
  // Per-request deadline. Default: 30 s.
  absl::Duration timeout = absl::Seconds(30);
  // Request policy parameters sent with every request (tensors.h's
  // SetPriority / SetTimeoutMicros): priority level (1 highest) and server
  // timeout in microseconds. 0: not sent (the model's defaults).
  uint64_t priority = 0;
  uint64_t timeout_us = 0;
  // The request parameter `min_accuracy` (docs/serving.md, "Variants"): the
  // least top-1 of the model variant that may answer. 0: not sent (the
  // model's most accurate variant only).
  double min_accuracy = 0;
  // A labelled image set (clients/labelled_images.h, IDX files, plain or
  // gzip): the requests carry its images in order, request r images
  // r * images_per_request onwards, as UINT8 pixels [N, H, W, 1] (a model
  // with input_format PIXELS), every image of the set once in the pool
  // (request_pool is not used); each answer's argmax is checked against the
  // labels. Both set or neither.
  std::string images_path;
  std::string labels_path;
  // Check every response against the `verify` digest of its images. Needs a
  // model whose platform is "hgpipe/verify". Default: off.
  bool verify = false;
  // Distinct requests sent in turn (reduced if they would exceed 64 MiB
  // together). Default: 16.
  int request_pool = 16;
  uint64_t seed = 1;
  // TCP connections (gRPC channels) the calls are spread over. Default: 1.
  int connections = 1;
  // Where tensors travel: in the requests and responses (kNone), or in
  // system shared memory this process creates and registers (kSystem; the
  // server must be on this host, started with --allow-client-shm). Default:
  // kNone.
  enum class SharedMemory { kNone, kSystem };
  SharedMemory shared_memory = SharedMemory::kNone;
  // Requests over ModelStreamInfer (one stream per connection) instead of
  // unary ModelInfer calls. Default: off.
  bool streaming = false;
};

// What RunLoad reports about once a second.
struct LoadProgress {
  absl::Duration elapsed;  // since the start of warmup
  bool warming_up = false;
  double images_per_second = 0;  // over the last interval
  int64_t errors = 0;            // so far
  int64_t outstanding = 0;
};

struct LoadResult {
  // What the server said about the model.
  std::string platform;
  std::string input_name;
  std::string output_name;
  int request_pool = 0;  // the pool size actually used
  // The measurement window (after warmup) and what completed inside it.
  double window_seconds = 0;
  int64_t requests_ok = 0;
  int64_t images_ok = 0;
  double requests_per_second = 0;
  double images_per_second = 0;
  // Latencies of the requests that succeeded inside the window, in ms:
  // from the send (closed loop) or the scheduled send (open loop) to the
  // response.
  struct Latency {
    double p50 = 0, p90 = 0, p99 = 0, max = 0, mean = 0;
  } latency_ms;
  // Failures over the whole run (warmup and drain included), by gRPC code
  // name ("UNAVAILABLE", ...; "VERIFY_MISMATCH" for wrong outputs), with
  // the first message seen for each.
  std::map<std::string, int64_t> errors;
  std::map<std::string, std::string> first_error_message;
  // Requests sent (open loop: scheduled) inside the window, however and
  // whenever they finished: offered; answered (OK); answered within the
  // deadline (deadline_ms: timeout_us if set, else the client's timeout).
  // goodput = within_deadline / offered.
  int64_t offered = 0;
  int64_t answered = 0;
  int64_t within_deadline = 0;
  double deadline_ms = 0;
  double goodput = 0;
  // The answered requests of the window by the variant that answered (the
  // response parameter `variant`; "" for a model without variants), with
  // the variant's declared top-1 from the model's metadata (< 0: none
  // stated) and, with labelled images, how many answers were right.
  struct VariantCounts {
    int64_t requests = 0;
    int64_t images = 0;
    int64_t correct = 0;
    double declared_top1 = -1;
  };
  std::map<std::string, VariantCounts> variants;
  // Over the answered images of the window: the variants' declared top-1
  // weighted by the images each answered (< 0 if a variant that answered
  // states none), and with labelled images the share answered right (< 0
  // without labels).
  double declared_accuracy = -1;
  double measured_accuracy = -1;
  int64_t requests_total = 0;  // completed, whole run
  int64_t late_requests = 0;   // open loop: sent after their scheduled time
                               // because max_outstanding were in flight
  // CPU time this process used during the window, in cores (1.0 = one core
  // busy all the time), in all and split into user and kernel (system) time.
  double client_cpu_cores = 0;
  double client_cpu_user_cores = 0;
  double client_cpu_system_cores = 0;

  int64_t error_count() const;
};

// Runs the load described by `options`. Errors (InvalidArgument for bad
// options, or the server's error for ModelMetadata) mean nothing was
// measured; failed inference requests are counted in the result instead.
// `progress`, if set, is called about once a second on RunLoad's thread.
absl::StatusOr<LoadResult> RunLoad(
    const LoadOptions& options, absl::AnyInvocable<void(const LoadProgress&)> progress = nullptr);

// The nearest-rank percentile q (0 < q <= 1) of sorted values; 0 if empty.
double Percentile(absl::Span<const double> sorted, double q);

// One JSON object: the result and the settings that produced it.
std::string LoadResultToJson(const LoadOptions& options, const LoadResult& result);

}  // namespace hgpipe::clients

#endif  // HGPIPE_CLIENTS_LOAD_GENERATOR_H_
