// The client library, hgpipe-client and hgpipe-perf against a real gRPC
// server: build/bin/hgpipe-echo-server on a free loopback port.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/mutex.h"
#include "clients/client.h"
#include "clients/tensors.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

extern char** environ;

namespace hgpipe::clients {
namespace {

using ::testing::HasSubstr;

std::string BinDir() {
  const char* v = std::getenv("HGPIPE_BIN_DIR");
  return v != nullptr ? v : "build/bin";
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string TempPath(absl::string_view what) {
  static int counter = 0;
  const char* tmp = std::getenv("TMPDIR");
  return absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/hgpipe-clients-test-", getpid(), "-",
                      ++counter, "-", what);
}

// Starts `binary args...`, stdout to `out_path`, stderr to `err_path`.
pid_t Spawn(const std::string& binary, const std::vector<std::string>& args,
            const std::string& out_path, const std::string& err_path) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(binary.c_str()));
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawn(&pid, binary.c_str(), &fa, nullptr, argv.data(), environ) != 0) {
    pid = -1;
  }
  posix_spawn_file_actions_destroy(&fa);
  return pid;
}

// Waits for pid (polling gently), SIGKILL after `timeout`. The exit code, or
// -signal, or -1000 on timeout.
int WaitFor(pid_t pid, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) != pid) {
    if (absl::Now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1000;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

struct RunResult {
  int code = -1;
  std::string out, err;
};

RunResult RunBinary(const std::string& binary, const std::vector<std::string>& args,
                    absl::Duration timeout = absl::Seconds(120)) {
  const std::string out = TempPath("out"), err = TempPath("err");
  RunResult r;
  const pid_t pid = Spawn(BinDir() + "/" + binary, args, out, err);
  if (pid > 0) r.code = WaitFor(pid, timeout);
  r.out = ReadFile(out);
  r.err = ReadFile(err);
  unlink(out.c_str());
  unlink(err.c_str());
  return r;
}

// Starts hgpipe-echo-server on a free loopback port with `flags` more,
// stderr to `log_path`; its HOST:PORT once ready, or "" (and *pid -1 if it
// could not start) with `error` saying why.
std::string StartEchoServer(const std::vector<std::string>& flags, const std::string& log_path,
                            pid_t* pid, std::string* error) {
  std::vector<std::string> args = {"--grpc-port=0", "--host=127.0.0.1"};
  args.insert(args.end(), flags.begin(), flags.end());
  *pid = Spawn(BinDir() + "/hgpipe-echo-server", args, "/dev/null", log_path);
  if (*pid <= 0) {
    *error = absl::StrCat("cannot start ", BinDir(), "/hgpipe-echo-server");
    return "";
  }
  static const std::regex kReady(R"(ready: grpc=127\.0\.0\.1:(\d+))");
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (absl::Now() < deadline) {
    const std::string log = ReadFile(log_path);
    std::smatch m;
    if (std::regex_search(log, m, kReady)) return absl::StrCat("127.0.0.1:", m[1].str());
    int status;
    if (waitpid(*pid, &status, WNOHANG) == *pid) {
      *pid = -1;
      *error = absl::StrCat("echo server exited:\n", log);
      return "";
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  *error = absl::StrCat("echo server not ready:\n", ReadFile(log_path));
  return "";
}

class EchoServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    log_path_ = new std::string(TempPath("echo.log"));
    std::string error;
    const std::string target = StartEchoServer({}, *log_path_, &pid_, &error);
    ASSERT_FALSE(target.empty()) << error;
    target_ = new std::string(target);
  }

  static void TearDownTestSuite() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      EXPECT_EQ(WaitFor(pid_, absl::Seconds(60)), 0) << "echo server did not stop cleanly:\n"
                                                     << ReadFile(*log_path_);
    }
    unlink(log_path_->c_str());
    delete log_path_;
    delete target_;
  }

  void SetUp() override {
    ASSERT_NE(target_, nullptr);
    InferenceClient::Options o;
    o.timeout = absl::Seconds(60);
    auto c = InferenceClient::Create(*target_, o);
    ASSERT_TRUE(c.ok()) << c.status();
    client_ = *std::move(c);
  }

  static pid_t pid_;
  static std::string* log_path_;
  static std::string* target_;
  std::unique_ptr<InferenceClient> client_;
};

pid_t EchoServerTest::pid_ = -1;
std::string* EchoServerTest::log_path_ = nullptr;
std::string* EchoServerTest::target_ = nullptr;

TEST_F(EchoServerTest, HealthAndMetadata) {
  EXPECT_TRUE(*client_->Live());
  EXPECT_TRUE(*client_->Ready());
  EXPECT_TRUE(*client_->ModelReady("verify"));
  auto health = client_->Health("");
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, grpc::health::v1::HealthCheckResponse::SERVING);
  auto server = client_->ServerMetadata();
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ(server->name(), "hgpipe-echo-server");
  auto model = client_->ModelMetadata("verify");
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(model->platform(), "echo");
  ASSERT_EQ(model->inputs_size(), 1);
  EXPECT_EQ(model->inputs(0).datatype(), "INT8");
}

