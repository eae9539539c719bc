#include "preprocess/preprocessor.h"

#include <cmath>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "accel/bitstream.h"
#include "accel/device_layout.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "preprocess/image_decoder.h"
#include "preprocess/image_encoder.h"
#include "tests/preprocess/test_images.h"

namespace hgpipe::preprocess {
namespace {

using ::hgpipe::preprocess::testing::SmoothGray;
using ::hgpipe::preprocess::testing::SmoothRgb;
using ::testing::Each;
using ::testing::HasSubstr;

// Normalization and quantization that make q = v - 128 exactly: x = v / 255,
// x / (1/255) = v, + zero point -128. Lets layout tests read pixels back.
Options Identity(int height, int width, int channels, int patch, ClsPlaceholder cls) {
  Options o;
  o.height = height;
  o.width = width;
  o.channels = channels;
  o.patch_height = patch;
  o.patch_width = patch;
  o.cls_placeholder = cls;
  const int patches = (height / patch) * (width / patch);
  o.tokens = cls == ClsPlaceholder::kPrepend ? patches + 1 : patches;
  o.token_values = patch * patch * channels;
  o.value_order = ValueOrder::kHwc;
  o.resize = ResizeMode::kNone;
  o.mean = {0, 0, 0};
  o.stddev = {1, 1, 1};
  o.quant_scale = 1.0f / 255.0f;
  o.quant_zero_point = -128;
  return o;
}

// tools/vit/fmnist_data.py: 28x28 gray, patches of 4 rows x 7 columns, 28
// tokens of 28 values, token 0 (the top-left patch) the CLS placeholder,
// q = p - 128.
Options FashionMnist() {
  Options o;
  o.tokens = 28;
  o.token_values = 28;
  o.cls_placeholder = ClsPlaceholder::kReplaceFirstPatch;
  o.height = 28;
  o.width = 28;
  o.channels = 1;
  o.patch_height = 4;
  o.patch_width = 7;
  o.resize = ResizeMode::kExact;
  o.mean = {128.0f / 255.0f, 0, 0};
  o.stddev = {128.0f / 255.0f, 1, 1};
  o.quant_scale = 1.0f / 128.0f;
  o.quant_zero_point = 0;
  return o;
}

Preprocessor Make(const Options& o) {
  auto p = Preprocessor::Create(o);
  if (!p.ok()) {
    ADD_FAILURE() << p.status();
    return *Preprocessor::Create(DeitTinyOptions());  // keeps the test running
  }
  return *std::move(p);
}

// Expected flat output, built pixel by pixel (the opposite direction from the
// implementation, which walks tokens): pixel (y, x) channel c is in patch
// k = (y / ph) * (W / pw) + x / pw, which lands in token k + 1 (prepend), k
// (replace first patch; token 0 stays zero) or (k + 1) % patches (rotate),
// at value ((y % ph) * pw + x % pw) * C + c (HWC) or
// (c * ph + y % ph) * pw + x % pw (CHW).
std::vector<int8_t> ExpectedIdentityPatches(const Options& o, const std::vector<uint8_t>& hwc) {
  std::vector<int8_t> out(o.input_bytes(), 0);
  const int ph = o.patch_height;
  const int pw = o.patch_width;
  const int patches = (o.height / ph) * (o.width / pw);
  for (int y = 0; y < o.height; ++y) {
    for (int x = 0; x < o.width; ++x) {
      const int k = (y / ph) * (o.width / pw) + x / pw;
      int t = k;
      if (o.cls_placeholder == ClsPlaceholder::kPrepend) t = k + 1;
      if (o.cls_placeholder == ClsPlaceholder::kRotate) t = (k + 1) % patches;
      if (o.cls_placeholder == ClsPlaceholder::kReplaceFirstPatch && t == 0) continue;
      for (int c = 0; c < o.channels; ++c) {
        const int v = o.value_order == ValueOrder::kHwc ? ((y % ph) * pw + x % pw) * o.channels + c
                                                        : (c * ph + y % ph) * pw + x % pw;
        out[static_cast<size_t>(t) * o.token_values + v] =
            static_cast<int8_t>(hwc[(static_cast<size_t>(y) * o.width + x) * o.channels + c] - 128);
      }
    }
  }
  return out;
}

// R = y, G = x, B = a mix: every value tells where it came from.
std::vector<uint8_t> CoordinateImage(int height, int width, int channels) {
  std::vector<uint8_t> hwc(static_cast<size_t>(height) * width * channels);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      uint8_t* p = &hwc[(static_cast<size_t>(y) * width + x) * channels];
      if (channels == 1) {
        p[0] = static_cast<uint8_t>(y * width + x);
      } else {
        p[0] = static_cast<uint8_t>(y);
        p[1] = static_cast<uint8_t>(x);
        p[2] = static_cast<uint8_t>(3 * y + 7 * x + 1);
      }
    }
  }
  return hwc;
}

TEST(PreprocessorTest, IdentityQuantizationIsExact) {
  const Preprocessor p = Make(Identity(8, 8, 3, 4, ClsPlaceholder::kReplaceFirstPatch));
  for (int c = 0; c < 3; ++c) {
    for (int v = 0; v < 256; ++v) EXPECT_EQ(p.QuantizedValue(c, v), v - 128) << c << " " << v;
  }
}

