// Start-up, metadata, health and shutdown of the real binary.
#include <atomic>
#include <csignal>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "base/mutex.h"
#include "clients/client.h"
#include "clients/tensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server_process.h"

namespace hgpipe::testing {
namespace {

namespace fs = std::filesystem;
using clients::InferenceClient;
using ::testing::HasSubstr;

ExitResult StartWith(const std::vector<std::string>& args) {
  std::vector<std::string> all = {"--grpc-port=0", "--http-port=0", "--metrics-port=0",
                                  "--host=127.0.0.1"};
  all.insert(all.end(), args.begin(), args.end());
  return RunToExit(BinDir() + "/hgpipe-server", all, absl::Seconds(60));
}

TEST(LifecycleTest, MetadataReadinessAndHealthOnTheDefaultRepository) {
  auto server = ServerProcess::Start({});
  ASSERT_TRUE(server.ok()) << server.status();
  auto c = *InferenceClient::Create((*server)->grpc_target());
  EXPECT_TRUE(*c->Live());
  EXPECT_TRUE(*c->Ready());
  EXPECT_TRUE(*c->ModelReady("verify"));
  EXPECT_EQ(c->ModelReady("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(*c->Health(), grpc::health::v1::HealthCheckResponse::SERVING);
  auto sm = c->ServerMetadata();
  ASSERT_TRUE(sm.ok());
  EXPECT_EQ(sm->name(), "hgpipe-serve");
  auto mm = c->ModelMetadata("verify");
  ASSERT_TRUE(mm.ok()) << mm.status();
  EXPECT_EQ(mm->platform(), "hgpipe/verify");
  ASSERT_EQ(mm->inputs_size(), 1);
  EXPECT_EQ(mm->inputs(0).name(), "INPUT");
  EXPECT_EQ(mm->inputs(0).datatype(), "INT8");
  EXPECT_THAT(mm->inputs(0).shape(), ::testing::ElementsAre(-1, 196, 768));
  ASSERT_EQ(mm->outputs_size(), 1);
  EXPECT_EQ(mm->outputs(0).datatype(), "INT32");
  EXPECT_THAT(mm->outputs(0).shape(), ::testing::ElementsAre(-1, 1000));
  // The metric families exist before any load.
  auto m = HttpGet((*server)->metrics_url());
  ASSERT_TRUE(m.ok());
  for (const char* family :
       {"hgpipe_requests_total", "hgpipe_images_total", "hgpipe_request_duration_seconds",
        "hgpipe_queue_duration_seconds", "hgpipe_device_duration_seconds", "hgpipe_queue_images",
        "hgpipe_board_images_total", "hgpipe_board_runs_total", "hgpipe_board_run_images",
        "hgpipe_board_images_in_flight", "hgpipe_board_busy_seconds_total",
        "hgpipe_board_healthy"}) {
    EXPECT_THAT(*m, HasSubstr(absl::StrCat("# TYPE ", family, " "))) << family;
  }
  const ExitResult r = (*server)->Stop(SIGINT);
  EXPECT_TRUE(r.exited && r.code == 0) << r.log;
}

TEST(LifecycleTest, SigtermFinishesRequestsInFlightAndExitsZero) {
  auto server = ServerProcess::Start({"--boards=sim:1"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto c = *InferenceClient::Create((*server)->grpc_target());
  const std::vector<int8_t> images = clients::GenerateRandomImages(32, 3);
  auto req = std::make_shared<const inference::ModelInferRequest>(
      *clients::MakeImageRequest("verify", images));
  // Make sure the server has work when the signal comes: a first request
  // answered proves the connection is up, then a burst follows.
  ASSERT_TRUE(c->Infer(*req).ok());
  constexpr int kBurst = 40;
  std::atomic<int> ok{0}, unavailable{0}, other{0}, answered{0};
  hgpipe::Notification all_answered;
  for (int i = 0; i < kBurst; ++i) {
    c->InferAsync(req, [&](absl::StatusOr<inference::ModelInferResponse> r) {
      if (r.ok()) {
        auto out = clients::ReadInt32Output(*r);
        bool good = out.ok();
        for (int k = 0; good && k < 32; ++k) {
          good = clients::CheckVerifyRow(absl::MakeConstSpan(images).subspan(
                                             k * clients::kImageBytes, clients::kImageBytes),
                                         absl::MakeConstSpan(out->values).subspan(k * 1000, 1000))
                     .ok();
        }
        (good ? ok : other)++;
      } else if (r.status().code() == absl::StatusCode::kUnavailable) {
        unavailable++;  // arrived after shutdown began: refused, not lost
      } else {
        other++;
        ADD_FAILURE() << r.status();
      }
      if (++answered == kBurst) all_answered.Notify();
    });
  }
  const ExitResult r = (*server)->Stop(SIGTERM);
  EXPECT_TRUE(r.exited && r.code == 0) << r.log;
  ASSERT_TRUE(all_answered.WaitForNotificationWithTimeout(absl::Seconds(60)));
  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(ok + unavailable, kBurst);
  EXPECT_THAT(r.log, HasSubstr("draining"));
  EXPECT_THAT(r.log, HasSubstr("stopped"));
}

TEST(LifecycleTest, BadConfigFieldFailsStartUpNamingFileAndField) {
  const std::string repo = WriteModelRepository("verify", R"(
name: "verify"
bitstream: "verify"
batching { max_images_per_run: 5000 }
)");
  const ExitResult r = StartWith({"--model-repository=" + repo});
  EXPECT_TRUE(r.exited);
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.log, HasSubstr("verify/config.pbtxt: batching.max_images_per_run: "
                               "5000 is more than 4096"));
}

TEST(LifecycleTest, ConfigSyntaxErrorFailsStartUpWithLineAndColumn) {
  const std::string repo = WriteModelRepository("verify", "name: \"verify\"\nbitstream verify\n");
  const ExitResult r = StartWith({"--model-repository=" + repo});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.log, HasSubstr("verify/config.pbtxt: not a valid ModelConfig: line 2"));
}

TEST(LifecycleTest, UnknownBitstreamAndMismatchedNameFailStartUp) {
  ExitResult r = StartWith(
      {"--model-repository=" + WriteModelRepository("m", "name: \"m\" bitstream: \"resnet\"")});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.log, HasSubstr("m/config.pbtxt: bitstream: no emulated kernel for "
                               "bitstream 'resnet'"));
  r = StartWith({"--model-repository=" +
                 WriteModelRepository("m2", "name: \"other\" bitstream: \"verify\"")});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.log, HasSubstr("m2/config.pbtxt: name: 'other' must equal the "
                               "directory name 'm2'"));
  r = StartWith({"--model-repository=" + WriteModelRepository("m3",
                                                              "name: \"m3\" bitstream: \"verify\" "
                                                              "input { dims: [196, 700] }")});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.log, HasSubstr("m3/config.pbtxt: input.dims: [196, 700] does not match"));
}

TEST(LifecycleTest, BadFlagsFailStartUp) {
  ExitResult r = StartWith({"--boards=gpu:1"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.log, HasSubstr("--boards: 'gpu:1' is not sim:N"));
  r = StartWith({"--model-repository=/nonexistent/models"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.log, HasSubstr("/nonexistent/models: not a directory"));
  r = StartWith({"--log-level=chatty"});
  EXPECT_EQ(r.code, 1);
}

}  // namespace
}  // namespace hgpipe::testing