TEST_F(EchoServerTest, InferReturnsNRowsOfZeros) {
  const auto images = GenerateRandomImages(3, 1);
  auto request = MakeImageRequest("verify", images);
  ASSERT_TRUE(request.ok()) << request.status();
  auto response = client_->Infer(*request);
  ASSERT_TRUE(response.ok()) << response.status();
  auto out = ReadInt32Output(*response, "OUTPUT");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->shape, (std::vector<int64_t>{3, kClasses}));
  EXPECT_EQ(out->values, std::vector<int32_t>(3 * kClasses, 0));
  // Zeros are not the verify digest: the check catches them.
  EXPECT_FALSE(CheckVerifyRow(absl::MakeConstSpan(images).subspan(0, kImageBytes),
                              absl::MakeConstSpan(out->values).subspan(0, kClasses))
                   .ok());
}

TEST_F(EchoServerTest, LargeRequestsPassTheDefault4MiBLimit) {
  // 64 images: 9.6 MB out, 256 KB back.
  auto request = MakeImageRequest("verify", GenerateRandomImages(64, 2));
  ASSERT_TRUE(request.ok());
  auto response = client_->Infer(*request);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->raw_output_contents(0).size(), 64u * kClasses * 4);
}

TEST_F(EchoServerTest, ServerErrorsKeepTheirCodeAndMessage) {
  auto request = MakeImageRequest("verify", GenerateRandomImages(1, 3));
  ASSERT_TRUE(request.ok());
  request->mutable_inputs(0)->set_shape(0, 0);  // the echo server refuses N=0
  auto response = client_->Infer(*request);
  EXPECT_EQ(response.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(response.status().message(), HasSubstr("batch dimension 0"));
}

TEST_F(EchoServerTest, InferAsyncCompletesEveryCall) {
  auto request = std::make_shared<const inference::ModelInferRequest>(
      *MakeImageRequest("verify", GenerateRandomImages(2, 4)));
  constexpr int kCalls = 64;
  hgpipe::Mutex mu;
  int done = 0, ok = 0;
  for (int i = 0; i < kCalls; ++i) {
    client_->InferAsync(request, [&](absl::StatusOr<inference::ModelInferResponse> r) {
      const bool good = r.ok() && ReadInt32Output(*r).ok() && ReadInt32Output(*r)->shape[0] == 2;
      hgpipe::MutexLock l(&mu);
      ++done;
      if (good) ++ok;
    });
  }
  hgpipe::MutexLock l(&mu);
  auto all_done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return done == kCalls; };
  ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all_done), absl::Seconds(120)));
  EXPECT_EQ(ok, kCalls);
}

TEST_F(EchoServerTest, InferAsyncReportsErrorsAndTheDestructorWaits) {
  hgpipe::Mutex mu;
  std::vector<absl::StatusCode> codes;
  {
    auto other = InferenceClient::Create("127.0.0.1:1");
    ASSERT_TRUE(other.ok());
    for (int i = 0; i < 4; ++i) {
      (*other)->InferAsync(*MakeImageRequest("verify", GenerateRandomImages(1, 5)),
                           [&](absl::StatusOr<inference::ModelInferResponse> r) {
                             hgpipe::MutexLock l(&mu);
                             codes.push_back(r.status().code());
                           });
    }
  }  // ~InferenceClient waits for the four callbacks
  hgpipe::MutexLock l(&mu);
  EXPECT_EQ(codes, std::vector<absl::StatusCode>(4, absl::StatusCode::kUnavailable));
}

google::protobuf::Struct ParseJson(const std::string& json) {
  google::protobuf::Struct s;
  auto status = google::protobuf::util::JsonStringToMessage(json, &s);
  EXPECT_TRUE(status.ok()) << status.ToString() << "\n" << json;
  return s;
}

