#include "accel/vit/deit_tiny.h"

#include <cstdint>
#include <set>
#include <vector>

#include "accel/device_layout.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hgpipe::accel::vit {
namespace {

using Precision = DeitTinyOptions::Precision;

// One deterministic image in device order.
std::vector<int8_t> TestImage(const DeviceGeometry& g) {
  std::vector<int8_t> img(g.input_bytes());
  uint32_t x = 12345;
  for (int8_t& v : img) {
    x = x * 1103515245u + 12345u;
    v = static_cast<int8_t>((x >> 16) & 0xFF);
  }
  return img;
}

// Digests of the seed-7 outputs on tests/accel_vit/deit_tiny_test.cc's image,
// computed once and cross-checked with tools/vit/intref.py.
constexpr uint64_t kW3A3Digest = 5305900489594284425ull;
constexpr uint64_t kW8A8Digest = 7143548507656938260ull;

// FNV-1a over the output words: pins the generated weights and the
// datapath together.
uint64_t Digest(const std::vector<uint32_t>& words) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint32_t w : words) {
    for (int i = 0; i < 4; ++i) {
      h ^= (w >> (8 * i)) & 0xFF;
      h *= 0x100000001b3ull;
    }
  }
  return h;
}

class DeitTinyTest : public ::testing::TestWithParam<Precision> {};

TEST_P(DeitTinyTest, RunsOneImageDeterministically) {
  DeitTinyOptions options;
  options.precision = GetParam();
  absl::StatusOr<std::shared_ptr<const VitKernel>> k =
      MakeDeitTinyKernel(7, options);
  ASSERT_TRUE(k.ok()) << k.status();
  const VitKernel& kernel = **k;

  const BitstreamManifest& m = kernel.manifest();
  EXPECT_EQ(m.geometry.tokens, 196u);
  EXPECT_EQ(m.geometry.token_values, 768u);
  EXPECT_EQ(m.geometry.classes, 1000u);
  EXPECT_EQ(m.timing.interval_cycles, 57'624u);
  EXPECT_EQ(m.timing.latency_cycles, 816'584u);
  EXPECT_EQ(m.timing.clock_hz, 425e6);
  const VitSpec& s = kernel.spec();
  EXPECT_EQ(s.width, 192u);
  EXPECT_EQ(s.heads, 3u);
  EXPECT_EQ(s.depth, 12u);
  EXPECT_EQ(s.patch_weight_bits, 8);
  EXPECT_EQ(s.head_weight_bits, 8);
  const int bits = GetParam() == Precision::kW3A3 ? 3 : 8;
  EXPECT_EQ(s.block_weight_bits, bits);
  EXPECT_EQ(s.act_bits, bits);
  EXPECT_TRUE(kernel.labels().empty());

  const std::vector<int8_t> img = TestImage(m.geometry);
  std::vector<uint32_t> a(m.geometry.output_words()), b(a.size());
  kernel.Compute(img.data(), 1, a.data());
  kernel.Compute(img.data(), 1, b.data());
  EXPECT_EQ(a, b);

  // A second kernel from the same seed computes the same words.
  absl::StatusOr<std::shared_ptr<const VitKernel>> k2 =
      MakeDeitTinyKernel(7, options);
  ASSERT_TRUE(k2.ok());
  std::vector<uint32_t> c(a.size());
  (*k2)->Compute(img.data(), 1, c.data());
  EXPECT_EQ(a, c);

  // Words are 19-bit logits, spread out (not a saturated or constant head).
  std::set<int32_t> distinct;
  for (uint32_t w : a) {
    EXPECT_EQ(w >> kLogitBits, 0u);
    distinct.insert(DecodeLogitWord(w));
  }
  EXPECT_GT(distinct.size(), 200u);

  RecordProperty("digest", std::to_string(Digest(a)));
  const uint64_t want = GetParam() == Precision::kW3A3 ? kW3A3Digest
                                                       : kW8A8Digest;
  EXPECT_EQ(Digest(a), want) << "the generated DeiT-tiny weights or the "
                                "datapath changed";
}

TEST(DeitTinyWeightsTest, SeedsDiffer) {
  const VitWeights a = MakeDeitTinyWeights(1, Precision::kW3A3);
  const VitWeights b = MakeDeitTinyWeights(2, Precision::kW3A3);
  EXPECT_NE(a.blocks[0].qkv.weight, b.blocks[0].qkv.weight);
  EXPECT_EQ(a.blocks[0].qkv.weight,
            MakeDeitTinyWeights(1, Precision::kW3A3).blocks[0].qkv.weight);
  EXPECT_TRUE(a.Validate("deit").ok());
}

INSTANTIATE_TEST_SUITE_P(Precisions, DeitTinyTest,
                         ::testing::Values(Precision::kW3A3, Precision::kW8A8),
                         [](const auto& info) {
                           return info.param == Precision::kW3A3 ? "W3A3"
                                                                 : "W8A8";
                         });

}  // namespace
}  // namespace hgpipe::accel::vit