TEST(PreprocessorTest, PatchLayoutRgbPrepend) {
  // 12 x 20 image, 4 x 4 patches: 3 rows x 5 columns of patches, 1 + 15 tokens.
  const Options o = Identity(12, 20, 3, 4, ClsPlaceholder::kPrepend);
  const Preprocessor p = Make(o);
  const std::vector<uint8_t> image = CoordinateImage(12, 20, 3);
  std::vector<int8_t> out(p.input_bytes(), 99);
  ASSERT_TRUE(p.PixelsToPatches(image, 12, 20, 3, absl::MakeSpan(out)).ok());
  EXPECT_EQ(out, ExpectedIdentityPatches(o, image));
  // Spot checks by hand: token 1 = patch (0, 0); its value 0 is pixel (0, 0) R.
  EXPECT_EQ(out[1 * 48 + 0], 0 - 128);
  // Token 7 = patch row 1, column 1; value ((1 * 4) + 2) * 3 + 1 is pixel
  // (4 + 1, 4 + 2) = (5, 6), channel G = x = 6.
  EXPECT_EQ(out[7 * 48 + 19], 6 - 128);
  // Last token 15 = patch (2, 4); its last value is pixel (11, 19) B.
  EXPECT_EQ(out[15 * 48 + 47],
            static_cast<int8_t>(static_cast<uint8_t>(3 * 11 + 7 * 19 + 1) - 128));
  for (int v = 0; v < 48; ++v) EXPECT_EQ(out[v], 0) << "CLS placeholder value " << v;
}

TEST(PreprocessorTest, PatchLayoutReplaceFirstPatch) {
  // 16 x 16 image, 4 x 4 patches: 16 tokens; token 0 replaces patch 0.
  const Options o = Identity(16, 16, 3, 4, ClsPlaceholder::kReplaceFirstPatch);
  const Preprocessor p = Make(o);
  const std::vector<uint8_t> image = CoordinateImage(16, 16, 3);
  std::vector<int8_t> out(p.input_bytes(), 99);
  ASSERT_TRUE(p.PixelsToPatches(image, 16, 16, 3, absl::MakeSpan(out)).ok());
  EXPECT_EQ(out, ExpectedIdentityPatches(o, image));
  // Token 5 = patch (1, 1); value 0 = pixel (4, 4), R = y = 4.
  EXPECT_EQ(out[5 * 48 + 0], 4 - 128);
}

TEST(PreprocessorTest, PatchLayoutChannelMajorRotated) {
  // HG-PIPE DeiT-tiny's layout at a small size: 12 x 8 image, 4 x 4 patches
  // (3 rows x 2 columns), token t = patch t - 1, token 0 = patch 5, values
  // channel-major.
  Options o = Identity(12, 8, 3, 4, ClsPlaceholder::kRotate);
  o.value_order = ValueOrder::kChw;
  const Preprocessor p = Make(o);
  const std::vector<uint8_t> image = CoordinateImage(12, 8, 3);
  std::vector<int8_t> out(p.input_bytes(), 99);
  ASSERT_TRUE(p.PixelsToPatches(image, 12, 8, 3, absl::MakeSpan(out)).ok());
  EXPECT_EQ(out, ExpectedIdentityPatches(o, image));
  // By hand: token 0 = patch 5 (row 2, column 1): value 0 is pixel (8, 4)
  // R = y = 8; value 16 + 5 is G of pixel (8 + 1, 4 + 1), x = 5.
  EXPECT_EQ(out[0], 8 - 128);
  EXPECT_EQ(out[16 + 5], 5 - 128);
  // Token 1 = patch 0: value 2 * 16 + 3 * 4 + 2 is B of pixel (3, 2).
  EXPECT_EQ(out[48 + 32 + 14], static_cast<int8_t>(3 * 3 + 7 * 2 + 1 - 128));
  // Token 4 = patch 3 (row 1, column 1): value 0 is pixel (4, 4), R = 4.
  EXPECT_EQ(out[4 * 48], 4 - 128);

  // HWC rotated, and CHW with the other placements, against the same model.
  for (ClsPlaceholder cls :
       {ClsPlaceholder::kPrepend, ClsPlaceholder::kReplaceFirstPatch, ClsPlaceholder::kRotate}) {
    for (ValueOrder order : {ValueOrder::kHwc, ValueOrder::kChw}) {
      // 15 patches + 1 or 8 patches: even token counts.
      const int h = cls == ClsPlaceholder::kPrepend ? 12 : 16;
      const int w = cls == ClsPlaceholder::kPrepend ? 20 : 8;
      Options q = Identity(h, w, 3, 4, cls);
      q.value_order = order;
      const std::vector<uint8_t> img = CoordinateImage(h, w, 3);
      std::vector<int8_t> got(q.input_bytes(), 99);
      ASSERT_TRUE(Make(q).PixelsToPatches(img, h, w, 3, absl::MakeSpan(got)).ok());
      EXPECT_EQ(got, ExpectedIdentityPatches(q, img)) << q.DebugString();
    }
  }
}

TEST(PreprocessorTest, ValueOrderDoesNotMatterForGray) {
  Options hwc = Identity(8, 8, 1, 4, ClsPlaceholder::kReplaceFirstPatch);
  Options chw = hwc;
  chw.value_order = ValueOrder::kChw;
  const std::vector<uint8_t> image = CoordinateImage(8, 8, 1);
  std::vector<int8_t> a(hwc.input_bytes()), b(chw.input_bytes());
  ASSERT_TRUE(Make(hwc).PixelsToPatches(image, 8, 8, 1, absl::MakeSpan(a)).ok());
  ASSERT_TRUE(Make(chw).PixelsToPatches(image, 8, 8, 1, absl::MakeSpan(b)).ok());
  EXPECT_EQ(a, b);
}

