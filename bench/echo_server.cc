// hgpipe-echo-server: the transport ceiling. A bare KServe v2 gRPC server
// that answers ModelInfer at once with one INT32 [N, 1000] output of zeros
// (N*4000 bytes, the size of a `verify` response for N images), with the same
// gRPC server settings as hgpipe-server (callback API, default health
// service, 64 MiB messages, default gRPC threading), and malloc tuned so that
// 150 KB request buffers are reused rather than mapped afresh (see Main).
// Whatever rate hgpipe-perf reaches against it on a machine is the most any
// server on that machine can reach through gRPC with the same client.
//
// It also answers ModelMetadata (platform "echo", the `verify` model's
// tensors, so hgpipe-perf works unchanged), ServerLive, ServerReady,
// ModelReady, ServerMetadata and grpc.health.v1, for tests.
//
//   hgpipe-echo-server [--host 127.0.0.1] [--grpc-port 8001 | 0 = free port]
//                      [--answer-thread]
//
// --answer-thread: ModelInfer answers not on the gRPC thread that received
// the call but from one other thread (hgpipe-server's WorkerPool, one
// thread, `echo-answer-0`, handed each call as it arrives). That is the least any
// server pays whose answer waits for a device: the thread that learns of
// the result is not gRPC's. Measured against the plain echo server, it
// tells what answering from another thread costs gRPC by itself.
//
// Logs "hgpipe-echo-server ready: grpc=HOST:PORT" on stderr once serving;
// stops on SIGINT or SIGTERM.
#include <malloc.h>
#include <signal.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "base/flags.h"
#include "base/executor.h"
#include "base/mutex.h"
#include "proto/grpc_service.grpc.pb.h"
#include "server/worker_pool.h"

ABSL_FLAG(std::string, host, "127.0.0.1", "Address to listen on.");
ABSL_FLAG(int, grpc_port, 8001, "gRPC port; 0 picks a free one.");
ABSL_FLAG(int, max_message_mb, 64, "Largest gRPC message accepted, MiB (hgpipe-server's default).");
ABSL_FLAG(
    bool, answer_thread, false,
    "Answer ModelInfer from one other thread, not gRPC's (the cost of an asynchronous answer).");

namespace hgpipe::bench {
namespace {

constexpr int64_t kTokens = 196;
constexpr int64_t kTokenValues = 768;
constexpr int64_t kClasses = 1000;
// More images than any request to hgpipe-server may carry; only a guard
// against allocating absurd responses.
constexpr int64_t kMaxImages = 4096;

class EchoService final : public inference::GRPCInferenceService::CallbackService {
 public:
  // `answers`: where ModelInfer calls are finished; null: on gRPC's thread.
  explicit EchoService(Executor* answers) : answers_(answers) {}

  grpc::ServerUnaryReactor* ModelInfer(grpc::CallbackServerContext* context,
                                       const inference::ModelInferRequest* request,
                                       inference::ModelInferResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    int64_t n = 1;
    if (request->inputs_size() > 0 && request->inputs(0).shape_size() > 0) {
      n = request->inputs(0).shape(0);
    }
    if (n < 1 || n > kMaxImages) {
      reactor->Finish(
          grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                       absl::StrCat("echo: batch dimension ", n, " not in [1, ", kMaxImages, "]")));
      return reactor;
    }
    response->set_model_name(request->model_name());
    response->set_model_version(request->model_version());
    response->set_id(request->id());
    auto* output = response->add_outputs();
    output->set_name("OUTPUT");
    output->set_datatype("INT32");
    output->add_shape(n);
    output->add_shape(kClasses);
    response->add_raw_output_contents()->assign(static_cast<size_t>(n * kClasses * sizeof(int32_t)),
                                                '\0');
    if (answers_ != nullptr) {
      answers_->Schedule([reactor] { reactor->Finish(grpc::Status::OK); });
    } else {
      reactor->Finish(grpc::Status::OK);
    }
    return reactor;
  }

