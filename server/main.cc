// hgpipe-server: serves the models of a model repository over KServe v2 gRPC
// and REST (Triton's extensions on both) from emulated or real HG-PIPE
// boards, with Prometheus metrics.
#include <algorithm>
#include <malloc.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/marshalling.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "base/clock.h"
#include "base/flags.h"
#include "base/status_macros.h"
#include "glog/logging.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "prometheus/exposer.h"
#include "scheduler/scheduler.h"
#include "server/board_factory.h"
#include "server/heap_release.h"
#include "server/http_server.h"
#include "server/inference_service.h"
#include "server/log_control.h"
#include "server/metrics.h"
#include "server/model_manager.h"
#include "server/model_repository.h"
#include "server/protobuf_log.h"
#include "server/request_pipeline.h"
#include "server/rest_handler.h"
#include "server/restrictions.h"
#include "server/shared_memory_regions.h"
#include "server/statistics.h"
#include "server/trace_control.h"
#include "server/triton_api.h"
#include "server/worker_pool.h"

ABSL_FLAG(std::string, model_repository, HGPIPE_DEFAULT_MODEL_REPOSITORY,
          "Directory with one sub-directory (config.pbtxt) per model");
ABSL_FLAG(std::string, model_control_mode, "none",
          "none: load every model at start-up, refuse RepositoryModelLoad/Unload; "
          "explicit: load only --load-model at start-up, allow Load/Unload");
ABSL_FLAG(std::vector<std::string>, load_model, {},
          "With --model-control-mode=explicit: a model to load at start-up "
          "(repeat, or comma-separate; '*' for all)");
ABSL_FLAG(std::string, boards, "sim:1",
          "Boards: sim:N (N emulated boards per model), sim-pool:N (N emulated "
          "boards shared by all models), xrt:all, xrt:0,1");
ABSL_FLAG(std::string, host, "0.0.0.0", "Address to listen on");
ABSL_FLAG(int, grpc_port, 8001, "gRPC port (0: pick a free one)");
ABSL_FLAG(int, metrics_port, 8002, "Prometheus /metrics port (0: pick a free one)");
ABSL_FLAG(int, http_port, 8000, "KServe v2 REST port (0: pick a free one; -1: no HTTP endpoint)");
ABSL_FLAG(int, http_thread_count, 2, "Threads serving HTTP connections");
ABSL_FLAG(int64_t, http_max_input_size, int64_t{64} << 20,
          "Largest HTTP request body accepted, bytes (larger: 413)");
ABSL_FLAG(int, http_request_timeout_ms, 60000,
          "An HTTP request must arrive whole within this (else 408, connection closed)");
ABSL_FLAG(bool, grpc_use_ssl, false,
          "Serve gRPC over TLS with --grpc-server-cert and --grpc-server-key");
ABSL_FLAG(bool, grpc_use_ssl_mutual, false,
          "gRPC over TLS requiring client certificates signed by --grpc-root-cert "
          "(implies --grpc-use-ssl)");
ABSL_FLAG(std::string, grpc_server_cert, "", "PEM file: the gRPC server certificate (chain)");
ABSL_FLAG(std::string, grpc_server_key, "", "PEM file: the gRPC server private key");
ABSL_FLAG(std::string, grpc_root_cert, "",
          "PEM file: the CA that client certificates must be signed by (mutual TLS)");
ABSL_FLAG(bool, http_use_ssl, false,
          "Serve HTTP over TLS (HTTPS) with --http-server-cert and --http-server-key");
ABSL_FLAG(bool, http_use_ssl_mutual, false,
          "HTTPS requiring client certificates signed by --http-root-cert "
          "(implies --http-use-ssl)");
ABSL_FLAG(std::string, http_server_cert, "", "PEM file: the HTTP server certificate (chain)");
ABSL_FLAG(std::string, http_server_key, "", "PEM file: the HTTP server private key");
ABSL_FLAG(std::string, http_root_cert, "",
          "PEM file: the CA that client certificates must be signed by (mutual TLS)");