TEST(PreprocessorTest, PatchLayoutGray) {
  const Options o = Identity(28, 28, 1, 4, ClsPlaceholder::kPrepend);
  const Preprocessor p = Make(o);
  const std::vector<uint8_t> image = CoordinateImage(28, 28, 1);
  std::vector<int8_t> out(p.input_bytes(), 99);
  ASSERT_TRUE(p.PixelsToPatches(image, 28, 28, 1, absl::MakeSpan(out)).ok());
  EXPECT_EQ(out, ExpectedIdentityPatches(o, image));
}

TEST(PreprocessorTest, DevicePackedMatchesAccelPackImage) {
  for (ClsPlaceholder cls :
       {ClsPlaceholder::kPrepend, ClsPlaceholder::kReplaceFirstPatch, ClsPlaceholder::kRotate}) {
    Options o = Identity(12, 20, 3, 4, cls);
    if (cls != ClsPlaceholder::kPrepend) o = Identity(16, 16, 3, 4, cls);
    if (cls == ClsPlaceholder::kRotate) o.value_order = ValueOrder::kChw;
    const std::vector<uint8_t> image = CoordinateImage(o.height, o.width, 3);
    std::vector<int8_t> flat(o.input_bytes());
    ASSERT_TRUE(Make(o).PixelsToPatches(image, o.height, o.width, 3, absl::MakeSpan(flat)).ok());

    o.output_layout = OutputLayout::kDevicePacked;
    std::vector<int8_t> packed(o.input_bytes());
    ASSERT_TRUE(Make(o).PixelsToPatches(image, o.height, o.width, 3, absl::MakeSpan(packed)).ok());

    accel::DeviceGeometry g;
    g.tokens = o.tokens;
    g.token_values = o.token_values;
    std::vector<int8_t> expected(o.input_bytes());
    accel::PackImage(g, flat.data(), expected.data());
    EXPECT_EQ(packed, expected);
  }
}

TEST(PreprocessorTest, RectangularPatches) {
  // Gray 12 x 14, patches of 3 rows x 2 columns: a 4 x 7 grid, 28 tokens
  // (patch 0 replaced) of 6 values.
  Options o = Identity(12, 14, 1, 1, ClsPlaceholder::kReplaceFirstPatch);
  o.patch_height = 3;
  o.patch_width = 2;
  o.tokens = 28;
  o.token_values = 6;
  const Preprocessor p = Make(o);
  const std::vector<uint8_t> image = CoordinateImage(12, 14, 1);
  std::vector<int8_t> out(p.input_bytes(), 99);
  ASSERT_TRUE(p.PixelsToPatches(image, 12, 14, 1, absl::MakeSpan(out)).ok());
  EXPECT_EQ(out, ExpectedIdentityPatches(o, image));
  // Token 9 = patch row 1, column 2 (7 per row): rows 3..5, columns 4..5;
  // value 3 = (1, 1) within it = pixel (4, 5) = 4 * 14 + 5.
  EXPECT_EQ(out[9 * 6 + 3], 4 * 14 + 5 - 128);
}

TEST(PreprocessorTest, FashionMnistQuantizationIsPixelMinus128) {
  const Preprocessor p = Make(FashionMnist());
  for (int v = 0; v < 256; ++v) EXPECT_EQ(p.QuantizedValue(0, v), v - 128) << v;
  Options alternative = FashionMnist();  // the same with mean 0, std 1
  alternative.mean = {0, 0, 0};
  alternative.stddev = {1, 1, 1};
  alternative.quant_scale = 1.0f / 255.0f;
  alternative.quant_zero_point = -128;
  const Preprocessor p2 = Make(alternative);
  for (int v = 0; v < 256; ++v) EXPECT_EQ(p2.QuantizedValue(0, v), v - 128) << v;

  // A 28x28 image: token py * 4 + px holds rows 4py..4py+3, columns
  // 7px..7px+6, value iy * 7 + ix (fmnist_data.py); token 0 zeros.
  const std::vector<uint8_t> image = SmoothGray(28, 28);
  std::vector<int8_t> out(784, 99);
  ASSERT_TRUE(p.PixelsToPatches(image, 28, 28, 1, absl::MakeSpan(out)).ok());
  for (int v = 0; v < 28; ++v) EXPECT_EQ(out[v], 0);
  for (int py = 0; py < 7; ++py) {
    for (int px = 0; px < 4; ++px) {
      if (py == 0 && px == 0) continue;
      for (int iy = 0; iy < 4; ++iy) {
        for (int ix = 0; ix < 7; ++ix) {
          const int pixel = image[(py * 4 + iy) * 28 + px * 7 + ix];
          EXPECT_EQ(out[(py * 4 + px) * 28 + iy * 7 + ix], pixel - 128);
        }
      }
    }
  }
}

TEST(PreprocessorTest, DeitTinyQuantizationIsTheAuthorsCalibration) {
  // Scale 2.64 / 127: the normalized range [-2.1179, 2.6400] maps to
  // [-102, 127], the authors' calibrated input range.
  const Preprocessor p = Make(DeitTinyOptions());
  EXPECT_FLOAT_EQ(p.options().quant_scale, 0.020787402f);
  EXPECT_EQ(p.QuantizedValue(2, 255), 127);  // (1 - 0.406) / 0.225 = 2.64
  // -0.485 / 0.229 = -2.1179 -> -101.88
  EXPECT_EQ(p.QuantizedValue(0, 0), -102);
  // 0.515 / 0.229 = 2.2489 -> 108.19
  EXPECT_EQ(p.QuantizedValue(0, 255), 108);
  // (0.50196 - 0.456) / 0.224 = 0.2052 -> 9.87
  EXPECT_EQ(p.QuantizedValue(1, 128), 10);
}

