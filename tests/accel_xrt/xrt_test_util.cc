#include "tests/accel_xrt/xrt_test_util.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>

#include "absl/strings/str_cat.h"
#include "base/file.h"
#include "gtest/gtest.h"

namespace hgpipe::accel::testing {

void UseXrtNoopDevice() {
  static std::once_flag once;
  std::call_once(once, [] {
    namespace fs = std::filesystem;
    // One folder shared by every test process; the link is replaced
    // atomically (rename), so tests running in parallel never see it missing.
    const fs::path root = fs::path(::testing::TempDir()) / "hgpipe_xrt_noop";
    fs::create_directories(root);
    const fs::path lib = root / "lib";
    std::error_code ec;
    if (fs::read_symlink(lib, ec) != fs::path(XRT_LIBRARY_DIR)) {
      const fs::path tmp = root / absl::StrCat("lib.", getpid());
      fs::remove(tmp, ec);
      fs::create_directory_symlink(XRT_LIBRARY_DIR, tmp);
      fs::rename(tmp, lib);
    }
    setenv("XILINX_XRT", root.c_str(), 1);
    setenv("XCL_EMULATION_MODE", "noop", 1);
  });
}

std::string NewTestDir() {
  namespace fs = std::filesystem;
  // Removed when the test process exits.
  struct Cleanup {
    std::mutex mu;
    std::vector<fs::path> dirs;
    ~Cleanup() {
      std::error_code ec;
      for (const fs::path& d : dirs) fs::remove_all(d, ec);
    }
  };
  static Cleanup cleanup;
  static int counter = 0;
  const ::testing::TestInfo* t = ::testing::UnitTest::GetInstance()->current_test_info();
  std::lock_guard<std::mutex> l(cleanup.mu);
  const fs::path dir =
      fs::path(::testing::TempDir()) /
      absl::StrCat("hgpipe_xrt_", getpid(), "_",
                   t ? absl::StrCat(t->test_suite_name(), ".", t->name()) : std::string("x"), "_",
                   counter++);
  fs::remove_all(dir);
  fs::create_directories(dir);
  cleanup.dirs.push_back(dir);
  return dir.string();
}

std::string SmallManifest(const std::string& extra) {
  return absl::StrCat(
      "model: \"tiny_test\"\n"
      "geometry { tokens: 4 token_values: 8 classes: 10 }\n"
      "timing { clock_hz: 1e6 interval_cycles: 10 latency_cycles: 40 }\n",
      extra);
}

void WriteXclbin(const std::string& path, const XclbinSpec& spec) {
  absl::StatusOr<std::string> bytes = BuildXclbin(spec);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  ASSERT_TRUE(WriteWholeFile(path, *bytes).ok());
}

XclbinSpec SpecWithManifest(const std::string& manifest) {
  XclbinSpec spec;
  spec.manifest = manifest;
  return spec;
}

}  // namespace hgpipe::accel::testing
