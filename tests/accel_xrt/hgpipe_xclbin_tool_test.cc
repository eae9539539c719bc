// hgpipe-xclbin end to end: write, info and package, as a user runs them.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "accel/xrt/bitstream_file.h"
#include "accel/xrt/xclbin_file.h"
#include "base/file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/accel_xrt/xrt_test_util.h"

namespace hgpipe::accel {
namespace {

using ::testing::HasSubstr;

struct Result {
  int exit_code;
  std::string output;  // stdout and stderr
};

Result RunTool(const std::string& args) {
  const char* bin_dir = std::getenv("HGPIPE_BIN_DIR");
  const std::string tool =
      bin_dir ? absl::StrCat(bin_dir, "/hgpipe-xclbin") : std::string(HGPIPE_XCLBIN_TOOL);
  const std::string cmd = absl::StrCat(tool, " ", args, " 2>&1");
  Result r{-1, ""};
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.output.append(buf, n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string Testdata(const std::string& name) {
  const char* src = std::getenv("HGPIPE_SOURCE_DIR");
  return src ? absl::StrCat(src, "/tests/accel_xrt/testdata/", name)
             : absl::StrCat(HGPIPE_XRT_TESTDATA, "/", name);
}

TEST(HgpipeXclbinToolTest, WritesAnXclbinTheServerAccepts) {
  const std::string dir = testing::NewTestDir();
  const std::string out = dir + "/deit.xclbin";
  Result w = RunTool(absl::StrCat("write ", out, " --kernel hgpipe_top --manifest ",
                                  Testdata("deit_tiny.manifest.pbtxt"),
                                  " --uuid 00112233445566778899aabbccddeeff"));
  ASSERT_EQ(w.exit_code, 0) << w.output;
  EXPECT_THAT(w.output, HasSubstr("uuid 00112233445566778899aabbccddeeff"));

  absl::StatusOr<BitstreamFile> f = ReadBitstreamFile(out);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->manifest.manifest.name, "deit_tiny");
  EXPECT_EQ(f->manifest.max_images_per_run, 400u);
  EXPECT_EQ(f->manifest.manifest.accuracy.top1, 0.7105);
  EXPECT_THAT(f->manifest.manifest.accuracy.dataset, HasSubstr("ImageNet-1k validation"));
  EXPECT_EQ(UuidToHex(f->uuid), "00112233445566778899aabbccddeeff");

  Result info = RunTool("info " + out);
  ASSERT_EQ(info.exit_code, 0) << info.output;
  for (const char* want : {"uuid:     00112233445566778899aabbccddeeff", "MEM_TOPOLOGY",
                           "IP_LAYOUT", "CONNECTIVITY", "EMBEDDED_METADATA", "KEYVALUE_METADATA",
                           "USER_METADATA", "hgpipe_top:hgpipe_top_1  ap_ctrl_chain", "(0) in ",
                           "(1) out ", "(2) n_images ", "model:     deit_tiny", "7375 images/s",
                           "max images per run: 400", "top-1 71.05 % on ImageNet-1k validation"}) {
    EXPECT_THAT(info.output, HasSubstr(want));
  }
}

TEST(HgpipeXclbinToolTest, PackagesAManifestIntoAnExistingXclbin) {
  const std::string dir = testing::NewTestDir();
  const std::string vitis = dir + "/vitis.xclbin";  // as v++ would leave it
  testing::WriteXclbin(vitis, XclbinSpec{});
  EXPECT_FALSE(ReadBitstreamFile(vitis).ok());  // no manifest yet

  const std::string out = dir + "/packaged.xclbin";
  Result p = RunTool(absl::StrCat("package ", vitis, " ", out, " --manifest ",
                                  Testdata("deit_tiny.manifest.pbtxt")));
  ASSERT_EQ(p.exit_code, 0) << p.output;
  absl::StatusOr<BitstreamFile> f = ReadBitstreamFile(out);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->uuid, ParseXclbin(*ReadWholeFile(vitis), "v")->uuid);
}

TEST(HgpipeXclbinToolTest, ErrorsNameTheFile) {
  const std::string dir = testing::NewTestDir();
  Result r = RunTool(absl::StrCat("write ", dir, "/x.xclbin --manifest ", dir, "/missing.pbtxt"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr(dir + "/missing.pbtxt"));

  ASSERT_TRUE(WriteWholeFile(dir + "/bad.pbtxt", "model: \"m\" geometry { tokens: 3 }").ok());
  r = RunTool(absl::StrCat("write ", dir, "/x.xclbin --manifest ", dir, "/bad.pbtxt"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("bad.pbtxt: geometry.tokens"));

  r = RunTool("info " + dir + "/none.xclbin");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr(dir + "/none.xclbin"));

  EXPECT_EQ(RunTool("frobnicate").exit_code, 2);
}

}  // namespace
}  // namespace hgpipe::accel
