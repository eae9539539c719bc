// Request policy over the wire: Triton's `priority` and `timeout` request
// parameters, the model's defaults, and the codes a client gets back.
#include <atomic>
#include <csignal>

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

constexpr char kTwoLevels[] = R"(
name: "ranked" bitstream: "verify"
batching { priority_levels: 2 }
)";
constexpr char kDefaultTimeout[] = R"(
name: "hasty" bitstream: "verify"
batching { default_timeout_us: 1 }
)";

class PolicyTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto s = ServerProcess::Start(
        {"--boards=sim:1",
         "--model-repository=" +
             WriteModelRepository({{"ranked", kTwoLevels}, {"hasty", kDefaultTimeout}})});
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = s->release();
  }
  static void TearDownTestSuite() {
    if (server_ == nullptr) return;
    const ExitResult r = server_->Stop(SIGTERM);
    EXPECT_TRUE(r.exited && r.code == 0) << r.log;
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    client_ = *InferenceClient::Create(server_->grpc_target());
  }
  // One stamped image for `model` with the given parameters.
  absl::Status Infer(const std::string& model,
                     const std::map<std::string, inference::InferParameter>& params) {
    const std::vector<int8_t> images = StampedImages(1, stamps_);
    auto req = clients::MakeImageRequest(model, images);
    for (const auto& [k, v] : params) (*req->mutable_parameters())[k] = v;
    auto resp = client_->Infer(*req);
    if (!resp.ok()) return resp.status();
    return CheckVerifyResponse(*resp, images);
  }
  static inference::InferParameter U64(uint64_t v) {
    inference::InferParameter p;
    p.set_uint64_param(v);
    return p;
  }
  static inference::InferParameter I64(int64_t v) {
    inference::InferParameter p;
    p.set_int64_param(v);
    return p;
  }

  static ServerProcess* server_;
  static std::atomic<uint64_t> stamps_;
  std::unique_ptr<InferenceClient> client_;
};

ServerProcess* PolicyTest::server_ = nullptr;
std::atomic<uint64_t> PolicyTest::stamps_{0};

TEST_F(PolicyTest, EveryPriorityLevelIsServed) {
  EXPECT_TRUE(Infer("ranked", {}).ok());
  EXPECT_TRUE(Infer("ranked", {{"priority", U64(1)}}).ok());
  EXPECT_TRUE(Infer("ranked", {{"priority", U64(2)}}).ok());
  EXPECT_TRUE(Infer("ranked", {{"priority", I64(1)}}).ok());
  EXPECT_TRUE(Infer("ranked", {{"priority", U64(0)}}).ok());  // the default
  // A generous timeout is no obstacle.
  EXPECT_TRUE(Infer("ranked", {{"priority", U64(1)}, {"timeout", I64(30'000'000)}}).ok());

  // Concurrent requests of both levels, each answered with its own digest.
  std::atomic<int> ok{0}, answered{0};
  hgpipe::Notification done;
  constexpr int kRequests = 40;
  std::vector<std::vector<int8_t>> images(kRequests);
  for (int i = 0; i < kRequests; ++i) {
    images[i] = StampedImages(1 + i % 4, stamps_);
    auto req = clients::MakeImageRequest("ranked", images[i]);
    clients::SetPriority(&*req, 1 + i % 2);
    client_->InferAsync(*std::move(req), [&, i](absl::StatusOr<inference::ModelInferResponse> r) {
      if (r.ok() && CheckVerifyResponse(*r, images[i]).ok()) ++ok;
      if (++answered == kRequests) done.Notify();
    });
  }
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(120)));
  EXPECT_EQ(ok.load(), kRequests);
}

