// The HG-PIPE authors' DeiT-tiny through the real binary: their traced image
// sent as device patches comes back as their golden logits, bit for bit;
// photos sent as JPEG files come back with the right ImageNet classes and
// their names, through the gRPC API and through hgpipe-client.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "accel/device_layout.h"
#include "accel/vit/weight_file.h"
#include "clients/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server_process.h"

namespace hgpipe::testing {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The classification strings "score:index:label" of one image's top k.
std::vector<std::string> TopK(const inference::ModelInferResponse& r) {
  std::vector<std::string> out;
  const std::string& raw = r.raw_output_contents(0);
  for (size_t pos = 0; pos + 4 <= raw.size();) {
    uint32_t len;
    std::memcpy(&len, raw.data() + pos, 4);
    out.push_back(raw.substr(pos + 4, len));
    pos += 4 + len;
  }
  return out;
}

std::string Label(const std::string& top) {  // "score:index:label" -> label
  const size_t a = top.find(':');
  const size_t b = top.find(':', a + 1);
  return b == std::string::npos ? "" : top.substr(b + 1);
}

TEST(HgpipeNetworkTest, TheAuthorsImageAsDevicePatchesGivesTheirLogits) {
  const std::string weights = SourceDir() + "/models/deit_tiny/deit_tiny.hgvit";
  const std::string repo = WriteModelRepository("deit_patches", absl::StrCat(R"(
name: "deit_patches"
bitstream: "deit_tiny"
weights: ")",
                                                                             weights, R"("
input_format: DEVICE_PATCHES
input { name: "INPUT" datatype: "INT8" dims: [196, 768] }
output { name: "LOGITS" datatype: "INT32" dims: [1000] }
)"));
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start({"--model-repository", repo, "--boards", "sim:1"});
  ASSERT_TRUE(server.ok()) << server.status();

  absl::StatusOr<accel::vit::Container> golden =
      accel::vit::ReadContainer(SourceDir() + "/models/deit_tiny/golden.hgvit");
  ASSERT_TRUE(golden.ok()) << golden.status();
  const accel::vit::Tensor& input = golden->tensors.at("input");
  const std::vector<int64_t> words = golden->tensors.at("output").ToInt64();
  accel::DeviceGeometry g;  // DeiT-tiny's: 196 x 768 in, 1000 out
  ASSERT_EQ(input.bytes.size(), g.input_bytes());
  ASSERT_EQ(words.size(), g.classes);
  // The golden file holds the device order; the API takes [tokens][values].
  std::string flat(g.input_bytes(), '\0');
  accel::UnpackImage(g, reinterpret_cast<const int8_t*>(input.bytes.data()),
                     reinterpret_cast<int8_t*>(flat.data()));

  inference::ModelInferRequest req;
  req.set_model_name("deit_patches");
  auto* in = req.add_inputs();
  in->set_name("INPUT");
  in->set_datatype("INT8");
  for (int64_t d : {1, 196, 768}) in->add_shape(d);
  req.add_raw_input_contents(flat);
  auto client = clients::InferenceClient::Create((*server)->grpc_target());
  ASSERT_TRUE(client.ok()) << client.status();
  absl::StatusOr<inference::ModelInferResponse> resp = (*client)->Infer(req);
  ASSERT_TRUE(resp.ok()) << resp.status();
  ASSERT_EQ(resp->raw_output_contents(0).size(), g.classes * sizeof(int32_t));
  const auto* logits = reinterpret_cast<const int32_t*>(resp->raw_output_contents(0).data());
  int differ = 0;
  for (size_t c = 0; c < g.classes; ++c) {
    const int32_t want = accel::DecodeLogitWord(static_cast<uint32_t>(words[c]));
    if (logits[c] != want && ++differ <= 5) {
      ADD_FAILURE() << "class " << c << ": " << logits[c] << " != golden " << want;
    }
  }
  EXPECT_EQ(differ, 0);
}

// A broken weight file fails its model's load with the file, the tensor and
// the reason; the server keeps serving its other models.
TEST(HgpipeNetworkTest, ABrokenWeightFileFailsItsLoadAndOthersServe) {
  const std::string good = ReadFile(SourceDir() + "/models/deit_tiny/deit_tiny.hgvit");
  ASSERT_FALSE(good.empty());
  const std::string broken = ::testing::TempDir() + "/broken.hgvit";
  {
    std::ofstream out(broken, std::ios::binary);
    out << good.substr(0, good.size() / 2);  // truncated gzip data
  }
  const std::string repo = WriteModelRepository(
      {{"verify", ReadFile(SourceDir() + "/models/verify/config.pbtxt")},
       {"broken", absl::StrCat("name: \"broken\"\nbitstream: \"deit_tiny\"\nweights: \"", broken,
                               "\"\ninput_format: ENCODED_IMAGE\n", "input { name: \"IMAGE\" }\n",
                               "output { name: \"LOGITS\" datatype: \"FP32\" }\n")}});
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start({"--model-repository", repo, "--boards", "sim:1", "--model-control-mode",
                            "explicit", "--load-model", "verify"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = clients::InferenceClient::Create((*server)->grpc_target());
  ASSERT_TRUE(client.ok()) << client.status();
  const absl::Status load = (*client)->LoadModel("broken");
  EXPECT_EQ(load.code(), absl::StatusCode::kInvalidArgument) << load;
  EXPECT_THAT(load.message(), HasSubstr(broken));
  EXPECT_THAT(load.message(), HasSubstr("gzip data is truncated"));
  absl::StatusOr<bool> ready = (*client)->ModelReady("verify");
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_TRUE(*ready);
  absl::StatusOr<inference::ModelMetadataResponse> md = (*client)->ModelMetadata("verify");
  EXPECT_TRUE(md.ok()) << md.status();
  std::remove(broken.c_str());
}

class PhotoTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<ServerProcess>> s =
        ServerProcess::Start({"--boards", "sim:1"});  // the embedded default
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = s->release();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }

  std::vector<std::string> Classify(const std::string& photo, int k) {
    inference::ModelInferRequest req;
    req.set_model_name("deit_tiny");
    auto* in = req.add_inputs();
    in->set_name("IMAGE");
    in->set_datatype("BYTES");
    in->add_shape(1);
    in->add_shape(1);
    const std::string file = ReadFile(SourceDir() + "/tests/data/photos/" + photo);
    EXPECT_FALSE(file.empty()) << photo;
    const uint32_t len = file.size();
    std::string raw(reinterpret_cast<const char*>(&len), 4);
    raw += file;
    req.add_raw_input_contents(raw);
    auto* out = req.add_outputs();
    out->set_name("LOGITS");
    (*out->mutable_parameters())["classification"].set_int64_param(k);
    auto client = clients::InferenceClient::Create(server_->grpc_target());
    EXPECT_TRUE(client.ok()) << client.status();
    if (!client.ok()) return {};
    absl::StatusOr<inference::ModelInferResponse> resp = (*client)->Infer(req);
    EXPECT_TRUE(resp.ok()) << resp.status();
    return resp.ok() ? TopK(*resp) : std::vector<std::string>{};
  }

  static ServerProcess* server_;
};
ServerProcess* PhotoTest::server_ = nullptr;

TEST_F(PhotoTest, ACatIsACat) {
  const std::vector<std::string> top = Classify("cat.jpg", 5);
  ASSERT_EQ(top.size(), 5u);
  EXPECT_THAT(Label(top[0]), AnyOf("Egyptian cat", "tabby", "tiger cat")) << top[0];
  int cats = 0;
  for (const std::string& t : top) {
    cats += Label(t) == "Egyptian cat" || Label(t) == "tabby" || Label(t) == "tiger cat";
  }
  EXPECT_EQ(cats, 3) << top[0] << " " << top[1] << " " << top[2];
}

TEST_F(PhotoTest, ACupOfCoffeeIsAnEspresso) {
  const std::vector<std::string> top = Classify("coffee.jpg", 3);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(Label(top[0]), "espresso") << top[0];
}

// The README's example, as a user runs it.
TEST_F(PhotoTest, HgpipeClientPrintsTheClassesAndTheirNames) {
  const ExitResult r = RunToExit(BinDir() + "/hgpipe-client",
                                 {"--url", server_->grpc_target(), "infer", "deit_tiny", "--image",
                                  SourceDir() + "/tests/data/photos/cat.jpg", "--top-k", "5"});
  ASSERT_TRUE(r.exited) << r.log;
  EXPECT_EQ(r.code, 0) << r.log;
  EXPECT_THAT(r.log, HasSubstr("Egyptian cat"));
  EXPECT_THAT(r.log, HasSubstr("tabby"));
}

}  // namespace
}  // namespace hgpipe::testing
