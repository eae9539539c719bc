// Images in, through the real binary: encoded files and raw pixels are
// preprocessed by the server, FP32 logits and top-k classes come out, and a
// bad image is refused with its index while other clients are untouched.
#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "clients/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "preprocess/image_encoder.h"
#include "server_process.h"

namespace hgpipe::testing {
namespace {

using ::testing::HasSubstr;

// A 28 x 28 gray image with some structure (a ramp plus noise).
std::vector<uint8_t> GrayImage(uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> px(28 * 28);
  for (int y = 0; y < 28; ++y)
    for (int x = 0; x < 28; ++x)
      px[y * 28 + x] = static_cast<uint8_t>((x * 9 + y * 3 + rng() % 40) & 255);
  return px;
}

std::string Png(const std::vector<uint8_t>& gray) {
  preprocess::PngSpec spec;
  spec.width = 28;
  spec.height = 28;
  spec.color_type = 0;
  spec.bit_depth = 8;
  auto bytes = preprocess::EncodePng(gray, spec);
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  return std::string(bytes->begin(), bytes->end());
}

inference::ModelInferRequest EncodedRequest(const std::string& model,
                                            const std::vector<std::string>& files) {
  inference::ModelInferRequest r;
  r.set_model_name(model);
  auto* in = r.add_inputs();
  in->set_name("IMAGE");
  in->set_datatype("BYTES");
  in->add_shape(files.size());
  in->add_shape(1);
  std::string raw;
  for (const std::string& f : files) {
    const uint32_t len = f.size();
    raw.append(reinterpret_cast<const char*>(&len), 4);
    raw.append(f);
  }
  r.add_raw_input_contents(raw);
  return r;
}

std::vector<float> Floats(const inference::ModelInferResponse& r) {
  std::vector<float> v(r.raw_output_contents(0).size() / 4);
  std::memcpy(v.data(), r.raw_output_contents(0).data(), v.size() * 4);
  return v;
}

std::vector<std::string> ByteElements(const std::string& raw) {
  std::vector<std::string> out;
  for (size_t pos = 0; pos + 4 <= raw.size();) {
    uint32_t len;
    std::memcpy(&len, raw.data() + pos, 4);
    out.push_back(raw.substr(pos + 4, len));
    pos += 4 + len;
  }
  return out;
}

class ImagesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto s = ServerProcess::Start({"--boards=sim:1"});
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = s->release();
    // DeiT-tiny's emulated datapath takes seconds an image in the ASan
    // build, more on a loaded machine: more than the default 30 s a call.
    clients::InferenceClient::Options o;
    o.timeout = absl::Seconds(180);
    client_ = clients::InferenceClient::Create(server_->grpc_target(), o)->release();
  }
  static void TearDownTestSuite() {
    delete client_;
    const ExitResult r = server_->Stop(SIGTERM);
    EXPECT_TRUE(r.exited && r.code == 0) << r.log;
    delete server_;
  }
  static ServerProcess* server_;
  static clients::InferenceClient* client_;
};
ServerProcess* ImagesTest::server_;
clients::InferenceClient* ImagesTest::client_;

TEST_F(ImagesTest, PngAndRawPixelsGiveTheSameFp32Logits) {
  const auto a = GrayImage(1), b = GrayImage(2);
  auto encoded = client_->Infer(EncodedRequest("fmnist_vit", {Png(a), Png(b)}));
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  ASSERT_EQ(encoded->outputs(0).datatype(), "FP32");
  EXPECT_THAT(encoded->outputs(0).shape(), ::testing::ElementsAre(2, 10));
  const std::vector<float> from_png = Floats(*encoded);
  EXPECT_NE(from_png, std::vector<float>(20, 0.0f));

  // The same pixels as a PIXELS model (the fmnist weights, UINT8 input):
  // PNG is lossless, so the logits must be identical.
  std::ifstream in(SourceDir() + "/models/fmnist_vit/config.pbtxt");
  std::string config((std::istreambuf_iterator<char>(in)), {});
  config = absl::StrReplaceAll(
      config, {{"name: \"fmnist_vit\"", "name: \"px\""},
               {"ENCODED_IMAGE", "PIXELS"},
               {"weights: \"", "weights: \"" + SourceDir() + "/models/fmnist_vit/"}});
  const std::string repo = WriteModelRepository("px", config);
  auto px_server = ServerProcess::Start({"--model-repository=" + repo});
  ASSERT_TRUE(px_server.ok()) << px_server.status();
  auto px_client = *clients::InferenceClient::Create((*px_server)->grpc_target());
  inference::ModelInferRequest r;
  r.set_model_name("px");
  auto* t = r.add_inputs();
  t->set_name("IMAGE");
  t->set_datatype("UINT8");
  for (int64_t d : {2, 28, 28, 1}) t->add_shape(d);
  std::string raw(a.begin(), a.end());
  raw.append(b.begin(), b.end());
  r.add_raw_input_contents(raw);
  auto pixels = px_client->Infer(r);
  ASSERT_TRUE(pixels.ok()) << pixels.status();
  EXPECT_EQ(Floats(*pixels), from_png);
  // A wrong-sized image is refused by the preprocessing (resize "none").
  t->set_shape(1, 27);
  t->set_shape(2, 29);
  r.mutable_raw_input_contents(0)->resize(2 * 27 * 29);
  auto bad = px_client->Infer(r);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("image 0"));
  (*px_server)->Stop(SIGTERM);
}