TEST_F(PolicyTest, BadParametersAreInvalidArgumentNamingThem) {
  inference::InferParameter text;
  text.set_string_param("high");
  inference::InferParameter real;
  real.set_double_param(0.5);
  struct Case {
    std::map<std::string, inference::InferParameter> params;
    const char* message;
  } cases[] = {
      {{{"priority", I64(-1)}}, "parameter 'priority': -1 is negative"},
      {{{"priority", text}}, "parameter 'priority': must be an int64 or uint64"},
      {{{"timeout", real}}, "parameter 'timeout': must be an int64 or uint64"},
      {{{"timeout", I64(-10)}}, "parameter 'timeout': -10 is negative"},
  };
  for (const Case& c : cases) {
    absl::Status s = Infer("ranked", c.params);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.message;
    EXPECT_THAT(s.message(), HasSubstr(c.message));
  }
}

TEST_F(PolicyTest, APriorityAboveTheLevelsRunsAtTheDefaultLevel) {
  // As Triton: tritonclient's infer(..., priority=3) on a two-level model.
  EXPECT_TRUE(Infer("ranked", {{"priority", U64(3)}}).ok());
  EXPECT_TRUE(Infer("hasty", {{"priority", U64(2)}, {"timeout", I64(30'000'000)}}).ok());
}

TEST_F(PolicyTest, ATimeoutTooShortIsDeadlineExceeded) {
  // One microsecond cannot cover the pipeline's 1.92 ms: refused at once,
  // without reaching a board.
  absl::Status s = Infer("ranked", {{"timeout", U64(1)}});
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_THAT(s.message(), HasSubstr("deadline"));
  // The model's default timeout applies to requests that send none...
  s = Infer("hasty", {});
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  // ...and a request's own timeout overrides it.
  EXPECT_TRUE(Infer("hasty", {{"timeout", I64(30'000'000)}}).ok());
  auto metrics = HttpGet(server_->metrics_url());
  ASSERT_TRUE(metrics.ok());
  EXPECT_GE(
      *MetricValue(*metrics, "hgpipe_requests_total", R"(code="DEADLINE_EXCEEDED",model="ranked")"),
      1);
  EXPECT_GE(
      *MetricValue(*metrics, "hgpipe_requests_total", R"(code="DEADLINE_EXCEEDED",model="hasty")"),
      1);
}

// A full queue is RESOURCE_EXHAUSTED. The board hangs on its first request
// run (run 1 is its start-up canary) and takes one run at a time, so what
// follows stays queued.
TEST(QueueFullTest, BeyondMaxQueueImagesIsResourceExhausted) {
  auto server = ServerProcess::Start({"--boards=sim:1", "--board-slots=1", "--watchdog-ms=0",
                                      "--emulated-faults=sim0=hang@1:permanent",
                                      "--model-repository=" + WriteModelRepository("small", R"(
name: "small" bitstream: "verify"
batching { max_queue_images: 4 }
max_images_per_request: 4
)")});
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string url = (*server)->metrics_url();
  auto client = *InferenceClient::Create((*server)->grpc_target());
  std::atomic<uint64_t> stamps{0};
  auto send = [&](int n) {
    auto req = clients::MakeImageRequest("small", StampedImages(n, stamps));
    client->InferAsync(*std::move(req), [](absl::StatusOr<inference::ModelInferResponse>) {});
  };
  send(4);  // on the (hung) board
  ASSERT_TRUE(WaitForMetric(url, "hgpipe_board_images_in_flight", R"(board="sim0",model="small")",
                            [](double v) { return v == 4; })
                  .ok());
  send(4);  // queued: the board's one slot is taken
  ASSERT_TRUE(WaitForMetric(url, "hgpipe_queue_images", R"(model="small")", [](double v) {
                return v == 4;
              }).ok());
  auto req = clients::MakeImageRequest("small", StampedImages(1, stamps));
  auto resp = client->Infer(*req);
  EXPECT_EQ(resp.status().code(), absl::StatusCode::kResourceExhausted) << resp.status();
  EXPECT_THAT(resp.status().message(), HasSubstr("queue full"));
  // The hung requests never finish: the server is killed, not drained.
  server->reset();
}

}  // namespace
}  // namespace hgpipe::testing
