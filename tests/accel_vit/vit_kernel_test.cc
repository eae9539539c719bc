#include "accel/vit/vit_kernel.h"

#include <cstring>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "accel/device_layout.h"
#include "accel/vit/weight_file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/accel_vit/test_paths.h"

namespace hgpipe::accel::vit {
namespace {

struct Golden {
  uint32_t images = 0;
  std::vector<int8_t> input;     // device order, images x input_bytes
  std::vector<uint32_t> output;  // device words, images x classes
  std::vector<int32_t> labels;   // true class, -1 for synthetic inputs
};

Golden LoadGolden(const std::string& path) {
  absl::StatusOr<Container> c = ReadContainer(path);
  EXPECT_TRUE(c.ok()) << c.status();
  Golden g;
  if (!c.ok()) return g;
  const Tensor& in = c->tensors.at("input");
  const Tensor& out = c->tensors.at("output");
  g.images = in.dims.at(0);
  g.input.resize(in.bytes.size());
  std::memcpy(g.input.data(), in.bytes.data(), in.bytes.size());
  for (int64_t v : out.ToInt64()) g.output.push_back(static_cast<uint32_t>(v));
  for (int64_t v : c->tensors.at("true_label").ToInt64()) {
    g.labels.push_back(static_cast<int32_t>(v));
  }
  return g;
}

class FmnistKernelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::shared_ptr<const VitKernel>> k = LoadVitKernel(FmnistWeightsPath());
    ASSERT_TRUE(k.ok()) << k.status();
    kernel_ = *k;
    golden_ = LoadGolden(FmnistGoldenPath());
    ASSERT_GT(golden_.images, 0u);
    ASSERT_EQ(golden_.input.size(), golden_.images * kernel_->manifest().geometry.input_bytes());
  }

  // Computes images [first, first + n) of the golden set.
  std::vector<uint32_t> Run(const VitKernel& k, uint32_t first, uint32_t n) const {
    const DeviceGeometry& g = k.manifest().geometry;
    std::vector<uint32_t> out(size_t{n} * g.output_words(), 0xDEADBEEF);
    k.Compute(golden_.input.data() + first * g.input_bytes(), n, out.data());
    return out;
  }

  void ExpectMatches(const std::vector<uint32_t>& got, uint32_t first, uint32_t n) const {
    const size_t c = kernel_->manifest().geometry.classes;
    int mismatches = 0;
    for (size_t i = 0; i < size_t{n} * c; ++i) {
      const uint32_t want = golden_.output[first * c + i];
      if (got[i] != want && ++mismatches <= 5) {
        ADD_FAILURE() << "image " << first + i / c << " class " << i % c << ": got logit "
                      << DecodeLogitWord(got[i]) << ", golden " << DecodeLogitWord(want);
      }
    }
    EXPECT_EQ(mismatches, 0);
  }

  std::shared_ptr<const VitKernel> kernel_;
  Golden golden_;
};