TEST_F(ImagesTest, ClassificationReturnsTopKWithLabels) {
  auto r = EncodedRequest("fmnist_vit", {Png(GrayImage(3))});
  auto* out = r.add_outputs();
  out->set_name("LOGITS");
  (*out->mutable_parameters())["classification"].set_int64_param(3);
  auto resp = client_->Infer(r);
  ASSERT_TRUE(resp.ok()) << resp.status();
  EXPECT_EQ(resp->outputs(0).datatype(), "BYTES");
  EXPECT_THAT(resp->outputs(0).shape(), ::testing::ElementsAre(1, 3));
  const auto top = ByteElements(resp->raw_output_contents(0));
  ASSERT_EQ(top.size(), 3u);
  double last = 1e30;
  for (const std::string& e : top) {
    std::vector<std::string> f = absl::StrSplit(e, absl::MaxSplits(':', 2));
    ASSERT_EQ(f.size(), 3u) << e;  // score:index:label
    const double score = std::stod(f[0]);
    EXPECT_LE(score, last);
    last = score;
    EXPECT_FALSE(f[2].empty());
  }
  // The same as the argmax of the logits.
  auto plain = client_->Infer(EncodedRequest("fmnist_vit", {Png(GrayImage(3))}));
  const auto logits = Floats(*plain);
  const int best = std::max_element(logits.begin(), logits.end()) - logits.begin();
  EXPECT_EQ(std::vector<std::string>(absl::StrSplit(top[0], ':'))[1], std::to_string(best));
}

TEST_F(ImagesTest, HgpipeClientPrintsTopKClassesWithLabelsForImageFiles) {
  const std::string path =
      std::filesystem::temp_directory_path() / absl::StrCat("hgpipe-client-", getpid(), ".png");
  std::ofstream(path, std::ios::binary) << Png(GrayImage(5));
  const ExitResult r = RunToExit(
      BinDir() + "/hgpipe-client",
      {"--url=" + server_->grpc_target(), "infer", "fmnist_vit", "--image=" + path, "--top-k=4"});
  EXPECT_TRUE(r.exited && r.code == 0) << r.log;
  EXPECT_THAT(r.log, HasSubstr("model fmnist_vit (hgpipe/vit): 1 image"));
  EXPECT_THAT(r.log, HasSubstr("  4. "));
  EXPECT_THAT(r.log, HasSubstr("(class "));
  // Labels come from the weights: one of Fashion-MNIST's ten names.
  EXPECT_THAT(r.log,
              ::testing::ContainsRegex("1\\. (T-shirt/top|Trouser|Pullover|Dress|Coat|Sandal|"
                                       "Shirt|Sneaker|Bag|Ankle boot) \\(class"));
  std::filesystem::remove(path);
  // A file that cannot be read: an error naming it, not a crash.
  for (const std::string& bad :
       {std::filesystem::temp_directory_path().string(), std::string("/nonexistent/x.png")}) {
    const ExitResult e =
        RunToExit(BinDir() + "/hgpipe-client",
                  {"--url=" + server_->grpc_target(), "infer", "fmnist_vit", "--image=" + bad});
    EXPECT_TRUE(e.exited && e.code == 1) << e.log;
    EXPECT_THAT(e.log, HasSubstr("--image " + bad)) << e.log;
  }
}

