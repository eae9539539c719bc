#include "accel/vit/weight_file.h"

#include <cstdio>
#include <cstring>
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
    file_ = ReadFile(DeitTinyWeightsPath());
    ASSERT_FALSE(file_.empty()) << DeitTinyWeightsPath();
    absl::StatusOr<Container> c = ParseContainer(file_, "deit.hgvit");
    ASSERT_TRUE(c.ok()) << c.status();
    container_ = *std::move(c);
    bytes_ = SerializeContainer(container_);  // the uncompressed image
  }

  // Decodes a modified container the way LoadVitKernel would.
  absl::Status Decode(const Container& c) {
    const std::string bytes = SerializeContainer(c);
    absl::StatusOr<Container> parsed = ParseContainer(bytes, "edited.hgvit");
    if (!parsed.ok()) return parsed.status();
    return VitWeightsFromContainer(*parsed, "edited.hgvit").status();
  }

  static std::string& Manifest(Container* c, const std::string& key) {
    for (auto& [k, v] : c->manifest) {
      if (k == key) return v;
    }
    static std::string none;
    ADD_FAILURE() << "no manifest key " << key;
    return none;
  }

  // Replaces "name=value" in a stage line.
  static void SetParam(Container* c, const std::string& key, const std::string& name,
                       const std::string& value) {
    std::string& line = Manifest(c, key);
    const size_t at = line.find(name + "=");
    ASSERT_NE(at, std::string::npos) << key << " has no " << name;
    const size_t end = line.find(' ', at);
    line.replace(at, (end == std::string::npos ? line.size() : end) - at, name + "=" + value);
  }

  template <typename T>
  static void SetElement(Container* c, const std::string& name, size_t i, T v) {
    Tensor& t = c->tensors.at(name);
    ASSERT_EQ(DTypeSize(t.dtype), sizeof(T));
    std::memcpy(t.bytes.data() + i * sizeof(T), &v, sizeof(T));
  }

  std::string file_;   // as committed: gzip
  std::string bytes_;  // the container image
  Container container_;
};

TEST(Crc32Test, MatchesZlib) {
  EXPECT_EQ(Crc32("123456789", 9), 0xCBF43926u);
  EXPECT_EQ(Crc32("", 0), 0u);
}

TEST_F(WeightFileTest, CommittedFileIsGzipAndRoundTrips) {
  ASSERT_GE(file_.size(), 2u);
  EXPECT_EQ(static_cast<uint8_t>(file_[0]), 0x1f);
  EXPECT_EQ(static_cast<uint8_t>(file_[1]), 0x8b);
  absl::StatusOr<Container> again = ParseContainer(bytes_, "again");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->manifest, container_.manifest);
  ASSERT_EQ(again->tensors.size(), container_.tensors.size());
  for (const auto& [name, t] : container_.tensors) {
    EXPECT_EQ(again->tensors.at(name).bytes, t.bytes) << name;
    EXPECT_EQ(again->tensors.at(name).dims, t.dims) << name;
  }
  EXPECT_EQ(SerializeContainer(*again), bytes_);
  EXPECT_TRUE(VitWeightsFromContainer(*again, "again").ok());
}

TEST_F(WeightFileTest, DamagedGzipIsRejectedWithTheFileName) {
  for (size_t len : {size_t{2}, size_t{10}, file_.size() / 3, file_.size() - 1}) {
    absl::StatusOr<Container> c =
        ParseContainer(absl::string_view(file_).substr(0, len), "cut.hgvit.gz");
    ASSERT_FALSE(c.ok()) << "accepted gzip data cut to " << len << " bytes";
    EXPECT_THAT(c.status().message(), HasSubstr("cut.hgvit.gz")) << len;
  }
  std::string bad = file_;
  bad[bad.size() / 2] ^= 0x55;
  absl::StatusOr<Container> c = ParseContainer(bad, "flipped.gz");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("flipped.gz"));
  c = ParseContainer(file_ + "trailing", "long.gz");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("after the gzip data"));
}

