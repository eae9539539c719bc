#include "accel/vit/weight_file.h"

#include <cstdio>
#include <fstream>
#include <string>

#include "accel/vit/vit_kernel.h"
#include "accel/vit/vit_weights.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/accel_vit/test_paths.h"

namespace hgpipe::accel::vit {
namespace {

using ::testing::HasSubstr;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class WeightFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bytes_ = ReadFile(FmnistWeightsPath());
    ASSERT_FALSE(bytes_.empty()) << FmnistWeightsPath();
    absl::StatusOr<Container> c = ParseContainer(bytes_, "fmnist.hgvit");
    ASSERT_TRUE(c.ok()) << c.status();
    container_ = *std::move(c);
  }

  // Decodes a modified container the way LoadVitKernel would.
  absl::Status Decode(const Container& c) {
    const std::string bytes = SerializeContainer(c);
    absl::StatusOr<Container> parsed = ParseContainer(bytes, "edited.hgvit");
    if (!parsed.ok()) return parsed.status();
    return VitWeightsFromContainer(*parsed, "edited.hgvit").status();
  }

  void SetManifest(Container* c, const std::string& key,
                   const std::string& value) {
    for (auto& [k, v] : c->manifest) {
      if (k == key) v = value;
    }
  }

  std::string bytes_;
  Container container_;
};

TEST(Crc32Test, MatchesZlib) {
  EXPECT_EQ(Crc32("123456789", 9), 0xCBF43926u);
  EXPECT_EQ(Crc32("", 0), 0u);
}

TEST_F(WeightFileTest, SerializeRoundTripsTheCommittedFile) {
  // Python writes tensors in insertion order, C++ in name order: compare
  // the decoded contents, then the C++ image with itself.
  const std::string again = SerializeContainer(container_);
  absl::StatusOr<Container> c = ParseContainer(again, "again");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->manifest, container_.manifest);
  ASSERT_EQ(c->tensors.size(), container_.tensors.size());
  for (const auto& [name, t] : container_.tensors) {
    EXPECT_EQ(c->tensors.at(name).bytes, t.bytes) << name;
    EXPECT_EQ(c->tensors.at(name).dims, t.dims) << name;
  }
  EXPECT_EQ(SerializeContainer(*c), again);
  absl::StatusOr<VitWeights> w = VitWeightsFromContainer(*c, "again");
  ASSERT_TRUE(w.ok()) << w.status();
  const Container back = VitWeightsToContainer(*w);
  ASSERT_EQ(back.tensors.size(), container_.tensors.size());
  for (const auto& [name, t] : container_.tensors) {
    EXPECT_EQ(back.tensors.at(name).bytes, t.bytes) << name;
  }
}

TEST_F(WeightFileTest, EveryTruncationIsRejectedWithTheFileName) {
  // Every cut inside the header region, then a stride through the data.
  for (size_t len = 0; len < bytes_.size();
       len += (len < 4096 ? 1 : 997)) {
    absl::StatusOr<Container> c =
        ParseContainer(absl::string_view(bytes_).substr(0, len), "cut.hgvit");
    ASSERT_FALSE(c.ok()) << "accepted a file cut to " << len << " bytes";
    EXPECT_THAT(c.status().message(), HasSubstr("cut.hgvit")) << len;
  }
}

TEST_F(WeightFileTest, TruncationNamesTheField) {
  absl::StatusOr<Container> c =
      ParseContainer(absl::string_view(bytes_).substr(0, bytes_.size() / 2),
                     "half.hgvit");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("truncated"));
  EXPECT_THAT(c.status().message(), HasSubstr("tensor '"));
}

TEST_F(WeightFileTest, FlippedBitIsACrcError) {
  std::string bad = bytes_;
  bad[bad.size() / 2] ^= 0x10;
  absl::StatusOr<Container> c = ParseContainer(bad, "flipped.hgvit");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(c.status().message(), HasSubstr("CRC"));
  EXPECT_THAT(c.status().message(), HasSubstr("flipped.hgvit"));
}

TEST_F(WeightFileTest, WrongMagicVersionAndTrailingBytes) {
  absl::StatusOr<Container> c = ParseContainer("PNG\r\n\x1a\n....", "x.png");
  EXPECT_THAT(c.status().message(), HasSubstr("not an HG-PIPE ViT weight file"));

  std::string v2 = bytes_;
  v2[8] = 2;
  c = ParseContainer(v2, "v2.hgvit");
  EXPECT_THAT(c.status().message(), HasSubstr("version 2 is not supported"));

  c = ParseContainer(bytes_ + "x", "long.hgvit");
  EXPECT_FALSE(c.ok());
}

TEST_F(WeightFileTest, MissingTensorIsNamed) {
  Container c = container_;
  c.tensors.erase("blocks.1.mlp.fc1.weight");
  absl::Status s = Decode(c);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("'blocks.1.mlp.fc1.weight': missing"));
}

TEST_F(WeightFileTest, WrongShapeAndDtypeAreNamed) {
  Container c = container_;
  c.tensors.at("head.bias").dims = {5, 2};
  EXPECT_THAT(Decode(c).message(), HasSubstr("'head.bias': shape [5, 2]"));
  c = container_;
  Tensor& t = c.tensors.at("patch.bias");
  t.dtype = DType::kInt16;
  t.dims = {static_cast<uint32_t>(t.bytes.size() / 2)};
  EXPECT_THAT(Decode(c).message(), HasSubstr("'patch.bias': dtype int16"));
}

TEST_F(WeightFileTest, ValuesOutsideTheirBitWidthAreRejected) {
  Container c = container_;
  SetManifest(&c, "block_weight_bits", "3");
  absl::Status s = Decode(c);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("(3-bit)"));
  EXPECT_THAT(s.message(), HasSubstr("outside [-4, 3]"));

  c = container_;
  Tensor& rq = c.tensors.at("blocks.0.attn.proj.requant");
  rq.bytes[4] = 63;  // shift of channel 0
  EXPECT_THAT(Decode(c).message(), HasSubstr("blocks.0.attn.proj.requant shift"));
}

TEST_F(WeightFileTest, ManifestErrorsNameTheKey) {
  Container c = container_;
  SetManifest(&c, "tokens", "27");
  EXPECT_THAT(Decode(c).message(), HasSubstr("tokens must be even"));
  c = container_;
  SetManifest(&c, "heads", "three");
  EXPECT_THAT(Decode(c).message(),
              HasSubstr("manifest 'heads': not an unsigned integer"));
  c = container_;
  c.manifest.emplace_back("colour", "blue");
  EXPECT_THAT(Decode(c).message(), HasSubstr("'colour': unknown key"));
  c = container_;
  c.manifest.erase(c.manifest.begin() + 2);
  EXPECT_THAT(Decode(c).message(), HasSubstr("missing"));
  c = container_;
  SetManifest(&c, "act_bits", "9");
  EXPECT_THAT(Decode(c).message(), HasSubstr("act_bits: 9 bits is outside"));
}

TEST_F(WeightFileTest, LoadVitKernelReportsTheFile) {
  const std::string path = ::testing::TempDir() + "/truncated.hgvit";
  {
    std::ofstream out(path, std::ios::binary);
    out << bytes_.substr(0, 100);
  }
  absl::StatusOr<std::shared_ptr<const VitKernel>> k = LoadVitKernel(path);
  EXPECT_EQ(k.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(k.status().message(), HasSubstr(path));
  std::remove(path.c_str());
}

}  // namespace
}  // namespace hgpipe::accel::vit
