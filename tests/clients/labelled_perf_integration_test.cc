// hgpipe-perf's labelled mode (--images/--labels) against the real
// hgpipe-server: a model with two variants taking gray pixels, emulated
// boards computing HG-PIPE's datapath. The labels are made from the
// server's own answers (right for some images, wrong for others), so the
// measured accuracy hgpipe-perf reports is known exactly whatever images
// the run got through; the per-variant counts must equal the server's
// hgpipe_variant_images_total. No timing is asserted.
#include <zlib.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "clients/client.h"
#include "clients/labelled_images.h"
#include "clients/tensors.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/integration/server_process.h"
#include "tests/integration/variant_weights.h"

namespace hgpipe::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr int kImages = 8;
constexpr int kSide = 28;

// An IDX file of unsigned bytes with `dims`, gzip-compressed or plain.
void WriteIdx(const fs::path& path, const std::vector<uint32_t>& dims,
              const std::vector<uint8_t>& data, bool gzip) {
  std::string bytes = {0, 0, 8, static_cast<char>(dims.size())};
  for (uint32_t d : dims) {
    for (int shift : {24, 16, 8, 0}) bytes += static_cast<char>((d >> shift) & 0xff);
  }
  bytes.append(data.begin(), data.end());
  if (!gzip) {
    std::ofstream(path, std::ios::binary) << bytes;
    return;
  }
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  gzclose(f);
}

google::protobuf::Struct ParseJsonLine(const std::string& log) {
  google::protobuf::Struct s;
  const size_t begin = log.find("{\"settings\"");
  EXPECT_NE(begin, std::string::npos) << log;
  if (begin == std::string::npos) return s;
  const size_t end = log.find('\n', begin);
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(log.substr(begin, end - begin), &s).ok())
      << log;
  return s;
}

class LabelledPerfTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    repo_ = new std::string(WriteModelRepository({{"fm", R"(
name: "fm" bitstream: "vit"
input_format: PIXELS
output { datatype: "FP32" }
preprocess {
  height: 28 width: 28 channels: 1 patch_height: 4 patch_width: 7 resize: "none"
  mean: [0.50196078] stddev: [0.50196078] quant_scale: 0.0078125
  cls_placeholder: "replace_first_patch"
}
variants { name: "full" weights: "full.hgvit" }
variants { name: "lite" weights: "lite.hgvit" }
)"}}));
    WriteVariantWeights(fs::path(*repo_) / "fm" / "full.hgvit", "0.8833");
    WriteVariantWeights(fs::path(*repo_) / "fm" / "lite.hgvit", "0.8746");
    auto s =
        ServerProcess::Start({"--boards=sim:1", "--canary=false", "--model-repository=" + *repo_});
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = s->release();
  }
  static void TearDownTestSuite() {
    if (server_ != nullptr) {
      const ExitResult r = server_->Stop(SIGTERM);
      EXPECT_TRUE(r.exited && r.code == 0) << r.log;
      delete server_;
      server_ = nullptr;
    }
    delete repo_;
    repo_ = nullptr;
  }

  void SetUp() override { ASSERT_NE(server_, nullptr); }

  // kImages deterministic gray images, and the class the server answers
  // for each.
  void ImagesAndAnswers(std::vector<uint8_t>* pixels, std::vector<uint8_t>* answers) {
    pixels->resize(kImages * kSide * kSide);
    for (size_t i = 0; i < pixels->size(); ++i) {
      (*pixels)[i] = static_cast<uint8_t>((i * 37 + (i / 97) * 11) & 0xff);
    }
    auto client = clients::InferenceClient::Create(server_->grpc_target());
    ASSERT_TRUE(client.ok()) << client.status();
    for (int i = 0; i < kImages; ++i) {
      auto request = clients::MakeGrayPixelsRequest(
          "fm", "INPUT", "", kSide, kSide,
          absl::MakeConstSpan(*pixels).subspan(i * kSide * kSide, kSide * kSide));
      ASSERT_TRUE(request.ok()) << request.status();
      auto response = (*client)->Infer(*request);
      ASSERT_TRUE(response.ok()) << response.status();
      auto logits = clients::ReadFp32Output(*response);
      ASSERT_TRUE(logits.ok()) << logits.status();
      answers->push_back(static_cast<uint8_t>(clients::ArgMax<float>(logits->values)));
    }
  }

  double VariantImages(const std::string& variant) {
    auto metrics = HttpGet(server_->metrics_url());
    EXPECT_TRUE(metrics.ok()) << metrics.status();
    if (!metrics.ok()) return -1;
    auto v = MetricValue(*metrics, "hgpipe_variant_images_total",
                         absl::StrCat(R"(model="fm",variant=")", variant, "\""));
    return v.ok() ? *v : 0;
  }

  ExitResult Perf(const std::vector<std::string>& extra) {
    std::vector<std::string> args = {"--url=" + server_->grpc_target(),
                                     "--model=fm",
                                     "--duration=1",
                                     "--warmup=0",
                                     "--concurrency=2",
                                     "--json",
                                     "--progress=false"};
    args.insert(args.end(), extra.begin(), extra.end());
    return RunToExit(BinDir() + "/hgpipe-perf", args, absl::Seconds(120));
  }

  static std::string* repo_;
  static ServerProcess* server_;
};

