#include "accel/canary.h"

#include <vector>

#include "accel/device_layout.h"
#include "accel/emulated_board.h"
#include "accel/faulty_board.h"
#include "accel/verify_digest.h"
#include "base/clock.h"
#include "base/mutex.h"
#include "gtest/gtest.h"

namespace hgpipe::accel {
namespace {

TEST(CanaryTest, VerifyCanaryIsWhatTheVerifyKernelComputesAndAFlipShows) {
  const DeviceGeometry g;
  const Canary c = MakeVerifyCanary(g);
  ASSERT_TRUE(ValidateCanary(c, g).ok());
  auto kernel = VerifyKernel();
  std::vector<uint32_t> out(g.output_words());
  kernel->Compute(c.input.data(), 1, out.data());
  EXPECT_EQ(CompareCanaryOutput(c, g, out), "");
  out[3] ^= 0x10;
  out[7] ^= 1;
  const std::string diff = CompareCanaryOutput(c, g, out);
  EXPECT_NE(diff.find("image 0 word 3: got 0x"), std::string::npos) << diff;
  EXPECT_NE(diff.find("(2 of 1000 words differ)"), std::string::npos) << diff;
  // The same canary every time: the expected words are fixed.
  EXPECT_EQ(MakeVerifyCanary(g).output, c.output);
}

TEST(CanaryTest, MismatchedSizesAreRefused) {
  const DeviceGeometry g;
  Canary c = MakeVerifyCanary(g);
  c.output.pop_back();
  const absl::Status s = ValidateCanary(c, g);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("verify digest"), absl::string_view::npos) << s;
}

// The corrupt fault: the run completes OK, the output is wrong in one bit
// of each image's first word, and only from run N+1 on.
TEST(CanaryTest, CorruptFaultFlipsOutputsOfRunsThatReportOk) {
  SimClock clock;
  EmulatedBoard::Options o;
  o.kernel = VerifyKernel();
  o.clock = &clock;
  o.compute_inline = true;
  auto board =
      *FaultyBoard::Create(*EmulatedBoard::Create(o), *ParseFaultInjection("corrupt@1"), &clock);
  const DeviceGeometry g;
  const Canary c = MakeVerifyCanary(g);
  std::vector<std::string> diffs;
  for (int run = 0; run < 2; ++run) {
    std::copy(c.input.begin(), c.input.end(), board->slot(0).input.data());
    absl::Status status = absl::UnknownError("not done");
    board->Submit(0, 1, [&](absl::Status s) { status = s; });
    clock.RunUntilIdle();
    ASSERT_TRUE(status.ok()) << status;
    diffs.push_back(CompareCanaryOutput(
        c, g, absl::MakeConstSpan(board->slot(0).output.data(), g.output_words())));
  }
  EXPECT_EQ(diffs[0], "");
  EXPECT_NE(diffs[1].find("image 0 word 0"), std::string::npos) << diffs[1];
  EXPECT_NE(diffs[1].find("(1 of 1000 words differ)"), std::string::npos) << diffs[1];
}

}  // namespace
}  // namespace hgpipe::accel
