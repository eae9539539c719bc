// A model with bitstream variants over the wire (docs/serving.md,
// "Variants"): metadata lists them, responses name the variant that
// answered, the `min_accuracy` parameter is honoured and checked, and the
// metrics count images per variant. Routing under deadlines and board moves
// are tested on the virtual clock (tests/scheduler/variant_router_test.cc,
// tests/plan/simulation_test.cc).
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "accel/device_layout.h"
#include "accel/vit/weight_file.h"
#include "clients/client.h"
#include "clients/tensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server_process.h"
#include "variant_weights.h"

namespace hgpipe::testing {
namespace {

using clients::InferenceClient;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

class VariantsServingTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string repo = WriteModelRepository({{"fm", R"(
name: "fm" bitstream: "vit"
output { datatype: "FP32" }
variants { name: "full" weights: "full.hgvit" }
variants { name: "lite" weights: "lite.hgvit" }
)"}});
    WriteVariantWeights(fs::path(repo) / "fm" / "full.hgvit", "0.8833", "");
    WriteVariantWeights(fs::path(repo) / "fm" / "lite.hgvit", "0.8746", "150");
    auto s = ServerProcess::Start({"--boards=sim:1", "--model-repository=" + repo});
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
  static inference::ModelInferRequest Request(int n) {
    std::vector<int8_t> patches(static_cast<size_t>(n) * 28 * 28);
    for (size_t i = 0; i < patches.size(); ++i) patches[i] = static_cast<int8_t>(i * 7);
    return *clients::MakeInt8Request("fm", "INPUT", {n, 28, 28}, patches);
  }

  static ServerProcess* server_;
  std::unique_ptr<InferenceClient> client_;
};

ServerProcess* VariantsServingTest::server_ = nullptr;

TEST_F(VariantsServingTest, MetadataListsTheVariantsWithAccuracyAndTiming) {
  auto meta = client_->ModelMetadata("fm");
  ASSERT_TRUE(meta.ok()) << meta.status();
  const auto& p = meta->parameters();
  EXPECT_EQ(p.at("variants").string_param(), "full,lite");
  EXPECT_EQ(p.at("default_variant").string_param(), "full");
  EXPECT_DOUBLE_EQ(p.at("variant.lite.top1_accuracy").double_param(), 0.8746);
  EXPECT_EQ(p.at("variant.lite.interval_cycles").int64_param(), 150);
  EXPECT_EQ(p.at("variant.full.accuracy_dataset").string_param(),
            "Fashion-MNIST test (10,000 images)");
}

TEST_F(VariantsServingTest, ResponsesNameTheVariantAndMetricsCountIt) {
  // No floor: the most accurate variant only.
  auto resp = client_->Infer(Request(3));
  ASSERT_TRUE(resp.ok()) << resp.status();
  EXPECT_EQ(resp->parameters().at("variant").string_param(), "full");
  // A floor both meet: without deadline pressure the most accurate answers.
  auto req = Request(2);
  (*req.mutable_parameters())["min_accuracy"].set_double_param(0.87);
  resp = client_->Infer(req);
  ASSERT_TRUE(resp.ok()) << resp.status();
  EXPECT_EQ(resp->parameters().at("variant").string_param(), "full");
  auto metrics = HttpGet(server_->metrics_url());
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  auto full = MetricValue(*metrics, "hgpipe_variant_images_total", R"(model="fm",variant="full")");
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_GE(*full, 5);
}

TEST_F(VariantsServingTest, AFloorNoVariantMeetsIsRefusedNamingTheBest) {
  auto req = Request(1);
  (*req.mutable_parameters())["min_accuracy"].set_double_param(0.9);
  auto resp = client_->Infer(req);
  EXPECT_EQ(resp.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(resp.status().message(),
              HasSubstr("no variant reaches the minimum accuracy 0.9000; the best available "
                        "is 'full' with top-1 0.8833"));
  for (const char* bad : {"1.5", "0", "x"}) {
    auto r = Request(1);
    (*r.mutable_parameters())["min_accuracy"].set_string_param(bad);
    auto got = client_->Infer(r);
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(got.status().message(), HasSubstr("parameter 'min_accuracy'")) << bad;
  }
  auto r = Request(1);
  (*r.mutable_parameters())["min_accuracy"].set_bool_param(true);
  EXPECT_EQ(client_->Infer(r).status().code(), absl::StatusCode::kInvalidArgument);
}

// fmnist_vit's real variants (models/fmnist_vit/config.pbtxt): the model
// loads with them, and each variant, when it answers, gives the logits
// tools/vit's integer reference computed for its golden vectors. A variant
// answers as a model's default (listed first); routing to it under load is
// the router's (tests/scheduler/variant_router_test.cc).
class FmnistVariantsTest : public ::testing::Test {
 protected:
  static constexpr const char* kVariants[] = {"skip1", "skip2", "skip3", "taylor"};

  static std::string ModelDir() { return SourceDir() + "/models/fmnist_vit"; }

  static void SetUpTestSuite() {
    // The real model as committed, and per variant a model that lists only
    // that variant (the most accurate one answers, so the only one does),
    // on device patches (the golden inputs).
    std::vector<std::pair<std::string, std::string>> models;
    for (const char* v : kVariants) {
      models.emplace_back(absl::StrCat("fm_", v), absl::StrCat(R"(
bitstream: "vit"
output { datatype: "FP32" }
variants { name: ")",
                                                               v, R"(" weights: ")", ModelDir(),
                                                               "/fmnist_vit-", v, R"(.hgvit" }
)"));
      models.back().second =
          absl::StrCat("name: \"", models.back().first, "\"", models.back().second);
    }
    const std::string repo = WriteModelRepository(models);
    fs::create_directory_symlink(ModelDir(), fs::path(repo) / "fmnist_vit");
    auto s = ServerProcess::Start({"--boards=sim:1", "--model-repository=" + repo});
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

  static ServerProcess* server_;
  std::unique_ptr<InferenceClient> client_;
};

ServerProcess* FmnistVariantsTest::server_ = nullptr;

TEST_F(FmnistVariantsTest, TheModelListsItsVariantsWithMeasuredAccuracy) {
  auto meta = client_->ModelMetadata("fmnist_vit");
  ASSERT_TRUE(meta.ok()) << meta.status();
  const auto& p = meta->parameters();
  EXPECT_EQ(p.at("variants").string_param(), "full,skip1,skip2,skip3,taylor");
  EXPECT_EQ(p.at("default_variant").string_param(), "full");
  const double full = p.at("variant.full.top1_accuracy").double_param();
  EXPECT_GT(full, 0.85);
  for (const char* v : kVariants) {
    const double top1 = p.at(absl::StrCat("variant.", v, ".top1_accuracy")).double_param();
    EXPECT_GT(top1, 0.5) << v;
    EXPECT_LE(top1, full) << v;
    EXPECT_THAT(p.at(absl::StrCat("variant.", v, ".accuracy_dataset")).string_param(),
                HasSubstr("10,000"))
        << v;
  }
}

TEST_F(FmnistVariantsTest, EachVariantAnswersWithTheReferenceLogits) {
  for (const char* v : kVariants) {
    SCOPED_TRACE(v);
    auto golden = accel::vit::ReadContainer(absl::StrCat(ModelDir(), "/golden-", v, ".hgvit"));
    ASSERT_TRUE(golden.ok()) << golden.status();
    auto weights = accel::vit::ReadContainer(absl::StrCat(ModelDir(), "/fmnist_vit-", v, ".hgvit"));
    ASSERT_TRUE(weights.ok()) << weights.status();
    double scale = 0;
    for (const auto& [k, val] : weights->manifest) {
      if (k == "logit_scale") {
        ASSERT_TRUE(absl::SimpleAtod(val, &scale));
      }
    }
    ASSERT_GT(scale, 0);
    const accel::vit::Tensor& in = golden->tensors.at("input");
    const std::vector<int64_t> words = golden->tensors.at("output").ToInt64();
    // 16 images: the first 8 test images and the last 8 (the stress inputs).
    const uint32_t n = 16, classes = 10;
    auto row_of = [&](uint32_t i) -> size_t { return i < 8 ? i : in.dims[0] - 16 + i; };
    accel::DeviceGeometry geo;
    geo.tokens = 28;
    geo.token_values = 28;
    geo.classes = classes;
    std::vector<int8_t> flat(size_t{n} * geo.input_bytes());
    for (uint32_t i = 0; i < n; ++i) {
      accel::UnpackImage(
          geo, reinterpret_cast<const int8_t*>(in.bytes.data()) + row_of(i) * geo.input_bytes(),
          flat.data() + i * geo.input_bytes());
    }
    auto req = clients::MakeInt8Request(absl::StrCat("fm_", v), "INPUT", {n, 28, 28}, flat);
    ASSERT_TRUE(req.ok());
    auto resp = client_->Infer(*req);
    ASSERT_TRUE(resp.ok()) << resp.status();
    EXPECT_EQ(resp->parameters().at("variant").string_param(), v);
    ASSERT_EQ(resp->raw_output_contents_size(), 1);
    const std::string& raw = resp->raw_output_contents(0);
    ASSERT_EQ(raw.size(), size_t{n} * classes * sizeof(float));
    int bad = 0;
    for (uint32_t i = 0; i < n; ++i) {
      const size_t row = row_of(i);
      for (uint32_t c = 0; c < classes; ++c) {
        float got;
        std::memcpy(&got, raw.data() + (size_t{i} * classes + c) * sizeof(float), sizeof(got));
        const int32_t logit =
            accel::DecodeLogitWord(static_cast<uint32_t>(words[row * classes + c]));
        const float want = static_cast<float>(logit) * static_cast<float>(scale);
        if (got != want && ++bad <= 3) {
          ADD_FAILURE() << "image " << row << " class " << c << ": " << got << " != " << want;
        }
      }
    }
    EXPECT_EQ(bad, 0);
  }
}

}  // namespace
}  // namespace hgpipe::testing