TEST(PreprocessorTest, ImageNetNormalizationAndQuantization) {
  // Mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225).
  Options o = DeitTinyOptions();
  o.quant_scale = 1.0f / 32.0f;
  const Preprocessor p = Make(o);
  // By hand, q = round(((v / 255) - mean) / std * 32):
  EXPECT_EQ(p.QuantizedValue(0, 0), -68);   // -0.485 / 0.229 * 32 = -67.77
  EXPECT_EQ(p.QuantizedValue(0, 255), 72);  // 0.515 / 0.229 * 32 = 71.97
  EXPECT_EQ(p.QuantizedValue(1, 128),
            7);                             // (0.50196 - 0.456) / 0.224 * 32 = 6.566
  EXPECT_EQ(p.QuantizedValue(2, 255), 84);  // 0.594 / 0.225 * 32 = 84.48
  EXPECT_EQ(p.QuantizedValue(2, 0), -58);   // -0.406 / 0.225 * 32 = -57.74
  EXPECT_EQ(p.QuantizedValue(1, 116),
            0);  // (0.45490 - 0.456) / 0.224 * 32 = -0.157

  // Clamping: scale 1/64 doubles everything.
  o.quant_scale = 1.0f / 64.0f;
  const Preprocessor clamped = Make(o);
  EXPECT_EQ(clamped.QuantizedValue(2, 255), 127);  // 168.96
  EXPECT_EQ(clamped.QuantizedValue(0, 0), -128);   // -135.5
  EXPECT_EQ(clamped.QuantizedValue(1, 128), 13);   // 13.13

  // Zero point: added after rounding, then clamped.
  o.quant_scale = 1.0f / 32.0f;
  o.quant_zero_point = 50;
  const Preprocessor shifted = Make(o);
  EXPECT_EQ(shifted.QuantizedValue(0, 0), -18);    // -68 + 50
  EXPECT_EQ(shifted.QuantizedValue(2, 255), 127);  // 84 + 50 = 134
}

TEST(PreprocessorTest, RoundingIsHalfToEven) {
  // mean 0, std 1, scale 2/255 rounds v / 2 (exactly representable halves
  // only for some v; check those where float gives exactly k + 0.5).
  Options o = Identity(4, 4, 1, 2, ClsPlaceholder::kReplaceFirstPatch);
  o.quant_scale = 2.0f / 255.0f;
  o.quant_zero_point = 0;
  const Preprocessor p = Make(o);
  for (int v = 0; v < 256; ++v) {
    const float x = (static_cast<float>(v) / 255.0f - 0.0f) / 1.0f;
    const float y = x / (2.0f / 255.0f);
    if (y != std::floor(y) + 0.5f) continue;
    const int down = static_cast<int>(std::floor(y));
    const int even = down % 2 == 0 ? down : down + 1;
    EXPECT_EQ(p.QuantizedValue(0, v), std::min(even, 127)) << v << " -> " << y;
  }
}

TEST(PreprocessorTest, RgbToGrayUsesPilWeights) {
  Options o = Identity(2, 2, 1, 2, ClsPlaceholder::kReplaceFirstPatch);
  o.tokens = 2;  // 1 patch, replaced... needs 2 tokens: use a 2x4 image
  o.width = 4;
  const Preprocessor p = Make(o);
  // Pixels (row-major): red, green, blue, (10, 20, 30) / white, black, gray,
  // (200, 100, 50).
  const std::vector<uint8_t> rgb = {255, 0,   0,   0, 255, 0, 0,  0,  255, 10,  20,  30,
                                    255, 255, 255, 0, 0,   0, 77, 77, 77,  200, 100, 50};
  std::vector<int8_t> out(p.input_bytes());
  ASSERT_TRUE(p.PixelsToPatches(rgb, 2, 4, 3, absl::MakeSpan(out)).ok());
  // L = R * 0.299 + G * 0.587 + B * 0.114, rounded: token 1 = patch (0, 1)
  // = pixels (0, 2), (0, 3), (1, 2), (1, 3).
  EXPECT_EQ(out[4 + 0] + 128, 29);   // blue: 29.07
  EXPECT_EQ(out[4 + 1] + 128, 18);   // 2.99 + 11.74 + 3.42 = 18.15
  EXPECT_EQ(out[4 + 2] + 128, 77);   // gray stays gray
  EXPECT_EQ(out[4 + 3] + 128, 124);  // 59.8 + 58.7 + 5.7 = 124.2
  // Token 0 is the placeholder (patch (0, 0) with red 76, green 150).
  EXPECT_THAT(std::vector<int8_t>(out.begin(), out.begin() + 4), Each(0));
}

TEST(PreprocessorTest, GrayToRgbReplicatesAndRgbaDropsAlpha) {
  const Options o = Identity(4, 4, 3, 2, ClsPlaceholder::kReplaceFirstPatch);
  const Preprocessor p = Make(o);
  const std::vector<uint8_t> gray = CoordinateImage(4, 4, 1);
  std::vector<int8_t> out(p.input_bytes());
  ASSERT_TRUE(p.PixelsToPatches(gray, 4, 4, 1, absl::MakeSpan(out)).ok());
  std::vector<uint8_t> rgb;
  for (uint8_t v : gray) rgb.insert(rgb.end(), {v, v, v});
  EXPECT_EQ(out, ExpectedIdentityPatches(o, rgb));

  const std::vector<uint8_t> coords = CoordinateImage(4, 4, 3);
  std::vector<uint8_t> rgba;
  for (size_t i = 0; i < coords.size(); i += 3) {
    rgba.insert(rgba.end(), {coords[i], coords[i + 1], coords[i + 2], 0xEE});
  }
  ASSERT_TRUE(p.PixelsToPatches(rgba, 4, 4, 4, absl::MakeSpan(out)).ok());
  EXPECT_EQ(out, ExpectedIdentityPatches(o, coords));
}

