// Every binary a user runs answers --help with its usage and all its own
// flags, and exits 0. The flags are read from each binary's source, so a new
// flag without help text cannot slip by.
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server_process.h"

namespace hgpipe::testing {
namespace {

// The ABSL_FLAG names defined in `source`.
std::vector<std::string> FlagsOf(const std::string& source) {
  std::ifstream in(source);
  std::stringstream text;
  text << in.rdbuf();
  static const std::regex kFlag(R"(ABSL_FLAG\(\s*[^,]+,\s*(\w+)\s*,)");
  std::vector<std::string> names;
  const std::string s = text.str();
  for (std::sregex_iterator it(s.begin(), s.end(), kFlag), end; it != end; ++it) {
    names.push_back((*it)[1]);
  }
  return names;
}

struct Binary {
  const char* name;
  // Defines its flags; empty for Google Benchmark binaries; "-" for tools
  // that take positional arguments only.
  const char* source;
  // May be absent: bench/ is not built in sanitizer builds, hgpipe-xclbin
  // only where XRT is.
  bool optional = false;
};

constexpr Binary kBinaries[] = {
    {"hgpipe-server", "server/main.cc"},
    {"hgpipe-client", "clients/hgpipe_client.cc"},
    {"hgpipe-perf", "clients/hgpipe_perf.cc"},
    {"hgpipe-plan", "plan/plan_main.cc"},
    {"hgpipe-xclbin", "tools/xclbin/hgpipe_xclbin_main.cc", true},
    {"hgpipe-echo-server", "bench/echo_server.cc", true},
    {"hgpipe-bench-board", "bench/bench_board.cc", true},
    {"vit_bench", "bench/vit/vit_bench.cc", true},
    {"hgpipe-bench-preprocess", "", true},
    {"hgpipe-scheduler-bench", "", true},
    {"hgpipe-client-micro-bench", "", true},
    {"hgpipe-soak-client", "bench/soak_client.cc", true},
    {"hgpipe-jpeg-decode-baseline", "-", true},
    {"hgpipe-scaled-decode-agreement", "-", true},
};

TEST(HelpTest, EveryBinaryPrintsItsUsageAndFlagsAndExitsZero) {
  int checked = 0;
  for (const Binary& b : kBinaries) {
    const std::string path = BinDir() + "/" + b.name;
    if (!std::filesystem::exists(path)) {
      EXPECT_TRUE(b.optional) << path << " is missing";
      continue;
    }
    // Google Benchmark's binaries take --help only.
    const bool benchmark = std::string(b.source).empty();
    for (const char* flag : {"--help", "-h"}) {
      if (benchmark && std::string(flag) == "-h") continue;
      const ExitResult r = RunToExit(path, {flag}, absl::Seconds(60));
      EXPECT_TRUE(r.exited && r.code == 0) << b.name << " " << flag << ":\n" << r.log;
      if (benchmark) {
        EXPECT_THAT(r.log, ::testing::HasSubstr("--benchmark_filter")) << b.name;
        continue;
      }
      EXPECT_THAT(r.log, ::testing::HasSubstr(b.name)) << "usage of " << b.name;
      if (std::string(b.source) == "-") continue;
      const std::vector<std::string> flags = FlagsOf(SourceDir() + "/" + b.source);
      EXPECT_FALSE(flags.empty()) << b.source;
      for (const std::string& f : flags) {
        EXPECT_THAT(r.log, ::testing::HasSubstr("--" + absl::StrReplaceAll(f, {{"_", "-"}}) + "  "))
            << b.name << " --help does not list --" << f;
      }
    }
    ++checked;
  }
  EXPECT_GE(checked, 5);
}

TEST(HelpTest, EveryUserBinaryInTheBuildIsChecked) {
  // A new hgpipe-* binary must be added to kBinaries.
  for (const auto& e : std::filesystem::directory_iterator(BinDir())) {
    const std::string name = e.path().filename().string();
    if (name.rfind("hgpipe-", 0) != 0) continue;
    bool known = false;
    for (const Binary& b : kBinaries) known |= name == b.name;
    EXPECT_TRUE(known) << name << " is not in help_test.cc's list";
  }
}

}  // namespace
}  // namespace hgpipe::testing