ABSL_FLAG(std::string, grpc_restricted_protocol, "",
          "GROUPS:KEY=VALUE (repeatable): gRPC calls of these API groups (metadata, "
          "inference, shared-memory, model-config, model-repository, statistics, trace, "
          "logging) need metadata triton-grpc-protocol-KEY: VALUE, else PERMISSION_DENIED");
ABSL_FLAG(std::string, http_restricted_api, "",
          "GROUPS:KEY=VALUE (repeatable): HTTP calls of these API groups need header "
          "KEY: VALUE, else 403");
ABSL_FLAG(bool, allow_client_shm, false,
          "Let clients register system shared memory regions (Triton's "
          "extension and flag): a client that can register can make the server "
          "read and write any shared memory object this user can open");
ABSL_FLAG(std::string, log_level, "info",
          "info, warning or error: the least severe lines written (Triton's LogSettings "
          "call and v2/logging change it while the server runs)");
ABSL_FLAG(std::string, log_file, "",
          "Append the log to this file instead of writing it to stderr, as Triton's --log-file");
ABSL_FLAG(std::string, log_format, "default",
          "Log line format, as Triton's --log-format: default (glog's prefix) or ISO8601");
ABSL_FLAG(int, log_verbose, 0,
          "Verbose level, as Triton's --log-verbose: 1 adds a line per failed request, "
          "2 a line per request");
ABSL_FLAG(std::string, trace_file, "",
          "Write Triton's JSON trace file here, as Triton's --trace-file (fixed while the "
          "server runs; with --trace-log-frequency N, FILE.0, FILE.1, ...)");
ABSL_FLAG(std::string, trace_level, "OFF",
          "OFF or TIMESTAMPS, as Triton's --trace-level (TraceSetting and "
          "v2/trace/setting change it while the server runs)");
ABSL_FLAG(int64_t, trace_rate, 1000, "Trace one request in N, as Triton's --trace-rate");
ABSL_FLAG(int64_t, trace_count, -1,
          "Stop tracing after this many traces (-1: never), as Triton's --trace-count");
ABSL_FLAG(int64_t, trace_log_frequency, 0,
          "Traces per trace file (0: one file, complete at shutdown), as Triton's "
          "--trace-log-frequency");
ABSL_FLAG(int, max_message_mb, 64, "Largest gRPC message accepted, MiB");
ABSL_FLAG(int, board_slots, 0,
          "Runs queued on each board at once (0: the board's default; emulated "
          "boards derive it from the pipeline depth)");
ABSL_FLAG(int, dispatch_lead_us, 1000,
          "Submit a busy board's next run this long before its input drains, plus "
          "the model's observed fill time (decoding photos into the board's slot)");
ABSL_FLAG(int, response_reserve_us, 500,
          "Time kept back from each request's deadline for its answer's way back to the "
          "client: the scheduler admits and routes against the deadline less this (at most "
          "a quarter of the request's timeout)");
ABSL_FLAG(int, emulated_program_ms, 1000,
          "How long programming an emulated board with a bitstream takes");
ABSL_FLAG(int, emulated_reset_ms, 200, "How long resetting an emulated board takes");
ABSL_FLAG(bool, emulated_compute, true,
          "false: emulated boards model timing only and never run the kernel "
          "(outputs are zero), so the host's CPU holds only the server's work");
ABSL_FLAG(std::string, emulated_faults, "",
          "Faults injected into boards (emulated or XRT) by name, e.g. "
          "sim1=hang@100,sim2=fail@50:permanent (KIND@RUNS[:xFACTOR][:permanent], "
          "KIND fail, hang, slow or corrupt)");
ABSL_FLAG(int, watchdog_ms, 2000,
          "A run this long past its predicted completion takes its board out of "
          "service for recovery (0: no watchdog)");
ABSL_FLAG(int, recovery_backoff_ms, 500,
          "Delay before retrying a failed board recovery; doubles per attempt");
ABSL_FLAG(int, max_recovery_attempts, 5, "Recovery attempts before a failed board is retired");
ABSL_FLAG(bool, reprogram, true, "Reprogram boards for models that have requests and no board");
ABSL_FLAG(int, preprocess_threads, 0,
          "Threads decoding and preprocessing images (0: one per core)");