TEST(PreprocessorTest, CenterCropWithoutResize) {
  // Shorter side already S: no resampling, only the crop. torchvision's
  // offsets: round((size - crop) / 2), half to even.
  Options o = Identity(8, 8, 3, 4, ClsPlaceholder::kReplaceFirstPatch);
  o.resize = ResizeMode::kShorterSideThenCenterCrop;
  o.resize_shorter_side = 10;
  const Preprocessor p = Make(o);
  struct Case {
    int height, width, top, left;
  };
  for (const Case& c : {Case{10, 10, 1, 1}, Case{10, 15, 1, 4},  // 3.5 -> 4
                        Case{10, 13, 1, 2},                      // 2.5 -> 2
                        Case{17, 10, 4, 1}}) {                   // 4.5 -> 4
    const std::vector<uint8_t> image = CoordinateImage(c.height, c.width, 3);
    std::vector<int8_t> out(p.input_bytes());
    ASSERT_TRUE(p.PixelsToPatches(image, c.height, c.width, 3, absl::MakeSpan(out)).ok());
    std::vector<uint8_t> crop;
    for (int y = 0; y < 8; ++y) {
      for (int x = 0; x < 8; ++x) {
        const uint8_t* px = &image[((y + c.top) * c.width + x + c.left) * 3];
        crop.insert(crop.end(), px, px + 3);
      }
    }
    EXPECT_EQ(out, ExpectedIdentityPatches(o, crop)) << c.height << "x" << c.width;
  }
}

TEST(PreprocessorTest, ExactResizeIsNoOpAtTargetSize) {
  Options o = Identity(8, 8, 3, 4, ClsPlaceholder::kReplaceFirstPatch);
  const std::vector<uint8_t> image = CoordinateImage(8, 8, 3);
  std::vector<int8_t> none(o.input_bytes()), exact(o.input_bytes());
  ASSERT_TRUE(Make(o).PixelsToPatches(image, 8, 8, 3, absl::MakeSpan(none)).ok());
  o.resize = ResizeMode::kExact;
  ASSERT_TRUE(Make(o).PixelsToPatches(image, 8, 8, 3, absl::MakeSpan(exact)).ok());
  EXPECT_EQ(none, exact);
}

TEST(PreprocessorTest, ResizeKeepsConstantImagesConstant) {
  for (ResizeFilter filter : {ResizeFilter::kBilinear, ResizeFilter::kBicubic}) {
    for (ResizeMode mode : {ResizeMode::kExact, ResizeMode::kShorterSideThenCenterCrop}) {
      Options o = Identity(16, 16, 3, 4, ClsPlaceholder::kReplaceFirstPatch);
      o.resize = mode;
      o.resize_shorter_side = 20;
      o.filter = filter;
      const Preprocessor p = Make(o);
      for (auto [h, w] : {std::pair{7, 9}, std::pair{40, 33}, std::pair{300, 17}}) {
        const std::vector<uint8_t> image(h * w * 3, 200);
        std::vector<int8_t> out(p.input_bytes());
        ASSERT_TRUE(p.PixelsToPatches(image, h, w, 3, absl::MakeSpan(out)).ok());
        EXPECT_THAT(std::vector<int8_t>(out.begin() + 48, out.end()), Each(200 - 128))
            << h << "x" << w;
      }
    }
  }
}

TEST(PreprocessorTest, DownscaleByTwoIsAlignedOnPixelCenters) {
  // v(x) = 4x, 56 -> 28 wide: output x' covers source pixels 2x' and 2x' + 1,
  // centered at 2x' + 0.5, so a symmetric filter gives 4 (2x' + 0.5) = 8x' + 2
  // away from the borders. A half-pixel misalignment would be off by 2 or more.
  Options o = Identity(28, 28, 1, 4, ClsPlaceholder::kPrepend);
  o.resize = ResizeMode::kExact;
  const Preprocessor p = Make(o);
  std::vector<uint8_t> image(56 * 56);
  for (int y = 0; y < 56; ++y) {
    for (int x = 0; x < 56; ++x) image[y * 56 + x] = static_cast<uint8_t>(4 * x);
  }
  std::vector<int8_t> out(p.input_bytes());
  ASSERT_TRUE(p.PixelsToPatches(image, 56, 56, 1, absl::MakeSpan(out)).ok());
  for (int y = 0; y < 28; ++y) {
    for (int x = 2; x < 26; ++x) {
      const int t = 1 + (y / 4) * 7 + x / 4;
      const int v = (y % 4) * 4 + x % 4;
      EXPECT_NEAR(out[t * 16 + v] + 128, 8 * x + 2, 1) << y << " " << x;
    }
  }
}

