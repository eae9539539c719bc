#include "server/model_variants.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/model_repository.h"

namespace hgpipe::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

// What the fake resolver makes of a weight file name.
struct FakeWeights {
  double top1 = 0;
  std::string dataset;
  uint32_t classes = 1000;
  uint32_t tokens = 196;
  double input_scale = 0.25;
  std::vector<std::string> labels;
  uint64_t interval_cycles = 57'624;
};

std::map<std::string, FakeWeights>& Files() {
  static auto* files = new std::map<std::string, FakeWeights>;
  return *files;
}

// The verify kernel, with the geometry, scales, labels, timing and accuracy
// the table says for the config's weights; unknown names are missing files.
absl::Status FakeResolve(ModelEntry* e) {
  if (absl::Status s = ResolveEmulatedBitstream(e); !s.ok()) return s;
  if (e->config.weights().empty()) return absl::OkStatus();
  auto it = Files().find(e->config.weights());
  if (it == Files().end()) {
    return absl::NotFoundError(absl::StrCat("weights: ", e->config.weights(), ": cannot open"));
  }
  const FakeWeights& f = it->second;
  e->manifest.accuracy.top1 = f.top1;
  e->manifest.accuracy.dataset = f.dataset;
  e->manifest.geometry.classes = f.classes;
  e->manifest.geometry.tokens = f.tokens;
  e->manifest.timing.interval_cycles = f.interval_cycles;
  e->input_scale = f.input_scale;
  e->labels = f.labels;
  return absl::OkStatus();
}

class VariantsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("hgpipe-variants-test-" + std::to_string(getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_ / "m");
    Files() = {
        {"full.w", {0.88, "test set", 10, 196, 0.25, {"a", "b"}, 200}},
        {"skip.w", {0.87, "test set", 10, 196, 0.25, {"a", "b"}, 150}},
        {"same.w", {0.88, "test set", 10, 196, 0.25, {"a", "b"}, 100}},
        {"unmeasured.w", {0, "", 10, 196, 0.25, {"a", "b"}, 200}},
        {"classes.w", {0.5, "test set", 12, 196, 0.25, {"a", "b"}, 200}},
        {"tokens.w", {0.5, "test set", 10, 98, 0.25, {"a", "b"}, 200}},
        {"scale.w", {0.5, "test set", 10, 196, 0.5, {"a", "b"}, 200}},
        {"labels.w", {0.5, "test set", 10, 196, 0.25, {"a", "c"}, 200}},
    };
  }
  void TearDown() override { fs::remove_all(root_); }

  absl::StatusOr<ModelEntry> Load(const std::string& variants, const std::string& extra = "") {
    return LoadText("name: \"m\" bitstream: \"verify\" output { dims: [10] } " + extra + variants);
  }
  absl::StatusOr<ModelEntry> LoadText(const std::string& config) {
    std::ofstream(root_ / "m" / "config.pbtxt") << config;
    return LoadModelDirectory(root_.string(), "m", FakeResolve);
  }
  fs::path root_;
};

std::vector<std::string> Names(const ModelEntry& e) {
  std::vector<std::string> out;
  for (const VariantEntry& v : e.variants) out.push_back(v.name);
  return out;
}

TEST_F(VariantsTest, TheFirstVariantIsTheDefaultAndTheBoardsRunIt) {
  auto m = Load(R"(variants { name: "skip" weights: "skip.w" }
                   variants { name: "full" weights: "full.w" }
                   variants { name: "same" weights: "same.w" })");
  ASSERT_TRUE(m.ok()) << m.status();
  // Config order, whatever the accuracies: the operator chose the default.
  EXPECT_THAT(Names(*m), ElementsAre("skip", "full", "same"));
  EXPECT_EQ(m->variants[1].weights, "full.w");
  EXPECT_EQ(m->variants[1].bitstream, "verify");
  EXPECT_EQ(m->variants[1].manifest.accuracy.top1, 0.88);
  EXPECT_EQ(m->variants[2].manifest.timing.interval_cycles, 100u);
  // The entry's own fields are the default variant's.
  EXPECT_EQ(m->manifest.accuracy.top1, 0.87);
  EXPECT_EQ(m->manifest.timing.interval_cycles, 150u);
  EXPECT_EQ(m->config.weights(), "skip.w");  // normalized
  EXPECT_THAT(m->labels, ElementsAre("a", "b"));
}

TEST_F(VariantsTest, AModelWithoutVariantsIsItsOwnDefaultVariant) {
  auto m = Load("", R"(weights: "unmeasured.w")");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_THAT(Names(*m), ElementsAre(kDefaultVariantName));
  EXPECT_EQ(m->variants[0].weights, "unmeasured.w");
  EXPECT_FALSE(m->variants[0].manifest.accuracy.measured());  // optional here
  auto plain = LoadText(R"(name: "m" bitstream: "verify")");
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_THAT(Names(*plain), ElementsAre("default"));
  EXPECT_EQ(plain->variants[0].manifest.name, "verify");
}

