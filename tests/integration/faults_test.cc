// Boards that fail under load, through the real binary: a board that dies
// (--emulated-faults fail@N:permanent) and a board that hangs (hang@N,
// caught by the watchdog). Every request must be answered exactly once, OK,
// with its own images' digests; /metrics must show what happened.
#include <atomic>
#include <csignal>
#include <random>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/mutex.h"
#include "clients/client.h"
#include "clients/tensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server_process.h"
#include "verify_requests.h"

namespace hgpipe::testing {
namespace {

using clients::InferenceClient;
using ::testing::HasSubstr;

constexpr char kVerify[] = R"(name: "verify" bitstream: "verify")";

// Clients that each keep one request of 1-4 stamped images outstanding
// until stopped, checking every answer.
class Load {
 public:
  Load(const std::string& target, int clients) : failures_(clients) {
    for (int c = 0; c < clients; ++c) {
      threads_.emplace_back([this, target, c] { Run(target, c); });
    }
  }
  ~Load() { Stop(); }
  // Lets every client send `more` further requests, then stops them.
  void Stop(int more = 0) {
    more_.store(more);
    stop_.store(true);
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  int requests() const { return requests_.load(); }
  int images() const { return images_.load(); }
  const std::vector<std::string>& failures() const { return failures_; }

 private:
  void Run(const std::string& target, int c) {
    InferenceClient::Options o;
    o.channel.connection_index = c;
    o.timeout = absl::Seconds(120);
    auto client = InferenceClient::Create(target, o);
    if (!client.ok()) {
      failures_[c] = std::string(client.status().message());
      return;
    }
    std::mt19937 rng(c);
    int after_stop = 0;
    while (!stop_.load() || after_stop++ < more_.load()) {
      const int n = 1 + rng() % 4;
      const std::vector<int8_t> images = StampedImages(n, stamps_);
      auto resp = (*client)->Infer(*clients::MakeImageRequest("verify", images));
      if (!resp.ok()) {
        failures_[c] = absl::StrCat("request ", requests_.load(), ": ", resp.status().ToString());
        return;
      }
      if (absl::Status s = CheckVerifyResponse(*resp, images); !s.ok()) {
        failures_[c] = s.ToString();
        return;
      }
      ++requests_;
      images_ += n;
    }
  }

  std::atomic<bool> stop_{false};
  std::atomic<int> more_{0};
  std::atomic<uint64_t> stamps_{0};
  std::atomic<int> requests_{0}, images_{0};
  std::vector<std::string> failures_;  // one per client, written by it only
  std::vector<std::thread> threads_;
};

TEST(FaultsTest, ABoardThatDiesUnderLoadLosesNoRequest) {
  auto server = ServerProcess::Start(
      {"--boards=sim:3", "--model-repository=" + WriteModelRepository("verify", kVerify),
       "--emulated-faults=sim1=fail@5:permanent", "--emulated-program-ms=20",
       "--emulated-reset-ms=20", "--recovery-backoff-ms=20", "--max-recovery-attempts=2"});
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string url = (*server)->metrics_url();
  {
    Load load((*server)->grpc_target(), 6);
    // The board fails once it has done its 5 runs, and is retired after
    // its recovery attempts fail (a dead card refuses its bitstream).
    auto failed = WaitForMetric(url, "hgpipe_board_failures_total", R"(board="sim1")",
                                [](double v) { return v >= 1; });
    EXPECT_TRUE(failed.ok()) << failed.status();
    auto retired = WaitForMetric(url, "hgpipe_board_phase", R"(board="sim1",phase="retired")",
                                 [](double v) { return v == 1; });
    EXPECT_TRUE(retired.ok()) << retired.status();
    load.Stop(/*more=*/20);  // and the other boards carry on
    for (const std::string& f : load.failures()) EXPECT_EQ(f, "");
    auto metrics = HttpGet(url);
    ASSERT_TRUE(metrics.ok());
    // Every request answered once, OK: the server counted exactly ours.
    EXPECT_EQ(*MetricValue(*metrics, "hgpipe_requests_total", R"(code="OK",model="verify")"),
              load.requests());
    EXPECT_EQ(*MetricValue(*metrics, "hgpipe_images_total", R"(model="verify")"), load.images());
    EXPECT_EQ(
        *MetricValue(*metrics, "hgpipe_requests_total", R"(code="UNAVAILABLE",model="verify")"), 0);
    EXPECT_GE(
        *MetricValue(*metrics, "hgpipe_board_failed_runs_total", R"(board="sim1",model="verify")"),
        1);
    EXPECT_EQ(*MetricValue(*metrics, "hgpipe_board_healthy", R"(board="sim1",model="verify")"), 0);
    for (const char* b : {"sim0", "sim2"}) {
      const std::string l = absl::StrCat("board=\"", b, "\",model=\"verify\"");
      EXPECT_EQ(*MetricValue(*metrics, "hgpipe_board_healthy", l), 1) << b;
    }
  }
  const ExitResult r = (*server)->Stop(SIGTERM);
  EXPECT_TRUE(r.exited && r.code == 0) << r.log;
  // The operator learns which board went and why.
  EXPECT_THAT(r.log, HasSubstr("board sim1: out of service, recovering: "));
  EXPECT_THAT(r.log, HasSubstr("board sim1: retired after "));
}

TEST(FaultsTest, AHungBoardIsCaughtByTheWatchdogAndReadmitted) {
  auto server = ServerProcess::Start(
      {"--boards=sim:2", "--model-repository=" + WriteModelRepository("verify", kVerify),
       "--emulated-faults=sim0=hang@3", "--watchdog-ms=300", "--emulated-program-ms=20",
       "--emulated-reset-ms=20"});
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string url = (*server)->metrics_url();
  {
    Load load((*server)->grpc_target(), 4);
    // The fault clears with the reset (it is not permanent): the board
    // comes back.
    auto recovered = WaitForMetric(url, "hgpipe_board_recoveries_total", R"(board="sim0")",
                                   [](double v) { return v >= 1; });
    EXPECT_TRUE(recovered.ok()) << recovered.status();
    load.Stop(/*more=*/20);
    for (const std::string& f : load.failures()) EXPECT_EQ(f, "");
    auto metrics = HttpGet(url);
    ASSERT_TRUE(metrics.ok());
    EXPECT_GE(*MetricValue(*metrics, "hgpipe_board_failures_total", R"(board="sim0")"), 1);
    EXPECT_GE(*MetricValue(*metrics, "hgpipe_board_programmings_total", R"(board="sim0")"), 1);
    EXPECT_EQ(*MetricValue(*metrics, "hgpipe_requests_total", R"(code="OK",model="verify")"),
              load.requests());
    EXPECT_EQ(*MetricValue(*metrics, "hgpipe_images_total", R"(model="verify")"), load.images());
  }
  // Back in service.
  auto serving = WaitForMetric(url, "hgpipe_board_phase", R"(board="sim0",phase="serving")",
                               [](double v) { return v == 1; });
  EXPECT_TRUE(serving.ok()) << serving.status();
  const ExitResult r = (*server)->Stop(SIGTERM);
  EXPECT_TRUE(r.exited && r.code == 0) << r.log;
  EXPECT_THAT(r.log, HasSubstr("board sim0: out of service, recovering: "));
  EXPECT_THAT(r.log, HasSubstr("past its predicted completion"));  // the watchdog's why
  EXPECT_THAT(r.log, HasSubstr("board sim0: back in service for model verify"));
}

}  // namespace
}  // namespace hgpipe::testing