TEST(PreprocessorTest, ResizeThenCenterCropSamplesTheRightSourceRegion) {
  // 512 x 600 (h x w), S = 256: resized 256 x 300 (scale 1/2), crop 224 at
  // top 16, left 38. Output x maps to source center 2 (x + 38 + 0.5) - 0.5
  // = 2x + 76.5; the source is a ramp v = x * 255 / 599 (rounded), so the
  // output is about (2x + 76.5) * 255 / 599, and likewise vertically.
  Options o = Identity(224, 224, 3, 16, ClsPlaceholder::kReplaceFirstPatch);
  o.resize = ResizeMode::kShorterSideThenCenterCrop;
  o.resize_shorter_side = 256;
  const Preprocessor p = Make(o);
  const int h = 512, w = 600;
  std::vector<uint8_t> image(h * w * 3);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      uint8_t* px = &image[(y * w + x) * 3];
      px[0] = static_cast<uint8_t>(std::lround(x * 255.0 / 599));
      px[1] = static_cast<uint8_t>(std::lround(y * 255.0 / 511));
      px[2] = 9;
    }
  }
  std::vector<int8_t> out(p.input_bytes());
  ASSERT_TRUE(p.PixelsToPatches(image, h, w, 3, absl::MakeSpan(out)).ok());
  for (int y = 16; y < 224; y += 13) {  // skip patch 0 (the placeholder)
    for (int x = 0; x < 224; x += 7) {
      const int t = (y / 16) * 14 + x / 16;
      const int v = ((y % 16) * 16 + x % 16) * 3;
      EXPECT_NEAR(out[t * 768 + v] + 128, (2 * x + 76.5) * 255 / 599, 1.0) << y << " " << x;
      EXPECT_NEAR(out[t * 768 + v + 1] + 128, (2 * y + 32.5) * 255 / 511, 1.0) << y << " " << x;
      EXPECT_EQ(out[t * 768 + v + 2] + 128, 9);
    }
  }
}

TEST(PreprocessorTest, EncodedImagesEndToEnd) {
  // DeiT-tiny from a photo-sized JPEG (zero placeholder, scale 1/32 for the
  // tolerance below), fmnist from a 28x28 gray PNG.
  Options deit_options = DeitTinyOptions();
  deit_options.cls_placeholder = ClsPlaceholder::kReplaceFirstPatch;
  deit_options.quant_scale = 1.0f / 32.0f;
  const Preprocessor deit = Make(deit_options);
  const std::vector<uint8_t> rgb = SmoothRgb(500, 375);
  JpegSpec spec;
  spec.width = 500;
  spec.height = 375;
  auto jpeg = EncodeJpeg(rgb, spec);
  ASSERT_TRUE(jpeg.ok()) << jpeg.status();
  std::vector<int8_t> out(150'528, 99);
  ASSERT_TRUE(deit.EncodedToPatches(*jpeg, absl::MakeSpan(out)).ok());
  EXPECT_THAT(std::vector<int8_t>(out.begin(), out.begin() + 768), Each(0));

  // Against the raw pixels through the same pipeline (no JPEG scaling):
  // close, not equal (JPEG is lossy).
  Options full = deit_options;
  full.jpeg_scaled_decode = false;
  std::vector<int8_t> from_jpeg(150'528), from_pixels(150'528);
  ASSERT_TRUE(Make(full).EncodedToPatches(*jpeg, absl::MakeSpan(from_jpeg)).ok());
  ASSERT_TRUE(Make(full).PixelsToPatches(rgb, 375, 500, 3, absl::MakeSpan(from_pixels)).ok());
  int worst = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    worst = std::max(worst, std::abs(from_jpeg[i] - from_pixels[i]));
    worst = std::max(worst, std::abs(out[i] - from_pixels[i]));  // scaled decode
  }
  EXPECT_LE(worst,
            4);  // 4 int8 steps = 4 / 32 / 255 * 0.229 ... about 2 gray levels

  const Preprocessor fmnist = Make(FashionMnist());
  const std::vector<uint8_t> gray = SmoothGray(28, 28);
  PngSpec png_spec;
  png_spec.width = 28;
  png_spec.height = 28;
  png_spec.color_type = 0;
  auto png = EncodePng(gray, png_spec);
  ASSERT_TRUE(png.ok()) << png.status();
  std::vector<int8_t> fm(784), fm_pixels(784);
  ASSERT_TRUE(fmnist.EncodedToPatches(*png, absl::MakeSpan(fm)).ok());
  ASSERT_TRUE(fmnist.PixelsToPatches(gray, 28, 28, 1, absl::MakeSpan(fm_pixels)).ok());
  EXPECT_EQ(fm, fm_pixels);  // PNG is lossless
}

