// The HG-PIPE authors' own DeiT-tiny input, bit for bit: their host sends the
// board refs/patch_embed_input (hguq/HG-PIPE, MIT licence) for one ImageNet
// image. tests/preprocess/make_hgpipe_image.py reconstructed that image once
// from their data (data/hgpipe_deit_tiny_224.png, 224 x 224 RGB) and copied
// their 150,528 values (data/hgpipe_patch_embed_input.int8, token-major
// [196][768]); DeitTinyOptions() must turn the one into the other, flat and
// device-packed (the order their notebook DMAs).
#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "accel/bitstream.h"
#include "accel/device_layout.h"
#include "gtest/gtest.h"
#include "preprocess/preprocessor.h"

namespace hgpipe::preprocess {
namespace {

std::vector<uint8_t> ReadData(const std::string& name) {
  const char* root = std::getenv("HGPIPE_SOURCE_DIR");
  const std::string path =
      std::string(root != nullptr ? root : ".") + "/tests/preprocess/data/" + name;
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

// Values that differ, and the first one, for a readable failure.
std::string Compare(const std::vector<int8_t>& got, const std::vector<int8_t>& want) {
  if (got.size() != want.size()) return "sizes differ";
  size_t differ = 0, first = got.size();
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] != want[i]) {
      ++differ;
      first = std::min(first, i);
    }
  }
  if (differ == 0) return "";
  return std::to_string(differ) + " values differ, first at " + std::to_string(first) + " (token " +
         std::to_string(first / 768) + ", value " + std::to_string(first % 768) +
         "): " + std::to_string(got[first]) + " instead of " + std::to_string(want[first]);
}

class HgpipeGoldenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    png_ = ReadData("hgpipe_deit_tiny_224.png");
    const std::vector<uint8_t> bytes = ReadData("hgpipe_patch_embed_input.int8");
    expected_.assign(bytes.begin(), bytes.end());
    ASSERT_EQ(expected_.size(), 196u * 768u);
  }

  // DeiT-tiny's transform of an image already 224 x 224: no resize.
  static Options At224(OutputLayout layout) {
    Options o = DeitTinyOptions();
    o.resize = ResizeMode::kNone;
    o.output_layout = layout;
    return o;
  }

  std::vector<uint8_t> png_;
  std::vector<int8_t> expected_;
};

TEST_F(HgpipeGoldenTest, DeitTinyOptionsGiveTheAuthorsPatchEmbedInput) {
  auto p = Preprocessor::Create(At224(OutputLayout::kFlat));
  ASSERT_TRUE(p.ok()) << p.status();
  std::vector<int8_t> out(p->input_bytes(), 99);
  ASSERT_TRUE(p->EncodedToPatches(png_, absl::MakeSpan(out)).ok());
  EXPECT_EQ(Compare(out, expected_), "");
}

TEST_F(HgpipeGoldenTest, DevicePackedIsTheAuthorsDmaOrder) {
  auto p = Preprocessor::Create(At224(OutputLayout::kDevicePacked));
  ASSERT_TRUE(p.ok()) << p.status();
  std::vector<int8_t> out(p->input_bytes(), 99);
  ASSERT_TRUE(p->EncodedToPatches(png_, absl::MakeSpan(out)).ok());
  // The notebook's reshape(98, 2, 384, 2).transpose(0, 2, 1, 3), by hand.
  std::vector<int8_t> want(expected_.size());
  size_t i = 0;
  for (int a = 0; a < 98; ++a) {
    for (int c = 0; c < 384; ++c) {
      for (int b = 0; b < 2; ++b) {
        for (int d = 0; d < 2; ++d) want[i++] = expected_[((a * 2 + b) * 384 + c) * 2 + d];
      }
    }
  }
  EXPECT_EQ(Compare(out, want), "");
  // And accel's packing of the authors' flat values agrees.
  accel::DeviceGeometry g;
  g.tokens = 196;
  g.token_values = 768;
  std::vector<int8_t> packed(expected_.size());
  accel::PackImage(g, expected_.data(), packed.data());
  EXPECT_EQ(Compare(packed, want), "");
}

TEST_F(HgpipeGoldenTest, TheOtherOrdersDoNotMatch) {
  // The test can fail: HWC values or a zero token 0 give other values.
  Options hwc = At224(OutputLayout::kFlat);
  hwc.value_order = ValueOrder::kHwc;
  Options zero_cls = At224(OutputLayout::kFlat);
  zero_cls.cls_placeholder = ClsPlaceholder::kReplaceFirstPatch;
  for (const Options& o : {hwc, zero_cls}) {
    auto p = Preprocessor::Create(o);
    ASSERT_TRUE(p.ok()) << p.status();
    std::vector<int8_t> out(p->input_bytes());
    ASSERT_TRUE(p->EncodedToPatches(png_, absl::MakeSpan(out)).ok());
    EXPECT_NE(Compare(out, expected_), "") << o.DebugString();
  }
}

}  // namespace
}  // namespace hgpipe::preprocess
