// The model repository extension over gRPC: RepositoryIndex,
// RepositoryModelLoad, RepositoryModelUnload, model control modes, and a
// pool board reprogrammed between two models.
#include <atomic>
#include <csignal>
#include <vector>

#include "absl/strings/match.h"
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
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

// "name version state[ reason]" per model of the index.
std::vector<std::string> Index(InferenceClient& c, bool ready_only = false) {
  auto index = c.RepositoryIndex(ready_only);
  EXPECT_TRUE(index.ok()) << index.status();
  std::vector<std::string> out;
  if (!index.ok()) return out;
  for (const auto& m : index->models()) {
    out.push_back(absl::StrCat(m.name(), " ", m.version(), " ", m.state(),
                               m.reason().empty() ? "" : " ", m.reason()));
  }
  return out;
}

absl::Status Infer(InferenceClient& c, const std::string& model, std::atomic<uint64_t>& stamps,
                   int n = 2) {
  const std::vector<int8_t> images = StampedImages(n, stamps);
  auto resp = c.Infer(*clients::MakeImageRequest(model, images));
  if (!resp.ok()) return resp.status();
  return CheckVerifyResponse(*resp, images);
}

std::string TwoVerifyModels() {
  return WriteModelRepository(
      {{"a", R"(name: "a" bitstream: "verify")"}, {"b", R"(name: "b" bitstream: "verify")"}});
}