TEST(PreprocessorTest, Errors) {
  const Preprocessor p = Make(FashionMnist());
  const std::vector<uint8_t> gray(28 * 28, 1);
  std::vector<int8_t> out(784);

  std::vector<int8_t> small(783);
  absl::Status s = p.PixelsToPatches(gray, 28, 28, 1, absl::MakeSpan(small));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("output buffer holds 783 bytes, one image needs 784"));
  s = p.EncodedToPatches(std::vector<uint8_t>{1, 2, 3}, absl::MakeSpan(small));
  EXPECT_THAT(s.message(), HasSubstr("output buffer holds 783"));

  s = p.PixelsToPatches(gray, 28, 27, 1, absl::MakeSpan(out));
  EXPECT_THAT(s.message(),
              HasSubstr("raw pixels: 784 bytes for a height x width x channels of 28x27x1"));
  s = p.PixelsToPatches(gray.data(), 28, 28, 2, absl::MakeSpan(out));
  EXPECT_THAT(s.message(), HasSubstr("raw pixels: 2 channels"));
  s = p.PixelsToPatches(nullptr, 28, 28, 1, absl::MakeSpan(out));
  EXPECT_THAT(s.message(), HasSubstr("null"));
  s = p.PixelsToPatches(gray.data(), 0, 28, 1, absl::MakeSpan(out));
  EXPECT_THAT(s.message(), HasSubstr("must be positive"));

  Options limited = FashionMnist();
  limited.max_pixels = 28 * 28 - 1;
  s = Make(limited).PixelsToPatches(gray, 28, 28, 1, absl::MakeSpan(out));
  EXPECT_THAT(s.message(), HasSubstr("image too large: 28x28 = 784 pixels"));

  Options no_resize = FashionMnist();
  no_resize.resize = ResizeMode::kNone;
  const std::vector<uint8_t> bigger(30 * 28, 1);
  s = Make(no_resize).PixelsToPatches(bigger, 30, 28, 1, absl::MakeSpan(out));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("image is 28x30 (width x height), the model takes 28x28"));

  s = p.EncodedToPatches({}, absl::MakeSpan(out));
  EXPECT_THAT(s.message(), HasSubstr("empty image"));
  s = p.EncodedToPatches(std::vector<uint8_t>{'G', 'I', 'F', '8', '9', 'a', 0, 0},
                         absl::MakeSpan(out));
  EXPECT_THAT(s.message(), HasSubstr("unsupported image format GIF"));

  // Shorter side 256 makes a 1 x 100,000 strip 25,600,000 long.
  const Preprocessor deit = Make(DeitTinyOptions());
  std::vector<int8_t> deit_out(deit.input_bytes());
  const std::vector<uint8_t> strip(100'000, 5);
  s = deit.PixelsToPatches(strip, 100'000, 1, 1, absl::MakeSpan(deit_out));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("aspect ratio too extreme"));
  const std::vector<uint8_t> tall(20'000,
                                  5);  // 1 x 20,000: 5,120,000 long, fine
  EXPECT_TRUE(deit.PixelsToPatches(tall, 20'000, 1, 1, absl::MakeSpan(deit_out)).ok());

  Options bad = FashionMnist();
  bad.tokens = 29;
  auto created = Preprocessor::Create(bad);
  EXPECT_EQ(created.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(created.status().message(), HasSubstr("Options.tokens"));
}

// CheckEncoded (what a server refuses before queueing an image) refuses
// what the header shows, in the words EncodedToPatches would use, and lets
// through what only decoding finds.
TEST(PreprocessorTest, CheckEncodedRefusesWhatTheHeaderShows) {
  const Preprocessor deit = Make(DeitTinyOptions());
  JpegSpec spec;
  spec.width = 64;
  spec.height = 48;
  auto jpeg = EncodeJpeg(SmoothRgb(64, 48), spec);
  ASSERT_TRUE(jpeg.ok());
  const std::vector<uint8_t>& good = *jpeg;
  EXPECT_TRUE(deit.CheckEncoded(good).ok());

  std::vector<uint8_t> bomb = good;  // SOF0 declaring 65000 x 65000 pixels
  for (size_t i = 2; i + 9 < bomb.size(); ++i) {
    if (bomb[i] == 0xFF && bomb[i + 1] == 0xC0) {
      for (int k : {5, 7}) bomb[i + k] = 0xFD;
      for (int k : {6, 8}) bomb[i + k] = 0xE8;
      break;
    }
  }
  spec.channels = 4;
  auto cmyk = EncodeJpeg(std::vector<uint8_t>(64 * 48 * 4, 100), spec);
  ASSERT_TRUE(cmyk.ok());
  const std::vector<uint8_t> gif = {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0};
  const std::vector<uint8_t> header_cut(good.begin(), good.begin() + 20);
  std::vector<int8_t> out(deit.input_bytes());
  struct Case {
    std::vector<uint8_t> bytes;
    const char* what;
  } cases[] = {
      {bomb, "image too large: 65000x65000"}, {*cmyk, "unsupported JPEG color space"},
      {gif, "unsupported image format GIF"},  {{}, "empty image"},
      {header_cut, "truncated JPEG"},
  };
  for (const Case& c : cases) {
    const absl::Status checked = deit.CheckEncoded(c.bytes);
    EXPECT_EQ(checked.code(), absl::StatusCode::kInvalidArgument) << c.what;
    EXPECT_THAT(checked.message(), HasSubstr(c.what));
    // The same refusal as a decode's.
    const absl::Status decoded = deit.EncodedToPatches(c.bytes, absl::MakeSpan(out));
    EXPECT_EQ(decoded.message(), checked.message());
  }
  // Cut in the entropy-coded data: the header is sound, the decode is not.
  const std::vector<uint8_t> data_cut(good.begin(), good.begin() + good.size() * 3 / 4);
  EXPECT_TRUE(deit.CheckEncoded(data_cut).ok());
  EXPECT_THAT(deit.EncodedToPatches(data_cut, absl::MakeSpan(out)).message(),
              HasSubstr("truncated JPEG"));
}

TEST(PreprocessorTest, DecompressionBombIsRefusedBeforeAnyPixelBuffer) {
  // A small JPEG whose header declares 65535 x 65535 pixels: refused from
  // the header, by the region decoder and through the preprocessor; the
  // limit is the configurable max_pixels.
  JpegSpec spec;
  spec.width = 64;
  spec.height = 48;
  auto jpeg = EncodeJpeg(SmoothRgb(64, 48), spec);
  ASSERT_TRUE(jpeg.ok());
  std::vector<uint8_t> bomb = *jpeg;
  for (size_t i = 2; i + 9 < bomb.size(); ++i) {
    if (bomb[i] == 0xFF && bomb[i + 1] == 0xC0) {
      for (int k = 5; k <= 8; ++k) bomb[i + k] = 0xFF;
      break;
    }
  }
  ScratchBuffer buffer;
  int chooser_calls = 0;
  auto choose = [&](int w, int h) -> absl::StatusOr<Rect> {
    ++chooser_calls;
    return Rect{0, 0, w, h};
  };
  auto region = DecodeImageRegion(bomb, DecodeOptions(), choose, &buffer);
  EXPECT_EQ(region.status().code(), absl::StatusCode::kInvalidArgument);
  // libjpeg's own limit (65,500 a side) refuses it while parsing the header.
  EXPECT_THAT(region.status().message(),
              HasSubstr("image too large: JPEG: Maximum supported image dimension is 65500"));
  EXPECT_EQ(buffer.capacity(), 0u);
  EXPECT_EQ(chooser_calls, 0);

  const Preprocessor deit = Make(DeitTinyOptions());
  std::vector<int8_t> out(deit.input_bytes());
  absl::Status s = deit.EncodedToPatches(bomb, absl::MakeSpan(out));
  EXPECT_THAT(s.message(), HasSubstr("image too large"));
  // 65,000 a side passes libjpeg's limit and meets ours, from the header.
  for (size_t i = 2; i + 9 < bomb.size(); ++i) {
    if (bomb[i] == 0xFF && bomb[i + 1] == 0xC0) {
      bomb[i + 5] = bomb[i + 7] = 0xFD;
      bomb[i + 6] = bomb[i + 8] = 0xE8;
      break;
    }
  }
  s = deit.EncodedToPatches(bomb, absl::MakeSpan(out));
  EXPECT_THAT(s.message(), HasSubstr("image too large: 65000x65000 = 4225000000 pixels"));
  region = DecodeImageRegion(bomb, DecodeOptions(), choose, &buffer);
  EXPECT_EQ(buffer.capacity(), 0u);
  EXPECT_EQ(chooser_calls, 0);

  // The limit is configurable: the 64 x 48 original against a lower one.
  Options limited = DeitTinyOptions();
  limited.max_pixels = 64 * 48 - 1;
  s = Make(limited).EncodedToPatches(*jpeg, absl::MakeSpan(out));
  EXPECT_THAT(s.message(), HasSubstr("image too large: 64x48"));
  limited.max_pixels = 64 * 48;
  EXPECT_TRUE(Make(limited).EncodedToPatches(*jpeg, absl::MakeSpan(out)).ok());
}

TEST(PreprocessorTest, RegionDecodeChoosesFromTheScaledSize) {
  // 1920 x 1080 for DeiT-tiny decodes at 1/4 (480 x 270: the smallest scale
  // whose shorter side still covers 256) and reads only the middle: the
  // chooser sees the scaled size.
  JpegSpec spec;
  spec.width = 1920;
  spec.height = 1080;
  auto jpeg = EncodeJpeg(SmoothRgb(1920, 1080), spec);
  ASSERT_TRUE(jpeg.ok());
  DecodeOptions d;
  d.jpeg_scaled_decode = true;
  d.jpeg_min_shorter_side = 256;
  ScratchBuffer buffer;
  int seen_w = 0, seen_h = 0;
  auto choose = [&](int w, int h) -> absl::StatusOr<Rect> {
    seen_w = w;
    seen_h = h;
    return Rect{200, 100, 280, 150};
  };
  auto region = DecodeImageRegion(*jpeg, d, choose, &buffer);
  ASSERT_TRUE(region.ok()) << region.status();
  EXPECT_EQ(seen_w, 480);
  EXPECT_EQ(seen_h, 270);
  EXPECT_EQ(region->full_width, 480);
  EXPECT_EQ(region->full_height, 270);
  // The rectangle plus a margin, aligned by libjpeg: covers, but much less
  // than the whole.
  EXPECT_LE(region->x, 200);
  EXPECT_GE(region->x + region->view.width, 280);
  EXPECT_LE(region->y, 100);
  EXPECT_GE(region->y + region->view.height, 150);
  EXPECT_LT(region->view.width, 480 / 2);
  EXPECT_LT(region->view.height, 270 / 2);

  // An error from the chooser stops the decode and is returned.
  auto refuse = [](int, int) -> absl::StatusOr<Rect> {
    return absl::InvalidArgumentError("no thanks");
  };
  EXPECT_THAT(DecodeImageRegion(*jpeg, d, refuse, &buffer).status().message(),
              HasSubstr("no thanks"));
}

TEST(PreprocessorTest, ConcurrentCallsAgreeWithSerialOnes) {
  const Preprocessor p = Make(DeitTinyOptions());
  std::vector<std::vector<uint8_t>> inputs;
  for (auto [w, h] : {std::pair{500, 375}, std::pair{256, 256}, std::pair{300, 640}}) {
    JpegSpec spec;
    spec.width = w;
    spec.height = h;
    auto jpeg = EncodeJpeg(SmoothRgb(w, h), spec);
    ASSERT_TRUE(jpeg.ok());
    inputs.push_back(*jpeg);
    PngSpec png_spec;
    png_spec.width = w;
    png_spec.height = h;
    auto png = EncodePng(SmoothRgb(w, h), png_spec);
    ASSERT_TRUE(png.ok());
    inputs.push_back(*png);
  }
  inputs.push_back({0xFF, 0xD8, 0xFF, 0x00});  // bad, interleaved with good ones
  std::vector<std::vector<int8_t>> serial(inputs.size(), std::vector<int8_t>(p.input_bytes()));
  std::vector<bool> serial_ok(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    serial_ok[i] = p.EncodedToPatches(inputs[i], absl::MakeSpan(serial[i])).ok();
  }
  EXPECT_FALSE(serial_ok.back());

  constexpr int kThreads = 4;
  constexpr int kRounds = 3;
  std::vector<int> mismatches(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<int8_t> out(p.input_bytes());
      for (int r = 0; r < kRounds; ++r) {
        for (size_t k = 0; k < inputs.size(); ++k) {
          const size_t i = (k + t) % inputs.size();
          const bool ok = p.EncodedToPatches(inputs[i], absl::MakeSpan(out)).ok();
          if (ok != serial_ok[i] || (ok && out != serial[i])) ++mismatches[t];
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_THAT(mismatches, Each(0));
}

}  // namespace
}  // namespace hgpipe::preprocess