TEST_F(WeightFileTest, EveryTruncationIsRejectedWithTheFileName) {
  // Every cut inside the header region, then a stride through the data.
  for (size_t len = 0; len < bytes_.size(); len += (len < 4096 ? 1 : 99991)) {
    absl::StatusOr<Container> c =
        ParseContainer(absl::string_view(bytes_).substr(0, len), "cut.hgvit");
    ASSERT_FALSE(c.ok()) << "accepted a file cut to " << len << " bytes";
    EXPECT_THAT(c.status().message(), HasSubstr("cut.hgvit")) << len;
  }
}

TEST_F(WeightFileTest, TruncationNamesTheField) {
  absl::StatusOr<Container> c =
      ParseContainer(absl::string_view(bytes_).substr(0, bytes_.size() / 2), "half.hgvit");
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
  std::string v1 = bytes_;
  v1[8] = 1;
  c = ParseContainer(v1, "v1.hgvit");
  EXPECT_THAT(c.status().message(), HasSubstr("version 1 is not supported"));
  c = ParseContainer(bytes_ + "x", "long.hgvit");
  EXPECT_FALSE(c.ok());
}

TEST_F(WeightFileTest, MissingTensorIsNamed) {
  Container c = container_;
  c.tensors.erase("blocks.1.mlp.fc1.weight");
  absl::Status s = Decode(c);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("edited.hgvit"));
  EXPECT_THAT(s.message(), HasSubstr("'blocks.1.mlp.fc1.weight': missing"));
  c = container_;
  c.tensors["blocks.1.extra"] = c.tensors.at("patch.cls");
  EXPECT_THAT(Decode(c).message(), HasSubstr("'blocks.1.extra': unknown tensor"));
}

TEST_F(WeightFileTest, WrongShapeAndDtypeAreNamed) {
  Container c = container_;
  c.tensors.at("head.bias").dims = {500, 2};
  EXPECT_THAT(Decode(c).message(), HasSubstr("'head.bias': shape [500, 2]"));
  c = container_;
  Tensor& t = c.tensors.at("patch.bias");
  t.dtype = DType::kInt16;
  t.dims = {static_cast<uint32_t>(t.bytes.size() / 2)};
  EXPECT_THAT(Decode(c).message(), HasSubstr("'patch.bias': dtype int16"));
}

TEST_F(WeightFileTest, TableOfTheWrongLengthIsNamed) {
  Container c = container_;
  Tensor& t = c.tensors.at("blocks.3.attn.norm.rsqrt");
  t.dims = {127};
  t.bytes.resize(127 * 4);
  absl::Status s = Decode(c);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("'blocks.3.attn.norm.rsqrt': shape [127], expected [128]"));
  // The bound decides the length: a bound past the table is the same error.
  c = container_;
  SetParam(&c, "blocks.0.attn.softmax", "exp_bound", "40");
  EXPECT_THAT(Decode(c).message(),
              HasSubstr("'blocks.0.attn.softmax.exp': shape [32], expected [41]"));
}

TEST_F(WeightFileTest, ScalarsOutOfRangeNameTheStageAndParameter) {
  Container c = container_;
  SetParam(&c, "blocks.2.mlp.residual", "shift", "0");
  absl::Status s = Decode(c);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(
      s.message(),
      HasSubstr("manifest 'blocks.2.mlp.residual' parameter 'shift': 0 is outside [1, 62]"));
  c = container_;
  SetParam(&c, "blocks.0.attn.q_quant", "shift", "99");
  EXPECT_THAT(Decode(c).message(), HasSubstr("'blocks.0.attn.q_quant' parameter 'shift'"));
  c = container_;
  SetParam(&c, "head.norm", "mean_mult", "x");
  EXPECT_THAT(Decode(c).message(), HasSubstr("'mean_mult': 'x' is not an integer"));
}