TEST(RepositoryTest, ModeNoneIndexesButRefusesLoadAndUnload) {
  auto server = ServerProcess::Start({"--model-repository=" + TwoVerifyModels()});
  ASSERT_TRUE(server.ok()) << server.status();
  auto c = *InferenceClient::Create((*server)->grpc_target());
  EXPECT_THAT(Index(*c), ElementsAre("a 1 READY", "b 1 READY"));
  absl::Status load = c->LoadModel("a");
  EXPECT_EQ(load.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(load.message(), HasSubstr("--model-control-mode=explicit"));
  EXPECT_EQ(c->UnloadModel("a").code(), absl::StatusCode::kUnavailable);
  std::atomic<uint64_t> stamps{0};
  EXPECT_TRUE(Infer(*c, "a", stamps).ok());
  auto meta = c->ServerMetadata();
  ASSERT_TRUE(meta.ok());
  EXPECT_THAT(meta->extensions(), ::testing::Contains("model_repository"));
  const ExitResult r = (*server)->Stop(SIGTERM);
  EXPECT_TRUE(r.exited && r.code == 0) << r.log;
}

TEST(RepositoryTest, ExplicitModeLoadsReloadsAndUnloads) {
  auto server =
      ServerProcess::Start({"--model-repository=" + TwoVerifyModels(),
                            "--model-control-mode=explicit", "--load-model=a", "--boards=sim:1"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto c = *InferenceClient::Create((*server)->grpc_target());
  std::atomic<uint64_t> stamps{0};
  EXPECT_THAT(Index(*c), ElementsAre("a 1 READY", "b 1 UNAVAILABLE not loaded"));
  EXPECT_THAT(Index(*c, /*ready_only=*/true), ElementsAre("a 1 READY"));
  EXPECT_TRUE(*c->Ready());
  EXPECT_FALSE(*c->ModelReady("b"));
  EXPECT_EQ(Infer(*c, "b", stamps).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(c->ModelMetadata("b").status().code(), absl::StatusCode::kNotFound);

  ASSERT_TRUE(c->LoadModel("b").ok());
  EXPECT_THAT(Index(*c), ElementsAre("a 1 READY", "b 1 READY"));
  EXPECT_TRUE(*c->ModelReady("b"));
  EXPECT_TRUE(Infer(*c, "b", stamps).ok());

  // Reload: a new load of b takes over (with a new board, sim:1).
  ASSERT_TRUE(c->LoadModel("b").ok());
  EXPECT_TRUE(Infer(*c, "b", stamps).ok());

  ASSERT_TRUE(c->UnloadModel("a").ok());
  EXPECT_THAT(Index(*c), ElementsAre("a 1 UNAVAILABLE unloaded", "b 1 READY"));
  EXPECT_EQ(Infer(*c, "a", stamps).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(c->UnloadModel("a").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(c->LoadModel("nope").code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(*c->Ready());

  // And back.
  ASSERT_TRUE(c->LoadModel("a").ok());
  EXPECT_TRUE(Infer(*c, "a", stamps).ok());

  auto metrics = HttpGet((*server)->metrics_url());
  ASSERT_TRUE(metrics.ok());
  // a: sim0, b: sim1, b reloaded: sim2, a again: sim3. Counts add up
  // across reloads.
  EXPECT_EQ(*MetricValue(*metrics, "hgpipe_images_total", R"(model="b")"), 4);
  EXPECT_EQ(*MetricValue(*metrics, "hgpipe_board_images_total", R"(board="sim3",model="a")"), 2);
  // The boards of the loads that are gone (a's first, b's first) went with
  // them, series and all; the reloaded b's and the new a's serve.
  auto gone = WaitForMetric((*server)->metrics_url(), "hgpipe_board_phase",
                            R"(board="sim2",phase="serving")",
                            [&](double) {
                              auto now = HttpGet((*server)->metrics_url());
                              return now.ok() && !absl::StrContains(*now, R"(board="sim0")") &&
                                     !absl::StrContains(*now, R"(board="sim1")");
                            },
                            absl::Seconds(60));
  EXPECT_TRUE(gone.ok()) << gone.status();
  const ExitResult r = (*server)->Stop(SIGTERM);
  EXPECT_TRUE(r.exited && r.code == 0) << r.log;
  EXPECT_THAT(r.log, HasSubstr("model a: unloaded"));
  EXPECT_THAT(r.log, HasSubstr("board sim0: removed with the load it was made for"));
  EXPECT_THAT(r.log, HasSubstr("board sim1: removed with the load it was made for"));
}

// Unloaded right after its load, a model's new board is still running the
// canary that proves it: the removal is retried until the canary is done
// (it used to keep the board, and its slots, for good, so each quick
// unload and load grew the server by a board's memory).
TEST(RepositoryTest, BoardsOfAModelUnloadedRightAfterItsLoadAreRemoved) {
  auto server =
      ServerProcess::Start({"--model-repository=" + TwoVerifyModels(),
                            "--model-control-mode=explicit", "--load-model=a", "--boards=sim:1"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto c = *InferenceClient::Create((*server)->grpc_target());
  for (int i = 0; i < 4; ++i) {  // sim1 .. sim4
    ASSERT_TRUE(c->UnloadModel("a").ok());
    ASSERT_TRUE(c->LoadModel("a").ok());
  }
  std::atomic<uint64_t> stamps{0};
  EXPECT_TRUE(Infer(*c, "a", stamps).ok());
  // Only the last load's board is left, serving.
  auto only_last = WaitForMetric(
      (*server)->metrics_url(), "hgpipe_board_phase", R"(board="sim4",phase="serving")",
      [&](double serving) {
        auto now = HttpGet((*server)->metrics_url());
        if (serving != 1 || !now.ok()) return false;
        for (int i = 0; i < 4; ++i) {
          if (absl::StrContains(*now, absl::StrCat("board=\"sim", i, "\""))) {
            return false;
          }
        }
        return true;
      },
      absl::Seconds(60));
  EXPECT_TRUE(only_last.ok()) << only_last.status();
  const ExitResult r = (*server)->Stop(SIGTERM);
  EXPECT_TRUE(r.exited && r.code == 0) << r.log;
  EXPECT_THAT(r.log, Not(HasSubstr(": kept: ")));
}

TEST(RepositoryTest, UnloadAnswersTheRequestsItAccepted) {
  // A slow board (50x its modelled time) so that requests queue.
  auto server = ServerProcess::Start({"--model-repository=" + TwoVerifyModels(),
                                      "--model-control-mode=explicit", "--load-model=a",
                                      "--boards=sim:1", "--emulated-faults=sim0=slow@0:x50"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto c = *InferenceClient::Create((*server)->grpc_target());
  std::atomic<uint64_t> stamps{0};
  constexpr int kRequests = 24;
  std::vector<std::vector<int8_t>> images(kRequests);
  std::atomic<int> ok{0}, gone{0}, other{0}, answered{0};
  hgpipe::Notification all;
  for (int i = 0; i < kRequests; ++i) {
    images[i] = StampedImages(8, stamps);
    c->InferAsync(*clients::MakeImageRequest("a", images[i]),
                  [&, i](absl::StatusOr<inference::ModelInferResponse> r) {
                    if (r.ok()) {
                      (CheckVerifyResponse(*r, images[i]).ok() ? ok : other)++;
                    } else if (absl::IsNotFound(r.status()) || absl::IsUnavailable(r.status())) {
                      gone++;  // arrived after the unload began
                    } else {
                      other++;
                      ADD_FAILURE() << r.status();
                    }
                    if (++answered == kRequests) all.Notify();
                  });
  }
  // Some are accepted and unanswered (queued, or on the slowed board) when
  // the unload comes. The scheduler moves a burst from the queue onto the
  // board within a few hundred ms, so the queue alone may be empty at every
  // scrape on a fast machine; a slowed run stays in flight for longer.
  double pending = 0;
  for (const absl::Time give_up = absl::Now() + absl::Seconds(180); pending == 0;) {
    ASSERT_LT(absl::Now(), give_up) << "no request was ever seen queued or in flight";
    ASSERT_LT(answered.load(), kRequests) << "all answered before one was seen pending";
    absl::StatusOr<std::string> m = HttpGet((*server)->metrics_url());
    ASSERT_TRUE(m.ok()) << m.status();
    absl::StatusOr<double> queued = MetricValue(*m, "hgpipe_queue_images", R"(model="a")");
    absl::StatusOr<double> on_board =
        MetricValue(*m, "hgpipe_board_images_in_flight", R"(board="sim0",model="a")");
    pending = queued.value_or(0) + on_board.value_or(0);
    if (pending == 0) absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_TRUE(c->UnloadModel("a").ok());
  ASSERT_TRUE(all.WaitForNotificationWithTimeout(absl::Seconds(180)));
  EXPECT_EQ(other.load(), 0);
  EXPECT_GE(ok.load(), static_cast<int>(pending / 8));
  EXPECT_EQ(ok + gone, kRequests);
  EXPECT_EQ(Infer(*c, "a", stamps).code(), absl::StatusCode::kNotFound);
  const ExitResult r = (*server)->Stop(SIGTERM);
  EXPECT_TRUE(r.exited && r.code == 0) << r.log;
}

TEST(RepositoryTest, APoolBoardIsReprogrammedForTheSecondModel) {
  // One board for two models: a starts with it, b gets it when it has a
  // request, once a's queue is empty.
  auto server = ServerProcess::Start({"--model-repository=" + TwoVerifyModels(),
                                      "--boards=sim-pool:1", "--emulated-program-ms=50"});
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string url = (*server)->metrics_url();
  auto c = *InferenceClient::Create((*server)->grpc_target());
  EXPECT_TRUE(*c->ModelReady("a"));
  EXPECT_TRUE(*c->ModelReady("b"));  // by reprogramming
  EXPECT_TRUE(*c->Ready());
  std::atomic<uint64_t> stamps{0};
  constexpr int kRequests = 30;
  std::vector<std::vector<int8_t>> images(kRequests);
  std::atomic<int> ok{0}, answered{0};
  hgpipe::Notification all;
  for (int i = 0; i < kRequests; ++i) {
    images[i] = StampedImages(4, stamps);
    c->InferAsync(*clients::MakeImageRequest("a", images[i]),
                  [&, i](absl::StatusOr<inference::ModelInferResponse> r) {
                    if (r.ok() && CheckVerifyResponse(*r, images[i]).ok()) {
                      ok++;
                    } else {
                      ADD_FAILURE() << (r.ok() ? "wrong digest" : r.status().ToString());
                    }
                    if (++answered == kRequests) all.Notify();
                  });
  }
  absl::Status b = Infer(*c, "b", stamps, 3);
  EXPECT_TRUE(b.ok()) << b;
  ASSERT_TRUE(all.WaitForNotificationWithTimeout(absl::Seconds(180)));
  EXPECT_EQ(ok.load(), kRequests);
  // And a again, after b: the board goes back.
  EXPECT_TRUE(Infer(*c, "a", stamps).ok());

  auto metrics = HttpGet(url);
  ASSERT_TRUE(metrics.ok());
  EXPECT_GE(*MetricValue(*metrics, "hgpipe_board_programmings_total", R"(board="sim0")"), 2);
  EXPECT_EQ(*MetricValue(*metrics, "hgpipe_board_images_total", R"(board="sim0",model="b")"), 3);
  EXPECT_EQ(*MetricValue(*metrics, "hgpipe_board_images_total", R"(board="sim0",model="a")"),
            kRequests * 4 + 2);
  EXPECT_EQ(*MetricValue(*metrics, "hgpipe_requests_total", R"(code="OK",model="a")"),
            kRequests + 1);
  const ExitResult r = (*server)->Stop(SIGTERM);
  EXPECT_TRUE(r.exited && r.code == 0) << r.log;
}

TEST(RepositoryTest, ClientAndPerfBinariesDriveTheRepositoryAndThePolicy) {
  auto server = ServerProcess::Start({"--model-repository=" + TwoVerifyModels(),
                                      "--model-control-mode=explicit", "--load-model=a"});
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string url = "--url=" + (*server)->grpc_target();
  auto client = [&](const std::vector<std::string>& args) {
    std::vector<std::string> all = {url};
    all.insert(all.end(), args.begin(), args.end());
    return RunToExit(BinDir() + "/hgpipe-client", all, absl::Seconds(120));
  };
  ExitResult r = client({"index"});
  EXPECT_EQ(r.code, 0) << r.log;
  EXPECT_THAT(r.log, HasSubstr("READY"));
  EXPECT_THAT(r.log, HasSubstr("not loaded"));
  r = client({"load", "b"});
  EXPECT_EQ(r.code, 0) << r.log;
  EXPECT_THAT(r.log, HasSubstr("model b loaded"));
  r = client({"infer", "b", "--random=2", "--priority=1", "--timeout-us=30000000"});
  EXPECT_EQ(r.code, 0) << r.log;
  EXPECT_THAT(r.log, HasSubstr("image 1: matches its input digest"));
  r = client({"infer", "b", "--random=1", "--timeout-us=1"});
  EXPECT_EQ(r.code, 1) << r.log;
  EXPECT_THAT(r.log, HasSubstr("DEADLINE_EXCEEDED"));
  // A level the model does not have runs at its default level, as Triton.
  r = client({"infer", "b", "--random=1", "--priority=9"});
  EXPECT_EQ(r.code, 0) << r.log;
  EXPECT_THAT(r.log, HasSubstr("image 0: matches its input digest"));
  r = RunToExit(BinDir() + "/hgpipe-perf",
                {url, "--model=b", "--verify", "--priority=1", "--timeout-us=30000000",
                 "--duration=1", "--warmup=0", "--concurrency=2", "--json", "--progress=false"},
                absl::Seconds(120));
  EXPECT_EQ(r.code, 0) << r.log;
  EXPECT_THAT(r.log, HasSubstr("\"priority\": 1"));
  r = client({"unload", "b"});
  EXPECT_EQ(r.code, 0) << r.log;
  EXPECT_THAT(r.log, HasSubstr("model b unloaded"));
  r = client({"unload", "b"});
  EXPECT_EQ(r.code, 1) << r.log;
  EXPECT_THAT(r.log, HasSubstr("NOT_FOUND"));
  r = client({"load"});
  EXPECT_EQ(r.code, 2) << r.log;
  const ExitResult stop = (*server)->Stop(SIGTERM);
  EXPECT_TRUE(stop.exited && stop.code == 0) << stop.log;
}

TEST(RepositoryTest, BadControlFlagsFailStartUp) {
  auto start = [](const std::vector<std::string>& args) {
    std::vector<std::string> all = {"--grpc-port=0", "--http-port=0", "--metrics-port=0",
                                    "--host=127.0.0.1", "--model-repository=" + TwoVerifyModels()};
    all.insert(all.end(), args.begin(), args.end());
    return RunToExit(BinDir() + "/hgpipe-server", all, absl::Seconds(60));
  };
  ExitResult r = start({"--model-control-mode=poll"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.log, HasSubstr("--model-control-mode: 'poll' is not none or explicit"));
  r = start({"--load-model=a"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.log, HasSubstr("--load-model needs --model-control-mode=explicit"));
  r = start({"--model-control-mode=explicit", "--load-model=c"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.log, HasSubstr("no model 'c'"));
  r = start({"--emulated-faults=sim0=melt@1"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.log, HasSubstr("--emulated-faults: 'sim0=melt@1'"));
  r = start({"--boards=sim:1,sim-pool:1"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.log, HasSubstr("do not mix"));
  r = start({"--watchdog-ms=-1"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.log, HasSubstr("--watchdog-ms: -1 is outside"));
}

TEST(RepositoryTest, RepeatedLoadModelFlagsLoadEach) {
  auto server = ServerProcess::Start(
      {"--model-repository=" + WriteModelRepository({{"a", R"(name: "a" bitstream: "verify")"},
                                                     {"b", R"(name: "b" bitstream: "verify")"},
                                                     {"c", R"(name: "c" bitstream: "verify")"}}),
       "--model-control-mode=explicit", "--load-model=a", "--load-model", "c"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto c = *InferenceClient::Create((*server)->grpc_target());
  EXPECT_THAT(Index(*c), ElementsAre("a 1 READY", "b 1 UNAVAILABLE not loaded", "c 1 READY"));
  const ExitResult r = (*server)->Stop(SIGTERM);
  EXPECT_TRUE(r.exited && r.code == 0) << r.log;
}

}  // namespace
}  // namespace hgpipe::testing
