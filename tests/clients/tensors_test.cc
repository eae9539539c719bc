#include "clients/tensors.h"

#include <cstring>
#include <vector>

#include "accel/device_layout.h"
#include "accel/kernel.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hgpipe::clients {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

std::string RawInt32(const std::vector<int32_t>& v) {
  std::string s(v.size() * sizeof(int32_t), '\0');
  std::memcpy(s.data(), v.data(), s.size());
  return s;
}

inference::ModelInferResponse Int32Response(std::vector<int64_t> shape,
                                            const std::vector<int32_t>& v) {
  inference::ModelInferResponse r;
  r.set_model_name("m");
  auto* o = r.add_outputs();
  o->set_name("OUTPUT");
  o->set_datatype("INT32");
  for (int64_t d : shape) o->add_shape(d);
  r.add_raw_output_contents(RawInt32(v));
  return r;
}

TEST(MakeImageRequestTest, OneRawInt8TensorOfNImages) {
  const std::vector<int8_t> images = GenerateRandomImages(2, 5);
  ImageRequestOptions o;
  o.id = "req-1";
  auto r = MakeImageRequest("verify", images, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->model_name(), "verify");
  EXPECT_EQ(r->id(), "req-1");
  ASSERT_EQ(r->inputs_size(), 1);
  EXPECT_EQ(r->inputs(0).name(), "INPUT");
  EXPECT_EQ(r->inputs(0).datatype(), "INT8");
  EXPECT_THAT(r->inputs(0).shape(), ElementsAre(2, 196, 768));
  ASSERT_EQ(r->raw_input_contents_size(), 1);
  EXPECT_EQ(r->raw_input_contents(0).size(), 2 * kImageBytes);
  EXPECT_EQ(std::memcmp(r->raw_input_contents(0).data(), images.data(), images.size()), 0);
  ASSERT_EQ(r->outputs_size(), 1);
  EXPECT_EQ(r->outputs(0).name(), "OUTPUT");
  // Raw contents only: no typed contents alongside (KServe v2 rule).
  EXPECT_EQ(r->inputs(0).contents().int_contents_size(), 0);
}

TEST(RequestPolicyTest, PriorityAndTimeoutAreTritonsParameters) {
  const std::vector<int8_t> images = GenerateRandomImages(1, 5);
  auto plain = MakeImageRequest("verify", images);
  ASSERT_TRUE(plain.ok());
  EXPECT_TRUE(plain->parameters().empty());
  ImageRequestOptions o;
  o.priority = 2;
  o.timeout_us = 1500;
  auto r = MakeImageRequest("verify", images, o);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->parameters().count("priority"), 1u);
  EXPECT_EQ(r->parameters().at("priority").uint64_param(), 2u);
  ASSERT_EQ(r->parameters().count("timeout"), 1u);
  EXPECT_EQ(r->parameters().at("timeout").int64_param(), 1500);
  // 0 asks for the model's defaults: the parameters go away.
  SetPriority(&*r, 0);
  SetTimeoutMicros(&*r, 0);
  EXPECT_TRUE(r->parameters().empty());
  SetTimeoutMicros(&*r, UINT64_MAX);
  EXPECT_EQ(r->parameters().at("timeout").int64_param(), INT64_MAX);
}

TEST(MakeImageRequestTest, OtherGeometryAndNoOutputRequested) {
  ImageRequestOptions o;
  o.tokens = 4;
  o.token_values = 2;
  o.input_name = "X";
  o.output_name = "";
  const std::vector<int8_t> data(3 * 8, 1);
  auto r = MakeImageRequest("m", data, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->inputs(0).name(), "X");
  EXPECT_THAT(r->inputs(0).shape(), ElementsAre(3, 4, 2));
  EXPECT_EQ(r->outputs_size(), 0);
}

