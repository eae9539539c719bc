#include "server/canary.h"

#include <filesystem>
#include <fstream>
#include <string>

#include "accel/vit/weight_file.h"
#include "gtest/gtest.h"
#include "server/model_repository.h"

namespace hgpipe::server {
namespace {

namespace fs = std::filesystem;

ModelEntry Load(const std::string& root, const std::string& name) {
  absl::StatusOr<ModelEntry> e = LoadModelDirectory(root, name, ResolveEmulatedBitstream);
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? *std::move(e) : ModelEntry();
}

TEST(CanaryLoaderTest, VerifyGetsItsHostComputedCanary) {
  const ModelEntry e = Load(HGPIPE_TEST_SOURCE_DIR "/models", "verify");
  absl::StatusOr<std::shared_ptr<const accel::Canary>> c = LoadModelCanary(e);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_NE(*c, nullptr);
  EXPECT_EQ((*c)->source, "verify digest");
}

// A golden.hgvit dropped into a model's directory is its canary, generically
// (here a verify model: its golden output is the verify kernel's own).
class GoldenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("canary_test_" + std::to_string(getpid()));
    fs::create_directories(dir_ / "v");
    std::ofstream(dir_ / "v" / "config.pbtxt") << "name: \"v\" bitstream: \"verify\"";
    entry_ = Load(dir_.string(), "v");
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A golden file with `images` copies of the verify canary's image; the
  // output of image 0 altered in word `bad` (-1: none).
  void WriteGolden(uint32_t images, int bad) {
    const accel::DeviceGeometry g = entry_.manifest.geometry;
    const accel::Canary v = accel::MakeVerifyCanary(g);
    accel::vit::Container c;
    accel::vit::Tensor in, out;
    in.dtype = accel::vit::DType::kInt8;
    in.dims = {images, static_cast<uint32_t>(g.input_bytes())};
    out.dtype = accel::vit::DType::kInt32;
    out.dims = {images, g.classes};
    for (uint32_t i = 0; i < images; ++i) {
      in.bytes.insert(in.bytes.end(), v.input.begin(), v.input.end());
      std::vector<uint32_t> words = v.output;
      if (i == 0 && bad >= 0) words[bad] ^= 1;
      const auto* b = reinterpret_cast<const uint8_t*>(words.data());
      out.bytes.insert(out.bytes.end(), b, b + words.size() * 4);
    }
    c.manifest = {{"model", "v"}, {"images", std::to_string(images)}};
    c.tensors["input"] = in;
    c.tensors["output"] = out;
    std::ofstream(dir_ / "v" / kGoldenFile, std::ios::binary) << accel::vit::SerializeContainer(c);
  }

  fs::path dir_;
  ModelEntry entry_;
};

TEST_F(GoldenTest, GoldenFileInTheModelDirectoryIsItsCanary) {
  WriteGolden(3, -1);
  absl::StatusOr<std::shared_ptr<const accel::Canary>> c = LoadModelCanary(entry_);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_NE(*c, nullptr);
  EXPECT_EQ((*c)->source, (dir_ / "v" / kGoldenFile).string());
  EXPECT_EQ((*c)->images, kCanaryImages);
  EXPECT_EQ((*c)->output, accel::MakeVerifyCanary(entry_.manifest.geometry).output);
}

TEST_F(GoldenTest, GoldenFileTheKernelDisagreesWithGivesNoCanary) {
  WriteGolden(1, 5);
  absl::StatusOr<std::shared_ptr<const accel::Canary>> c = LoadModelCanary(entry_);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(*c, nullptr);
}

TEST_F(GoldenTest, MalformedGoldenFileFailsTheLoadNamingIt) {
  std::ofstream(dir_ / "v" / kGoldenFile) << "not a container";
  absl::StatusOr<std::shared_ptr<const accel::Canary>> c = LoadModelCanary(entry_);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("golden.hgvit: canary"), absl::string_view::npos)
      << c.status();
}

}  // namespace
}  // namespace hgpipe::server
