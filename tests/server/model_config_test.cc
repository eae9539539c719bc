#include "server/model_config.h"

#include <filesystem>
#include <fstream>

#include "accel/kernel.h"
#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "server/model_repository.h"

namespace hgpipe::server {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

config::ModelConfig Parse(const std::string& text) {
  config::ModelConfig c;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &c));
  return c;
}

const ModelEntry& Verify() {
  static const ModelEntry* e = [] {
    auto* e = new ModelEntry;
    e->config.set_bitstream("verify");
    EXPECT_TRUE(ResolveEmulatedBitstream(e).ok());
    return e;
  }();
  return *e;
}

absl::Status Check(const std::string& text) {
  config::ModelConfig c = Parse(text);
  NormalizeModelConfig(Verify(), &c);
  return ValidateModelConfig(c, Verify(), "m", "repo/m/config.pbtxt");
}

TEST(ModelConfigTest, NormalizeFillsDefaultsFromTheBitstream) {
  config::ModelConfig c = Parse(R"(name: "m" bitstream: "verify")");
  NormalizeModelConfig(Verify(), &c);
  EXPECT_EQ(c.input().name(), "INPUT");
  EXPECT_EQ(c.input().datatype(), "INT8");
  EXPECT_THAT(c.input().dims(), ::testing::ElementsAre(196, 768));
  EXPECT_EQ(c.output().name(), "OUTPUT");
  EXPECT_THAT(c.output().dims(), ::testing::ElementsAre(1000));
  EXPECT_EQ(c.batching().max_images_per_run(), 32u);
  EXPECT_EQ(c.batching().max_queue_delay_us(), 0u);
  EXPECT_EQ(c.batching().max_queue_images(), 4096u);
  EXPECT_EQ(c.max_images_per_request(), 256u);
  EXPECT_EQ(c.batching().priority_levels(), 1u);
  EXPECT_EQ(c.batching().default_priority_level(), 1u);
  EXPECT_EQ(c.batching().max_starvation_us(), 100000u);
  EXPECT_EQ(c.batching().low_priority_run_images(), 1u);
  EXPECT_EQ(c.batching().default_timeout_us(), 0u);
  EXPECT_TRUE(ValidateModelConfig(c, Verify(), "m", "x").ok());
}

TEST(ModelConfigTest, DefaultPriorityIsTheLowestLevel) {
  config::ModelConfig c = Parse(R"(name: "m" bitstream: "verify"
                                   batching { priority_levels: 3 })");
  NormalizeModelConfig(Verify(), &c);
  EXPECT_EQ(c.batching().default_priority_level(), 3u);
  EXPECT_TRUE(ValidateModelConfig(c, Verify(), "m", "x").ok());
  c = Parse(R"(name: "m" bitstream: "verify"
               batching { priority_levels: 3 default_priority_level: 2
                          max_starvation_us: 5000 low_priority_run_images: 4
                          default_timeout_us: 250000 })");
  NormalizeModelConfig(Verify(), &c);
  EXPECT_EQ(c.batching().default_priority_level(), 2u);
  EXPECT_EQ(c.batching().max_starvation_us(), 5000u);
  EXPECT_EQ(c.batching().low_priority_run_images(), 4u);
  EXPECT_EQ(c.batching().default_timeout_us(), 250000u);
  EXPECT_TRUE(ValidateModelConfig(c, Verify(), "m", "x").ok());
}

TEST(ModelConfigTest, EncodedImageModelsGetPreprocessingDefaultsFromTheGeometry) {
  config::ModelConfig c = Parse(R"(name: "m" bitstream: "verify" input_format: ENCODED_IMAGE
               preprocess { resize: "shorter_side_center_crop" })");
  NormalizeModelConfig(Verify(), &c);
  EXPECT_EQ(c.input().datatype(), "BYTES");
  EXPECT_THAT(c.input().dims(), ::testing::ElementsAre(1));
  // 196 tokens of 768 = 14 x 14 patches of 16 x 16 x 3, patch 0 replaced.
  EXPECT_EQ(c.preprocess().height(), 224u);
  EXPECT_EQ(c.preprocess().patch_width(), 16u);
  EXPECT_EQ(c.preprocess().resize_shorter_side(), 256u);
  EXPECT_EQ(c.preprocess().mean_size(), 3);
  EXPECT_TRUE(ValidateModelConfig(c, Verify(), "m", "x").ok());
  auto o = PreprocessOptions(c, Verify().manifest.geometry);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->resize, preprocess::ResizeMode::kShorterSideThenCenterCrop);
  EXPECT_EQ(o->tokens, 196);
}

