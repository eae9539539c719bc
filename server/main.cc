// hgpipe-server: serves the models of a model repository over KServe v2 gRPC
// from emulated or real HG-PIPE boards, with Prometheus metrics.
#include <algorithm>
#include <malloc.h>

#include <csignal>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "base/clock.h"
#include "base/flags.h"
#include "glog/logging.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "prometheus/exposer.h"
#include "scheduler/scheduler.h"
#include "server/board_factory.h"
#include "server/inference_service.h"
#include "server/metrics.h"
#include "server/model_repository.h"
#include "server/worker_pool.h"

ABSL_FLAG(std::string, model_repository, HGPIPE_DEFAULT_MODEL_REPOSITORY,
          "Directory with one sub-directory (config.pbtxt) per model");
ABSL_FLAG(std::string, boards, "sim:1",
          "Boards: sim:N (N emulated boards per model), xrt:all, xrt:0,1");
ABSL_FLAG(std::string, host, "0.0.0.0", "Address to listen on");
ABSL_FLAG(int, grpc_port, 8001, "gRPC port (0: pick a free one)");
ABSL_FLAG(int, metrics_port, 8002, "Prometheus /metrics port (0: pick a free one)");
ABSL_FLAG(std::string, log_level, "info", "info, warning or error");
ABSL_FLAG(int, max_message_mb, 64, "Largest gRPC message accepted, MiB");
ABSL_FLAG(int, board_slots, 8, "Runs queued on each board at once");
ABSL_FLAG(int, dispatch_lead_us, 1000,
          "Submit a busy board's next run this long before its input drains");
ABSL_FLAG(int, preprocess_threads, 0,
          "Threads decoding and preprocessing images (0: one per core)");
ABSL_FLAG(int, preprocess_queue, 16384,
          "Images waiting for preprocessing beyond which requests are refused");
ABSL_FLAG(int, drain_timeout_s, 30,
          "On SIGTERM/SIGINT, how long in-flight requests may take to finish");

namespace hgpipe::server {
namespace {

int Fail(const absl::Status& s) {
  LOG(ERROR) << "hgpipe-server: " << s.message();
  return 1;
}

int Run(const sigset_t& stop_signals) {
  auto models = LoadModelRepository(absl::GetFlag(FLAGS_model_repository),
                                    ResolveEmulatedBitstream);
  if (!models.ok()) return Fail(models.status());
  auto spec = ParseBoardSpec(absl::GetFlag(FLAGS_boards));
  if (!spec.ok()) return Fail(spec.status());

  RealClock clock;
  Metrics metrics;
  scheduler::Scheduler::Options so;
  so.clock = &clock;
  so.observer = &metrics;
  so.dispatch_lead = absl::Microseconds(absl::GetFlag(FLAGS_dispatch_lead_us));
  auto sched = scheduler::Scheduler::Create(so);
  if (!sched.ok()) return Fail(sched.status());

  BoardOptions bo;
  bo.num_slots = absl::GetFlag(FLAGS_board_slots);
  auto boards = CreateBoards(*spec, *models, bo, &clock);
  if (!boards.ok()) return Fail(boards.status());

  std::vector<InferenceService::LoadedModel> loaded;
  std::vector<std::string> names;
  for (size_t i = 0; i < models->size(); ++i) {
    ModelEntry& e = (*models)[i];
    const config::BatchingConfig& b = e.config.batching();
    scheduler::ModelOptions mo;
    mo.name = e.config.name();
    mo.max_images_per_run = b.max_images_per_run();
    mo.max_queue_delay = absl::Microseconds(b.max_queue_delay_us());
    mo.max_queue_images = b.max_queue_images();
    std::vector<std::string> board_names;
    for (const auto& board : (*boards)[i]) board_names.push_back(board->info().name);
    auto id = (*sched)->AddModel(mo, std::move((*boards)[i]));
    if (!id.ok()) return Fail(id.status());
    metrics.AddModel(*id, mo.name, board_names);
    LOG(INFO) << "model " << mo.name << ": bitstream " << e.config.bitstream()
              << ", boards " << absl::StrJoin(board_names, ",");
    names.push_back(mo.name);
    InferenceService::LoadedModel lm{std::move(e), *id, std::nullopt};
    if (lm.entry.config.input_format() != config::DEVICE_PATCHES) {
      auto options = PreprocessOptions(lm.entry.config, lm.entry.manifest.geometry);
      if (!options.ok()) return Fail(options.status());
      auto pre = preprocess::Preprocessor::Create(*options);
      if (!pre.ok()) return Fail(pre.status());
      lm.preprocessor.emplace(*std::move(pre));
    }
    loaded.push_back(std::move(lm));
  }
  int threads = absl::GetFlag(FLAGS_preprocess_threads);
  if (threads <= 0) threads = static_cast<int>(std::thread::hardware_concurrency());
  WorkerPool workers(threads, absl::GetFlag(FLAGS_preprocess_queue));

  const std::string host = absl::GetFlag(FLAGS_host);
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    exposer = std::make_unique<prometheus::Exposer>(
        absl::StrCat(host, ":", absl::GetFlag(FLAGS_metrics_port)));
  } catch (const std::exception& e) {
    return Fail(absl::UnavailableError(absl::StrCat(
        "cannot serve metrics on ", host, ":", absl::GetFlag(FLAGS_metrics_port),
        ": ", e.what())));
  }
  exposer->RegisterCollectable(metrics.registry());

