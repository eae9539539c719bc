// Cross-check against Python: tests/preprocess/make_golden.py computes the
// expected int8 patches with Pillow + NumPy (torchvision's PIL pipeline) and
// with tools/vit/fmnist_data.py (the fmnist_vit model's definition). Equality
// is exact: the resampler reproduces Pillow's fixed-point arithmetic and the
// normalization is float32 step by step as torchvision's.
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "preprocess/preprocessor.h"

namespace hgpipe::preprocess {
namespace {

std::vector<uint8_t> ReadFile(const std::string& name) {
  const char* root = std::getenv("HGPIPE_SOURCE_DIR");
  const std::string path =
      std::string(root != nullptr ? root : ".") + "/tests/preprocess/data/" + name;
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

Options Photo(int height, int width, int shorter_side, ResizeFilter filter) {
  Options o = DeitTinyOptions();  // ImageNet mean / std
  o.quant_scale = 1.0f / 32.0f;   // make_golden.py's
  o.value_order = ValueOrder::kHwc;
  o.height = height;
  o.width = width;
  o.patch_height = o.patch_width = 4;
  o.tokens = (height / 4) * (width / 4);
  o.token_values = 48;
  o.cls_placeholder = ClsPlaceholder::kReplaceFirstPatch;
  o.resize_shorter_side = shorter_side;
  o.filter = filter;
  return o;
}

void ExpectGolden(const Options& options, const std::string& input,
                  const std::string& expected_file) {
  auto p = Preprocessor::Create(options);
  ASSERT_TRUE(p.ok()) << p.status();
  const std::vector<uint8_t> encoded = ReadFile(input);
  const std::vector<uint8_t> expected_bytes = ReadFile(expected_file);
  ASSERT_EQ(expected_bytes.size(), p->input_bytes()) << expected_file;
  const std::vector<int8_t> expected(expected_bytes.begin(), expected_bytes.end());
  std::vector<int8_t> out(p->input_bytes());
  ASSERT_TRUE(p->EncodedToPatches(encoded, absl::MakeSpan(out)).ok());
  int mismatches = 0, worst = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] != expected[i]) {
      ++mismatches;
      worst = std::max(worst, std::abs(out[i] - expected[i]));
    }
  }
  EXPECT_EQ(mismatches, 0) << expected_file << ": max difference " << worst;
}

TEST(GoldenTest, PhotoBilinearShorterSideAndCenterCrop) {
  // 64x48 -> shorter side 20: 26x20 -> center crop 16x16 at (top 2, left 5).
  ExpectGolden(Photo(16, 16, 20, ResizeFilter::kBilinear), "photo_64x48.png",
               "photo_bilinear.int8");
}

TEST(GoldenTest, PhotoBicubic) {
  ExpectGolden(Photo(16, 16, 20, ResizeFilter::kBicubic), "photo_64x48.png", "photo_bicubic.int8");
}

TEST(GoldenTest, PhotoUpscaleWithZeroPoint) {
  Options o = Photo(16, 24, 72, ResizeFilter::kBilinear);
  o.quant_scale = 1.0f / 48.0f;
  o.quant_zero_point = 3;
  ExpectGolden(o, "photo_64x48.png", "photo_upscale.int8");
}

TEST(GoldenTest, PhotoToGrayExactResize) {
  Options o;
  o.height = o.width = 28;
  o.channels = 1;
  o.patch_height = o.patch_width = 4;
  o.tokens = 50;
  o.token_values = 16;
  o.cls_placeholder = ClsPlaceholder::kPrepend;
  o.resize = ResizeMode::kExact;
  o.mean = {128.0f / 255.0f, 0, 0};
  o.stddev = {128.0f / 255.0f, 1, 1};
  o.quant_scale = 1.0f / 128.0f;
  o.quant_zero_point = 0;
  ExpectGolden(o, "photo_64x48.png", "photo_gray28.int8");
}

TEST(GoldenTest, FashionMnistModelDefinition) {
  // tools/vit/fmnist_data.py: 28x28 gray, 4x7 patches, 28 tokens, q = p - 128.
  Options o;
  o.height = o.width = 28;
  o.channels = 1;
  o.patch_height = 4;
  o.patch_width = 7;
  o.tokens = 28;
  o.token_values = 28;
  o.cls_placeholder = ClsPlaceholder::kReplaceFirstPatch;
  o.resize = ResizeMode::kExact;
  o.mean = {128.0f / 255.0f, 0, 0};
  o.stddev = {128.0f / 255.0f, 1, 1};
  o.quant_scale = 1.0f / 128.0f;
  o.quant_zero_point = 0;
  ExpectGolden(o, "fmnist_t10k_0.png", "fmnist_t10k_0.int8");
}

}  // namespace
}  // namespace hgpipe::preprocess