TEST(ModelConfigTest, BadPreprocessingIsNamed) {
  const absl::Status s = Check(R"(name: "m" bitstream: "verify" input_format: PIXELS
                                  preprocess { resize: "stretch" })");
  EXPECT_THAT(s.message(), HasSubstr("repo/m/config.pbtxt: preprocess.resize: 'stretch'"));
  const absl::Status t = Check(R"(name: "m" bitstream: "verify" input_format: PIXELS
                                  preprocess { mean: [0.5] })");
  EXPECT_THAT(t.message(), HasSubstr("preprocess.mean / preprocess.stddev: need 3"));
  const absl::Status u = Check(R"(name: "m" bitstream: "verify" input_format: ENCODED_IMAGE
                                  input { datatype: "UINT8" })");
  EXPECT_THAT(u.message(), HasSubstr("input.datatype: 'UINT8' does not fit input_format "
                                     "ENCODED_IMAGE (BYTES)"));
}

TEST(ModelConfigTest, EachBadFieldIsNamedWithTheFile) {
  struct Case {
    const char* config;
    const char* message;
  } cases[] = {
      {R"(name: "other" bitstream: "verify")",
       "repo/m/config.pbtxt: name: 'other' must equal the directory name 'm'"},
      {R"(name: "m" bitstream: "verify" input { datatype: "FP32" })",
       "repo/m/config.pbtxt: input.datatype: 'FP32' does not fit input_format "
       "DEVICE_PATCHES (INT8)"},
      {R"(name: "m" bitstream: "verify" input { dims: [196] })",
       "input.dims: [196] does not match bitstream 'verify' ([196, 768])"},
      {R"(name: "m" bitstream: "verify" output { dims: [10] })",
       "output.dims: [10] does not match bitstream 'verify' ([1000])"},
      {R"(name: "m" bitstream: "verify" output { datatype: "FP16" })",
       "output.datatype: 'FP16' is not supported"},
      {R"(name: "m" bitstream: "verify" output { name: "INPUT" })",
       "output.name: must differ from input.name"},
      {R"(name: "m" bitstream: "verify" batching { max_images_per_run: 4097 })",
       "batching.max_images_per_run: 4097 is more than 4096"},
      {R"(name: "m" bitstream: "verify" batching { max_queue_delay_us: 20000000 })",
       "batching.max_queue_delay_us"},
      {R"(name: "m" bitstream: "verify" max_images_per_request: 5000)",
       "max_images_per_request: 5000 exceeds batching.max_queue_images (4096)"},
      {R"(name: "m" bitstream: "verify" batching { priority_levels: 65 })",
       "repo/m/config.pbtxt: batching.priority_levels: 65 is more than 64"},
      {R"(name: "m" bitstream: "verify"
          batching { priority_levels: 2 default_priority_level: 3 })",
       "repo/m/config.pbtxt: batching.default_priority_level: 3 is outside the "
       "levels 1..2"},
      {R"(name: "m" bitstream: "verify" batching { default_priority_level: 2 })",
       "batching.default_priority_level: 2 is outside the levels 1..1"},
      {R"(name: "m" bitstream: "verify" batching { max_starvation_us: 60000001 })",
       "repo/m/config.pbtxt: batching.max_starvation_us"},
      {R"(name: "m" bitstream: "verify" batching { low_priority_run_images: 5000 })",
       "batching.low_priority_run_images: 5000 is more than 4096"},
      {R"(name: "m" bitstream: "verify" batching { default_timeout_us: 3600000001 })",
       "repo/m/config.pbtxt: batching.default_timeout_us"},
  };
  for (const Case& c : cases) {
    const absl::Status s = Check(c.config);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.config;
    EXPECT_THAT(s.message(), HasSubstr(c.message)) << c.config;
  }
}

class RepositoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("hgpipe-repo-test-" + std::to_string(getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }
  void Write(const std::string& model, const std::string& text) {
    fs::create_directories(root_ / model);
    std::ofstream(root_ / model / "config.pbtxt") << text;
  }
  absl::StatusOr<std::vector<ModelEntry>> Load() {
    return LoadModelRepository(root_.string(), ResolveEmulatedBitstream);
  }
  fs::path root_;
};

