#include "preprocess/image_decoder.h"

#include <cstdlib>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "preprocess/image_encoder.h"
#include "tests/preprocess/test_images.h"

namespace hgpipe::preprocess {
namespace {

using ::hgpipe::preprocess::testing::SmoothGray;
using ::hgpipe::preprocess::testing::SmoothRgb;
using ::testing::HasSubstr;

absl::Span<const uint8_t> Bytes(const std::string& s) {
  return absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

std::vector<uint8_t> Jpeg(const std::vector<uint8_t>& pixels, JpegSpec spec) {
  auto jpeg = EncodeJpeg(pixels, spec);
  EXPECT_TRUE(jpeg.ok()) << jpeg.status();
  return jpeg.ok() ? *jpeg : std::vector<uint8_t>{};
}

std::vector<uint8_t> Png(const std::vector<uint8_t>& samples, PngSpec spec) {
  auto png = EncodePng(samples, spec);
  EXPECT_TRUE(png.ok()) << png.status();
  return png.ok() ? *png : std::vector<uint8_t>{};
}

PngSpec PngOf(int width, int height, int color_type = 2, int bit_depth = 8, bool interlaced = false,
              std::vector<std::array<uint8_t, 3>> palette = {}) {
  PngSpec spec;
  spec.width = width;
  spec.height = height;
  spec.color_type = color_type;
  spec.bit_depth = bit_depth;
  spec.interlaced = interlaced;
  spec.palette = std::move(palette);
  return spec;
}

int MaxAbsDiff(const uint8_t* a, const uint8_t* b, size_t n) {
  int worst = 0;
  for (size_t i = 0; i < n; ++i) worst = std::max(worst, std::abs(int{a[i]} - int{b[i]}));
  return worst;
}

TEST(DetectImageFormatTest, MagicBytes) {
  EXPECT_EQ(DetectImageFormat(Bytes("\xFF\xD8\xFF\xE0")), ImageFormat::kJpeg);
  EXPECT_EQ(DetectImageFormat(Bytes(std::string("\x89PNG\r\n\x1a\n\0\0", 10))), ImageFormat::kPng);
  EXPECT_EQ(DetectImageFormat(Bytes("\x89PNG")), ImageFormat::kPng);  // cut-off signature
  EXPECT_EQ(DetectImageFormat(Bytes("GIF89a\x01\x00")), ImageFormat::kGif);
  EXPECT_EQ(DetectImageFormat(Bytes("GIF87a\x01\x00")), ImageFormat::kGif);
  EXPECT_EQ(DetectImageFormat(Bytes(std::string("BM\x36\0\0\0\0\0\0\0\x36\0\0\0", 14))),
            ImageFormat::kBmp);
  EXPECT_EQ(DetectImageFormat(Bytes(std::string("RIFF\x10\0\0\0WEBPVP8 ", 16))),
            ImageFormat::kWebp);
  EXPECT_EQ(DetectImageFormat(Bytes(std::string("II*\0\x08\0\0\0", 8))), ImageFormat::kTiff);
  EXPECT_EQ(DetectImageFormat(Bytes(std::string("\0\0\0\x1c"
                                                "ftypavif",
                                                12))),
            ImageFormat::kHeif);
  EXPECT_EQ(DetectImageFormat(Bytes("qoif")), ImageFormat::kQoi);
  EXPECT_EQ(DetectImageFormat(Bytes("hello world")), ImageFormat::kUnknown);
  EXPECT_EQ(DetectImageFormat({}), ImageFormat::kUnknown);
}

TEST(DecodeImageTest, RgbJpeg) {
  const int w = 40, h = 30;
  const std::vector<uint8_t> rgb = SmoothRgb(w, h);
  const std::vector<uint8_t> jpeg =
      Jpeg(rgb, {.width = w, .height = h, .quality = 100, .subsampling = 444});
  ScratchBuffer buffer;
  auto image = DecodeImage(jpeg, DecodeOptions(), &buffer);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->width, w);
  EXPECT_EQ(image->height, h);
  EXPECT_EQ(image->channels, 3);
  EXPECT_EQ(image->row_stride, size_t{w} * 3);
  // Quality 100, no chroma subsampling, smooth content: within a few levels.
  EXPECT_LE(MaxAbsDiff(image->pixels, rgb.data(), rgb.size()), 4);
}

TEST(DecodeImageTest, ProgressiveAndSubsampledJpeg) {
  const int w = 33, h = 17;  // not a multiple of the MCU
  const std::vector<uint8_t> rgb = SmoothRgb(w, h);
  for (int subsampling : {444, 422, 420}) {
    for (bool progressive : {false, true}) {
      const std::vector<uint8_t> jpeg = Jpeg(rgb, {.width = w,
                                                   .height = h,
                                                   .quality = 95,
                                                   .subsampling = subsampling,
                                                   .progressive = progressive});
      ScratchBuffer buffer;
      auto image = DecodeImage(jpeg, DecodeOptions(), &buffer);
      ASSERT_TRUE(image.ok()) << image.status() << " " << subsampling << " " << progressive;
      EXPECT_EQ(image->width, w);
      EXPECT_EQ(image->height, h);
      EXPECT_LE(MaxAbsDiff(image->pixels, rgb.data(), rgb.size()), 24);
    }
  }
}

TEST(DecodeImageTest, GrayJpegStaysGray) {
  const int w = 24, h = 16;
  const std::vector<uint8_t> gray = SmoothGray(w, h);
  const std::vector<uint8_t> jpeg =
      Jpeg(gray, {.width = w, .height = h, .channels = 1, .quality = 100});
  ScratchBuffer buffer;
  auto image = DecodeImage(jpeg, DecodeOptions(), &buffer);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->channels, 1);
  EXPECT_LE(MaxAbsDiff(image->pixels, gray.data(), gray.size()), 2);
}

TEST(DecodeImageTest, ColorJpegToGrayWhenAsked) {
  const int w = 16, h = 16;
  // A uniform color: its JPEG luma is Y = 0.299 R + 0.587 G + 0.114 B.
  std::vector<uint8_t> rgb(w * h * 3);
  for (int i = 0; i < w * h; ++i) {
    rgb[3 * i] = 200;
    rgb[3 * i + 1] = 100;
    rgb[3 * i + 2] = 50;
  }
  const std::vector<uint8_t> jpeg =
      Jpeg(rgb, {.width = w, .height = h, .quality = 100, .subsampling = 444});
  DecodeOptions options;
  options.want_gray = true;
  ScratchBuffer buffer;
  auto image = DecodeImage(jpeg, options, &buffer);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->channels, 1);
  const int expected = static_cast<int>(0.299 * 200 + 0.587 * 100 + 0.114 * 50 + 0.5);  // 124
  for (int i = 0; i < w * h; ++i) EXPECT_NEAR(image->pixels[i], expected, 1) << i;
}