ABSL_FLAG(bool, canary, true,
          "Prove boards with their model's canary (false: boards that compute "
          "nothing, e.g. XRT's no-op device without an FPGA)");
ABSL_FLAG(int, canary_interval_s, 30,
          "How often each board runs its model's canary (a golden input with its "
          "known output, compared bit for bit) besides after every programming; "
          "0: only after programming");
ABSL_FLAG(int, drain_timeout_s, 30,
          "On SIGTERM/SIGINT, how long in-flight requests may take to finish");

namespace hgpipe::server {
namespace {

int Fail(const absl::Status& s) {
  LOG(ERROR) << "hgpipe-server: " << s.message();
  return 1;
}

absl::Status CheckRange(absl::string_view flag, int value, int low, int high) {
  if (value < low || value > high) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": ", value, " is outside ", low, "..", high));
  }
  return absl::OkStatus();
}

absl::Status CheckFlags() {
  RETURN_IF_ERROR(CheckRange("board-slots", absl::GetFlag(FLAGS_board_slots), 0, 1024));
  RETURN_IF_ERROR(
      CheckRange("emulated-program-ms", absl::GetFlag(FLAGS_emulated_program_ms), 0, 600'000));
  RETURN_IF_ERROR(
      CheckRange("emulated-reset-ms", absl::GetFlag(FLAGS_emulated_reset_ms), 0, 600'000));
  RETURN_IF_ERROR(CheckRange("watchdog-ms", absl::GetFlag(FLAGS_watchdog_ms), 0, 3'600'000));
  RETURN_IF_ERROR(
      CheckRange("recovery-backoff-ms", absl::GetFlag(FLAGS_recovery_backoff_ms), 0, 600'000));
  RETURN_IF_ERROR(
      CheckRange("max-recovery-attempts", absl::GetFlag(FLAGS_max_recovery_attempts), 1, 1000));
  RETURN_IF_ERROR(
      CheckRange("dispatch-lead-us", absl::GetFlag(FLAGS_dispatch_lead_us), 0, 1'000'000));
  RETURN_IF_ERROR(
      CheckRange("response-reserve-us", absl::GetFlag(FLAGS_response_reserve_us), 0, 1'000'000));
  RETURN_IF_ERROR(CheckRange("http-port", absl::GetFlag(FLAGS_http_port), -1, 65535));
  RETURN_IF_ERROR(CheckRange("http-thread-count", absl::GetFlag(FLAGS_http_thread_count), 1, 256));
  RETURN_IF_ERROR(CheckRange("http-request-timeout-ms",
                             absl::GetFlag(FLAGS_http_request_timeout_ms), 1, 3'600'000));
  if (absl::GetFlag(FLAGS_http_max_input_size) < 1) {
    return absl::InvalidArgumentError("--http-max-input-size: must be > 0");
  }
  // Shifted to bytes in an int: 1 GiB is the most that fits (and far more
  // than any request needs); 0 would refuse every call.
  RETURN_IF_ERROR(CheckRange("max-message-mb", absl::GetFlag(FLAGS_max_message_mb), 1, 1024));
  RETURN_IF_ERROR(
      CheckRange("preprocess-threads", absl::GetFlag(FLAGS_preprocess_threads), 0, 1024));
  RETURN_IF_ERROR(CheckRange("drain-timeout-s", absl::GetFlag(FLAGS_drain_timeout_s), 0, 86'400));
  RETURN_IF_ERROR(
      CheckRange("canary-interval-s", absl::GetFlag(FLAGS_canary_interval_s), 0, 86'400));
  RETURN_IF_ERROR(CheckRange("grpc-port", absl::GetFlag(FLAGS_grpc_port), 0, 65'535));
  RETURN_IF_ERROR(CheckRange("metrics-port", absl::GetFlag(FLAGS_metrics_port), 0, 65'535));
  return absl::OkStatus();
}

// Every value of a flag given several times ("--f a --f=b"), unsplit: absl
// keeps only the last occurrence.
std::vector<std::string> RepeatedFlag(int argc, char** argv, absl::string_view name) {
  std::vector<std::string> out;
  const std::string flag = absl::StrCat("--", name);
  for (int i = 1; i < argc; ++i) {
    const absl::string_view a = argv[i];
    if (a == "--") break;
    if (a == flag && i + 1 < argc) {
      out.emplace_back(argv[++i]);
    } else if (absl::StartsWith(a, absl::StrCat(flag, "="))) {
      out.emplace_back(a.substr(flag.size() + 1));
    }
  }
  return out;
}

absl::StatusOr<std::string> ReadPem(absl::string_view flag, const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError(absl::StrCat("--", flag, " is needed"));
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  if (!in || text.str().empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, " '", path, "': cannot read"));
  }
  return text.str();
}

// The gRPC port's credentials: insecure, TLS, or mutual TLS (Triton's flags).
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> GrpcCredentials() {
  const bool mutual = absl::GetFlag(FLAGS_grpc_use_ssl_mutual);
  if (!mutual && !absl::GetFlag(FLAGS_grpc_use_ssl)) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions o(
      mutual ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
             : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  ASSIGN_OR_RETURN(pair.cert_chain,
                   ReadPem("grpc-server-cert", absl::GetFlag(FLAGS_grpc_server_cert)));
  ASSIGN_OR_RETURN(pair.private_key,
                   ReadPem("grpc-server-key", absl::GetFlag(FLAGS_grpc_server_key)));
  o.pem_key_cert_pairs.push_back(std::move(pair));
  if (mutual) {
    ASSIGN_OR_RETURN(o.pem_root_certs,
                     ReadPem("grpc-root-cert", absl::GetFlag(FLAGS_grpc_root_cert)));
  }
  return grpc::SslServerCredentials(o);
}

// Every value of a list flag given several times ("--load_model a
// --load_model=b,c"): absl keeps only the last occurrence.
std::vector<std::string> RepeatedListFlag(int argc, char** argv, absl::string_view name) {
  std::vector<std::string> out;
  const std::string flag = absl::StrCat("--", name);
  for (int i = 1; i < argc; ++i) {
    const absl::string_view a = argv[i];
    if (a == "--") break;
    absl::string_view value;
    if (a == flag && i + 1 < argc) {
      value = argv[++i];
    } else if (absl::StartsWith(a, absl::StrCat(flag, "="))) {
      value = a.substr(flag.size() + 1);
    } else {
      continue;
    }
    for (absl::string_view v : absl::StrSplit(value, ',', absl::SkipWhitespace())) {
      out.emplace_back(v);
    }
  }
  return out;
}

// Waits for SIGTERM/SIGINT. Meanwhile gives the heap's free memory back to
// the system when server/heap_release.h's policy says so.
int WaitForStopSignal(const sigset_t& stop_signals, const RequestPipeline& pipeline) {
  const timespec tick = {1, 0};
  HeapReleasePolicy policy(HeapReleasePolicy::Options{});
  for (;;) {
    const int sig = sigtimedwait(&stop_signals, nullptr, &tick);
    if (sig > 0) return sig;
    if (policy.ShouldTrim(absl::Now(), pipeline.last_infer_call(), HeapFreeBytes)) {
      malloc_trim(0);
    }
  }
}

int Run(const sigset_t& stop_signals, const std::vector<std::string>& load_models,
        const std::vector<std::string>& grpc_restricted,
        const std::vector<std::string>& http_restricted, LogControl* log) {
  if (absl::Status s = CheckFlags(); !s.ok()) return Fail(s);
  auto grpc_restrictions =
      Restrictions::Parse("grpc-restricted-protocol", grpc_restricted, kGrpcRestrictedHeaderPrefix);
  if (!grpc_restrictions.ok()) return Fail(grpc_restrictions.status());
  auto http_restrictions = Restrictions::Parse("http-restricted-api", http_restricted, "");
  if (!http_restrictions.ok()) return Fail(http_restrictions.status());
  auto grpc_credentials = GrpcCredentials();
  if (!grpc_credentials.ok()) return Fail(grpc_credentials.status());
  auto mode = ModelManager::ParseControlMode(absl::GetFlag(FLAGS_model_control_mode));
  if (!mode.ok()) return Fail(mode.status());
  if (*mode == ModelManager::ControlMode::kNone && !load_models.empty()) {
    return Fail(absl::InvalidArgumentError(
        "--load-model needs --model-control-mode=explicit (mode none loads every model)"));
  }
  auto spec = ParseBoardSpec(absl::GetFlag(FLAGS_boards));
  if (!spec.ok()) return Fail(spec.status());
  auto trace_settings =
      TraceSettingsFromFlags(absl::GetFlag(FLAGS_trace_file), absl::GetFlag(FLAGS_trace_level),
                             absl::GetFlag(FLAGS_trace_rate), absl::GetFlag(FLAGS_trace_count),
                             absl::GetFlag(FLAGS_trace_log_frequency));
  if (!trace_settings.ok()) return Fail(trace_settings.status());
  auto faults = ParseEmulatedFaults(absl::GetFlag(FLAGS_emulated_faults));
  if (!faults.ok()) return Fail(faults.status());

  RealClock clock;
  Metrics metrics;
  InferStatistics statistics;
  ObserverFanout observers({&metrics, &statistics});
  // Declared before what it calls into, so that it outlives them: a late
  // reply (past the drain deadline) still finds its I/O context.
  std::unique_ptr<HttpServer> http;
  // The scheduler's fill step decodes and preprocesses images into board
  // slots here; declared first, so that it outlives the scheduler.
  int threads = absl::GetFlag(FLAGS_preprocess_threads);
  if (threads <= 0) threads = static_cast<int>(std::thread::hardware_concurrency());
  WorkerPool workers(threads, /*max_queued=*/0, "hgpipe-fill");  // as an Executor only

  scheduler::Scheduler::Options so;
  so.clock = &clock;
  so.fill_executor = &workers;
  so.observer = &observers;
  so.dispatch_lead = absl::Microseconds(absl::GetFlag(FLAGS_dispatch_lead_us));
  so.watchdog_margin = absl::Milliseconds(absl::GetFlag(FLAGS_watchdog_ms));
  so.recovery_backoff = absl::Milliseconds(absl::GetFlag(FLAGS_recovery_backoff_ms));
  so.max_recovery_attempts = absl::GetFlag(FLAGS_max_recovery_attempts);
  so.reprogram = absl::GetFlag(FLAGS_reprogram);
  so.canary_interval = absl::Seconds(absl::GetFlag(FLAGS_canary_interval_s));
  auto sched = scheduler::Scheduler::Create(so);
  if (!sched.ok()) return Fail(sched.status());

  BoardOptions bo;
  bo.num_slots = absl::GetFlag(FLAGS_board_slots);
  bo.program_time = absl::Milliseconds(absl::GetFlag(FLAGS_emulated_program_ms));
  bo.reset_time = absl::Milliseconds(absl::GetFlag(FLAGS_emulated_reset_ms));
  bo.compute = absl::GetFlag(FLAGS_emulated_compute);
  bo.faults = *std::move(faults);
  BoardFactory boards(*spec, std::move(bo), &clock);

  ModelManager::Options mo;
  mo.repository = absl::GetFlag(FLAGS_model_repository);
  mo.resolve = ResolveEmulatedBitstream;
  mo.control_mode = *mode;
  mo.scheduler = sched->get();
  mo.metrics = &metrics;
  mo.boards = &boards;
  mo.clock = &clock;
  // Emulated boards that model timing only return zeros: no canary holds.
  mo.canaries = absl::GetFlag(FLAGS_canary) && absl::GetFlag(FLAGS_emulated_compute);
  ModelManager models(std::move(mo));
  if (absl::Status s = models.LoadAtStartup(load_models); !s.ok()) return Fail(s);
  for (const std::string& name : boards.PendingFaults()) {
    LOG(WARNING) << "--emulated-faults: no board " << name
                 << " so far (emulated boards are sim0, sim1, ... in order of creation)";
  }

  const std::string host = absl::GetFlag(FLAGS_host);
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    // civetweb's defaults (2 threads, 30 s to read a request) let two
    // half-sent requests block /metrics for 30 s: more threads, and a
    // client gets 2 s to send its request.
    exposer = std::make_unique<prometheus::Exposer>(std::vector<std::string>{
        "listening_ports", absl::StrCat(host, ":", absl::GetFlag(FLAGS_metrics_port)),
        "num_threads", "8", "request_timeout_ms", "2000"});
  } catch (const std::exception& e) {
    return Fail(absl::UnavailableError(absl::StrCat(
        "cannot serve metrics on ", host, ":", absl::GetFlag(FLAGS_metrics_port), ": ", e.what())));
  }
  exposer->RegisterCollectable(metrics.registry());

  SharedMemoryRegions::Options shm_options;
  shm_options.allow_client_shm = absl::GetFlag(FLAGS_allow_client_shm);
  SharedMemoryRegions shared_memory(shm_options);
  // Outlives the pipeline: its file is complete once no request can end.
  TraceControl trace(*std::move(trace_settings));
  RequestPipeline pipeline(&models, sched->get(), &metrics, &statistics, &shared_memory,
                           absl::Microseconds(absl::GetFlag(FLAGS_response_reserve_us)), &trace);
  TritonApi api(&models, &statistics, &pipeline, &trace);
  InferenceService service(&pipeline, &api, *std::move(grpc_restrictions), &shared_memory, log);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int grpc_port = 0;
  builder.AddListeningPort(absl::StrCat(host, ":", absl::GetFlag(FLAGS_grpc_port)),
                           *grpc_credentials, &grpc_port);
  builder.SetMaxReceiveMessageSize(absl::GetFlag(FLAGS_max_message_mb) << 20);
  builder.SetMaxSendMessageSize(absl::GetFlag(FLAGS_max_message_mb) << 20);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || grpc_port == 0) {
    return Fail(absl::UnavailableError(
        absl::StrCat("cannot listen for gRPC on ", host, ":", absl::GetFlag(FLAGS_grpc_port))));
  }
  RestHandler rest(&pipeline, &api, *std::move(http_restrictions), &shared_memory, log);
  if (absl::GetFlag(FLAGS_http_port) >= 0) {
    HttpServer::Options ho;
    ho.host = host;
    ho.port = absl::GetFlag(FLAGS_http_port);
    ho.threads = absl::GetFlag(FLAGS_http_thread_count);
    ho.max_input_bytes = static_cast<uint64_t>(absl::GetFlag(FLAGS_http_max_input_size));
    ho.request_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_http_request_timeout_ms));
    ho.mutual_tls = absl::GetFlag(FLAGS_http_use_ssl_mutual);
    if (ho.mutual_tls || absl::GetFlag(FLAGS_http_use_ssl)) {
      ho.cert_file = absl::GetFlag(FLAGS_http_server_cert);
      ho.key_file = absl::GetFlag(FLAGS_http_server_key);
      ho.root_cert_file = absl::GetFlag(FLAGS_http_root_cert);
      if (ho.cert_file.empty() || ho.key_file.empty() ||
          (ho.mutual_tls && ho.root_cert_file.empty())) {
        return Fail(absl::InvalidArgumentError(
            "--http-use-ssl needs --http-server-cert and --http-server-key; "
            "--http-use-ssl-mutual also --http-root-cert"));
      }
    }
    auto started = HttpServer::Start(ho, &rest);
    if (!started.ok()) return Fail(started.status());
    http = *std::move(started);
  }
  pipeline.SetReady(true);
  server->GetHealthCheckService()->SetServingStatus(true);
  LOG(INFO) << "hgpipe-server ready: grpc=" << host << ":" << grpc_port
            << " http=" << (http != nullptr ? absl::StrCat(host, ":", http->port()) : "off")
            << " metrics=" << host << ":" << exposer->GetListeningPorts().front()
            << " models=" << absl::StrJoin(models.LoadedNames(), ",");

  int sig = WaitForStopSignal(stop_signals, pipeline);
  LOG(INFO) << "hgpipe-server: " << strsignal(sig) << ", draining";
  const absl::Time deadline = absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_drain_timeout_s));
  // Refuse new inferences with UNAVAILABLE (retryable elsewhere) and report
  // NOT_SERVING, so load balancers stop routing here...
  service.StartDraining();
  server->GetHealthCheckService()->SetServingStatus(false);
  // ...until calls stop arriving: grpc::Server::Shutdown would cancel the
  // ones still being received, and CANCELLED is not safe to retry. A client
  // that keeps calling (each call refused) must not hold the exit back: a
  // call that was being received when the signal came has had kGrace to
  // arrive, and later ones were sent knowing the server drains.
  constexpr absl::Duration kQuiet = absl::Milliseconds(200);
  constexpr absl::Duration kGrace = absl::Seconds(2);
  const absl::Time quiet_deadline = std::min(deadline, absl::Now() + kGrace);
  for (absl::Time now = absl::Now(); now < quiet_deadline; now = absl::Now()) {
    const absl::Time quiet_at = pipeline.last_infer_call() + kQuiet;
    if (quiet_at <= now) break;
    absl::SleepFor(std::min(quiet_at, quiet_deadline) - now);
  }
  // Stops accepting calls and waits for those in flight: their requests are
  // in the scheduler, which keeps running until they are answered.
  server->Shutdown(absl::ToChronoTime(deadline));
  if (http != nullptr) http->Stop(deadline);
  (*sched)->Shutdown();
  LOG(INFO) << "hgpipe-server: stopped";
  return 0;
}

}  // namespace
}  // namespace hgpipe::server

int main(int argc, char** argv) {
  hgpipe::server::ConfigureHeap();
  // Debian's Abseil is built with deadlock detection on, which costs every
  // lock a global spin lock; the clang thread-safety build checks lock
  // order statically instead.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // Block the stop signals before any thread starts, so every thread inherits
  // the mask and only sigwait in main sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  absl::SetProgramUsageMessage(
      "serves HG-PIPE models over KServe v2 gRPC and REST (Triton's extensions)\n"
      "  hgpipe-server [--model-repository DIR] [--boards sim:N|sim-pool:N|xrt:...]\n"
      "                [--model-control-mode none|explicit --load-model M ...]\n"
      "                [--grpc-port 8001] [--http-port 8000] [--metrics-port 8002]\n"
      "                [--grpc-use-ssl ...] [--http-use-ssl ...] "
      "[--grpc-restricted-protocol G:K=V] [--http-restricted-api G:K=V]");
  hgpipe::HandleHelpFlag(argc, argv, __FILE__);
  hgpipe::DashesToUnderscores(argc, argv);
  const std::vector<std::string> load_models =
      hgpipe::server::RepeatedListFlag(argc, argv, "load_model");
  const std::vector<std::string> grpc_restricted =
      hgpipe::server::RepeatedFlag(argc, argv, "grpc_restricted_protocol");
  const std::vector<std::string> http_restricted =
      hgpipe::server::RepeatedFlag(argc, argv, "http_restricted_api");
  absl::ParseCommandLine(argc, argv);
  FLAGS_logtostderr = true;
  absl::StatusOr<hgpipe::server::LogSettings> log_settings = hgpipe::server::LogSettingsFromFlags(
      absl::GetFlag(FLAGS_log_level), absl::GetFlag(FLAGS_log_verbose),
      absl::GetFlag(FLAGS_log_format), absl::GetFlag(FLAGS_log_file));
  if (!log_settings.ok()) {
    fprintf(stderr, "hgpipe-server: %s\n", std::string(log_settings.status().message()).c_str());
    return 1;
  }
  std::FILE* log_out = stderr;
  if (!log_settings->file.empty()) {
    log_out = std::fopen(log_settings->file.c_str(), "a");
    if (log_out == nullptr) {
      fprintf(stderr, "hgpipe-server: --log-file: cannot open %s: %s\n", log_settings->file.c_str(),
              strerror(errno));
      return 1;
    }
  }
  google::InitGoogleLogging(argv[0]);
  hgpipe::server::RouteProtobufLogs();
  // Every LOG line from here passes the settings Triton's LogSettings call
  // changes.
  int code;
  {
    hgpipe::server::LogControl log(*log_settings, log_out);
    code = hgpipe::server::Run(stop_signals, load_models, grpc_restricted, http_restricted, &log);
  }
  if (log_out != stderr) std::fclose(log_out);
  return code;
}