TEST_F(RepositoryTest, LoadsModelsSortedAndSkipsOtherDirectories) {
  Write("b", R"(name: "b" bitstream: "verify")");
  Write("a", R"(name: "a" bitstream: "verify")");
  fs::create_directories(root_ / "not_a_model");
  auto models = Load();
  ASSERT_TRUE(models.ok()) << models.status();
  ASSERT_EQ(models->size(), 2u);
  EXPECT_EQ((*models)[0].config.name(), "a");
  EXPECT_EQ((*models)[1].config.name(), "b");
  EXPECT_EQ((*models)[0].manifest.name, "verify");
}

TEST_F(RepositoryTest, ErrorsNameTheFile) {
  auto empty = Load();
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(empty.status().message(), HasSubstr("no model"));

  Write("a", "name: \"a\"\nbitstream: \"verify\"\nbatching { nonsense: 1 }\n");
  auto syntax = Load();
  EXPECT_EQ(syntax.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(syntax.status().message(),
              HasSubstr("a/config.pbtxt: not a valid ModelConfig: line 3"));
  EXPECT_THAT(syntax.status().message(), HasSubstr("nonsense"));

  Write("a", R"(name: "a")");
  EXPECT_THAT(Load().status().message(), HasSubstr("a/config.pbtxt: bitstream: missing"));
  Write("a", R"(name: "a" bitstream: "nope")");
  EXPECT_THAT(Load().status().message(),
              HasSubstr("a/config.pbtxt: bitstream: no emulated kernel for bitstream 'nope'"));
  EXPECT_EQ(LoadModelRepository("/no/such/dir", ResolveEmulatedBitstream).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(RepositoryTest, ListsAndLoadsOneDirectory) {
  Write("b", R"(name: "b" bitstream: "verify")");
  Write("a", R"(name: "a" bitstream: "nope")");
  fs::create_directories(root_ / "not_a_model");
  auto names = ListModelDirectories(root_.string());
  ASSERT_TRUE(names.ok()) << names.status();
  EXPECT_THAT(*names, ::testing::ElementsAre("a", "b"));
  auto b = LoadModelDirectory(root_.string(), "b", ResolveEmulatedBitstream);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->config.name(), "b");
  EXPECT_EQ(b->config.batching().priority_levels(), 1u);  // normalized
  auto a = LoadModelDirectory(root_.string(), "a", ResolveEmulatedBitstream);
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(a.status().message(), HasSubstr("a/config.pbtxt: bitstream:"));
  for (const char* bad : {"c", "not_a_model", "../b", ""}) {
    EXPECT_EQ(LoadModelDirectory(root_.string(), bad, ResolveEmulatedBitstream).status().code(),
              absl::StatusCode::kNotFound)
        << bad;
  }
  EXPECT_EQ(ListModelDirectories("/no/such/dir").status().code(), absl::StatusCode::kNotFound);
}

TEST(ModelConfigTest, ValueOrderAndRotateMapOntoPreprocessOptions) {
  config::ModelConfig c = Parse(R"(name: "m" bitstream: "verify" input_format: ENCODED_IMAGE
               preprocess { value_order: "chw" cls_placeholder: "rotate" })");
  NormalizeModelConfig(Verify(), &c);
  ASSERT_TRUE(ValidateModelConfig(c, Verify(), "m", "x").ok());
  auto o = PreprocessOptions(c, Verify().manifest.geometry);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->value_order, preprocess::ValueOrder::kChw);
  EXPECT_EQ(o->cls_placeholder, preprocess::ClsPlaceholder::kRotate);
  EXPECT_EQ(o->tokens, 196);  // rotate: as many tokens as patches

  c = Parse(R"(name: "m" bitstream: "verify" input_format: ENCODED_IMAGE)");
  NormalizeModelConfig(Verify(), &c);
  EXPECT_EQ(c.preprocess().value_order(), "hwc");
  EXPECT_TRUE(c.preprocess().jpeg_scaled_decode());
  o = PreprocessOptions(c, Verify().manifest.geometry);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_TRUE(o->jpeg_scaled_decode);
  c = Parse(R"(name: "m" bitstream: "verify" input_format: ENCODED_IMAGE
               preprocess { jpeg_scaled_decode: false })");
  NormalizeModelConfig(Verify(), &c);
  o = PreprocessOptions(c, Verify().manifest.geometry);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_FALSE(o->jpeg_scaled_decode);
  c = Parse(R"(name: "m" bitstream: "verify" input_format: ENCODED_IMAGE)");
  NormalizeModelConfig(Verify(), &c);
  EXPECT_EQ(c.preprocess().cls_placeholder(), "replace_first_patch");

  EXPECT_THAT(Check(R"(name: "m" bitstream: "verify" input_format: PIXELS
                       preprocess { value_order: "cwh" })")
                  .message(),
              HasSubstr("repo/m/config.pbtxt: preprocess.value_order: 'cwh' is not hwc or chw"));
  EXPECT_THAT(Check(R"(name: "m" bitstream: "verify" input_format: PIXELS
                       preprocess { cls_placeholder: "roll" })")
                  .message(),
              HasSubstr("'roll' is not replace_first_patch, rotate or prepend"));
}

TEST(ModelConfigTest, QuantScaleDefaultsToTheKernelsInputScale) {
  ModelEntry e = Verify();
  e.input_scale = 0.125;
  config::ModelConfig c = Parse(R"(name: "m" bitstream: "verify" input_format: PIXELS)");
  NormalizeModelConfig(e, &c);
  EXPECT_FLOAT_EQ(c.preprocess().quant_scale(), 0.125f);
  e.input_scale = 0;
  c = Parse(R"(name: "m" bitstream: "verify" input_format: PIXELS)");
  NormalizeModelConfig(e, &c);
  EXPECT_FLOAT_EQ(c.preprocess().quant_scale(), 1.0f / 32.0f);
  e.input_scale = 0.125;
  c = Parse(R"(name: "m" bitstream: "verify" input_format: PIXELS
               preprocess { quant_scale: 0.5 })");
  NormalizeModelConfig(e, &c);
  EXPECT_FLOAT_EQ(c.preprocess().quant_scale(), 0.5f);  // the config's wins
}

TEST(BundledRepositoryTest, DeitTinyPreprocessesAsItsAuthorsHost) {
  // models/deit_tiny/config.pbtxt must give preprocess::DeitTinyOptions(),
  // the transform tests/preprocess/hgpipe_golden_test.cc checks bit for bit.
  const char* src = std::getenv("HGPIPE_SOURCE_DIR");
  if (src == nullptr) src = HGPIPE_TEST_SOURCE_DIR;
  auto e = LoadModelDirectory(std::string(src) + "/models", "deit_tiny", ResolveEmulatedBitstream);
  ASSERT_TRUE(e.ok()) << e.status();
  auto o = PreprocessOptions(e->config, e->manifest.geometry);
  ASSERT_TRUE(o.ok()) << o.status();
  const preprocess::Options want = preprocess::DeitTinyOptions();
  EXPECT_EQ(o->tokens, want.tokens);
  EXPECT_EQ(o->token_values, want.token_values);
  EXPECT_EQ(o->cls_placeholder, want.cls_placeholder);
  EXPECT_EQ(o->value_order, want.value_order);
  EXPECT_EQ(o->height, want.height);
  EXPECT_EQ(o->width, want.width);
  EXPECT_EQ(o->patch_height, want.patch_height);
  EXPECT_EQ(o->patch_width, want.patch_width);
  EXPECT_EQ(o->resize, want.resize);
  EXPECT_EQ(o->resize_shorter_side, want.resize_shorter_side);
  EXPECT_EQ(o->filter, want.filter);
  EXPECT_EQ(o->mean, want.mean);
  EXPECT_EQ(o->stddev, want.stddev);
  EXPECT_EQ(o->quant_scale, want.quant_scale);
  EXPECT_EQ(o->quant_zero_point, want.quant_zero_point);
  EXPECT_EQ(o->jpeg_scaled_decode, want.jpeg_scaled_decode);
}

TEST(BundledRepositoryTest, TheSourceTreeRepositoryLoads) {
  const char* src = std::getenv("HGPIPE_SOURCE_DIR");
  if (src == nullptr) src = HGPIPE_TEST_SOURCE_DIR;
  auto models = LoadModelRepository(std::string(src) + "/models", ResolveEmulatedBitstream);
  ASSERT_TRUE(models.ok()) << models.status();
  bool has_verify = false;
  for (const auto& m : *models) has_verify |= m.config.name() == "verify";
  EXPECT_TRUE(has_verify);
}

}  // namespace
}  // namespace hgpipe::server
