// hgpipe-perf: a load generator for KServe v2 servers, in the spirit of
// Triton's perf_analyzer (see clients/load_generator.h for how it keeps its
// own cost low).
//
//   hgpipe-perf --url localhost:8001 --model verify --concurrency 16
//   hgpipe-perf --rate 5000 --arrivals poisson --duration 20 --json
//   hgpipe-perf --priority 1 --timeout-us 20000   (request policy parameters)
//   hgpipe-perf --shared-memory=system            (tensors in shared memory)
//   hgpipe-perf --streaming                       (over ModelStreamInfer)
//   hgpipe-perf --model fmnist_pixels --images t10k-images-idx3-ubyte.gz
//       --labels t10k-labels-idx1-ubyte.gz --min-accuracy 0.85
//                        (real images: measured accuracy, per variant)
//
// Closed loop (default): --concurrency requests are kept outstanding.
// Open loop (--rate R): requests are issued at R per second on a Poisson
// schedule (exponential gaps; --arrivals constant for even spacing), whether
// or not responses keep up, with at most --max-outstanding in flight.
// Progress goes to stderr about once a second; the summary (or with --json,
// one JSON object) to stdout. Exit status 1 if any request failed (unless
// --allow-errors) or the run could not start, 2 on a usage error.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "base/flags.h"
#include "base/mutex.h"
#include "clients/client.h"
#include "clients/load_generator.h"

ABSL_FLAG(std::string, url, "localhost:8001", "The server's gRPC address.");
ABSL_FLAG(std::string, model, "verify", "Model to load.");
ABSL_FLAG(int, images_per_request, 1, "Images in each request.");
ABSL_FLAG(int, concurrency, 1, "Closed loop: requests kept outstanding.");
ABSL_FLAG(double, rate, 0, "Open loop: requests per second (0: closed loop, --concurrency).");
ABSL_FLAG(std::string, arrivals, "poisson",
          "Open loop schedule: 'poisson' (exponential gaps) or 'constant'.");
ABSL_FLAG(int, max_outstanding, 1024,
          "Open loop: requests in flight at most; beyond, sends wait and are "
          "counted late (latency still counts from the scheduled time).");
ABSL_FLAG(double, duration, 10, "Measured seconds.");
ABSL_FLAG(double, warmup, 2, "Seconds of load before measuring (not counted).");
ABSL_FLAG(double, timeout, 30, "Per-request deadline, in seconds.");
ABSL_FLAG(uint64_t, priority, 0,
          "Priority level sent with every request, 1 highest (0: the model's "
          "default).");
ABSL_FLAG(uint64_t, timeout_us, 0,
          "Server-side timeout sent with every request, microseconds (0: the "
          "model's default); requests that cannot finish in time come back "
          "DEADLINE_EXCEEDED.");
ABSL_FLAG(double, min_accuracy, 0,
          "The request parameter min_accuracy sent with every request: the "
          "least top-1 of the model variant that may answer (0: not sent, the "
          "model's most accurate variant only).");
ABSL_FLAG(std::string, images, "",
          "A labelled image set: an IDX image file (plain or gzip, as "
          "Fashion-MNIST's t10k-images-idx3-ubyte.gz), sent in order as UINT8 "
          "pixels [N, H, W, 1] to a model with input_format PIXELS; needs "
          "--labels. Reports the measured accuracy of the answers, per variant.");
ABSL_FLAG(std::string, labels, "", "The IDX label file of --images.");
ABSL_FLAG(bool, verify, false,
          "Check every response against the verify digest of its inputs "
          "(model platform hgpipe/verify).");
ABSL_FLAG(int, request_pool, 16, "Distinct requests sent in turn.");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the generated images and schedule.");
ABSL_FLAG(int, connections, 1, "TCP connections to spread requests over.");
ABSL_FLAG(std::string, shared_memory, "none",
          "Where tensors travel, as perf_analyzer's flag: 'none' (in the "
          "requests) or 'system' (POSIX shared memory this tool creates and "
          "registers; the server must run on this host with "
          "--allow-client-shm=true). 'cuda' is not supported.");
