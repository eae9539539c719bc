#include "preprocess/options.h"

#include <functional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hgpipe::preprocess {
namespace {

using ::testing::HasSubstr;

// The fmnist_vit model (tools/vit/fmnist_data.py): 28x28 gray, patches of 4
// rows x 7 columns, 7 x 4 = 28 tokens of 28 values (token 0, the top-left
// patch, is the CLS placeholder), q = p - 128.
Options FashionMnist() {
  Options o;
  o.tokens = 28;
  o.token_values = 28;
  o.cls_placeholder = ClsPlaceholder::kReplaceFirstPatch;
  o.height = 28;
  o.width = 28;
  o.channels = 1;
  o.patch_height = 4;
  o.patch_width = 7;
  o.resize = ResizeMode::kExact;  // a no-op on 28x28 images
  o.mean = {128.0f / 255.0f, 0, 0};
  o.stddev = {128.0f / 255.0f, 1, 1};
  o.quant_scale = 1.0f / 128.0f;
  o.quant_zero_point = 0;
  return o;
}

TEST(OptionsTest, DefaultsAndModelsValidate) {
  EXPECT_TRUE(Options().Validate().ok()) << Options().Validate();
  EXPECT_TRUE(DeitTinyOptions().Validate().ok()) << DeitTinyOptions().Validate();
  EXPECT_TRUE(FashionMnist().Validate().ok()) << FashionMnist().Validate();
  EXPECT_EQ(DeitTinyOptions().input_bytes(), 150'528u);  // 196 x 768
  EXPECT_EQ(FashionMnist().input_bytes(), 784u);         // 28 x 28
  EXPECT_EQ(DeitTinyOptions().num_patches(), 196);
  EXPECT_EQ(FashionMnist().num_patches(), 28);
  EXPECT_THAT(DeitTinyOptions().DebugString(), HasSubstr("image=224x224x3 patch=16x16"));
  Options square = FashionMnist();  // 4x4 patches with a prepended CLS: 1 + 49
  square.patch_width = 4;
  square.cls_placeholder = ClsPlaceholder::kPrepend;
  square.tokens = 50;
  square.token_values = 16;
  EXPECT_TRUE(square.Validate().ok()) << square.Validate();
}

TEST(OptionsTest, DeitTinyWithPrependedClsIsOdd) {
  Options o = DeitTinyOptions();
  o.cls_placeholder = ClsPlaceholder::kPrepend;
  o.tokens = 197;
  const absl::Status status = o.Validate();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("Options.tokens: 197 is odd"));
}

struct BadCase {
  std::string name;
  std::function<void(Options&)> mutate;
  std::string expected;  // substring of the message
};

TEST(OptionsTest, EachBadFieldIsNamed) {
  const std::vector<BadCase> cases = {
      {"height", [](Options& o) { o.height = 0; }, "Options.height: 0"},
      {"width", [](Options& o) { o.width = -3; }, "Options.width: -3"},
      {"channels", [](Options& o) { o.channels = 2; }, "Options.channels: 2"},
      {"patch0", [](Options& o) { o.patch_height = 0; }, "Options.patch_height: 0"},
      {"patch_divides", [](Options& o) { o.patch_width = 15; },
       "Options.patch_width: 15 does not divide width 224"},
      {"patch_h_divides", [](Options& o) { o.patch_height = 300; },
       "Options.patch_height: 300 does not divide height 224"},
      {"token_values", [](Options& o) { o.token_values = 512; },
       "Options.token_values: 512 != patch_height * patch_width * channels = 16*16*3 = 768"},
      {"tokens", [](Options& o) { o.tokens = 198; },
       "Options.tokens: 198 != (224/16)*(224/16) = 196"},
      {"tokens_prepend", [](Options& o) { o.cls_placeholder = ClsPlaceholder::kPrepend; },
       "Options.tokens: 196 != 1 + (224/16)*(224/16) = 197"},
      {"shorter_side", [](Options& o) { o.resize_shorter_side = 200; },
       "Options.resize_shorter_side: 200"},
      {"mean", [](Options& o) { o.mean[1] = std::numeric_limits<float>::quiet_NaN(); },
       "Options.mean[1]"},
      {"stddev", [](Options& o) { o.stddev[2] = 0; }, "Options.stddev[2]"},
      {"stddev_neg", [](Options& o) { o.stddev[0] = -1; }, "Options.stddev[0]"},
      {"scale", [](Options& o) { o.quant_scale = 0; }, "Options.quant_scale"},
      {"scale_inf", [](Options& o) { o.quant_scale = std::numeric_limits<float>::infinity(); },
       "Options.quant_scale"},
      {"zero_point", [](Options& o) { o.quant_zero_point = 128; }, "Options.quant_zero_point: 128"},
      {"max_pixels", [](Options& o) { o.max_pixels = 0; }, "Options.max_pixels"},
  };
  for (const BadCase& c : cases) {
    Options o = DeitTinyOptions();
    c.mutate(o);
    const absl::Status status = o.Validate();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_THAT(status.message(), HasSubstr(c.expected)) << c.name;
  }
}

TEST(OptionsTest, OddTokenValues) {
  // 1 channel, 3x3 patches: 9 values per token cannot be packed in pairs.
  Options o = FashionMnist();
  o.height = o.width = 27;
  o.patch_height = o.patch_width = 3;
  o.token_values = 9;
  o.tokens = 81;
  const absl::Status status = o.Validate();
  EXPECT_THAT(status.message(), HasSubstr("Options.token_values: 9 is odd"));
}

TEST(OptionsTest, UnusedChannelsAreNotChecked) {
  Options o = FashionMnist();
  o.stddev[1] = 0;  // channel 1 does not exist for a gray model
  EXPECT_TRUE(o.Validate().ok());
}

}  // namespace
}  // namespace hgpipe::preprocess