TEST_F(ImagesTest, CorruptTruncatedAndUnsupportedImagesAreRefusedByIndex) {
  const std::string good = Png(GrayImage(4));
  struct Case {
    std::string bytes;
    const char* what;
  } cases[] = {
      {good.substr(0, good.size() / 2), "image 1: "},
      {"GIF89a\x01\x00\x01\x00", "image 1: "},
      {std::string(300, 'x'), "image 1: "},
  };
  for (const Case& c : cases) {
    auto resp = client_->Infer(EncodedRequest("fmnist_vit", {good, c.bytes, good}));
    EXPECT_EQ(resp.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(resp.status().message(), HasSubstr(c.what));
  }
  // The server and other requests are untouched.
  auto ok = client_->Infer(EncodedRequest("fmnist_vit", {good, good}));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_THAT(ok->outputs(0).shape(), ::testing::ElementsAre(2, 10));
}

// A 320 x 240 RGB photo-like JPEG (or PNG) for deit_tiny.
std::vector<uint8_t> PhotoPixels(int channels) {
  std::vector<uint8_t> px(320 * 240 * channels);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>((i * 7 + i / 960) % 251);
  return px;
}

std::string Jpeg(int channels, bool progressive) {
  preprocess::JpegSpec spec;
  spec.width = 320;
  spec.height = 240;
  spec.channels = channels;
  spec.progressive = progressive;
  auto jpeg = preprocess::EncodeJpeg(PhotoPixels(channels), spec);
  EXPECT_TRUE(jpeg.ok()) << jpeg.status();
  return std::string(jpeg->begin(), jpeg->end());
}

TEST_F(ImagesTest, BadPhotosAreRefusedByIndexAndOddOnesServed) {
  // Issue 15's cases through deit_tiny's fused path (region decode). On a
  // board that models timing only: what is checked is the decoding, and
  // DeiT-tiny's emulated datapath takes seconds per image in the ASan build.
  auto timing_only = ServerProcess::Start({"--boards=sim:1", "--emulated-compute=false"});
  ASSERT_TRUE(timing_only.ok()) << timing_only.status();
  auto client = *clients::InferenceClient::Create((*timing_only)->grpc_target());
  const std::string good = Jpeg(3, false);
  std::string bomb = good;  // SOF0 declaring 65535 x 65535 pixels
  for (size_t i = 2; i + 9 < bomb.size(); ++i) {
    if (static_cast<uint8_t>(bomb[i]) == 0xFF && static_cast<uint8_t>(bomb[i + 1]) == 0xC0) {
      for (int k = 5; k <= 8; ++k) bomb[i + k] = static_cast<char>(0xFF);
      break;
    }
  }
  struct Refused {
    std::string bytes;
    const char* what;
  } refused[] = {
      {bomb, "image 1: image too large"},
      {Jpeg(4, false), "image 1: unsupported JPEG color space YCCK"},  // CMYK data
      {"", "image 1 is empty"},
      {good.substr(0, good.size() / 2), "image 1: truncated JPEG"},
  };
  for (const Refused& c : refused) {
    auto resp = client->Infer(EncodedRequest("deit_tiny", {good, c.bytes, good}));
    EXPECT_EQ(resp.status().code(), absl::StatusCode::kInvalidArgument) << c.what;
    EXPECT_THAT(std::string(resp.status().message()), HasSubstr(c.what));
  }
  // The run holding a failed image is answered without the board (at least
  // the truncated photo's fails in the fill step, after queueing).
  auto metrics = HttpGet((*timing_only)->metrics_url());
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  auto withheld = MetricValue(*metrics, "hgpipe_withheld_images_total", R"(model="deit_tiny")");
  ASSERT_TRUE(withheld.ok()) << withheld.status();
  EXPECT_GE(*withheld, 1);

  // Progressive JPEG, 16-bit RGB PNG, palette PNG: served.
  preprocess::PngSpec rgb16;
  rgb16.width = 320;
  rgb16.height = 240;
  rgb16.bit_depth = 16;
  std::vector<uint8_t> samples16;
  for (uint8_t v : PhotoPixels(3)) samples16.insert(samples16.end(), {v, 0x55});  // big-endian
  auto png16 = preprocess::EncodePng(samples16, rgb16);
  ASSERT_TRUE(png16.ok()) << png16.status();
  preprocess::PngSpec indexed;
  indexed.width = 320;
  indexed.height = 240;
  indexed.color_type = 3;
  for (int i = 0; i < 16; ++i) {
    indexed.palette.push_back({uint8_t(16 * i), uint8_t(255 - 16 * i), uint8_t(7 * i)});
  }
  std::vector<uint8_t> indices(320 * 240);
  for (size_t i = 0; i < indices.size(); ++i) indices[i] = static_cast<uint8_t>((i / 7) % 16);
  auto palette = preprocess::EncodePng(indices, indexed);
  ASSERT_TRUE(palette.ok()) << palette.status();
  auto served = client->Infer(
      EncodedRequest("deit_tiny", {Jpeg(3, true), std::string(png16->begin(), png16->end()),
                                   std::string(palette->begin(), palette->end())}));
  ASSERT_TRUE(served.ok()) << served.status();
  EXPECT_THAT(served->outputs(0).shape(), ::testing::ElementsAre(3, 1000));
}

TEST_F(ImagesTest, AJpegPhotoRunsThroughDeitTiny) {
  // A 320 x 240 RGB "photo": resized to 256 on the short side, cropped to
  // 224, 196 tokens of 16 x 16 x 3, HG-PIPE's W3A3 datapath.
  std::vector<uint8_t> px(320 * 240 * 3);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>((i * 7) % 251);
  preprocess::JpegSpec spec;
  spec.width = 320;
  spec.height = 240;
  spec.channels = 3;
  auto jpeg = preprocess::EncodeJpeg(px, spec);
  ASSERT_TRUE(jpeg.ok()) << jpeg.status();
  auto resp =
      client_->Infer(EncodedRequest("deit_tiny", {std::string(jpeg->begin(), jpeg->end())}));
  ASSERT_TRUE(resp.ok()) << resp.status();
  EXPECT_EQ(resp->outputs(0).datatype(), "FP32");
  EXPECT_THAT(resp->outputs(0).shape(), ::testing::ElementsAre(1, 1000));
}

// Photos are decoded when their run is formed, straight into the board's
// slot. A board that dies under load abandons runs whose images were
// decoded into its slots: they are decoded again into another board's, and
// every request is answered exactly once, OK, with its own images' logits
// (those a clean server gives).
TEST_F(ImagesTest, PhotosOnABoardThatDiesAreDecodedAgainAndServedExactlyOnce) {
  constexpr int kImages = 8;
  std::vector<std::string> pngs;
  for (int i = 0; i < kImages; ++i) pngs.push_back(Png(GrayImage(100 + i)));
  auto reference = client_->Infer(EncodedRequest("fmnist_vit", pngs));
  ASSERT_TRUE(reference.ok()) << reference.status();
  const std::vector<float> want = Floats(*reference);  // kImages x 10

  auto server = ServerProcess::Start(
      {"--boards=sim:2", "--model-control-mode=explicit", "--load-model=fmnist_vit",
       "--emulated-faults=sim1=fail@3:permanent", "--emulated-program-ms=20",
       "--emulated-reset-ms=20", "--recovery-backoff-ms=20", "--max-recovery-attempts=2",
       "--preprocess-threads=2"});
  ASSERT_TRUE(server.ok()) << server.status();
  std::atomic<bool> stop{false};
  std::atomic<int> requests{0}, images{0};
  constexpr int kClients = 4;
  std::vector<std::string> failures(kClients);
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      clients::InferenceClient::Options o;
      o.channel.connection_index = c;
      o.timeout = absl::Seconds(120);
      auto client = clients::InferenceClient::Create((*server)->grpc_target(), o);
      if (!client.ok()) {
        failures[c] = client.status().ToString();
        return;
      }
      std::mt19937 rng(c);
      for (int after_stop = 0; !stop.load() || after_stop++ < 10;) {
        const int n = 1 + rng() % 3;
        std::vector<int> which;
        std::vector<std::string> files;
        for (int k = 0; k < n; ++k) {
          which.push_back(rng() % kImages);
          files.push_back(pngs[which.back()]);
        }
        auto resp = (*client)->Infer(EncodedRequest("fmnist_vit", files));
        if (!resp.ok()) {
          failures[c] = resp.status().ToString();
          return;
        }
        const std::vector<float> got = Floats(*resp);
        for (int k = 0; k < n; ++k) {
          if (!std::equal(got.begin() + k * 10, got.begin() + (k + 1) * 10,
                          want.begin() + which[k] * 10)) {
            failures[c] = absl::StrCat("image ", k, " (png ", which[k], "): other logits");
            return;
          }
        }
        ++requests;
        images += n;
      }
    });
  }
  const std::string url = (*server)->metrics_url();
  auto retired = WaitForMetric(
      url, "hgpipe_board_phase", R"(board="sim1",phase="retired")", [](double v) { return v == 1; },
      absl::Seconds(120));
  EXPECT_TRUE(retired.ok()) << retired.status();
  stop.store(true);
  for (auto& t : threads) t.join();
  for (const std::string& f : failures) EXPECT_EQ(f, "");
  auto metrics = HttpGet(url);
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_GE(*MetricValue(*metrics, "hgpipe_board_failures_total", R"(board="sim1")"), 1);
  EXPECT_EQ(*MetricValue(*metrics, "hgpipe_requests_total", R"(code="OK",model="fmnist_vit")"),
            requests.load());
  EXPECT_EQ(*MetricValue(*metrics, "hgpipe_images_total", R"(model="fmnist_vit")"), images.load());
  const ExitResult r = (*server)->Stop(SIGTERM);
  EXPECT_TRUE(r.exited && r.code == 0) << r.log;
}

}  // namespace
}  // namespace hgpipe::testing