TEST(DecodeImageTest, JpegScaledDecodePicksSmallestSufficientScale) {
  const int w = 400, h = 300;
  const std::vector<uint8_t> jpeg = Jpeg(SmoothRgb(w, h), {.width = w, .height = h});
  DecodeOptions options;
  options.jpeg_scaled_decode = true;
  options.jpeg_min_shorter_side = 100;
  ScratchBuffer buffer;
  auto image = DecodeImage(jpeg, options, &buffer);
  ASSERT_TRUE(image.ok()) << image.status();
  // 1/4 gives 100x75 (shorter side 75 < 100); 1/2 gives 200x150.
  EXPECT_EQ(image->width, 200);
  EXPECT_EQ(image->height, 150);

  options.jpeg_min_shorter_side = 30;  // 1/8: 50 x ceil(37.5)
  image = DecodeImage(jpeg, options, &buffer);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->width, 50);
  EXPECT_EQ(image->height, 38);

  options.jpeg_min_shorter_side = 0;
  options.jpeg_min_width = 224;  // 1/2 is 200 wide: too small, so full size
  options.jpeg_min_height = 100;
  image = DecodeImage(jpeg, options, &buffer);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->width, 400);
  EXPECT_EQ(image->height, 300);

  options.jpeg_min_width = 1000;  // never upscales: full size
  image = DecodeImage(jpeg, options, &buffer);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->width, 400);
  EXPECT_EQ(image->height, 300);
}