TEST_F(WeightFileTest, ValuesOutsideTheirTypesAreRejected) {
  Container c = container_;
  SetElement<int8_t>(&c, "blocks.5.mlp.fc2.weight", 7, 4);  // s3 holds -4..3
  absl::Status s = Decode(c);
  EXPECT_THAT(s.message(), HasSubstr("'blocks.5.mlp.fc2.weight': element 7 = 4 does not fit s3"));
  c = container_;
  SetElement<int32_t>(&c, "blocks.0.attn.q_quant.table", 3, 8);  // s3 out
  EXPECT_THAT(Decode(c).message(), HasSubstr("'blocks.0.attn.q_quant.table': element 3 = 8"));
  c = container_;
  SetElement<int32_t>(&c, "blocks.0.attn.q.bias", 0, 5000);  // s11 bias
  EXPECT_THAT(Decode(c).message(), HasSubstr("'blocks.0.attn.q.bias': element 0 = 5000"));
}

TEST_F(WeightFileTest, TypesAreCheckedWhereTheDatapathNeedsThem) {
  Container c = container_;
  SetParam(&c, "blocks.0.attn.norm", "out", "s9");
  EXPECT_THAT(Decode(c).message(), HasSubstr("s9: matrix-product operands are"));
  c = container_;
  SetParam(&c, "blocks.0.attn.o", "acc", "s33");
  EXPECT_THAT(Decode(c).message(), HasSubstr("s33 is wider than int32"));
  c = container_;
  SetParam(&c, "head", "acc", "s20");
  EXPECT_THAT(Decode(c).message(), HasSubstr("wider than the 19-bit logit word"));
  c = container_;
  SetParam(&c, "blocks.0.attn.k_quant", "out", "u3");
  EXPECT_THAT(Decode(c).message(),
              HasSubstr("'blocks.0.attn.k_quant' parameter 'out': u3: matrix-product "
                        "operands are s1..s8"));
  c = container_;
  SetParam(&c, "blocks.0.attn.v_quant", "out", "s8");
  EXPECT_THAT(Decode(c).message(), HasSubstr("attention's k and v are s1..s7"));
  c = container_;
  SetParam(&c, "blocks.1.mlp.norm", "var", "x26");
  EXPECT_THAT(Decode(c).message(), HasSubstr("'x26' is not a type"));
  c = container_;
  Manifest(&c, "blocks.1.mlp.gelu") += " colour=blue";
  EXPECT_THAT(Decode(c).message(), HasSubstr("'colour': unknown parameter"));
  c = container_;
  SetParam(&c, "blocks.1.mlp.gelu", "bound", "63 bound=63");
  EXPECT_THAT(Decode(c).message(), HasSubstr("given twice"));
}

TEST_F(WeightFileTest, ManifestErrorsNameTheKey) {
  Container c = container_;
  Manifest(&c, "tokens") = "27";
  EXPECT_THAT(Decode(c).message(), HasSubstr("even"));
  c = container_;
  Manifest(&c, "heads") = "5";
  EXPECT_THAT(Decode(c).message(), HasSubstr("not a multiple of heads"));
  c = container_;
  c.manifest.emplace_back("colour", "blue");
  EXPECT_THAT(Decode(c).message(), HasSubstr("'colour': unknown key"));
  c = container_;
  for (auto it = c.manifest.begin(); it != c.manifest.end(); ++it) {
    if (it->first == "blocks.7.attn.softmax") {
      c.manifest.erase(it);
      break;
    }
  }
  EXPECT_THAT(Decode(c).message(), HasSubstr("manifest 'blocks.7.attn.softmax': missing"));
}

TEST_F(WeightFileTest, LoadVitKernelReportsTheFile) {
  const std::string path = ::testing::TempDir() + "/truncated.hgvit";
  {
    std::ofstream out(path, std::ios::binary);
    out << file_.substr(0, 1000);
  }
  absl::StatusOr<std::shared_ptr<const VitKernel>> k = LoadVitKernel(path);
  EXPECT_EQ(k.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(k.status().message(), HasSubstr(path));
  std::remove(path.c_str());
}

}  // namespace
}  // namespace hgpipe::accel::vit