TEST_F(VariantsTest, BadVariantsFailTheLoadNamingTheVariantAndTheField) {
  struct Case {
    std::string variants;
    std::string extra;
    std::string want;
  };
  const std::string full = R"(variants { name: "full" weights: "full.w" } )";
  const Case cases[] = {
      {full, R"(weights: "full.w" )",
       "m/config.pbtxt: weights: give each variant its own (the model has `variants`)"},
      {full, R"(xclbin: "full.xclbin" )", "m/config.pbtxt: xclbin: give each variant its own"},
      {full + full, "", "m/config.pbtxt: variants[1] 'full': name: appears twice"},
      {R"(variants { name: "a b" weights: "full.w" })", "", "variants[0] 'a b': name: must be"},
      {R"(variants { weights: "full.w" })", "", "variants[0] '': name: must be"},
      {full + R"(variants { name: "u" weights: "unmeasured.w" })", "",
       "variants[1] 'u': accuracy: the manifest of unmeasured.w states no measured top-1 "
       "accuracy"},
      {full + R"(variants { name: "c" weights: "classes.w" })", "",
       "variants[1] 'c': classes: 12, variant 'full' has 10 (variants must agree on inputs "
       "and outputs)"},
      {full + R"(variants { name: "t" weights: "tokens.w" })", "", "variants[1] 't': tokens: 98"},
      {full + R"(variants { name: "s" weights: "scale.w" })", "",
       "variants[1] 's': input_scale: 0.5, variant 'full' has 0.25"},
      {full + R"(variants { name: "l" weights: "labels.w" })", "",
       "variants[1] 'l': labels[1]: 'c', variant 'full' has 'b'"},
      {full + R"(variants { name: "x" weights: "nope.w" })", "",
       "m/config.pbtxt: variants[1] 'x': weights: nope.w: cannot open"},
      {full + R"(variants { name: "x" bitstream: "nope" weights: "full.w" })", "",
       "variants[1] 'x': bitstream: no emulated kernel for bitstream 'nope'"},
  };
  for (const Case& c : cases) {
    auto m = Load(c.variants, c.extra);
    EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument) << c.variants;
    EXPECT_THAT(m.status().message(), HasSubstr(c.want)) << c.variants;
  }
  std::string many;
  for (int i = 0; i <= kMaxVariants; ++i) {
    absl::StrAppend(&many, "variants { name: \"v", i, "\" weights: \"full.w\" } ");
  }
  EXPECT_THAT(Load(many).status().message(), HasSubstr("variants: 17 are more than 16"));
}

TEST_F(VariantsTest, MetadataParametersListTheVariantsWithAccuracyAndTiming) {
  auto m = Load(R"(variants { name: "full" weights: "full.w" }
                   variants { name: "skip" weights: "skip.w" })");
  ASSERT_TRUE(m.ok()) << m.status();
  inference::ModelMetadataResponse resp;
  AddVariantParameters(*m, resp.mutable_parameters());
  const auto& p = resp.parameters();
  EXPECT_EQ(p.at("variants").string_param(), "full,skip");
  EXPECT_EQ(p.at("default_variant").string_param(), "full");
  EXPECT_EQ(p.at("variant.skip.top1_accuracy").double_param(), 0.87);
  EXPECT_EQ(p.at("variant.skip.accuracy_dataset").string_param(), "test set");
  EXPECT_EQ(p.at("variant.skip.interval_cycles").int64_param(), 150);
  EXPECT_EQ(p.at("variant.skip.latency_cycles").int64_param(), 816'584);
  EXPECT_EQ(p.at("variant.skip.clock_hz").double_param(), 425e6);
  EXPECT_DOUBLE_EQ(p.at("variant.skip.images_per_second").double_param(), 425e6 / 150);
  EXPECT_NEAR(p.at("variant.full.latency_us").double_param(), 816'584 / 425.0, 1e-3);
  EXPECT_EQ(p.at("variant.full.bitstream").string_param(), "verify");

  // Without a measured accuracy, no accuracy keys.
  auto plain = LoadText(R"(name: "m" bitstream: "verify")");
  ASSERT_TRUE(plain.ok()) << plain.status();
  inference::ModelMetadataResponse r2;
  AddVariantParameters(*plain, r2.mutable_parameters());
  EXPECT_EQ(r2.parameters().at("variants").string_param(), "default");
  EXPECT_EQ(r2.parameters().count("variant.default.top1_accuracy"), 0u);
  EXPECT_EQ(r2.parameters().count("variant.default.interval_cycles"), 1u);
}

TEST(VariantNameTest, LettersDigitsAndSomePunctuation) {
  for (const char* good : {"full", "skip-2", "taylor_v1", "A"}) {
    EXPECT_TRUE(IsValidVariantName(good)) << good;
  }
  for (const char* bad : {"", "a b", "a/b", "a,b", "a.b", "é", "a\nb"}) {
    EXPECT_FALSE(IsValidVariantName(bad)) << bad;
  }
  EXPECT_TRUE(IsValidVariantName(std::string(kMaxVariantNameBytes, 'x')));
  EXPECT_FALSE(IsValidVariantName(std::string(kMaxVariantNameBytes + 1, 'x')));
}

}  // namespace
}  // namespace hgpipe::server