TEST(DecodeImageTest, CmykJpegRejected) {
  const int w = 8, h = 8;
  std::vector<uint8_t> cmyk(w * h * 4, 100);
  const std::vector<uint8_t> jpeg = Jpeg(cmyk, {.width = w, .height = h, .channels = 4});
  ScratchBuffer buffer;
  auto image = DecodeImage(jpeg, DecodeOptions(), &buffer);
  ASSERT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(image.status().message(), HasSubstr("unsupported JPEG color space"));
}

TEST(DecodeImageTest, JpegWarningsAreErrorsUnlessAccepted) {
  const int w = 16, h = 16;
  std::vector<uint8_t> jpeg = Jpeg(SmoothRgb(w, h), {.width = w, .height = h});
  // Junk between the first marker segment after SOI and the next marker:
  // libjpeg warns "extraneous bytes before marker" and decodes anyway.
  ASSERT_GE(jpeg.size(), 6u);
  ASSERT_EQ(jpeg[2], 0xFF);
  const size_t segment_end = 4 + (size_t{jpeg[4]} << 8 | jpeg[5]);
  ASSERT_LT(segment_end, jpeg.size());
  ASSERT_EQ(jpeg[segment_end], 0xFF);
  jpeg.insert(jpeg.begin() + segment_end, {0x12, 0x34, 0x56});
  ScratchBuffer buffer;
  auto image = DecodeImage(jpeg, DecodeOptions(), &buffer);
  ASSERT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(image.status().message(), HasSubstr("corrupt JPEG"));
  EXPECT_THAT(image.status().message(), HasSubstr("extraneous bytes"));

  DecodeOptions lenient;
  lenient.accept_jpeg_warnings = true;
  image = DecodeImage(jpeg, lenient, &buffer);
  EXPECT_TRUE(image.ok()) << image.status();
}

TEST(DecodeImageTest, TruncatedJpeg) {
  const int w = 64, h = 48;
  const std::vector<uint8_t> jpeg = Jpeg(SmoothRgb(w, h), {.width = w, .height = h});
  const std::vector<uint8_t> half(jpeg.begin(), jpeg.begin() + jpeg.size() / 2);
  for (bool lenient : {false, true}) {
    DecodeOptions options;
    options.accept_jpeg_warnings = lenient;
    ScratchBuffer buffer;
    auto image = DecodeImage(half, options, &buffer);
    ASSERT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(image.status().message(), HasSubstr("truncated JPEG"));
  }
  // Only the start-of-image marker.
  ScratchBuffer buffer;
  const std::vector<uint8_t> soi = {0xFF, 0xD8};
  auto image = DecodeImage(soi, DecodeOptions(), &buffer);
  ASSERT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(image.status().message(), HasSubstr("JPEG"));
}

TEST(DecodeImageTest, CorruptJpegHeader) {
  const std::vector<uint8_t> bad = {0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x02, 0x01, 0x02,
                                    0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0xFF, 0xD9};
  ScratchBuffer buffer;
  auto image = DecodeImage(bad, DecodeOptions(), &buffer);
  ASSERT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(image.status().message(), HasSubstr("JPEG"));
}

TEST(DecodeImageTest, PixelLimit) {
  const int w = 40, h = 30;
  const std::vector<uint8_t> jpeg = Jpeg(SmoothRgb(w, h), {.width = w, .height = h});
  std::vector<uint8_t> rgb = SmoothRgb(w, h);
  const std::vector<uint8_t> png = Png(rgb, PngOf(w, h, 2, 8));
  DecodeOptions options;
  options.max_pixels = w * h - 1;
  for (const auto* encoded : {&jpeg, &png}) {
    ScratchBuffer buffer;
    auto image = DecodeImage(*encoded, options, &buffer);
    ASSERT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(image.status().message(), HasSubstr("image too large: 40x30 = 1200 pixels"));
    EXPECT_EQ(buffer.capacity(), 0u) << "nothing decoded";
  }
  options.max_pixels = w * h;
  ScratchBuffer buffer;
  EXPECT_TRUE(DecodeImage(jpeg, options, &buffer).ok());
  EXPECT_TRUE(DecodeImage(png, options, &buffer).ok());
}