TEST(MakeImageRequestTest, RejectsPartialOrEmptyImages) {
  std::vector<int8_t> data(kImageBytes + 1);
  auto r = MakeImageRequest("verify", data);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("verify"));
  EXPECT_EQ(MakeImageRequest("verify", {}).status().code(), absl::StatusCode::kInvalidArgument);
  ImageRequestOptions bad;
  bad.tokens = 0;
  EXPECT_EQ(MakeImageRequest("verify", data, bad).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(MakeInt8RequestTest, ShapeMustMatchData) {
  const std::vector<int8_t> data(6);
  EXPECT_TRUE(MakeInt8Request("m", "in", {2, 3}, data).ok());
  EXPECT_EQ(MakeInt8Request("m", "in", {2, 4}, data).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeInt8Request("m", "in", {-1, 6}, data).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeInt8Request("m", "in", {}, data).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ReadInt32OutputTest, DecodesRawLittleEndianRows) {
  const auto r = Int32Response({2, 3}, {1, -2, 262143, -262144, 0, 7});
  auto out = ReadInt32Output(r, "OUTPUT");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_THAT(out->shape, ElementsAre(2, 3));
  EXPECT_THAT(out->values, ElementsAre(1, -2, 262143, -262144, 0, 7));
  // Empty name: the first output.
  EXPECT_TRUE(ReadInt32Output(r).ok());
}

TEST(ReadInt32OutputTest, FindsANamedOutputAmongSeveral) {
  inference::ModelInferResponse r = Int32Response({1}, {5});
  auto* o = r.add_outputs();
  o->set_name("B");
  o->set_datatype("INT32");
  o->add_shape(2);
  r.add_raw_output_contents(RawInt32({8, 9}));
  auto out = ReadInt32Output(r, "B");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_THAT(out->values, ElementsAre(8, 9));
}

TEST(ReadInt32OutputTest, ReadsTypedContentsWhenNotRaw) {
  inference::ModelInferResponse r;
  auto* o = r.add_outputs();
  o->set_name("OUTPUT");
  o->set_datatype("INT32");
  o->add_shape(3);
  for (int v : {4, -5, 6}) o->mutable_contents()->add_int_contents(v);
  auto out = ReadInt32Output(r);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_THAT(out->values, ElementsAre(4, -5, 6));
}

TEST(ReadInt32OutputTest, ErrorsSayWhatIsWrong) {
  const auto r = Int32Response({2, 3}, {1, 2, 3, 4, 5, 6});
  auto missing = ReadInt32Output(r, "LOGITS");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("OUTPUT"));

  EXPECT_EQ(ReadFp32Output(r).status().code(), absl::StatusCode::kInvalidArgument);

  const auto short_raw = Int32Response({2, 3}, {1, 2, 3});
  auto s = ReadInt32Output(short_raw);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr("12 raw bytes"));

  inference::ModelInferResponse extra = r;
  extra.add_raw_output_contents("xx");
  EXPECT_EQ(ReadInt32Output(extra).status().code(), absl::StatusCode::kInvalidArgument);

  EXPECT_EQ(ReadInt32Output(inference::ModelInferResponse()).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(ReadFp32OutputTest, DecodesRawFloats) {
  inference::ModelInferResponse r;
  auto* o = r.add_outputs();
  o->set_name("P");
  o->set_datatype("FP32");
  o->add_shape(1);
  o->add_shape(2);
  const float v[2] = {0.25f, -3.5f};
  r.add_raw_output_contents(std::string(reinterpret_cast<const char*>(v), 8));
  auto out = ReadFp32Output(r, "P");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_THAT(out->values, ElementsAre(0.25f, -3.5f));
}

TEST(ElementCountTest, ProductOrMinusOne) {
  EXPECT_EQ(ElementCount(std::vector<int64_t>{2, 196, 768}), 2 * 150528);
  EXPECT_EQ(ElementCount(std::vector<int64_t>{}), 1);
  EXPECT_EQ(ElementCount(std::vector<int64_t>{-1, 3}), -1);
}

TEST(GenerateRandomImagesTest, DeterministicPerSeedAndDistinct) {
  const auto a = GenerateRandomImages(3, 42);
  EXPECT_EQ(a.size(), 3 * kImageBytes);
  EXPECT_EQ(a, GenerateRandomImages(3, 42));
  EXPECT_NE(a, GenerateRandomImages(3, 43));
  // Images within one call differ from each other.
  EXPECT_NE(std::memcmp(a.data(), a.data() + kImageBytes, kImageBytes), 0);
  // Odd sizes are filled to the end.
  EXPECT_EQ(GenerateRandomImages(2, 1, 13).size(), 26u);
}

TEST(TopKTest, LargestFirstTiesToLowerIndex) {
  const std::vector<int32_t> row = {3, 9, -1, 9, 4};
  EXPECT_THAT(TopK<int32_t>(row, 3), ElementsAre(Pair(1, 9), Pair(3, 9), Pair(4, 4)));
  EXPECT_EQ(TopK<int32_t>(row, 10).size(), 5u);
  EXPECT_TRUE(TopK<int32_t>(row, 0).empty());
}

TEST(VerifyDigestTest, ExpectedLogitsPassAndAnyChangeFails) {
  const auto image = GenerateRandomImages(1, 9);
  std::vector<int32_t> row = ExpectedVerifyLogits(image);
  ASSERT_EQ(row.size(), 1000u);
  for (int32_t v : row) {
    EXPECT_GE(v, -(1 << 18));
    EXPECT_LT(v, 1 << 18);
  }
  EXPECT_TRUE(CheckVerifyRow(image, row).ok());
  row[417] ^= 1;
  absl::Status s = CheckVerifyRow(image, row);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("logit 417"));
  // Another image's digest does not pass.
  EXPECT_FALSE(CheckVerifyRow(GenerateRandomImages(1, 10), ExpectedVerifyLogits(image)).ok());
  EXPECT_FALSE(CheckVerifyRow(image, {}).ok());
}

// The client's expectation agrees with what the emulated board's verify
// kernel computes from the device-packed image (the server's path).
TEST(VerifyDigestTest, MatchesTheEmulatedVerifyKernel) {
  const std::shared_ptr<const accel::Kernel> kernel = accel::VerifyKernel();
  const accel::DeviceGeometry& g = kernel->manifest().geometry;
  ASSERT_EQ(g.input_bytes(), kImageBytes);
  ASSERT_EQ(static_cast<int64_t>(g.classes), kClasses);
  const auto images = GenerateRandomImages(2, 77);
  std::vector<int8_t> device(images.size());
  for (int i = 0; i < 2; ++i) {
    accel::PackImage(g, images.data() + i * kImageBytes, device.data() + i * kImageBytes);
  }
  std::vector<uint32_t> words(2 * g.output_words());
  kernel->Compute(device.data(), 2, words.data());
  for (int i = 0; i < 2; ++i) {
    std::vector<int32_t> row(kClasses);
    for (int64_t j = 0; j < kClasses; ++j) {
      row[j] = accel::DecodeLogitWord(words[i * kClasses + j]);
    }
    EXPECT_TRUE(
        CheckVerifyRow(absl::MakeConstSpan(images).subspan(i * kImageBytes, kImageBytes), row).ok())
        << "image " << i;
  }
}

}  // namespace
}  // namespace hgpipe::clients