TEST_F(EchoServerTest, PerfClosedLoopJson) {
  RunResult r = RunBinary("hgpipe-perf", {"--url=" + *target_, "--duration=1", "--warmup=0.2",
                                          "--concurrency=4", "--images-per-request=2", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const google::protobuf::Struct s = ParseJson(r.out);
  const auto& f = s.fields();
  EXPECT_GT(f.at("images_per_second").number_value(), 0);
  EXPECT_GT(f.at("requests_ok").number_value(), 0);
  EXPECT_EQ(f.at("images_ok").number_value(), 2 * f.at("requests_ok").number_value());
  EXPECT_EQ(f.at("error_count").number_value(), 0);
  EXPECT_GT(f.at("latency_ms").struct_value().fields().at("p50").number_value(), 0);
  EXPECT_EQ(f.at("platform").string_value(), "echo");
  EXPECT_EQ(f.at("settings").struct_value().fields().at("concurrency").number_value(), 4);
}

TEST_F(EchoServerTest, PerfOpenLoopJson) {
  RunResult r =
      RunBinary("hgpipe-perf", {"--url=" + *target_, "--duration=1", "--warmup=0", "--rate=100",
                                "--arrivals=constant", "--json", "--connections=2"});
  ASSERT_EQ(r.code, 0) << r.err;
  const google::protobuf::Struct s = ParseJson(r.out);
  EXPECT_GT(s.fields().at("requests_ok").number_value(), 0);
  EXPECT_EQ(s.fields().at("settings").struct_value().fields().at("mode").string_value(), "open");
}

TEST_F(EchoServerTest, PerfVerifyNeedsTheVerifyPlatform) {
  RunResult r =
      RunBinary("hgpipe-perf", {"--url=" + *target_, "--duration=1", "--verify", "--json"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("FAILED_PRECONDITION"));
  EXPECT_THAT(r.err, HasSubstr("hgpipe/verify"));
}

TEST_F(EchoServerTest, PerfFailsOnAnAbsentServer) {
  RunResult r = RunBinary("hgpipe-perf", {"--url=127.0.0.1:1", "--duration=1"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("UNAVAILABLE"));
}

TEST_F(EchoServerTest, ClientBinaryInfersAndPrintsTopClasses) {
  RunResult r = RunBinary("hgpipe-client", {"--url=" + *target_, "infer", "verify", "--random=2"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("image 1: top-5:"));
  // Not the verify platform: no digest check claimed.
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("matches its input digest")));

  const std::string input = TempPath("images.bin");
  {
    const auto images = GenerateRandomImages(1, 8);
    std::ofstream f(input, std::ios::binary);
    f.write(reinterpret_cast<const char*>(images.data()), images.size());
  }
  r = RunBinary("hgpipe-client", {"--url=" + *target_, "infer", "verify", "--input=" + input});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("1 image in"));
  unlink(input.c_str());

  r = RunBinary("hgpipe-client", {"--url=" + *target_, "live"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("live: true"));
}

TEST_F(EchoServerTest, ClientBinaryErrors) {
  RunResult r = RunBinary("hgpipe-client", {"--url=127.0.0.1:1", "ready"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("UNAVAILABLE"));
  r = RunBinary("hgpipe-client", {"--url=" + *target_, "infer", "verify"});
  EXPECT_EQ(r.code, 2);  // neither --input nor --random
  r = RunBinary("hgpipe-client", {"--url=" + *target_, "frobnicate"});
  EXPECT_EQ(r.code, 2);
}

// --answer-thread (the asynchronous-answer ceiling of bench/batch1_h2load.sh)
// answers every call of a concurrent load with N rows, and stops cleanly on
// SIGTERM in the middle of one (the server's shutdown waits for the calls
// the answer thread still holds; the thread outlives it).
TEST(EchoAnswerThreadTest, AnswersEveryCallAndStopsCleanly) {
  const std::string log_path = TempPath("echo-answer-thread.log");
  pid_t pid = -1;
  std::string error;
  const std::string target = StartEchoServer({"--answer-thread"}, log_path, &pid, &error);
  ASSERT_FALSE(target.empty()) << error;

  RunResult r = RunBinary("hgpipe-perf", {"--url=" + target, "--duration=1", "--warmup=0.2",
                                          "--concurrency=8", "--images-per-request=2", "--json"});
  EXPECT_EQ(r.code, 0) << r.err;
  if (r.code == 0) {
    const google::protobuf::Struct s = ParseJson(r.out);
    const auto& f = s.fields();
    EXPECT_GT(f.at("requests_ok").number_value(), 0);
    EXPECT_EQ(f.at("images_ok").number_value(), 2 * f.at("requests_ok").number_value());
    EXPECT_EQ(f.at("error_count").number_value(), 0);
  }
  InferenceClient::Options o;
  o.timeout = absl::Seconds(60);
  auto client = InferenceClient::Create(target, o);
  ASSERT_TRUE(client.ok()) << client.status();
  auto request = MakeImageRequest("verify", GenerateRandomImages(3, 4));
  ASSERT_TRUE(request.ok()) << request.status();
  auto response = (*client)->Infer(*request);
  ASSERT_TRUE(response.ok()) << response.status();
  auto out = ReadInt32Output(*response, "OUTPUT");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->shape, (std::vector<int64_t>{3, kClasses}));

  // SIGTERM while a load is under way.
  const std::string perf_out = TempPath("perf.out"), perf_err = TempPath("perf.err");
  const pid_t perf = Spawn(BinDir() + "/hgpipe-perf",
                           {"--url=" + target, "--duration=5", "--warmup=0", "--concurrency=8"},
                           perf_out, perf_err);
  ASSERT_GT(perf, 0);
  absl::SleepFor(absl::Seconds(1));
  kill(pid, SIGTERM);
  EXPECT_EQ(WaitFor(pid, absl::Seconds(60)), 0) << "did not stop cleanly:\n" << ReadFile(log_path);
  WaitFor(perf, absl::Seconds(60));  // its calls fail once the server is gone: any exit
  for (const std::string& f : {log_path, perf_out, perf_err}) unlink(f.c_str());
}

}  // namespace
}  // namespace hgpipe::clients