ABSL_FLAG(bool, streaming, false,
          "Send requests over ModelStreamInfer, one bidirectional stream per "
          "connection, instead of unary ModelInfer calls.");
ABSL_FLAG(bool, json, false, "Print one JSON object instead of a summary.");
ABSL_FLAG(bool, allow_errors, false, "Exit 0 even if requests failed.");
ABSL_FLAG(bool, progress, true, "Print a progress line to stderr each second.");

namespace hgpipe::clients {
namespace {

void PrintSummary(const LoadOptions& o, const LoadResult& r) {
  std::printf("model %s (%s) at %s, %d image(s) per request%s%s, %s\n", o.model.c_str(),
              r.platform.c_str(), o.target.c_str(), o.images_per_request,
              o.shared_memory == LoadOptions::SharedMemory::kSystem ? ", system shared memory" : "",
              o.streaming ? ", streaming" : "",
              o.rate > 0
                  ? absl::StrCat(
                        "open loop ", o.rate, " requests/s (",
                        o.arrivals == LoadOptions::Arrivals::kPoisson ? "poisson" : "constant", ")")
                        .c_str()
                  : absl::StrCat("concurrency ", o.concurrency).c_str());
  std::printf("  throughput: %.1f images/s, %.1f requests/s over %.1f s\n", r.images_per_second,
              r.requests_per_second, r.window_seconds);
  std::printf("  latency ms: p50 %.3f  p90 %.3f  p99 %.3f  max %.3f  mean %.3f\n", r.latency_ms.p50,
              r.latency_ms.p90, r.latency_ms.p99, r.latency_ms.max, r.latency_ms.mean);
  std::printf(
      "  requests: %lld ok in window, %lld completed in all, %lld "
      "failed\n",
      static_cast<long long>(r.requests_ok), static_cast<long long>(r.requests_total),
      static_cast<long long>(r.error_count()));
  for (const auto& [code, count] : r.errors) {
    std::printf("    %s: %lld (first: %s)\n", code.c_str(), static_cast<long long>(count),
                r.first_error_message.at(code).c_str());
  }
  if (o.rate > 0) {
    std::printf("  late requests (max outstanding reached): %lld\n",
                static_cast<long long>(r.late_requests));
  }
  std::printf("  goodput: %.2f %% (%lld of %lld offered answered within %.3f ms; %lld answered)\n",
              100 * r.goodput, static_cast<long long>(r.within_deadline),
              static_cast<long long>(r.offered), r.deadline_ms, static_cast<long long>(r.answered));
  for (const auto& [name, v] : r.variants) {
    std::printf("    variant %s: %lld requests (%.1f %%)", name.empty() ? "(none)" : name.c_str(),
                static_cast<long long>(v.requests),
                r.answered > 0 ? 100.0 * v.requests / r.answered : 0.0);
    if (v.declared_top1 >= 0) std::printf(", declared top-1 %.4f", v.declared_top1);
    if (!o.images_path.empty() && v.images > 0) {
      std::printf(", measured %.4f (%lld of %lld images)",
                  static_cast<double>(v.correct) / v.images, static_cast<long long>(v.correct),
                  static_cast<long long>(v.images));
    }
    std::printf("\n");
  }
  if (r.declared_accuracy >= 0) std::printf("  declared accuracy: %.4f\n", r.declared_accuracy);
  if (r.measured_accuracy >= 0) std::printf("  measured accuracy: %.4f\n", r.measured_accuracy);
  std::printf("  client CPU: %.2f cores (user %.2f, system %.2f)\n", r.client_cpu_cores,
              r.client_cpu_user_cores, r.client_cpu_system_cores);
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "measures a KServe v2 server's throughput and latency.\n"
      "  hgpipe-perf [--url HOST:PORT] [--model verify] [--concurrency N | "
      "--rate R] [--duration S] [--json]");
  hgpipe::HandleHelpFlag(argc, argv, __FILE__);
  DashesToUnderscores(argc, argv);
  // Debian builds Abseil without NDEBUG, which leaves absl::Mutex deadlock
  // detection on: a global lock and a graph lookup on every mutex
  // acquisition (hgpipe::Mutex's and gRPC's own included). A measuring tool should not pay it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() > 1) {
    std::fprintf(stderr, "hgpipe-perf: unexpected argument '%s'\n", positional[1]);
    return 2;
  }
  LoadOptions o;
  o.target = absl::GetFlag(FLAGS_url);
  o.model = absl::GetFlag(FLAGS_model);
  o.images_per_request = absl::GetFlag(FLAGS_images_per_request);
  o.concurrency = absl::GetFlag(FLAGS_concurrency);
  o.rate = absl::GetFlag(FLAGS_rate);
  const std::string arrivals = absl::GetFlag(FLAGS_arrivals);
  if (arrivals == "poisson") {
    o.arrivals = LoadOptions::Arrivals::kPoisson;
  } else if (arrivals == "constant") {
    o.arrivals = LoadOptions::Arrivals::kConstant;
  } else {
    std::fprintf(stderr,
                 "hgpipe-perf: --arrivals must be poisson or constant, not "
                 "'%s'\n",
                 arrivals.c_str());
    return 2;
  }
  o.max_outstanding = absl::GetFlag(FLAGS_max_outstanding);
  o.duration = absl::Seconds(absl::GetFlag(FLAGS_duration));
  o.warmup = absl::Seconds(absl::GetFlag(FLAGS_warmup));
  o.timeout = absl::Seconds(absl::GetFlag(FLAGS_timeout));
  o.priority = absl::GetFlag(FLAGS_priority);
  o.timeout_us = absl::GetFlag(FLAGS_timeout_us);
  o.verify = absl::GetFlag(FLAGS_verify);
  o.min_accuracy = absl::GetFlag(FLAGS_min_accuracy);
  o.images_path = absl::GetFlag(FLAGS_images);
  o.labels_path = absl::GetFlag(FLAGS_labels);
  o.request_pool = absl::GetFlag(FLAGS_request_pool);
  o.seed = absl::GetFlag(FLAGS_seed);
  o.connections = absl::GetFlag(FLAGS_connections);
  const std::string shared_memory = absl::GetFlag(FLAGS_shared_memory);
  if (shared_memory == "system") {
    o.shared_memory = LoadOptions::SharedMemory::kSystem;
  } else if (shared_memory != "none") {
    std::fprintf(stderr, "hgpipe-perf: --shared-memory must be none or system, not '%s'\n",
                 shared_memory.c_str());
    return 2;
  }
  o.streaming = absl::GetFlag(FLAGS_streaming);

