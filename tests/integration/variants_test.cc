// A model with bitstream variants over the wire (docs/serving.md,
// "Variants"): metadata lists them, responses name the variant that
// answered, the `min_accuracy` parameter is honoured and checked, and the
// metrics count images per variant. Routing under deadlines and board moves
// are tested on the virtual clock (tests/scheduler/variant_router_test.cc,
// tests/plan/simulation_test.cc).
#include <csignal>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "accel/vit/weight_file.h"
#include "clients/client.h"
#include "clients/tensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server_process.h"

namespace hgpipe::testing {
namespace {

using clients::InferenceClient;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

// fmnist_vit's weights with a measured accuracy (and, for `lite`, a shorter
// interval): two variants that agree on inputs and outputs.
void WriteVariantWeights(const fs::path& path, const std::string& top1,
                         const std::string& interval) {
  auto c = accel::vit::ReadContainer(
      absl::StrCat(HGPIPE_TEST_SOURCE_DIR, "/models/fmnist_vit/fmnist_vit.hgvit"));
  ASSERT_TRUE(c.ok()) << c.status();
  for (auto& [k, v] : c->manifest) {
    if (k == "interval_cycles" && !interval.empty()) v = interval;
  }
  c->manifest.emplace_back("top1_accuracy", top1);
  c->manifest.emplace_back("accuracy_dataset", "Fashion-MNIST test (10,000 images)");
  std::ofstream(path, std::ios::binary) << accel::vit::SerializeContainer(*c);
}

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

}  // namespace
}  // namespace hgpipe::testing
