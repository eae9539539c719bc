// Robustness: truncated, bit-flipped, overwritten and random inputs, and
// random geometries, must give OK or InvalidArgument, never a crash, a hang or
// (under -DHGPIPE_SANITIZE=address,undefined) a memory error. Deterministic
// (fixed seeds); HGPIPE_FUZZ_SCALE=N multiplies the random iterations.
#include <zlib.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "preprocess/image_decoder.h"
#include "preprocess/image_encoder.h"
#include "preprocess/preprocessor.h"
#include "tests/preprocess/test_images.h"

namespace hgpipe::preprocess {
namespace {

using ::hgpipe::preprocess::testing::SmoothGray;
using ::hgpipe::preprocess::testing::SmoothRgb;

int Scale() {
  const char* s = std::getenv("HGPIPE_FUZZ_SCALE");
  const int n = s != nullptr ? std::atoi(s) : 1;
  return n > 0 ? n : 1;
}

struct Sample {
  std::string name;
  std::vector<uint8_t> bytes;
};

std::vector<Sample> Seeds() {
  std::vector<Sample> seeds;
  auto jpeg = [&](const std::string& name, const std::vector<uint8_t>& pixels, JpegSpec spec) {
    auto encoded = EncodeJpeg(pixels, spec);
    EXPECT_TRUE(encoded.ok()) << name << ": " << encoded.status();
    if (encoded.ok()) seeds.push_back({name, *encoded});
  };
  auto png = [&](const std::string& name, const std::vector<uint8_t>& samples, int w, int h,
                 int color_type, int bit_depth, bool interlaced,
                 std::vector<std::array<uint8_t, 3>> palette = {}) {
    PngSpec spec;
    spec.width = w;
    spec.height = h;
    spec.color_type = color_type;
    spec.bit_depth = bit_depth;
    spec.interlaced = interlaced;
    spec.palette = std::move(palette);
    auto encoded = EncodePng(samples, spec);
    EXPECT_TRUE(encoded.ok()) << name << ": " << encoded.status();
    if (encoded.ok()) seeds.push_back({name, *encoded});
  };
  JpegSpec j;
  j.width = 45;
  j.height = 37;
  jpeg("jpeg420", SmoothRgb(45, 37), j);
  j.subsampling = 444;
  j.progressive = true;
  jpeg("jpeg444_progressive", SmoothRgb(45, 37), j);
  j.channels = 1;
  j.progressive = false;
  jpeg("jpeg_gray", SmoothGray(45, 37), j);

  png("png_rgb", SmoothRgb(23, 19), 23, 19, 2, 8, false);
  png("png_rgb_adam7", SmoothRgb(23, 19), 23, 19, 2, 8, true);
  std::vector<uint8_t> ga16(23 * 19 * 4);
  for (size_t i = 0; i < ga16.size(); ++i) ga16[i] = static_cast<uint8_t>(i * 31);
  png("png_gray_alpha16", ga16, 23, 19, 4, 16, false);
  std::vector<std::array<uint8_t, 3>> palette;
  for (int i = 0; i < 4; ++i) palette.push_back({uint8_t(60 * i), uint8_t(255 - 60 * i), 9});
  std::vector<uint8_t> indices(((23 * 2 + 7) / 8) * 19);
  for (size_t i = 0; i < indices.size(); ++i) indices[i] = static_cast<uint8_t>(i * 77);
  png("png_palette2", indices, 23, 19, 3, 2, false, palette);
  return seeds;
}

// The preprocessors every input goes through: decode only, resize with
// JPEG scaling, gray exact resize, and no resize.
std::vector<Preprocessor> Preprocessors() {
  std::vector<Preprocessor> out;
  Options a = DeitTinyOptions();
  a.height = a.width = 16;
  a.patch_height = a.patch_width = 4;
  a.tokens = 16;
  a.token_values = 48;
  a.resize_shorter_side = 20;
  out.push_back(*Preprocessor::Create(a));
  Options b = a;
  b.channels = 1;
  b.token_values = 16;
  b.resize = ResizeMode::kExact;
  b.filter = ResizeFilter::kBicubic;
  b.output_layout = OutputLayout::kDevicePacked;
  out.push_back(*Preprocessor::Create(b));
  Options c = a;
  c.resize = ResizeMode::kNone;
  out.push_back(*Preprocessor::Create(c));
  return out;
}

struct Tally {
  int ok = 0;
  int invalid = 0;
};

void Check(const std::vector<uint8_t>& input, const std::string& what, Tally* tally) {
  static const std::vector<Preprocessor>* const preprocessors =
      new std::vector<Preprocessor>(Preprocessors());
  ScratchBuffer buffer;
  DecodeOptions decode;
  decode.max_pixels = 1 << 20;
  const absl::Status decoded = DecodeImage(input, decode, &buffer).status();
  ASSERT_TRUE(decoded.ok() || decoded.code() == absl::StatusCode::kInvalidArgument)
      << what << ": " << decoded;
  ASSERT_FALSE(!decoded.ok() && decoded.message().empty()) << what;
  decoded.ok() ? ++tally->ok : ++tally->invalid;
  for (const Preprocessor& p : *preprocessors) {
    std::vector<int8_t> out(p.input_bytes());
    const absl::Status s = p.EncodedToPatches(input, absl::MakeSpan(out));
    ASSERT_TRUE(s.ok() || s.code() == absl::StatusCode::kInvalidArgument) << what << ": " << s;
  }
}

TEST(DecoderFuzzTest, EveryTruncation) {
  for (const Sample& seed : Seeds()) {
    Tally tally;
    for (size_t n = 0; n < seed.bytes.size(); ++n) {
      const std::vector<uint8_t> prefix(seed.bytes.begin(), seed.bytes.begin() + n);
      Check(prefix, seed.name + " truncated to " + std::to_string(n), &tally);
      if (HasFatalFailure()) return;
    }
    // Only the complete file (and, for JPEG, none short of its EOI) decodes.
    EXPECT_GT(tally.invalid, 0) << seed.name;
  }
}

TEST(DecoderFuzzTest, BitFlipsAndOverwrites) {
  std::mt19937 rng(20240717);
  const int iterations = 1500 * Scale();
  for (const Sample& seed : Seeds()) {
    Tally tally;
    for (int i = 0; i < iterations; ++i) {
      std::vector<uint8_t> m = seed.bytes;
      const int edits = 1 + static_cast<int>(rng() % 8);
      for (int e = 0; e < edits; ++e) {
        const size_t at = rng() % m.size();
        switch (rng() % 4) {
          case 0: m[at] ^= static_cast<uint8_t>(1u << (rng() % 8)); break;
          case 1: m[at] = static_cast<uint8_t>(rng()); break;
          case 2:
            m[at] = 0xFF;  // spurious JPEG marker prefix
            break;
          case 3:
            if (rng() % 2 == 0) {
              m.insert(m.begin() + at, static_cast<uint8_t>(rng()));
            } else if (m.size() > 8) {
              m.erase(m.begin() + at);
            }
            break;
        }
      }
      Check(m, seed.name + " mutant " + std::to_string(i), &tally);
      if (HasFatalFailure()) return;
    }
    std::printf("%s: %d of %d mutants still decode\n", seed.name.c_str(), tally.ok,
                tally.ok + tally.invalid);
  }
}

// PNG chunks re-sealed with valid CRCs after mutation, so corrupt headers,
// palettes and compressed data reach libspng's decoder instead of stopping
// at the checksum.
std::vector<uint8_t> ResealPngCrcs(std::vector<uint8_t> png) {
  size_t at = 8;
  while (at + 12 <= png.size()) {
    const uint32_t length = uint32_t{png[at]} << 24 | uint32_t{png[at + 1]} << 16 |
                            uint32_t{png[at + 2]} << 8 | png[at + 3];
    if (length > png.size() - at - 12) break;
    const uLong crc = crc32(0, png.data() + at + 4, static_cast<uInt>(length + 4));
    uint8_t* c = png.data() + at + 8 + length;
    c[0] = static_cast<uint8_t>(crc >> 24);
    c[1] = static_cast<uint8_t>(crc >> 16);
    c[2] = static_cast<uint8_t>(crc >> 8);
    c[3] = static_cast<uint8_t>(crc);
    at += 12 + length;
  }
  return png;
}

TEST(DecoderFuzzTest, PngMutationsWithValidCrcs) {
  std::mt19937 rng(7);
  const int iterations = 1500 * Scale();
  for (const Sample& seed : Seeds()) {
    if (seed.name.rfind("png", 0) != 0) continue;
    Tally tally;
    for (int i = 0; i < iterations; ++i) {
      std::vector<uint8_t> m = seed.bytes;
      const int edits = 1 + static_cast<int>(rng() % 4);
      for (int e = 0; e < edits; ++e) {
        const size_t at = 8 + rng() % (m.size() - 8);
        m[at] = rng() % 3 == 0 ? static_cast<uint8_t>(rng()) : m[at] ^ (1u << (rng() % 8));
      }
      Check(ResealPngCrcs(m), seed.name + " sealed mutant " + std::to_string(i), &tally);
      if (HasFatalFailure()) return;
    }
    std::printf("%s: %d of %d sealed mutants still decode\n", seed.name.c_str(), tally.ok,
                tally.ok + tally.invalid);
    EXPECT_GT(tally.invalid, 0) << seed.name;
  }
}

TEST(DecoderFuzzTest, RandomBytesBehindMagic) {
  std::mt19937 rng(99);
  const std::vector<std::vector<uint8_t>> magics = {{0xFF, 0xD8, 0xFF, 0xE0},
                                                    {0xFF, 0xD8, 0xFF, 0xDB},
                                                    {0xFF, 0xD8},
                                                    {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'},
                                                    {}};
  Tally tally;
  for (int i = 0; i < 3000 * Scale(); ++i) {
    std::vector<uint8_t> m = magics[i % magics.size()];
    const size_t n = rng() % 600;
    for (size_t k = 0; k < n; ++k) m.push_back(static_cast<uint8_t>(rng()));
    Check(m, "random " + std::to_string(i), &tally);
    if (HasFatalFailure()) return;
  }
  EXPECT_EQ(tally.ok, 0);
}

TEST(DecoderFuzzTest, HostileHeaders) {
  Tally tally;
  // A PNG claiming 60000 x 60000 pixels (valid CRC): rejected from the header.
  PngSpec spec;
  spec.width = 4;
  spec.height = 4;
  auto png = EncodePng(std::vector<uint8_t>(48, 7), spec);
  ASSERT_TRUE(png.ok());
  std::vector<uint8_t> big = *png;
  for (int i : {16, 20}) {  // IHDR width, height (big-endian) after 8 + 8 bytes
    big[i] = 0;
    big[i + 1] = 0;
    big[i + 2] = 0xEA;
    big[i + 3] = 0x60;
  }
  big = ResealPngCrcs(big);
  ScratchBuffer buffer;
  auto image = DecodeImage(big, DecodeOptions(), &buffer);
  EXPECT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(image.status().message().find("image too large: 60000x60000"), std::string::npos)
      << image.status();
  EXPECT_EQ(buffer.capacity(), 0u);

  // Within the pixel limit but far more than the bytes could inflate to.
  for (int i : {16, 20}) {
    big[i + 2] = 0x0F;
    big[i + 3] = 0xA0;  // 4000 x 4000
  }
  big = ResealPngCrcs(big);
  image = DecodeImage(big, DecodeOptions(), &buffer);
  EXPECT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(image.status().message().find("truncated PNG"), std::string::npos) << image.status();
  EXPECT_EQ(buffer.capacity(), 0u);

  // A JPEG whose SOF claims 65000 x 65000.
  JpegSpec j;
  j.width = 16;
  j.height = 16;
  auto jpeg = EncodeJpeg(SmoothRgb(16, 16), j);
  ASSERT_TRUE(jpeg.ok());
  std::vector<uint8_t> huge = *jpeg;
  for (size_t i = 2; i + 9 < huge.size(); ++i) {
    if (huge[i] == 0xFF && huge[i + 1] == 0xC0) {  // SOF0: len(2) precision(1) h(2) w(2)
      huge[i + 5] = 0xFD;
      huge[i + 6] = 0xE8;
      huge[i + 7] = 0xFD;
      huge[i + 8] = 0xE8;
      break;
    }
  }
  image = DecodeImage(huge, DecodeOptions(), &buffer);
  EXPECT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(image.status().message().find("image too large: 65000x65000"), std::string::npos)
      << image.status();
  Check(huge, "huge JPEG", &tally);
  Check(big, "big PNG", &tally);
}

TEST(ResampleFuzzTest, RandomGeometries) {
  // Random source sizes against random model geometries, both filters, all
  // resize modes: exercises the resampler's bounds on odd ratios (extreme
  // shrinking and growing, 1-pixel sides).
  std::mt19937 rng(5);
  for (int i = 0; i < 300 * Scale(); ++i) {
    Options o;
    o.channels = rng() % 2 == 0 ? 1 : 3;
    o.patch_height = 1 + static_cast<int>(rng() % 4);
    o.patch_width = 2;
    o.height = o.patch_height * (1 + static_cast<int>(rng() % 12));
    o.width = o.patch_width * (1 + static_cast<int>(rng() % 12));
    o.token_values = o.patch_height * o.patch_width * o.channels;
    const int patches = (o.height / o.patch_height) * (o.width / o.patch_width);
    o.cls_placeholder =
        patches % 2 == 0 ? ClsPlaceholder::kReplaceFirstPatch : ClsPlaceholder::kPrepend;
    o.tokens = patches % 2 == 0 ? patches : patches + 1;
    if (o.tokens < 2) continue;
    o.resize = rng() % 2 == 0 ? ResizeMode::kExact : ResizeMode::kShorterSideThenCenterCrop;
    o.resize_shorter_side = std::max(o.height, o.width) + static_cast<int>(rng() % 30);
    o.filter = rng() % 2 == 0 ? ResizeFilter::kBilinear : ResizeFilter::kBicubic;
    auto p = Preprocessor::Create(o);
    ASSERT_TRUE(p.ok()) << p.status() << " " << o.DebugString();
    const int h = 1 + static_cast<int>(rng() % (rng() % 4 == 0 ? 400 : 40));
    const int w = 1 + static_cast<int>(rng() % (rng() % 4 == 0 ? 400 : 40));
    const int c = std::array<int, 3>{1, 3, 4}[rng() % 3];
    std::vector<uint8_t> pixels(static_cast<size_t>(h) * w * c);
    for (auto& v : pixels) v = static_cast<uint8_t>(rng());
    std::vector<int8_t> out(p->input_bytes());
    const absl::Status s = p->PixelsToPatches(pixels, h, w, c, absl::MakeSpan(out));
    ASSERT_TRUE(s.ok()) << s << " " << h << "x" << w << "x" << c << " " << o.DebugString();
  }
}

}  // namespace
}  // namespace hgpipe::preprocess
