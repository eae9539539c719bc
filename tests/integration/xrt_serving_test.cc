// hgpipe-server driving a board through XRT (--boards xrt:0) on XRT's no-op
// device. The no-op kernel computes nothing, so these tests check the path
// (start-up, programming, buffers, runs, answers, metrics), not the logits:
// the outputs come back correctly shaped but hold zeros.
#include <csignal>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "clients/client.h"
#include "clients/tensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server_process.h"
#include "xrt_test_util.h"

namespace hgpipe::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kVerifyManifest[] =
    "model: \"verify\" geometry { tokens: 196 token_values: 768 classes: 1000 }";

// A repository with `verify` whose config names `xclbin`; writes a valid
// xclbin there unless `write_xclbin` is false.
std::string Repository(const std::string& xclbin, bool write_xclbin = true) {
  accel::testing::UseXrtNoopDevice();  // inherited by the spawned server
  const std::string dir = WriteModelRepository(
      "verify", "name: \"verify\" bitstream: \"verify\" xclbin: \"" + xclbin + "\"\n");
  if (write_xclbin) {
    accel::testing::WriteXclbin(dir + "/verify/" + xclbin,
                                accel::testing::SpecWithManifest(kVerifyManifest));
  }
  return dir;
}

TEST(XrtServingTest, ServerAnswersThroughAnXrtBoardAndItsMetricsShowTheBoard) {
  auto server = ServerProcess::Start(
      // XRT's no-op device computes nothing: no canary would hold.
      {"--boards=xrt:0", "--canary=false", "--model-repository=" + Repository("verify.xclbin")});
  ASSERT_TRUE(server.ok()) << server.status();
  auto c = *clients::InferenceClient::Create((*server)->grpc_target());
  EXPECT_TRUE(*c->ModelReady("verify"));
  for (int n : {1, 3, 7}) {
    auto resp = c->Infer(*clients::MakeImageRequest("verify", clients::GenerateRandomImages(n, n)));
    ASSERT_TRUE(resp.ok()) << resp.status();
    auto out = clients::ReadInt32Output(*resp, "OUTPUT");
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_THAT(out->shape, ::testing::ElementsAre(n, 1000));
    EXPECT_EQ(out->values.size(), static_cast<size_t>(n) * 1000);
  }
  auto m = HttpGet((*server)->metrics_url());
  ASSERT_TRUE(m.ok());
  const std::string l = R"(board="xrt0",model="verify")";
  EXPECT_EQ(*MetricValue(*m, "hgpipe_board_images_total", l), 11);
  EXPECT_EQ(*MetricValue(*m, "hgpipe_board_healthy", l), 1);
  EXPECT_GE(*MetricValue(*m, "hgpipe_board_runs_total", l), 3);
  const ExitResult r = (*server)->Stop(SIGTERM);
  EXPECT_TRUE(r.exited && r.code == 0) << r.log;
  EXPECT_THAT(r.log, HasSubstr("boards xrt0"));
}

// --emulated-faults wraps XRT boards too (accel/faulty_board.h): a corrupt
// fault flips the first output word of each image, which on the no-op
// device (outputs zero) shows as class 0 holding 1.
TEST(XrtServingTest, FaultsAreInjectedIntoXrtBoardsToo) {
  auto server =
      ServerProcess::Start({"--boards=xrt:0", "--canary=false", "--emulated-faults=xrt0=corrupt@0",
                            "--model-repository=" + Repository("verify.xclbin")});
  ASSERT_TRUE(server.ok()) << server.status();
  auto c = *clients::InferenceClient::Create((*server)->grpc_target());
  auto resp = c->Infer(*clients::MakeImageRequest("verify", clients::GenerateRandomImages(2, 5)));
  ASSERT_TRUE(resp.ok()) << resp.status();
  auto out = clients::ReadInt32Output(*resp, "OUTPUT");
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(out->values.size(), 2000u);
  for (size_t i = 0; i < out->values.size(); ++i) {
    EXPECT_EQ(out->values[i], i % 1000 == 0 ? 1 : 0) << "value " << i;
  }
  const ExitResult r = (*server)->Stop(SIGTERM);
  EXPECT_TRUE(r.exited && r.code == 0) << r.log;
  EXPECT_THAT(r.log, ::testing::Not(HasSubstr("no board xrt0")));
}

TEST(XrtServingTest, StartUpErrorsNameTheBoardAndTheFile) {
  auto start = [](const std::string& repo, const std::string& boards) {
    return RunToExit(BinDir() + "/hgpipe-server",
                     {"--grpc-port=0", "--http-port=0", "--metrics-port=0", "--host=127.0.0.1",
                      "--boards=" + boards, "--model-repository=" + repo},
                     absl::Seconds(60));
  };
  ExitResult r = start(Repository("missing.xclbin", false), "xrt:0");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.log, HasSubstr("xrt0"));
  EXPECT_THAT(r.log, HasSubstr("verify/missing.xclbin"));

  const std::string bad = Repository("bad.xclbin", false);
  std::ofstream(bad + "/verify/bad.xclbin") << "this is not an xclbin";
  r = start(bad, "xrt:0");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.log, HasSubstr("verify/bad.xclbin"));

  // An xclbin built for another geometry than the model's bitstream. (A
  // missing device cannot be shown here: the no-op shim opens any index.)
  const std::string other = Repository("small.xclbin", false);
  accel::testing::WriteXclbin(other + "/verify/small.xclbin",
                              accel::testing::SpecWithManifest(accel::testing::SmallManifest()));
  r = start(other, "xrt:0");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.log, HasSubstr("verify/config.pbtxt: xclbin: "));
  EXPECT_THAT(r.log, HasSubstr("small.xclbin is for 4x8 -> 10"));

  // A model without an xclbin cannot be served by XRT boards.
  const std::string plain =
      WriteModelRepository("verify", "name: \"verify\" bitstream: \"verify\"");
  r = start(plain, "xrt:0");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.log, HasSubstr("no model's config.pbtxt names an xclbin"));
}

}  // namespace
}  // namespace hgpipe::testing