  grpc::ServerUnaryReactor* ModelMetadata(grpc::CallbackServerContext* context,
                                          const inference::ModelMetadataRequest* request,
                                          inference::ModelMetadataResponse* response) override {
    response->set_name(request->name());
    response->add_versions(std::string("1"));  // (const char*) trips GCC 12 -Wrestrict
    response->set_platform("echo");
    auto* input = response->add_inputs();
    input->set_name("INPUT");
    input->set_datatype("INT8");
    for (int64_t d : {int64_t{-1}, kTokens, kTokenValues}) input->add_shape(d);
    auto* output = response->add_outputs();
    output->set_name("OUTPUT");
    output->set_datatype("INT32");
    for (int64_t d : {int64_t{-1}, kClasses}) output->add_shape(d);
    return Ok(context);
  }

  grpc::ServerUnaryReactor* ServerLive(grpc::CallbackServerContext* context,
                                       const inference::ServerLiveRequest*,
                                       inference::ServerLiveResponse* response) override {
    response->set_live(true);
    return Ok(context);
  }

  grpc::ServerUnaryReactor* ServerReady(grpc::CallbackServerContext* context,
                                        const inference::ServerReadyRequest*,
                                        inference::ServerReadyResponse* response) override {
    response->set_ready(true);
    return Ok(context);
  }

  grpc::ServerUnaryReactor* ModelReady(grpc::CallbackServerContext* context,
                                       const inference::ModelReadyRequest*,
                                       inference::ModelReadyResponse* response) override {
    response->set_ready(true);
    return Ok(context);
  }

  grpc::ServerUnaryReactor* ServerMetadata(grpc::CallbackServerContext* context,
                                           const inference::ServerMetadataRequest*,
                                           inference::ServerMetadataResponse* response) override {
    response->set_name("hgpipe-echo-server");
    response->set_version("0.1.0");
    return Ok(context);
  }

 private:
  Executor* const answers_;

  static grpc::ServerUnaryReactor* Ok(grpc::CallbackServerContext* context) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "a KServe v2 ModelInfer server that answers at once (transport "
      "ceiling).\n  hgpipe-echo-server [--host 127.0.0.1] [--grpc-port N]");
  hgpipe::HandleHelpFlag(argc, argv, __FILE__);
  DashesToUnderscores(argc, argv);
  // Debian builds Abseil without NDEBUG, which leaves absl::Mutex deadlock
  // detection on: a global lock and a graph lookup on every mutex
  // acquisition (hgpipe::Mutex's and gRPC's own included). A measuring tool should not pay it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // Every request is parsed into a fresh 150 KB buffer, just above glibc's
  // 128 KiB mmap threshold: by default each one is mapped and unmapped (or
  // trimmed off the heap top) and its pages faulted in and zeroed again, which
  // measured about half of this server's CPU per image. Keep such buffers on
  // the heap and the heap untrimmed.
  mallopt(M_MMAP_THRESHOLD, 16 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  absl::ParseCommandLine(argc, argv);

  // Every thread gRPC starts inherits this mask, so SIGINT and SIGTERM reach
  // only the sigwait below.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  const std::string host = absl::GetFlag(FLAGS_host);
  const int max_bytes = absl::GetFlag(FLAGS_max_message_mb) << 20;
  grpc::EnableDefaultHealthCheckService(true);
  // The server's own worker pool with one thread. Declared before the
  // server, so destroyed after it: Shutdown waits for the calls it holds.
  std::unique_ptr<server::WorkerPool> answers;
  if (absl::GetFlag(FLAGS_answer_thread)) {
    answers = std::make_unique<server::WorkerPool>(1, 0, "echo-answer");
  }
  EchoService service(answers.get());
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(absl::StrCat(host, ":", absl::GetFlag(FLAGS_grpc_port)),
                           grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(max_bytes);
  builder.SetMaxSendMessageSize(max_bytes);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::fprintf(stderr, "hgpipe-echo-server: cannot listen on %s:%d\n", host.c_str(),
                 absl::GetFlag(FLAGS_grpc_port));
    return 1;
  }
  std::fprintf(stderr, "hgpipe-echo-server ready: grpc=%s:%d\n", host.c_str(), port);
  std::fflush(stderr);

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  std::fprintf(stderr, "hgpipe-echo-server: signal %d, shutting down\n", signal_number);
  server->Shutdown();
  return 0;
}

}  // namespace
}  // namespace hgpipe::bench

int main(int argc, char** argv) { return hgpipe::bench::Main(argc, argv); }
