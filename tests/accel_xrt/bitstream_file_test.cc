#include "accel/xrt/bitstream_file.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "base/file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/accel_xrt/xrt_test_util.h"

namespace hgpipe::accel {
namespace {

using ::testing::HasSubstr;
using testing::NewTestDir;
using testing::SmallManifest;
using testing::SpecWithManifest;
using testing::WriteXclbin;

TEST(ManifestTest, FillsHgpipeDefaults) {
  absl::StatusOr<ManifestInfo> m = ParseManifest("model: \"deit_tiny\"", "m");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->manifest.name, "deit_tiny");
  EXPECT_EQ(m->kernel, "hgpipe_top");
  EXPECT_EQ(m->manifest.geometry.input_bytes(), 150'528u);
  EXPECT_EQ(m->manifest.geometry.classes, 1000u);
  EXPECT_EQ(m->manifest.timing.interval_cycles, 57'624u);
  EXPECT_EQ(m->manifest.timing.latency_cycles, 816'584u);
  EXPECT_EQ(m->manifest.timing.clock_hz, 425e6);
  EXPECT_EQ(m->max_images_per_run, 0u);
  EXPECT_FALSE(m->xclbin_uuid.has_value());
}

TEST(ManifestTest, ReadsEveryField) {
  absl::StatusOr<ManifestInfo> m = ParseManifest(
      "model: \"tiny_test\"\n"
      "kernel: \"hgpipe_top\"\n"
      "kernel_contract: 1\n"
      "xclbin_uuid: \"00112233-4455-6677-8899-aabbccddeeff\"\n"
      "geometry { tokens: 4 token_values: 8 classes: 10 }\n"
      "timing { clock_hz: 1e6 interval_cycles: 10 latency_cycles: 40\n"
      "         run_overhead_us: 25 link_bytes_per_second: 1e9 }\n"
      "io { input: \"hgpipe_2x2\" output: \"logit19\" }\n"
      "max_images_per_run: 16\n"
      "accuracy { top1: 0.875 dataset: \"test set\" }\n",
      "m");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->manifest.name, "tiny_test");
  EXPECT_EQ(m->manifest.geometry.input_bytes(), 32u);
  EXPECT_EQ(m->manifest.geometry.output_words(), 10u);
  EXPECT_EQ(m->manifest.timing.clock_hz, 1e6);
  EXPECT_EQ(m->manifest.timing.run_overhead, absl::Microseconds(25));
  EXPECT_EQ(m->manifest.timing.link_bytes_per_second, 1e9);
  EXPECT_EQ(m->max_images_per_run, 16u);
  EXPECT_EQ(m->manifest.accuracy.top1, 0.875);
  EXPECT_EQ(m->manifest.accuracy.dataset, "test set");
  ASSERT_TRUE(m->xclbin_uuid.has_value());
  EXPECT_EQ(UuidToHex(*m->xclbin_uuid), "00112233445566778899aabbccddeeff");
}

TEST(ManifestTest, ErrorsNameTheSourceAndTheField) {
  struct Case {
    std::string text;
    std::string want;
  };
  const Case cases[] = {
      {"geometry { tokens: 4 }", "model: required"},
      {"model: \"m\"\nbogus: 1", "x.pbtxt: manifest does not parse: 2:"},
      {"model: \"m\" geometry { tokens: 3 }", "geometry.tokens"},
      {"model: \"m\" timing { interval_cycles: 100 latency_cycles: 10 }", "timing.latency_cycles"},
      {"model: \"m\" io { input: \"nchw\" }", "io.input: unknown layout"},
      {"model: \"m\" io { output: \"fp32\" }", "io.output: unknown layout"},
      {"model: \"m\" kernel_contract: 2", "kernel_contract: 2"},
      {"model: \"m\" xclbin_uuid: \"xyz\"", "xclbin_uuid"},
      {"model: \"m\" accuracy { top1: 1.5 dataset: \"d\" }", "accuracy.top1 must be a fraction"},
      {"model: \"m\" accuracy { top1: -0.5 dataset: \"d\" }", "accuracy.top1 must be a fraction"},
      {"model: \"m\" accuracy { top1: nan dataset: \"d\" }", "accuracy.top1 must be a fraction"},
      {"model: \"m\" accuracy { top1: 0.5 }", "accuracy.dataset: required"},
      {"model: \"m\" accuracy { dataset: \"d\" }", "accuracy.top1: required"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<ManifestInfo> m = ParseManifest(c.text, "x.pbtxt");
    EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument) << c.text;
    EXPECT_THAT(m.status().message(), HasSubstr("x.pbtxt: ")) << c.text;
    EXPECT_THAT(m.status().message(), HasSubstr(c.want)) << c.text;
  }
}

class BitstreamFileTest : public ::testing::Test {
 protected:
  std::string dir_ = NewTestDir();
  std::string path_ = dir_ + "/b.xclbin";
};

TEST_F(BitstreamFileTest, ReadsTheEmbeddedManifest) {
  WriteXclbin(path_, SpecWithManifest(SmallManifest()));
  absl::StatusOr<BitstreamFile> f = ReadBitstreamFile(path_);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->manifest.manifest.name, "tiny_test");
  EXPECT_EQ(f->manifest_source, path_ + " (section USER_METADATA hgpipe_manifest)");
  EXPECT_FALSE(f->bytes.empty());
  absl::StatusOr<BitstreamManifest> m = ReadBitstreamManifest(path_);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->geometry.tokens, 4u);
}

TEST_F(BitstreamFileTest, ReadsAManifestBesideTheXclbin) {
  WriteXclbin(path_, XclbinSpec{});
  ASSERT_TRUE(WriteWholeFile(ManifestSidecarPath(path_), SmallManifest()).ok());
  absl::StatusOr<BitstreamFile> f = ReadBitstreamFile(path_);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->manifest_source, path_ + ".manifest.pbtxt");
  EXPECT_EQ(f->manifest.manifest.geometry.classes, 10u);
}

