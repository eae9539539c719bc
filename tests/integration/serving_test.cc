// The whole path, through the real binary and real gRPC: many concurrent
// clients, two emulated boards, every output checked against its own input.
#include <atomic>
#include <csignal>
#include <cstring>
#include <random>
#include <regex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "clients/client.h"
#include "clients/tensors.h"
#include "gtest/gtest.h"
#include "server_process.h"

namespace hgpipe::testing {
namespace {

using clients::InferenceClient;

TEST(ServingTest, TenThousandImagesFromConcurrentClientsOverTwoBoards) {
  auto server = ServerProcess::Start({"--boards=sim:2"});
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string target = (*server)->grpc_target();

  constexpr int kClients = 8;
  constexpr int kImagesPerClient = 1250;  // 10,000 in all
  // A pool of random images; each sent image gets a unique stamp in its
  // first 8 bytes, so no two images in the test share a digest.
  const std::vector<int8_t> pool = clients::GenerateRandomImages(64, 7);
  std::atomic<uint64_t> stamp{0};
  std::atomic<int> requests{0}, images_checked{0};
  std::vector<std::string> failures(kClients);

  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      InferenceClient::Options o;
      o.channel.connection_index = c;  // its own connection
      auto client = InferenceClient::Create(target, o);
      if (!client.ok()) {
        failures[c] = std::string(client.status().message());
        return;
      }
      std::mt19937 rng(c);
      int sent = 0;
      while (sent < kImagesPerClient) {
        const int n = std::min<int>(1 + rng() % 8, kImagesPerClient - sent);
        std::vector<int8_t> images(n * clients::kImageBytes);
        for (int i = 0; i < n; ++i) {
          int8_t* img = images.data() + i * clients::kImageBytes;
          std::memcpy(img, pool.data() + (rng() % 64) * clients::kImageBytes, clients::kImageBytes);
          const uint64_t s = stamp.fetch_add(1);
          std::memcpy(img, &s, sizeof(s));
        }
        auto req = clients::MakeImageRequest("verify", images);
        auto resp = (*client)->Infer(*req);
        if (!resp.ok()) {
          failures[c] = absl::StrCat("request failed: ", resp.status().ToString());
          return;
        }
        auto out = clients::ReadInt32Output(*resp, "OUTPUT");
        if (!out.ok() || out->shape != std::vector<int64_t>{n, clients::kClasses}) {
          failures[c] = "bad output tensor";
          return;
        }
        for (int i = 0; i < n; ++i) {
          absl::Status s = clients::CheckVerifyRow(
              absl::MakeConstSpan(images).subspan(i * clients::kImageBytes, clients::kImageBytes),
              absl::MakeConstSpan(out->values).subspan(i * clients::kClasses, clients::kClasses));
          if (!s.ok()) {
            failures[c] = absl::StrCat("image ", i, ": ", s.message());
            return;
          }
          images_checked++;
        }
        sent += n;
        requests++;
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int c = 0; c < kClients; ++c) EXPECT_EQ(failures[c], "") << "client " << c;
  EXPECT_EQ(images_checked.load(), kClients * kImagesPerClient);

  // The metrics saw the same load, spread over both boards.
  auto metrics = HttpGet((*server)->metrics_url());
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_EQ(*MetricValue(*metrics, "hgpipe_images_total", R"(model="verify")"), 10000);
  EXPECT_EQ(*MetricValue(*metrics, "hgpipe_requests_total", R"(code="OK",model="verify")"),
            requests.load());
  // The verify model's boards, whatever their names (every model of the
  // repository gets two).
  std::vector<std::string> boards;
  static const std::regex kBoard(
      R"re(hgpipe_board_images_total\{board="([^"]+)",model="verify"\})re");
  for (std::sregex_iterator it(metrics->begin(), metrics->end(), kBoard), end; it != end; ++it) {
    boards.push_back((*it)[1]);
  }
  ASSERT_EQ(boards.size(), 2u) << *metrics;
  double board_images = 0;
  for (const std::string& b : boards) {
    const std::string l = absl::StrCat("board=\"", b, "\",model=\"verify\"");
    auto v = MetricValue(*metrics, "hgpipe_board_images_total", l);
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_GT(*v, 0) << b << " got no work";
    board_images += *v;
    EXPECT_GT(*MetricValue(*metrics, "hgpipe_board_runs_total", l), 0);
    EXPECT_GT(*MetricValue(*metrics, "hgpipe_board_busy_seconds_total", l), 0);
    EXPECT_EQ(*MetricValue(*metrics, "hgpipe_board_healthy", l), 1);
    EXPECT_EQ(*MetricValue(*metrics, "hgpipe_board_images_in_flight", l), 0);
    EXPECT_GT(*MetricValue(*metrics, "hgpipe_board_run_images_count", l), 0);
  }
  EXPECT_EQ(board_images, 10000);
  EXPECT_EQ(*MetricValue(*metrics, "hgpipe_request_duration_seconds_count", R"(model="verify")"),
            requests.load());
  EXPECT_EQ(*MetricValue(*metrics, "hgpipe_queue_duration_seconds_count", R"(model="verify")"),
            10000);
  EXPECT_GT(*MetricValue(*metrics, "hgpipe_device_duration_seconds_count", R"(model="verify")"), 0);
  EXPECT_EQ(*MetricValue(*metrics, "hgpipe_queue_images", R"(model="verify")"), 0);

  const ExitResult exit = (*server)->Stop(SIGTERM);
  EXPECT_TRUE(exit.exited && exit.code == 0) << exit.log;
}

}  // namespace
}  // namespace hgpipe::testing