TEST_F(FmnistKernelTest, ManifestCarriesGeometryTimingScaleAndLabels) {
  const BitstreamManifest& m = kernel_->manifest();
  EXPECT_EQ(m.name, "fmnist_vit");
  EXPECT_EQ(m.geometry.tokens, 28u);
  EXPECT_EQ(m.geometry.token_values, 28u);
  EXPECT_EQ(m.geometry.classes, 10u);
  EXPECT_TRUE(m.geometry.Validate().ok());
  EXPECT_TRUE(m.timing.Validate().ok());
  EXPECT_EQ(m.timing.clock_hz, 425e6);
  EXPECT_GT(kernel_->logit_scale(), 0);
  EXPECT_DOUBLE_EQ(kernel_->input_scale(), 1.0 / 128);
  EXPECT_THAT(kernel_->labels(),
              ::testing::ElementsAre("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                     "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"));
}

TEST_F(FmnistKernelTest, MatchesGoldenVectorsBitForBit) {
  ExpectMatches(Run(*kernel_, 0, golden_.images), 0, golden_.images);
}

TEST_F(FmnistKernelTest, MatchesGoldenVectorsOneImageAtATime) {
  for (uint32_t i = 0; i < golden_.images; ++i) {
    ExpectMatches(Run(*kernel_, i, 1), i, 1);
  }
}

TEST_F(FmnistKernelTest, MatchesGoldenVectorsInSmallChunks) {
  absl::StatusOr<Container> c = ReadContainer(FmnistWeightsPath());
  ASSERT_TRUE(c.ok());
  absl::StatusOr<VitWeights> w = VitWeightsFromContainer(*c, "fmnist");
  ASSERT_TRUE(w.ok());
  VitKernel::Options options;
  options.chunk_images = 3;
  absl::StatusOr<std::shared_ptr<const VitKernel>> k = VitKernel::Create(*std::move(w), options);
  ASSERT_TRUE(k.ok()) << k.status();
  ExpectMatches(Run(**k, 0, golden_.images), 0, golden_.images);
}

TEST_F(FmnistKernelTest, ConcurrentComputeGivesTheSameWords) {
  std::vector<std::vector<uint32_t>> outs(4);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < outs.size(); ++i) {
    threads.emplace_back([&, i] { outs[i] = Run(*kernel_, 0, golden_.images); });
  }
  for (std::thread& t : threads) t.join();
  for (const auto& out : outs) ExpectMatches(out, 0, golden_.images);
}

TEST_F(FmnistKernelTest, ClassifiesTheGoldenTestImages) {
  const size_t c = kernel_->manifest().geometry.classes;
  const std::vector<uint32_t> out = Run(*kernel_, 0, golden_.images);
  int labelled = 0, correct = 0;
  for (uint32_t i = 0; i < golden_.images; ++i) {
    if (golden_.labels[i] < 0) continue;
    ++labelled;
    size_t best = 0;
    for (size_t j = 1; j < c; ++j) {
      if (DecodeLogitWord(out[i * c + j]) > DecodeLogitWord(out[i * c + best])) {
        best = j;
      }
    }
    correct += static_cast<int>(best) == golden_.labels[i];
  }
  ASSERT_GT(labelled, 0);
  // The model scores about 88 % on the full test set.
  EXPECT_GE(correct * 100, labelled * 75) << correct << " of " << labelled;
}

// A model's variants rank by the accuracy their weight files state
// (docs/serving.md, "Variants"): optional keys, both or neither.
TEST(VitWeightsTest, MeasuredAccuracyIsReadFromTheManifest) {
  absl::StatusOr<Container> c = ReadContainer(FmnistWeightsPath());
  ASSERT_TRUE(c.ok()) << c.status();
  // The committed file states its accuracy (it is fmnist_vit's first
  // variant); without the keys a file is unmeasured.
  std::erase_if(c->manifest, [](const auto& kv) {
    return kv.first == "top1_accuracy" || kv.first == "accuracy_dataset";
  });
  absl::StatusOr<VitWeights> plain = VitWeightsFromContainer(*c, "fmnist");
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_FALSE(plain->spec.ToManifest().accuracy.measured());

  Container with = *c;
  with.manifest.emplace_back("top1_accuracy", "0.8833");
  with.manifest.emplace_back("accuracy_dataset", "Fashion-MNIST test");
  absl::StatusOr<VitWeights> w = VitWeightsFromContainer(with, "fmnist");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_DOUBLE_EQ(w->spec.ToManifest().accuracy.top1, 0.8833);
  EXPECT_EQ(w->spec.ToManifest().accuracy.dataset, "Fashion-MNIST test");

  for (const auto& [key, value, want] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"top1_accuracy", "1.5", "accuracy.top1 must be a fraction"},
           {"top1_accuracy", "high", "accuracy.top1 must be a fraction"},
           {"accuracy_dataset", "test", "accuracy.top1: required"},
       }) {
    Container bad = *c;
    bad.manifest.emplace_back(key, value);
    if (key == "top1_accuracy") bad.manifest.emplace_back("accuracy_dataset", "d");
    absl::StatusOr<VitWeights> r = VitWeightsFromContainer(bad, "fmnist");
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << value;
    EXPECT_THAT(r.status().message(), ::testing::HasSubstr(want)) << value;
  }
}

TEST(LoadVitKernelTest, MissingFileIsNotFound) {
  absl::StatusOr<std::shared_ptr<const VitKernel>> k = LoadVitKernel("/nonexistent/model.hgvit");
  EXPECT_EQ(k.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(k.status().message(), ::testing::HasSubstr("/nonexistent/model.hgvit"));
}

}  // namespace
}  // namespace hgpipe::accel::vit
