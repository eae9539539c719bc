#include "accel/device_layout.h"

#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace hgpipe::accel {
namespace {

// The device order as docs/datapath.md states it, written as plain index arithmetic:
// flat.reshape(T/2, 2, C/2, 2).transpose(0, 2, 1, 3).
std::vector<int8_t> ReferencePack(const DeviceGeometry& g, const std::vector<int8_t>& flat) {
  std::vector<int8_t> out;
  for (uint32_t tp = 0; tp < g.tokens / 2; ++tp)
    for (uint32_t cp = 0; cp < g.token_values / 2; ++cp)
      for (uint32_t ti = 0; ti < 2; ++ti)
        for (uint32_t ci = 0; ci < 2; ++ci)
          out.push_back(flat[(2 * tp + ti) * g.token_values + 2 * cp + ci]);
  return out;
}

TEST(DeviceLayoutTest, PackMatchesTheReshapeTransposeOfTheHostCode) {
  DeviceGeometry g;  // 196 x 768
  std::vector<int8_t> flat(g.input_bytes());
  std::mt19937 rng(1);
  for (auto& v : flat) v = static_cast<int8_t>(rng());
  std::vector<int8_t> device(g.input_bytes());
  PackImage(g, flat.data(), device.data());
  EXPECT_EQ(device, ReferencePack(g, flat));
  std::vector<int8_t> back(g.input_bytes());
  UnpackImage(g, device.data(), back.data());
  EXPECT_EQ(back, flat);
}

TEST(DeviceLayoutTest, ElementOffsetsAgreeWithPackImage) {
  DeviceGeometry g;  // 196 x 768
  std::vector<int8_t> flat(g.input_bytes());
  std::mt19937 rng(2);
  for (auto& v : flat) v = static_cast<int8_t>(rng());
  std::vector<int8_t> device(g.input_bytes());
  PackImage(g, flat.data(), device.data());
  std::vector<bool> seen(g.input_bytes());
  for (uint32_t t = 0; t < g.tokens; ++t) {
    for (uint32_t v = 0; v < g.token_values; ++v) {
      const size_t at = DeviceTokenOffset(g.token_values, t) + DeviceValueOffset(v);
      ASSERT_LT(at, device.size());
      ASSERT_FALSE(seen[at]) << "token " << t << " value " << v;
      seen[at] = true;
      ASSERT_EQ(device[at], flat[t * g.token_values + v]) << "token " << t << " value " << v;
    }
  }
}

TEST(DeviceLayoutTest, FirstBeatHoldsTwoTokensTimesTwoValues) {
  DeviceGeometry g{4, 4, 10};
  std::vector<int8_t> flat(16);
  std::iota(flat.begin(), flat.end(), 0);  // flat[t*4+c] = t*4+c
  std::vector<int8_t> device(16);
  PackImage(g, flat.data(), device.data());
  EXPECT_EQ(device, (std::vector<int8_t>{0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15}));
}

TEST(DeviceLayoutTest, LogitWordsAre19BitTwosComplementNotSignExtended) {
  EXPECT_EQ(DecodeLogitWord(0), 0);
  EXPECT_EQ(DecodeLogitWord(5), 5);
  EXPECT_EQ(DecodeLogitWord((1u << 18) - 1), (1 << 18) - 1);
  EXPECT_EQ(DecodeLogitWord(1u << 18), -(1 << 18));
  EXPECT_EQ(DecodeLogitWord((1u << 19) - 1), -1);
  EXPECT_EQ(DecodeLogitWord(0xFFF80000u | 7u), 7);  // high bits ignored
  for (int32_t v : {-(1 << 18), -12345, -1, 0, 1, 777, (1 << 18) - 1}) {
    EXPECT_LT(EncodeLogitWord(v), 1u << 19);
    EXPECT_EQ(DecodeLogitWord(EncodeLogitWord(v)), v);
  }
}

TEST(DeviceGeometryTest, RejectsOddDimensions) {
  EXPECT_TRUE(DeviceGeometry().Validate().ok());
  EXPECT_FALSE((DeviceGeometry{195, 768, 1000}).Validate().ok());
  EXPECT_FALSE((DeviceGeometry{196, 767, 1000}).Validate().ok());
  EXPECT_FALSE((DeviceGeometry{196, 768, 0}).Validate().ok());
  EXPECT_EQ(DeviceGeometry().input_bytes(), 150'528u);
  EXPECT_EQ(DeviceGeometry().output_bytes(), 4'000u);
}

}  // namespace
}  // namespace hgpipe::accel