std::string* LabelledPerfTest::repo_ = nullptr;
ServerProcess* LabelledPerfTest::server_ = nullptr;

TEST_F(LabelledPerfTest, MeasuredAccuracyAndVariantCountsMatchTheServer) {
  std::vector<uint8_t> pixels, answers;
  ASSERT_NO_FATAL_FAILURE(ImagesAndAnswers(&pixels, &answers));
  // Right for even images, wrong for odd ones: a request of two images
  // (2r, 2r + 1) always holds one of each.
  std::vector<uint8_t> half = answers;
  for (int i = 1; i < kImages; i += 2) half[i] = static_cast<uint8_t>((answers[i] + 1) % 10);
  const fs::path dir = fs::path(*repo_);
  WriteIdx(dir / "images.gz", {kImages, kSide, kSide}, pixels, /*gzip=*/true);
  WriteIdx(dir / "half.idx", {kImages}, half, /*gzip=*/false);
  WriteIdx(dir / "right.idx", {kImages}, answers, /*gzip=*/false);

  const double full_before = VariantImages("full"), lite_before = VariantImages("lite");
  ExitResult r =
      Perf({"--images=" + (dir / "images.gz").string(), "--labels=" + (dir / "half.idx").string(),
            "--images-per-request=2", "--min-accuracy=0.87"});
  ASSERT_TRUE(r.exited && r.code == 0) << r.log;
  google::protobuf::Struct s = ParseJsonLine(r.log);
  const auto& f = s.fields();
  const double answered = f.at("answered").number_value();
  ASSERT_GT(answered, 0);
  EXPECT_EQ(f.at("offered").number_value(), answered);
  EXPECT_DOUBLE_EQ(f.at("measured_accuracy").number_value(), 0.5);
  EXPECT_EQ(f.at("settings").struct_value().fields().at("min_accuracy").number_value(), 0.87);
  // Every request of the run is in the window (no warmup), so the counts
  // per variant are the server's own.
  const auto& variants = f.at("variants").struct_value().fields();
  double requests = 0, declared = 0, images = 0;
  for (const auto& [name, v] : variants) {
    const auto& c = v.struct_value().fields();
    EXPECT_TRUE(name == "full" || name == "lite") << name;
    EXPECT_EQ(c.at("images").number_value(), 2 * c.at("requests").number_value()) << name;
    EXPECT_EQ(2 * c.at("correct").number_value(), c.at("images").number_value()) << name;
    EXPECT_EQ(c.at("declared_top1").number_value(), name == "full" ? 0.8833 : 0.8746) << name;
    requests += c.at("requests").number_value();
    images += c.at("images").number_value();
    declared += c.at("declared_top1").number_value() * c.at("images").number_value();
  }
  EXPECT_EQ(requests, answered);
  EXPECT_NEAR(f.at("declared_accuracy").number_value(), declared / images, 1e-5);
  auto count = [&variants](const std::string& name) {
    auto it = variants.find(name);
    return it == variants.end() ? 0.0
                                : it->second.struct_value().fields().at("images").number_value();
  };
  EXPECT_EQ(VariantImages("full") - full_before, count("full"));
  EXPECT_EQ(VariantImages("lite") - lite_before, count("lite"));

  // All right, one image a request, no floor: the most accurate variant only.
  r = Perf(
      {"--images=" + (dir / "images.gz").string(), "--labels=" + (dir / "right.idx").string()});
  ASSERT_TRUE(r.exited && r.code == 0) << r.log;
  s = ParseJsonLine(r.log);
  EXPECT_DOUBLE_EQ(s.fields().at("measured_accuracy").number_value(), 1.0);
  EXPECT_DOUBLE_EQ(s.fields().at("declared_accuracy").number_value(), 0.8833);
  const auto& only = s.fields().at("variants").struct_value().fields();
  ASSERT_EQ(only.size(), 1u);
  EXPECT_EQ(only.begin()->first, "full");
  EXPECT_EQ(only.at("full").struct_value().fields().at("requests").number_value(),
            s.fields().at("answered").number_value());
}

TEST_F(LabelledPerfTest, MismatchedOrMissingLabelsAreUsageErrors) {
  const fs::path dir = fs::path(*repo_);
  WriteIdx(dir / "small.idx", {2, 4, 4}, std::vector<uint8_t>(32, 7), /*gzip=*/false);
  WriteIdx(dir / "three-labels.idx", {3}, {1, 2, 3}, /*gzip=*/false);
  ExitResult r = Perf({"--images=" + (dir / "small.idx").string(),
                       "--labels=" + (dir / "three-labels.idx").string()});
  EXPECT_TRUE(r.exited);
  EXPECT_EQ(r.code, 2) << r.log;
  EXPECT_THAT(r.log, HasSubstr("3 labels for 2 images"));
  r = Perf({"--images=" + (dir / "small.idx").string()});
  EXPECT_EQ(r.code, 2) << r.log;
  EXPECT_THAT(r.log, HasSubstr("both an image file and a label file"));
}

}  // namespace
}  // namespace hgpipe::testing