TEST(DecodeImageTest, PngRgbAndRgbaAreExact) {
  const int w = 13, h = 7;
  const std::vector<uint8_t> rgb = SmoothRgb(w, h);
  ScratchBuffer buffer;
  auto image = DecodeImage(Png(rgb, PngOf(w, h, 2, 8)), DecodeOptions(), &buffer);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->width, w);
  EXPECT_EQ(image->height, h);
  EXPECT_EQ(image->channels, 3);
  EXPECT_EQ(std::vector<uint8_t>(image->pixels, image->pixels + rgb.size()), rgb);

  std::vector<uint8_t> rgba(w * h * 4);
  for (int i = 0; i < w * h; ++i) {
    for (int c = 0; c < 3; ++c) rgba[4 * i + c] = rgb[3 * i + c];
    rgba[4 * i + 3] = static_cast<uint8_t>(i * 7);  // alpha: dropped, not composited
  }
  image = DecodeImage(Png(rgba, PngOf(w, h, 6, 8)), DecodeOptions(), &buffer);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->channels, 3);
  EXPECT_EQ(std::vector<uint8_t>(image->pixels, image->pixels + rgb.size()), rgb);
}

TEST(DecodeImageTest, PngGrayVariants) {
  const int w = 9, h = 5;
  const std::vector<uint8_t> gray = SmoothGray(w, h);
  ScratchBuffer buffer;

  // 8-bit gray.
  auto image = DecodeImage(Png(gray, PngOf(w, h, 0, 8)), DecodeOptions(), &buffer);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->channels, 1);
  EXPECT_EQ(std::vector<uint8_t>(image->pixels, image->pixels + gray.size()), gray);

  // Gray + alpha: alpha dropped, one channel.
  std::vector<uint8_t> ga(w * h * 2);
  for (int i = 0; i < w * h; ++i) {
    ga[2 * i] = gray[i];
    ga[2 * i + 1] = 17;
  }
  image = DecodeImage(Png(ga, PngOf(w, h, 4, 8)), DecodeOptions(), &buffer);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->channels, 1);
  EXPECT_EQ(std::vector<uint8_t>(image->pixels, image->pixels + gray.size()), gray);

  // 16-bit gray: the high byte.
  std::vector<uint16_t> g16(w * h);
  for (int i = 0; i < w * h; ++i) g16[i] = static_cast<uint16_t>(gray[i] * 256 + (i % 256));
  const auto* g16_bytes = reinterpret_cast<const uint8_t*>(g16.data());
  image = DecodeImage(
      Png(std::vector<uint8_t>(g16_bytes, g16_bytes + g16.size() * 2), PngOf(w, h, 0, 16)),
      DecodeOptions(), &buffer);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->channels, 1);
  EXPECT_EQ(std::vector<uint8_t>(image->pixels, image->pixels + gray.size()), gray);

  // 1-bit gray: 0 -> 0, 1 -> 255 (scaled to the full range, as the PNG
  // specification recommends). Row of 9 pixels = 2 bytes, MSB first.
  std::vector<uint8_t> bits(2 * h);
  std::vector<uint8_t> expected(w * h);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      const bool on = (x + y) % 3 == 0;
      if (on) bits[2 * y + x / 8] |= static_cast<uint8_t>(0x80 >> (x % 8));
      expected[y * w + x] = on ? 255 : 0;
    }
  }
  image = DecodeImage(Png(bits, PngOf(w, h, 0, 1)), DecodeOptions(), &buffer);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->channels, 1);
  EXPECT_EQ(std::vector<uint8_t>(image->pixels, image->pixels + expected.size()), expected);
}