  absl::AnyInvocable<void(const LoadProgress&)> progress;
  if (absl::GetFlag(FLAGS_progress)) {
    progress = [](const LoadProgress& p) {
      std::fprintf(stderr,
                   "hgpipe-perf [%5.1fs]%s %9.1f images/s, %lld errors, %lld "
                   "outstanding\n",
                   absl::ToDoubleSeconds(p.elapsed), p.warming_up ? " warmup" : "       ",
                   p.images_per_second, static_cast<long long>(p.errors),
                   static_cast<long long>(p.outstanding));
    };
  }
  absl::StatusOr<LoadResult> result = RunLoad(o, std::move(progress));
  if (!result.ok()) {
    std::fprintf(stderr, "hgpipe-perf: error: %s: %s\n",
                 StatusCodeName(static_cast<int>(result.status().code())).c_str(),
                 std::string(result.status().message()).c_str());
    return absl::IsInvalidArgument(result.status()) ? 2 : 1;
  }
  if (absl::GetFlag(FLAGS_json)) {
    std::printf("%s\n", LoadResultToJson(o, *result).c_str());
  } else {
    PrintSummary(o, *result);
  }
  if (result->error_count() > 0) {
    for (const auto& [code, count] : result->errors) {
      std::fprintf(stderr, "hgpipe-perf: %lld requests failed with %s: %s\n",
                   static_cast<long long>(count), code.c_str(),
                   result->first_error_message.at(code).c_str());
    }
    if (!absl::GetFlag(FLAGS_allow_errors)) return 1;
  }
  return 0;
}

}  // namespace
}  // namespace hgpipe::clients

int main(int argc, char** argv) { return hgpipe::clients::Main(argc, argv); }