  InferenceService service(std::move(loaded), sched->get(), &metrics, &workers);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int grpc_port = 0;
  builder.AddListeningPort(absl::StrCat(host, ":", absl::GetFlag(FLAGS_grpc_port)),
                           grpc::InsecureServerCredentials(), &grpc_port);
  builder.SetMaxReceiveMessageSize(absl::GetFlag(FLAGS_max_message_mb) << 20);
  builder.SetMaxSendMessageSize(absl::GetFlag(FLAGS_max_message_mb) << 20);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || grpc_port == 0) {
    return Fail(absl::UnavailableError(absl::StrCat(
        "cannot listen for gRPC on ", host, ":", absl::GetFlag(FLAGS_grpc_port))));
  }
  service.SetReady(true);
  server->GetHealthCheckService()->SetServingStatus(true);
  LOG(INFO) << "hgpipe-server ready: grpc=" << host << ":" << grpc_port
            << " metrics=" << host << ":" << exposer->GetListeningPorts().front()
            << " models=" << absl::StrJoin(names, ",");

  int sig = 0;
  sigwait(&stop_signals, &sig);
  LOG(INFO) << "hgpipe-server: " << strsignal(sig) << ", draining";
  const absl::Time deadline =
      absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_drain_timeout_s));
  // Refuse new inferences with UNAVAILABLE (retryable elsewhere) and report
  // NOT_SERVING, so load balancers stop routing here...
  service.StartDraining();
  server->GetHealthCheckService()->SetServingStatus(false);
  // ...until calls stop arriving: grpc::Server::Shutdown would cancel the
  // ones still being received, and CANCELLED is not safe to retry.
  constexpr absl::Duration kQuiet = absl::Milliseconds(200);
  for (absl::Time now = absl::Now(); now < deadline; now = absl::Now()) {
    const absl::Time quiet_at = service.last_infer_call() + kQuiet;
    if (quiet_at <= now) break;
    absl::SleepFor(std::min(quiet_at, deadline) - now);
  }
  // Stops accepting calls and waits for those in flight: their requests are
  // in the scheduler, which keeps running until they are answered.
  server->Shutdown(absl::ToChronoTime(deadline));
  (*sched)->Shutdown();
  LOG(INFO) << "hgpipe-server: stopped";
  return 0;
}

}  // namespace
}  // namespace hgpipe::server

int main(int argc, char** argv) {
  // Requests carry 150 KB per image, just above glibc's 128 KiB mmap
  // threshold: every request buffer would be a fresh mapping, page-faulted
  // in and unmapped again. Keep such buffers on the heap and reuse them.
  mallopt(M_MMAP_THRESHOLD, 16 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
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
      "hgpipe-server [--model-repository DIR] [--boards sim:N] [--grpc-port P]");
  hgpipe::DashesToUnderscores(argc, argv);
  absl::ParseCommandLine(argc, argv);
  FLAGS_logtostderr = true;
  const std::string level = absl::GetFlag(FLAGS_log_level);
  if (level == "info") {
    FLAGS_minloglevel = google::GLOG_INFO;
  } else if (level == "warning") {
    FLAGS_minloglevel = google::GLOG_WARNING;
  } else if (level == "error") {
    FLAGS_minloglevel = google::GLOG_ERROR;
  } else {
    fprintf(stderr, "hgpipe-server: --log-level: '%s' is not info, warning or error\n",
            level.c_str());
    return 1;
  }
  google::InitGoogleLogging(argv[0]);
  return hgpipe::server::Run(stop_signals);
}