TEST(DecodeImageTest, PngPaletteAnd16BitRgb) {
  const int w = 6, h = 4;
  ScratchBuffer buffer;
  // Palette: index i -> (10 i, 255 - 10 i, 3 i).
  std::vector<std::array<uint8_t, 3>> palette;
  for (int i = 0; i < 16; ++i) {
    palette.push_back({static_cast<uint8_t>(10 * i), static_cast<uint8_t>(255 - 10 * i),
                       static_cast<uint8_t>(3 * i)});
  }
  std::vector<uint8_t> indices(w * h);
  std::vector<uint8_t> expected;
  for (int i = 0; i < w * h; ++i) {
    indices[i] = static_cast<uint8_t>(i % 16);
    for (int c = 0; c < 3; ++c) expected.push_back(palette[i % 16][c]);
  }
  auto image =
      DecodeImage(Png(indices, PngOf(w, h, 3, 8, false, palette)), DecodeOptions(), &buffer);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->channels, 3);
  EXPECT_EQ(std::vector<uint8_t>(image->pixels, image->pixels + expected.size()), expected);

  // 16-bit RGB: the high byte of each sample.
  std::vector<uint16_t> rgb16(w * h * 3);
  expected.clear();
  for (int i = 0; i < w * h * 3; ++i) {
    const uint8_t high = static_cast<uint8_t>(i * 5);
    rgb16[i] = static_cast<uint16_t>(high * 256 + 255 - high);
    expected.push_back(high);
  }
  const auto* bytes = reinterpret_cast<const uint8_t*>(rgb16.data());
  image =
      DecodeImage(Png(std::vector<uint8_t>(bytes, bytes + rgb16.size() * 2), PngOf(w, h, 2, 16)),
                  DecodeOptions(), &buffer);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->channels, 3);
  EXPECT_EQ(std::vector<uint8_t>(image->pixels, image->pixels + expected.size()), expected);
}

TEST(DecodeImageTest, InterlacedPng) {
  const int w = 11, h = 9;
  const std::vector<uint8_t> rgb = SmoothRgb(w, h);
  auto png = EncodePng(rgb, PngOf(w, h, 2, 8, true));
  if (!png.ok()) GTEST_SKIP() << "libspng cannot encode Adam7 here: " << png.status();
  ScratchBuffer buffer;
  auto image = DecodeImage(*png, DecodeOptions(), &buffer);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(std::vector<uint8_t>(image->pixels, image->pixels + rgb.size()), rgb);
}

TEST(DecodeImageTest, TruncatedAndCorruptPng) {
  const int w = 32, h = 32;
  const std::vector<uint8_t> png = Png(SmoothRgb(w, h), PngOf(w, h, 2, 8));
  ScratchBuffer buffer;
  const std::vector<uint8_t> half(png.begin(), png.begin() + png.size() / 2);
  auto image = DecodeImage(half, DecodeOptions(), &buffer);
  ASSERT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(image.status().message(), HasSubstr("truncated PNG"));

  const std::vector<uint8_t> signature_only(png.begin(), png.begin() + 8);
  image = DecodeImage(signature_only, DecodeOptions(), &buffer);
  ASSERT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(image.status().message(), HasSubstr("PNG"));

  // A flipped bit in IHDR's width: its CRC no longer matches.
  std::vector<uint8_t> corrupt = png;
  corrupt[8 + 8 + 2] ^= 0x01;
  image = DecodeImage(corrupt, DecodeOptions(), &buffer);
  ASSERT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(image.status().message(), HasSubstr("corrupt PNG"));
}

TEST(DecodeImageTest, EmptyUnknownAndUnsupported) {
  ScratchBuffer buffer;
  auto image = DecodeImage({}, DecodeOptions(), &buffer);
  ASSERT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(image.status().message(), HasSubstr("empty image"));

  image = DecodeImage(Bytes("GIF89a\x01\x00\x01\x00"), DecodeOptions(), &buffer);
  ASSERT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(image.status().message(), HasSubstr("unsupported image format GIF"));

  image = DecodeImage(Bytes(std::string("BM\x36\0\0\0\0\0\0\0\x36\0\0\0", 14)), DecodeOptions(),
                      &buffer);
  ASSERT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(image.status().message(), HasSubstr("unsupported image format BMP"));

  image = DecodeImage(Bytes("not an image"), DecodeOptions(), &buffer);
  ASSERT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(image.status().message(), HasSubstr("unrecognized image format"));
  EXPECT_THAT(image.status().message(), HasSubstr("6e 6f 74 20"));  // "not "
}

}  // namespace
}  // namespace hgpipe::preprocess
