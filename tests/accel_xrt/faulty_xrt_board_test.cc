// FaultyBoard around an XRT board on XRT's no-op device (xrt_test_util.h):
// the wrapper injects faults into a driver it knows nothing about.
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "accel/faulty_board.h"
#include "accel/xrt/bitstream_file.h"
#include "accel/xrt/xrt_board.h"
#include "base/clock.h"
#include "base/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/accel_xrt/xrt_test_util.h"

namespace hgpipe::accel {
namespace {

using ::testing::HasSubstr;

// Collects completions by name; Wait blocks (on a condition) until `count`
// have arrived.
class Completions {
 public:
  Board::DoneCallback Add(std::string name) {
    return [this, name = std::move(name)](absl::Status s) {
      hgpipe::MutexLock l(&mu_);
      names_.push_back(name);
      statuses_.push_back(std::move(s));
    };
  }
  void Wait(size_t count) {
    hgpipe::MutexLock l(&mu_);
    auto enough = [this, count]()
                      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return names_.size() >= count; };
    ASSERT_TRUE(mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(60)))
        << "only " << names_.size() << " of " << count << " callbacks";
  }
  size_t size() {
    hgpipe::MutexLock l(&mu_);
    return names_.size();
  }
  absl::Status Of(const std::string& name) {
    hgpipe::MutexLock l(&mu_);
    for (size_t i = 0; i < names_.size(); ++i) {
      if (names_[i] == name) return statuses_[i];
    }
    return absl::UnknownError(absl::StrCat(name, " not called"));
  }

 private:
  hgpipe::Mutex mu_;
  std::vector<std::string> names_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Status> statuses_ ABSL_GUARDED_BY(mu_);
};

class FaultyXrtBoardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::UseXrtNoopDevice();
    testing::WriteXclbin(path_, testing::SpecWithManifest(testing::SmallManifest()));
  }
  std::unique_ptr<Board> Open(absl::string_view fault) {
    XrtBoardOptions o;
    o.name = "xrt0";
    o.device = "0";
    o.xclbin_path = path_;
    o.max_images_per_run = 8;
    o.num_slots = 4;
    absl::StatusOr<std::unique_ptr<Board>> b = OpenXrtBoard(o);
    EXPECT_TRUE(b.ok()) << b.status();
    if (!b.ok()) return nullptr;
    absl::StatusOr<FaultInjection> f = ParseFaultInjection(fault);
    EXPECT_TRUE(f.ok()) << f.status();
    absl::StatusOr<std::unique_ptr<FaultyBoard>> w =
        FaultyBoard::Create(*std::move(b), *f, &clock_);
    EXPECT_TRUE(w.ok()) << w.status();
    return w.ok() ? *std::move(w) : nullptr;
  }
  std::shared_ptr<const Bitstream> ItsBitstream() {
    auto b = std::make_shared<Bitstream>();
    absl::StatusOr<BitstreamManifest> m = ReadBitstreamManifest(path_);
    EXPECT_TRUE(m.ok()) << m.status();
    if (m.ok()) b->manifest = *m;
    b->xclbin_path = path_;
    return b;
  }

  RealClock clock_;
  std::string path_ = testing::NewTestDir() + "/tiny.xclbin";
};

TEST_F(FaultyXrtBoardTest, FailsRunsAndTheBoardUntilAReset) {
  std::unique_ptr<Board> board = Open("fail@1");
  ASSERT_NE(board, nullptr);
  EXPECT_EQ(board->info().kind, "xrt");
  Completions c;
  board->Submit(0, 1, c.Add("good"));
  board->Submit(1, 1, c.Add("failed"));
  c.Wait(2);
  EXPECT_TRUE(c.Of("good").ok()) << c.Of("good");
  EXPECT_EQ(c.Of("failed").code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(c.Of("failed").message(), HasSubstr("board xrt0: injected fault, run failed"));
  EXPECT_EQ(board->Health().code(), absl::StatusCode::kUnavailable);

  board->Reset(c.Add("reset"));
  c.Wait(3);
  ASSERT_TRUE(c.Of("reset").ok()) << c.Of("reset");
  board->Program(ItsBitstream(), c.Add("program"));
  c.Wait(4);
  ASSERT_TRUE(c.Of("program").ok()) << c.Of("program");
  EXPECT_TRUE(board->Health().ok()) << board->Health();
  board->Submit(0, 2, c.Add("after"));
  c.Wait(5);
  EXPECT_TRUE(c.Of("after").ok()) << c.Of("after");
}

TEST_F(FaultyXrtBoardTest, CorruptFlipsWhatTheDeviceReturned) {
  std::unique_ptr<Board> board = Open("corrupt@0");
  ASSERT_NE(board, nullptr);
  // The no-op kernel writes nothing: the output is what the host left.
  RunSlotBuffers s = board->slot(1);
  uint32_t* out = const_cast<uint32_t*>(s.output.data());
  std::fill(out, out + s.output.size(), 0xabcd1234u);
  Completions c;
  board->Submit(1, 2, c.Add("run"));
  c.Wait(1);
  ASSERT_TRUE(c.Of("run").ok()) << c.Of("run");
  const size_t words = board->manifest().geometry.output_words();
  for (size_t i = 0; i < s.output.size(); ++i) {
    const bool flipped = i == 0 || i == words;
    EXPECT_EQ(s.output[i], flipped ? 0xabcd1235u : 0xabcd1234u) << "word " << i;
  }
}

TEST_F(FaultyXrtBoardTest, AHungRunIsAbortedByReset) {
  std::unique_ptr<Board> board = Open("hang@0");
  ASSERT_NE(board, nullptr);
  Completions c;
  board->Submit(0, 1, c.Add("hung"));
  // A second run through the same board completes on the device too, and
  // the wrapper holds both: nothing arrives until the Reset.
  board->Submit(1, 1, c.Add("hung too"));
  EXPECT_TRUE(board->Health().ok()) << "a hung board looks healthy";
  board->Reset(c.Add("reset"));
  c.Wait(3);
  EXPECT_EQ(c.Of("hung").code(), absl::StatusCode::kAborted) << c.Of("hung");
  EXPECT_EQ(c.Of("hung too").code(), absl::StatusCode::kAborted) << c.Of("hung too");
  EXPECT_TRUE(c.Of("reset").ok()) << c.Of("reset");
}

}  // namespace
}  // namespace hgpipe::accel
