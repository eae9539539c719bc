// The fused, vectorized pass equals the scalar reference path (resample to
// an image, then patchify through the lookup table) bit for bit, over image
// sizes, windows, filters, channel counts, placements and layouts.
#include "preprocess/fused_pass.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "accel/bitstream.h"
#include "accel/device_layout.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "preprocess/image_encoder.h"
#include "preprocess/preprocessor.h"
#include "preprocess/resample.h"
#include "preprocess/simd_kernels.h"
#include "tests/preprocess/test_images.h"

namespace hgpipe::preprocess {
namespace {

std::vector<uint8_t> Noise(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& x : v) x = static_cast<uint8_t>(rng());
  return v;
}

// Runs `o` both ways on raw pixels and compares every value.
void ExpectFusedEqualsScalar(Options o, const std::vector<uint8_t>& pixels, int height, int width,
                             int channels) {
  ASSERT_TRUE(FusedPassApplies(o)) << o.DebugString();
  o.fused_pass = true;
  auto fused = Preprocessor::Create(o);
  ASSERT_TRUE(fused.ok()) << fused.status();
  o.fused_pass = false;
  auto scalar = Preprocessor::Create(o);
  ASSERT_TRUE(scalar.ok()) << scalar.status();
  std::vector<int8_t> a(o.input_bytes(), 1), b(o.input_bytes(), 2);
  ASSERT_TRUE(fused->PixelsToPatches(pixels, height, width, channels, absl::MakeSpan(a)).ok());
  ASSERT_TRUE(scalar->PixelsToPatches(pixels, height, width, channels, absl::MakeSpan(b)).ok());
  int differ = 0;
  for (size_t i = 0; i < a.size(); ++i) differ += a[i] != b[i];
  EXPECT_EQ(differ, 0) << o.DebugString() << " on " << width << "x" << height << "x" << channels;
}

TEST(SimdKernelsTest, LookupRowIsTheTable) {
  std::vector<int8_t> table(256);
  for (int v = 0; v < 256; ++v) table[v] = static_cast<int8_t>((v * 37 + 11) % 256 - 128);
  // Every byte value, at every offset of a vector and in the scalar tail.
  std::vector<uint8_t> in(3 * 256 + 5);
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<uint8_t>(i * 7 + i / 256);
  for (int start : {0, 1, 5}) {
    const int n = static_cast<int>(in.size()) - start;
    std::vector<int8_t> out(n);
    simd::LookupRow(in.data() + start, n, table.data(), out.data());
    for (int i = 0; i < n; ++i) ASSERT_EQ(out[i], table[in[start + i]]) << start << " " << i;
  }
}

TEST(SimdKernelsTest, VerticalRowClipsAsPillow) {
  // Sums below 0, inside and at or above 256 steps (coefficients in
  // Pillow's range: positive parts sum to at most 1.5 * 2^22).
  const int n = 37;
  const std::vector<uint8_t> a = Noise(n, 1), b = Noise(n, 2), c = Noise(n, 3);
  const uint8_t* rows[] = {a.data(), b.data(), c.data()};
  for (const std::array<int32_t, 3> k : {std::array<int32_t, 3>{-3 << 20, 5 << 20, 1 << 20},
                                         std::array<int32_t, 3>{1 << 21, 1 << 21, 1 << 21},
                                         std::array<int32_t, 3>{-(1 << 22), 1 << 20, 0}}) {
    std::vector<uint8_t> out(n);
    simd::VerticalRow(rows, k.data(), 3, n, out.data());
    for (int i = 0; i < n; ++i) {
      int64_t sum = (1 << 21) + int64_t{k[0]} * a[i] + int64_t{k[1]} * b[i] + int64_t{k[2]} * c[i];
      const int64_t want = std::clamp<int64_t>(sum >> 22, 0, 255);
      ASSERT_EQ(out[i], want) << i;
    }
  }
}

TEST(SimdKernelsTest, DeinterleaveRgbAndRgba) {
  for (int stride : {3, 4}) {
    const int n = 77;
    const std::vector<uint8_t> in = Noise(static_cast<size_t>(n) * stride, stride);
    std::vector<uint8_t> r(n), g(n), b(n);
    simd::DeinterleaveRgb(in.data(), stride, n, r.data(), g.data(), b.data());
    for (int i = 0; i < n; ++i) {
      ASSERT_EQ(r[i], in[i * stride]);
      ASSERT_EQ(g[i], in[i * stride + 1]);
      ASSERT_EQ(b[i], in[i * stride + 2]);
    }
  }
}

// The device order of two tokens' rows is the board's (accel::PackImage),
// for row widths with and without a vector's worth of pairs, rows read at a
// stride and a zero row read at stride 0.
TEST(SimdKernelsTest, InterleavePairRowsIsTheDeviceOrder) {
  for (int row_bytes : {2, 4, 14, 16, 18, 34, 64}) {
    constexpr int kRows = 3;
    constexpr int kStride = 100;
    const std::vector<uint8_t> noise = Noise(2 * kRows * kStride, row_bytes);
    const auto* a = reinterpret_cast<const int8_t*>(noise.data());
    const int8_t* b = a + kRows * kStride;
    std::vector<int8_t> got(2 * kRows * row_bytes, 99);
    simd::InterleavePairRows(a, kStride, b, kStride, kRows, row_bytes, got.data());
    // The same two tokens, flat, through the board's packing.
    accel::DeviceGeometry g;
    g.tokens = 2;
    g.token_values = kRows * row_bytes;
    std::vector<int8_t> flat(2 * g.token_values), want(flat.size());
    for (int t = 0; t < 2; ++t) {
      for (int r = 0; r < kRows; ++r) {
        std::memcpy(&flat[(t * kRows + r) * row_bytes], (t == 0 ? a : b) + r * kStride, row_bytes);
      }
    }
    accel::PackImage(g, flat.data(), want.data());
    EXPECT_EQ(got, want) << row_bytes << " bytes a row";
    const std::vector<int8_t> zeros(row_bytes, 0);
    simd::InterleavePairRows(zeros.data(), 0, b, kStride, kRows, row_bytes, got.data());
    for (int r = 0; r < kRows; ++r) std::memset(&flat[r * row_bytes], 0, row_bytes);
    accel::PackImage(g, flat.data(), want.data());
    EXPECT_EQ(got, want) << row_bytes << " bytes a row, zero token";
  }
}

TEST(SimdKernelsTest, HorizontalRowMaddEqualsHorizontalRow) {
  // Downscales (many taps of small weight), near 1 (few taps, one near
  // 1.0) and upscales (bicubic's negative lobes), both filters; outputs not
  // a multiple of 8 leave a tail for the 32-bit path.
  int split_used = 0;
  for (ResizeFilter f : {ResizeFilter::kBicubic, ResizeFilter::kBilinear}) {
    for (auto [in, out] : {std::pair{375, 256}, std::pair{400, 256}, std::pair{500, 341},
                           std::pair{270, 256}, std::pair{256, 255}, std::pair{100, 229},
                           std::pair{33, 224}, std::pair{900, 300}, std::pair{2000, 230}}) {
      Taps taps;
      const int count = std::min(out, 227);
      ComputeTaps(in, out, (out - count) / 2, count, f, &taps);
      split_used += !taps.madd.hi.empty();
      const int first = taps.first[0];
      for (int& x : taps.first) x -= first;
      std::vector<uint8_t> row = Noise(static_cast<size_t>(in) + 64 + taps.stride, in + out);
      for (int extreme : {0, 255}) {
        // Also all-0 and all-255 rows, the clipping edges.
        if (extreme == 255) std::fill(row.begin(), row.begin() + in, 255);
        std::vector<uint8_t> a(count), b(count);
        simd::HorizontalRow(row.data() + first, taps.first.data(), taps.taps.data(),
                            taps.coefficients.data(), taps.stride, count, a.data());
        simd::HorizontalRowMadd(row.data() + first, taps.first.data(), taps.taps.data(),
                                taps.coefficients.data(), taps.stride, taps.madd, count, b.data());
        EXPECT_EQ(a, b) << in << " -> " << out << " filter " << static_cast<int>(f);
      }
    }
  }
  EXPECT_GT(split_used, 8);  // the 16-bit path was exercised
}

TEST(FusedPassTest, DeitTinyFromPhotoSizes) {
  for (auto [w, h] :
       {std::pair{500, 375}, std::pair{375, 500}, std::pair{600, 400}, std::pair{256, 256},
        std::pair{224, 224}, std::pair{230, 1000}, std::pair{120, 90}, std::pair{1023, 257}}) {
    for (ResizeFilter f : {ResizeFilter::kBicubic, ResizeFilter::kBilinear}) {
      for (OutputLayout layout : {OutputLayout::kFlat, OutputLayout::kDevicePacked}) {
        Options o = DeitTinyOptions();
        o.filter = f;
        o.output_layout = layout;
        ExpectFusedEqualsScalar(o, testing::SmoothRgb(w, h), h, w, 3);
        ExpectFusedEqualsScalar(o, Noise(static_cast<size_t>(w) * h * 3, w + h), h, w, 3);
      }
    }
  }
}

TEST(FusedPassTest, PlacementsLayoutsAndGray) {
  for (ClsPlaceholder cls :
       {ClsPlaceholder::kPrepend, ClsPlaceholder::kReplaceFirstPatch, ClsPlaceholder::kRotate}) {
    for (OutputLayout layout : {OutputLayout::kFlat, OutputLayout::kDevicePacked}) {
      for (int channels : {1, 3}) {
        // 20 x 12 image of 4 x 4 patches: 15 patches (+1 when prepended);
        // 16 x 16: 16 patches. Token counts must be even.
        const bool prepend = cls == ClsPlaceholder::kPrepend;
        Options o;
        o.height = prepend ? 12 : 16;
        o.width = prepend ? 20 : 16;
        o.channels = channels;
        o.patch_height = o.patch_width = 4;
        o.token_values = 16 * channels;
        o.tokens = (o.height / 4) * (o.width / 4) + (prepend ? 1 : 0);
        o.cls_placeholder = cls;
        o.value_order = ValueOrder::kChw;
        o.output_layout = layout;
        o.resize = ResizeMode::kShorterSideThenCenterCrop;
        o.resize_shorter_side = 23;
        o.quant_scale = 1.0f / 40;
        o.quant_zero_point = 5;
        for (int src_channels : {1, 3, 4}) {
          ExpectFusedEqualsScalar(o, Noise(size_t{61} * 47 * src_channels, src_channels), 47, 61,
                                  src_channels);
        }
        o.resize = ResizeMode::kExact;
        ExpectFusedEqualsScalar(o, Noise(size_t{30} * 33 * 3, 9), 30, 33, 3);
        o.resize = ResizeMode::kNone;
        ExpectFusedEqualsScalar(o, Noise(static_cast<size_t>(o.height) * o.width * 3, 10), o.height,
                                o.width, 3);
      }
    }
  }
}

TEST(FusedPassTest, OddPatchWidthsAndUpscaling) {
  // fmnist_vit's 4 x 7 patches (odd width, device-packed pairs straddle
  // rows), upscaled from a smaller image.
  Options o;
  o.height = o.width = 28;
  o.channels = 1;
  o.patch_height = 4;
  o.patch_width = 7;
  o.tokens = 28;
  o.token_values = 28;
  o.resize = ResizeMode::kExact;
  o.mean = {128.0f / 255.0f, 0, 0};
  o.stddev = {128.0f / 255.0f, 1, 1};
  o.quant_scale = 1.0f / 128.0f;
  for (OutputLayout layout : {OutputLayout::kFlat, OutputLayout::kDevicePacked}) {
    o.output_layout = layout;
    ExpectFusedEqualsScalar(o, Noise(28 * 28, 1), 28, 28, 1);
    ExpectFusedEqualsScalar(o, Noise(19 * 13, 2), 13, 19, 1);
    ExpectFusedEqualsScalar(o, Noise(size_t{280} * 300 * 3, 3), 300, 280, 3);
  }
}

// Noise blocks on smooth waves: edges everywhere, so a pixel taken from
// the wrong place or a decode that differs at a crop edge shows.
std::vector<uint8_t> Textured(int width, int height, int channels) {
  std::vector<uint8_t> smooth = testing::SmoothRgb(width, height);
  const std::vector<uint8_t> noise = Noise(smooth.size(), width * 31 + height);
  for (size_t i = 0; i < smooth.size(); ++i) {
    if ((i / 3 / 7 + i / 3 / width / 5) % 3 == 0) smooth[i] = noise[i];
  }
  if (channels == 3) return smooth;
  std::vector<uint8_t> gray(static_cast<size_t>(width) * height);
  for (size_t i = 0; i < gray.size(); ++i) gray[i] = smooth[3 * i];
  return gray;
}

TEST(FusedPassTest, JpegRegionDecodeEqualsTheFullDecode) {
  // The fused path decodes only the rectangle it reads (columns cropped,
  // rows skipped); the scalar path decodes everything. Same JPEG scale
  // (scaled decode on and off), so the outputs must be equal.
  struct Case {
    int width, height, channels, subsampling;
    bool progressive;
  } cases[] = {{500, 375, 3, 420, false},  {375, 500, 3, 422, false}, {600, 400, 3, 444, true},
               {1100, 700, 3, 420, false}, {333, 1001, 3, 420, true}, {640, 480, 1, 444, false},
               {257, 300, 3, 420, false},  {2000, 300, 3, 422, false}};
  for (const Case& c : cases) {
    JpegSpec spec;
    spec.width = c.width;
    spec.height = c.height;
    spec.channels = c.channels;
    spec.subsampling = c.subsampling;
    spec.progressive = c.progressive;
    auto jpeg = EncodeJpeg(Textured(c.width, c.height, c.channels), spec);
    ASSERT_TRUE(jpeg.ok()) << jpeg.status();
    for (bool scaled : {true, false}) {
      for (ResizeFilter f : {ResizeFilter::kBicubic, ResizeFilter::kBilinear}) {
        Options o = DeitTinyOptions();
        o.jpeg_scaled_decode = scaled;
        o.filter = f;
        o.fused_pass = true;
        auto fused = Preprocessor::Create(o);
        o.fused_pass = false;
        auto scalar = Preprocessor::Create(o);
        ASSERT_TRUE(fused.ok() && scalar.ok());
        std::vector<int8_t> a(o.input_bytes(), 1), b(o.input_bytes(), 2);
        ASSERT_TRUE(fused->EncodedToPatches(*jpeg, absl::MakeSpan(a)).ok());
        ASSERT_TRUE(scalar->EncodedToPatches(*jpeg, absl::MakeSpan(b)).ok());
        int differ = 0;
        for (size_t i = 0; i < a.size(); ++i) differ += a[i] != b[i];
        EXPECT_EQ(differ, 0) << c.width << "x" << c.height << "x" << c.channels << " "
                             << c.subsampling << (c.progressive ? " progressive" : "")
                             << (scaled ? " scaled" : "") << " filter " << static_cast<int>(f);
      }
    }
  }
}

TEST(FusedPassTest, ScalarPathStillServesHwcRgb) {
  Options o = DeitTinyOptions();
  o.value_order = ValueOrder::kHwc;
  EXPECT_FALSE(FusedPassApplies(o));
  o.channels = 1;
  o.token_values = 256;
  EXPECT_TRUE(FusedPassApplies(o));
}

}  // namespace
}  // namespace hgpipe::preprocess