TEST_F(BitstreamFileTest, BothManifestsMustAgree) {
  WriteXclbin(path_, SpecWithManifest(SmallManifest()));
  // Same content, different formatting: accepted.
  ASSERT_TRUE(WriteWholeFile(ManifestSidecarPath(path_), "# beside\n" + SmallManifest()).ok());
  EXPECT_TRUE(ReadBitstreamFile(path_).ok());
  ASSERT_TRUE(
      WriteWholeFile(ManifestSidecarPath(path_), SmallManifest("max_images_per_run: 3")).ok());
  absl::StatusOr<BitstreamFile> f = ReadBitstreamFile(path_);
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(f.status().message(), HasSubstr("disagrees with the manifest embedded in " + path_));
}

TEST_F(BitstreamFileTest, MissingManifest) {
  WriteXclbin(path_, XclbinSpec{});
  absl::StatusOr<BitstreamFile> f = ReadBitstreamFile(path_);
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(f.status().message(), HasSubstr("no bitstream manifest"));
  EXPECT_THAT(f.status().message(), HasSubstr(path_ + ".manifest.pbtxt"));
}

TEST_F(BitstreamFileTest, MissingFile) {
  absl::StatusOr<BitstreamFile> f = ReadBitstreamFile(path_);
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(f.status().message(), HasSubstr("xclbin " + path_));
}

TEST_F(BitstreamFileTest, BadMagic) {
  ASSERT_TRUE(WriteWholeFile(path_, "this is no xclbin at all").ok());
  absl::StatusOr<BitstreamFile> f = ReadBitstreamFile(path_);
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(f.status().message(), HasSubstr(path_ + ": not an xclbin: bad magic"));
}

TEST_F(BitstreamFileTest, BadEmbeddedManifestNamesTheSection) {
  WriteXclbin(path_, SpecWithManifest("model: \"m\" geometry { classes: 0"));
  absl::StatusOr<BitstreamFile> f = ReadBitstreamFile(path_);
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(f.status().message(), HasSubstr(path_ + " (section USER_METADATA hgpipe_manifest): "
                                                      "manifest does not parse"));
}

TEST_F(BitstreamFileTest, WrongUuidIsAnXclbinIdMismatch) {
  XclbinSpec spec =
      SpecWithManifest(SmallManifest("xclbin_uuid: \"00112233445566778899aabbccddeeff\""));
  spec.uuid = *ParseUuidHex("ffeeddccbbaa99887766554433221100");
  WriteXclbin(path_, spec);
  absl::StatusOr<BitstreamFile> f = ReadBitstreamFile(path_);
  EXPECT_EQ(f.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(f.status().message(), HasSubstr("xclbin id mismatch"));
  EXPECT_THAT(f.status().message(), HasSubstr(path_));
  // The right uuid is accepted.
  spec.uuid = *ParseUuidHex("00112233445566778899aabbccddeeff");
  WriteXclbin(path_, spec);
  EXPECT_TRUE(ReadBitstreamFile(path_).ok());
}

TEST_F(BitstreamFileTest, UnknownKernel) {
  XclbinSpec spec = SpecWithManifest(SmallManifest());
  spec.kernel.name = "other_top";
  spec.kernel.instance = "other_top_1";
  WriteXclbin(path_, spec);
  absl::StatusOr<BitstreamFile> f = ReadBitstreamFile(path_);
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(f.status().message(), HasSubstr("unknown kernel: no compute unit of kernel "
                                              "\"hgpipe_top\" in IP_LAYOUT (compute units: "
                                              "other_top:other_top_1)"));
}

TEST_F(BitstreamFileTest, KernelMustBeApCtrlChain) {
  XclbinSpec spec = SpecWithManifest(SmallManifest());
  spec.kernel.control = 0;  // ap_ctrl_hs
  WriteXclbin(path_, spec);
  absl::StatusOr<BitstreamFile> f = ReadBitstreamFile(path_);
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(f.status().message(), HasSubstr("is not ap_ctrl_chain"));
}

}  // namespace
}  // namespace hgpipe::accel
