// The XRT board driver against XRT's no-op device (xrt_test_util.h): the
// real XRT libraries run, the kernel computes nothing, so these tests check
// the path (buffers, syncs, runs in flight, completion order, errors) and
// never the logits: outputs keep whatever the host left in them.
#include "accel/xrt/xrt_board.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "accel/xrt/bitstream_file.h"
#include "base/file.h"
#include "base/mutex.h"
#include "base/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/accel_xrt/xrt_test_util.h"

namespace hgpipe::accel {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::NewTestDir;
using testing::SmallManifest;
using testing::SpecWithManifest;
using testing::WriteXclbin;

// Collects completions; Wait blocks (on a condition, no polling) until
// `count` have arrived.
class Completions {
 public:
  Board::DoneCallback Add(int id) {
    return [this, id](absl::Status s) {
      hgpipe::MutexLock l(&mu_);
      order_.push_back(id);
      statuses_.push_back(std::move(s));
    };
  }
  void Wait(size_t count) {
    hgpipe::MutexLock l(&mu_);
    auto enough = [this, count]()
                      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return order_.size() >= count; };
    ASSERT_TRUE(mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(60)))
        << "only " << order_.size() << " of " << count << " runs completed";
  }
  std::vector<int> order() {
    hgpipe::MutexLock l(&mu_);
    return order_;
  }
  absl::Status status(size_t i) {
    hgpipe::MutexLock l(&mu_);
    return statuses_.at(i);
  }
  // The status of the callback added with `id`.
  absl::Status Of(int id) {
    hgpipe::MutexLock l(&mu_);
    for (size_t i = 0; i < order_.size(); ++i) {
      if (order_[i] == id) return statuses_[i];
    }
    return absl::UnknownError(absl::StrCat("callback ", id, " not called"));
  }

 private:
  hgpipe::Mutex mu_;
  std::vector<int> order_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Status> statuses_ ABSL_GUARDED_BY(mu_);
};

class XrtBoardTest : public ::testing::Test {
 protected:
  void SetUp() override { testing::UseXrtNoopDevice(); }

  // Writes a small test bitstream and returns its options.
  XrtBoardOptions Options(const std::string& manifest_extra = "") {
    WriteXclbin(path_, SpecWithManifest(SmallManifest(manifest_extra)));
    XrtBoardOptions o;
    o.name = "xrt0";
    o.device = "0";
    o.xclbin_path = path_;
    o.max_images_per_run = 8;
    o.num_slots = 4;
    return o;
  }
  std::unique_ptr<Board> Open(const XrtBoardOptions& o) {
    absl::StatusOr<std::unique_ptr<Board>> b = OpenXrtBoard(o);
    EXPECT_TRUE(b.ok()) << b.status();
    return b.ok() ? *std::move(b) : nullptr;
  }
  // The error OpenXrtBoard returns; fails the test if it succeeds.
  absl::Status OpenError(const XrtBoardOptions& o) {
    absl::StatusOr<std::unique_ptr<Board>> b = OpenXrtBoard(o);
    EXPECT_FALSE(b.ok());
    return b.status();
  }

  std::string dir_ = NewTestDir();
  std::string path_ = dir_ + "/tiny.xclbin";
};

TEST_F(XrtBoardTest, OpensAndDescribesTheBoard) {
  std::unique_ptr<Board> board = Open(Options());
  ASSERT_NE(board, nullptr);
  EXPECT_EQ(board->info().name, "xrt0");
  EXPECT_EQ(board->info().kind, "xrt");
  // The no-op device answers no BDF, temperature or power query.
  EXPECT_EQ(board->info().device, "0");
  EXPECT_FALSE(board->info().temperature_celsius.has_value());
  EXPECT_FALSE(board->info().power_watts.has_value());
  EXPECT_EQ(board->manifest().name, "tiny_test");
  EXPECT_EQ(board->manifest().geometry.input_bytes(), 32u);
  EXPECT_EQ(board->num_slots(), 4);
  EXPECT_EQ(board->max_images_per_run(), 8u);
  EXPECT_TRUE(board->Health().ok());
  for (int i = 0; i < board->num_slots(); ++i) {
    RunSlotBuffers s = board->slot(i);
    EXPECT_EQ(s.input.size(), 8u * 32u);
    EXPECT_EQ(s.output.size(), 8u * 10u);
    // Mapped once: the same memory every time.
    EXPECT_EQ(board->slot(i).input.data(), s.input.data());
  }
  EXPECT_NE(board->slot(0).input.data(), board->slot(1).input.data());
}

TEST_F(XrtBoardTest, DefaultNameFollowsTheDevice) {
  XrtBoardOptions o = Options();
  o.name.clear();
  std::unique_ptr<Board> board = Open(o);
  ASSERT_NE(board, nullptr);
  EXPECT_EQ(board->info().name, "xrt0");
}

TEST_F(XrtBoardTest, ARunCompletesThroughTheMappedBuffers) {
  std::unique_ptr<Board> board = Open(Options());
  ASSERT_NE(board, nullptr);
  RunSlotBuffers s = board->slot(2);
  for (size_t i = 0; i < s.input.size(); ++i) s.input[i] = int8_t(i);
  // The no-op kernel writes nothing: what the host leaves in the output
  // buffer is what the run "returns". A marker shows the output sync kept
  // the mapping intact.
  uint32_t* out = const_cast<uint32_t*>(s.output.data());
  std::fill(out, out + s.output.size(), 0xabcd1234u);

  Completions c;
  board->Submit(2, 5, c.Add(0));
  c.Wait(1);
  ASSERT_TRUE(c.status(0).ok()) << c.status(0);
  EXPECT_TRUE(
      std::all_of(s.output.begin(), s.output.end(), [](uint32_t w) { return w == 0xabcd1234u; }));
  EXPECT_EQ(s.input[7], 7);
  EXPECT_TRUE(board->Health().ok());
}

TEST_F(XrtBoardTest, SeveralRunsInFlightCompleteInSubmissionOrder) {
  std::unique_ptr<Board> board = Open(Options());
  ASSERT_NE(board, nullptr);
  // Hold the first completion: Submit must not wait for earlier runs, so
  // all four runs are queued while the first is still undelivered.
  hgpipe::Notification release;
  Completions c;
  auto first = c.Add(0);
  board->Submit(0, 8, [&release, first = std::move(first)](absl::Status s) mutable {
    release.WaitForNotificationWithTimeout(absl::Seconds(60));
    first(std::move(s));
  });
  board->Submit(1, 1, c.Add(1));
  board->Submit(2, 3, c.Add(2));
  board->Submit(3, 8, c.Add(3));
  EXPECT_TRUE(c.order().empty());
  release.Notify();
  c.Wait(4);
  EXPECT_THAT(c.order(), ElementsAre(0, 1, 2, 3));
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(c.status(i).ok()) << c.status(i);
}

TEST_F(XrtBoardTest, SlotsAreReusedFromCompletionCallbacks) {
  std::unique_ptr<Board> board = Open(Options());
  ASSERT_NE(board, nullptr);
  // Each completion resubmits its slot, as a scheduler keeping the board
  // full does; 4 slots carry 200 runs.
  constexpr int kRuns = 200;
  hgpipe::Mutex mu;
  int submitted = 0, ok = 0, done = 0;
  std::function<void(int)> submit = [&](int slot) {
    {
      hgpipe::MutexLock l(&mu);
      if (submitted == kRuns) return;
      ++submitted;
    }
    board->Submit(slot, 1 + slot, [&, slot](absl::Status s) {
      {
        hgpipe::MutexLock l(&mu);
        ++done;
        if (s.ok()) ++ok;
      }
      submit(slot);
    });
  };
  for (int slot = 0; slot < board->num_slots(); ++slot) submit(slot);
  {
    hgpipe::MutexLock l(&mu);
    auto all_done = [&]() { return done == kRuns; };
    EXPECT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all_done), absl::Seconds(60)));
  }
  // The last callback may still be running: the board goes first (its
  // destructor joins the completion thread), then what the callbacks use.
  board.reset();
  hgpipe::MutexLock l(&mu);
  EXPECT_EQ(ok, kRuns);
}

TEST_F(XrtBoardTest, BadRunsFailWithoutHarmingTheBoard) {
  std::unique_ptr<Board> board = Open(Options());
  ASSERT_NE(board, nullptr);
  Completions c;
  board->Submit(-1, 1, c.Add(0));
  board->Submit(4, 1, c.Add(1));
  board->Submit(0, 0, c.Add(2));
  board->Submit(0, 9, c.Add(3));
  c.Wait(4);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(c.status(i).code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(c.status(i).message(), HasSubstr("board xrt0: bad run"));
  }
  EXPECT_TRUE(board->Health().ok());
}

TEST_F(XrtBoardTest, ASlotInFlightIsRefused) {
  std::unique_ptr<Board> board = Open(Options());
  ASSERT_NE(board, nullptr);
  // Run 0 (slot 1) holds the completion thread, so run 1 (slot 0) stays in
  // flight while slot 0 is submitted again. (A slot is released just before
  // its completion callback runs.)
  hgpipe::Notification release;
  Completions c;
  auto first = c.Add(0);
  board->Submit(1, 1, [&release, first = std::move(first)](absl::Status s) mutable {
    release.WaitForNotificationWithTimeout(absl::Seconds(60));
    first(std::move(s));
  });
  board->Submit(0, 1, c.Add(1));
  board->Submit(0, 1, c.Add(2));
  release.Notify();
  c.Wait(3);
  EXPECT_TRUE(c.status(0).ok());
  EXPECT_TRUE(c.status(1).ok());
  EXPECT_EQ(c.status(2).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(c.status(2).message(), HasSubstr("slot 0 is still in flight"));
  EXPECT_TRUE(board->Health().ok());
}

TEST_F(XrtBoardTest, AFaultRaisedByXrtMidRunFailsTheRunAndTheBoard) {
  XrtBoardOptions o = Options();
  o.test_fault_after_runs = 2;  // run 3 meets an XRT exception
  std::unique_ptr<Board> board = Open(o);
  ASSERT_NE(board, nullptr);
  Completions c;
  board->Submit(0, 1, c.Add(0));
  board->Submit(1, 1, c.Add(1));
  board->Submit(2, 4, c.Add(2));
  c.Wait(3);
  EXPECT_TRUE(c.status(0).ok());
  EXPECT_TRUE(c.status(1).ok());
  EXPECT_EQ(c.status(2).code(), absl::StatusCode::kUnavailable);
  // XRT's own message, with where it happened.
  EXPECT_THAT(c.status(2).message(), HasSubstr("board xrt0: completing a run of 4 images from slot "
                                               "2 failed: attempting to read past buffer size"));
  absl::Status health = board->Health();
  EXPECT_EQ(health.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(health.message(), HasSubstr("read past buffer size"));
  // Later runs fail at once, so the scheduler sends images elsewhere.
  board->Submit(3, 1, c.Add(3));
  c.Wait(4);
  EXPECT_EQ(c.status(3).code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(c.status(3).message(), HasSubstr("run refused"));
}

TEST_F(XrtBoardTest, DeitTinyGeometry) {
  // The full-size bitstream: 64 images of 150,528 bytes per slot.
  ASSERT_TRUE(
      WriteWholeFile(path_ + ".manifest.pbtxt", "model: \"deit_tiny\" max_images_per_run: 400")
          .ok());
  WriteXclbin(path_, XclbinSpec{});
  XrtBoardOptions o;
  o.device = "0";
  o.xclbin_path = path_;
  std::unique_ptr<Board> board = Open(o);
  ASSERT_NE(board, nullptr);
  EXPECT_EQ(board->max_images_per_run(), 64u);
  EXPECT_EQ(board->slot(3).input.size(), 64u * 150'528u);
  EXPECT_EQ(board->slot(3).output.size(), 64u * 1000u);
  Completions c;
  board->Submit(3, 64, c.Add(0));
  c.Wait(1);
  EXPECT_TRUE(c.status(0).ok()) << c.status(0);
}

// Program and Reset.

// What a scheduler would program a board with: the file's own manifest.
std::shared_ptr<const Bitstream> BitstreamAt(const std::string& path) {
  auto b = std::make_shared<Bitstream>();
  absl::StatusOr<BitstreamManifest> m = ReadBitstreamManifest(path);
  EXPECT_TRUE(m.ok()) << m.status();
  if (m.ok()) b->manifest = *m;
  b->xclbin_path = path;
  return b;
}

constexpr char kOtherManifest[] =
    "model: \"other_test\"\n"
    "geometry { tokens: 6 token_values: 4 classes: 12 }\n"
    "timing { clock_hz: 1e6 interval_cycles: 20 latency_cycles: 60 }\n";

TEST_F(XrtBoardTest, ProgramsAnotherXclbin) {
  std::unique_ptr<Board> board = Open(Options());
  ASSERT_NE(board, nullptr);
  const std::string other = dir_ + "/other.xclbin";
  WriteXclbin(other, SpecWithManifest(kOtherManifest));
  Completions c;
  board->Submit(0, 2, c.Add(0));
  c.Wait(1);
  ASSERT_TRUE(c.status(0).ok()) << c.status(0);
  board->Program(BitstreamAt(other), c.Add(1));
  c.Wait(2);
  ASSERT_TRUE(c.status(1).ok()) << c.status(1);
  EXPECT_TRUE(board->Health().ok()) << board->Health();
  EXPECT_EQ(board->manifest().name, "other_test");
  EXPECT_EQ(board->manifest().geometry.input_bytes(), 24u);
  EXPECT_EQ(board->manifest().timing.interval_cycles, 20u);
  EXPECT_EQ(board->num_slots(), 4);
  EXPECT_EQ(board->max_images_per_run(), 8u);
  for (int i = 0; i < board->num_slots(); ++i) {
    EXPECT_EQ(board->slot(i).input.size(), 8u * 24u);
    EXPECT_EQ(board->slot(i).output.size(), 8u * 12u);
  }
  RunSlotBuffers s = board->slot(3);
  uint32_t* out = const_cast<uint32_t*>(s.output.data());
  std::fill(out, out + s.output.size(), 0x5a5a5a5au);
  board->Submit(3, 8, c.Add(2));
  board->Submit(1, 1, c.Add(3));
  c.Wait(4);
  EXPECT_TRUE(c.status(2).ok()) << c.status(2);
  EXPECT_TRUE(c.status(3).ok()) << c.status(3);
  EXPECT_EQ(s.output[95], 0x5a5a5a5au);
  // And back to the first one.
  board->Program(BitstreamAt(path_), c.Add(4));
  c.Wait(5);
  ASSERT_TRUE(c.status(4).ok()) << c.status(4);
  EXPECT_EQ(board->manifest().name, "tiny_test");
  EXPECT_EQ(board->slot(0).input.size(), 8u * 32u);
  board->Submit(0, 8, c.Add(5));
  c.Wait(6);
  EXPECT_TRUE(c.status(5).ok()) << c.status(5);
}

TEST_F(XrtBoardTest, AResetBoardRefusesRunsUntilProgrammed) {
  std::unique_ptr<Board> board = Open(Options());
  ASSERT_NE(board, nullptr);
  Completions c;
  board->Reset(c.Add(0));
  // Refused from the call on, whether or not the reset is done yet.
  board->Submit(0, 1, c.Add(1));
  c.Wait(2);
  EXPECT_TRUE(c.Of(0).ok()) << c.Of(0);
  EXPECT_EQ(c.Of(1).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(c.Of(1).message(), HasSubstr("board xrt0: not programmed"));
  EXPECT_EQ(board->Health().code(), absl::StatusCode::kFailedPrecondition);
  board->Submit(0, 1, c.Add(2));
  c.Wait(3);
  EXPECT_EQ(c.Of(2).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(c.Of(2).message(), HasSubstr("board xrt0: not programmed"));

  board->Program(BitstreamAt(path_), c.Add(3));
  c.Wait(4);
  ASSERT_TRUE(c.Of(3).ok()) << c.Of(3);
  EXPECT_TRUE(board->Health().ok()) << board->Health();
  board->Submit(0, 4, c.Add(4));
  c.Wait(5);
  EXPECT_TRUE(c.Of(4).ok()) << c.Of(4);
}

TEST_F(XrtBoardTest, RunsAreRefusedWhileAProgramWaits) {
  std::unique_ptr<Board> board = Open(Options());
  ASSERT_NE(board, nullptr);
  // Run 0's callback holds the completion thread. Its slot is free by then,
  // so Program is accepted, and waits for the callback to return.
  hgpipe::Notification entered, release;
  Completions c;
  auto first = c.Add(0);
  board->Submit(0, 1, [&entered, &release, first = std::move(first)](absl::Status s) mutable {
    entered.Notify();
    release.WaitForNotificationWithTimeout(absl::Seconds(60));
    first(std::move(s));
  });
  ASSERT_TRUE(entered.WaitForNotificationWithTimeout(absl::Seconds(60)));
  board->Program(BitstreamAt(path_), c.Add(1));
  board->Submit(1, 1, c.Add(2));
  EXPECT_EQ(board->Health().code(), absl::StatusCode::kFailedPrecondition);
  release.Notify();
  c.Wait(3);
  EXPECT_THAT(c.order(), ElementsAre(0, 2, 1));
  EXPECT_TRUE(c.Of(0).ok()) << c.Of(0);
  EXPECT_EQ(c.Of(2).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(c.Of(2).message(), HasSubstr("not programmed (a Program or "
                                           "Reset is in progress)"));
  EXPECT_TRUE(c.Of(1).ok()) << c.Of(1);
  EXPECT_TRUE(board->Health().ok());
}

TEST_F(XrtBoardTest, ResetAbortsTheRunsInFlight) {
  std::unique_ptr<Board> board = Open(Options());
  ASSERT_NE(board, nullptr);
  // Run 0's callback holds the completion thread: runs 1-3 are in flight
  // (queued for completion) when Reset comes; run 0 is answered.
  hgpipe::Notification entered, release;
  Completions c;
  auto first = c.Add(0);
  board->Submit(0, 1, [&entered, &release, first = std::move(first)](absl::Status s) mutable {
    entered.Notify();
    release.WaitForNotificationWithTimeout(absl::Seconds(60));
    first(std::move(s));
  });
  board->Submit(1, 1, c.Add(1));
  board->Submit(2, 2, c.Add(2));
  board->Submit(3, 8, c.Add(3));
  ASSERT_TRUE(entered.WaitForNotificationWithTimeout(absl::Seconds(60)));
  board->Reset(c.Add(4));
  release.Notify();
  c.Wait(5);
  EXPECT_THAT(c.order(), ElementsAre(0, 1, 2, 3, 4));
  EXPECT_TRUE(c.status(0).ok()) << c.status(0);
  for (int i = 1; i <= 3; ++i) {
    EXPECT_EQ(c.status(i).code(), absl::StatusCode::kAborted) << c.status(i);
    EXPECT_THAT(c.status(i).message(), HasSubstr("aborted by reset"));
  }
  EXPECT_TRUE(c.status(4).ok()) << c.status(4);
  board->Program(BitstreamAt(path_), c.Add(5));
  c.Wait(6);
  ASSERT_TRUE(c.status(5).ok()) << c.status(5);
  board->Submit(3, 8, c.Add(6));
  c.Wait(7);
  EXPECT_TRUE(c.status(6).ok()) << c.status(6);
}

TEST_F(XrtBoardTest, ProgramRefusals) {
  std::unique_ptr<Board> board = Open(Options());
  ASSERT_NE(board, nullptr);
  Completions c;
  board->Program(nullptr, c.Add(0));
  c.Wait(1);
  EXPECT_EQ(c.status(0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(board->Health().ok()) << "a refused Program changes nothing";

  // A run in flight: run 2 (slot 0) waits behind run 1's held callback.
  hgpipe::Notification entered, release;
  auto held = c.Add(1);
  board->Submit(1, 1, [&entered, &release, held = std::move(held)](absl::Status s) mutable {
    entered.Notify();
    release.WaitForNotificationWithTimeout(absl::Seconds(60));
    held(std::move(s));
  });
  board->Submit(0, 1, c.Add(2));
  ASSERT_TRUE(entered.WaitForNotificationWithTimeout(absl::Seconds(60)));
  board->Program(BitstreamAt(path_), c.Add(3));
  c.Wait(2);  // the refusal comes from the operations thread meanwhile
  release.Notify();
  c.Wait(4);
  EXPECT_EQ(c.Of(3).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(c.Of(3).message(), HasSubstr("1 runs in flight"));
  EXPECT_TRUE(c.Of(2).ok()) << c.Of(2);

  // A manifest that is not the file's.
  std::shared_ptr<const Bitstream> b = BitstreamAt(path_);
  auto wrong = std::make_shared<Bitstream>(*b);
  wrong->manifest.geometry.classes = 11;
  board->Program(wrong, c.Add(4));
  c.Wait(5);
  EXPECT_EQ(c.status(4).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status(4).message(), HasSubstr("disagree on the geometry"));

  // A missing file: the board is left unprogrammed.
  auto missing = std::make_shared<Bitstream>(*b);
  missing->xclbin_path = dir_ + "/missing.xclbin";
  board->Program(missing, c.Add(5));
  c.Wait(6);
  EXPECT_EQ(c.status(5).code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(c.status(5).message(), HasSubstr("board xrt0: xclbin "));
  EXPECT_EQ(board->Health().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(board->Health().message(), HasSubstr("the last Program failed"));
  board->Program(b, c.Add(6));
  c.Wait(7);
  EXPECT_TRUE(c.status(6).ok()) << c.status(6);
  EXPECT_TRUE(board->Health().ok());
}

TEST_F(XrtBoardTest, ResetAndProgramRecoverAFailedBoard) {
  XrtBoardOptions o = Options();
  o.test_fault_after_runs = 1;  // runs 2, 3, ... fail inside XRT
  std::unique_ptr<Board> board = Open(o);
  ASSERT_NE(board, nullptr);
  Completions c;
  board->Submit(0, 1, c.Add(0));
  board->Submit(1, 1, c.Add(1));
  c.Wait(2);
  EXPECT_TRUE(c.status(0).ok());
  EXPECT_EQ(c.status(1).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(board->Health().code(), absl::StatusCode::kUnavailable);
  board->Reset(c.Add(2));
  board->Program(BitstreamAt(path_), c.Add(3));
  c.Wait(4);
  EXPECT_TRUE(c.status(2).ok()) << c.status(2);
  EXPECT_TRUE(c.status(3).ok()) << c.status(3);
  EXPECT_TRUE(board->Health().ok()) << board->Health();
  // The test fault counts runs across recovery: it fails again.
  board->Submit(2, 1, c.Add(4));
  c.Wait(5);
  EXPECT_EQ(c.status(4).code(), absl::StatusCode::kUnavailable);
}

TEST_F(XrtBoardTest, DestroyingTheBoardWithOperationsQueued) {
  std::unique_ptr<Board> board = Open(Options());
  ASSERT_NE(board, nullptr);
  Completions c;
  board->Reset(c.Add(0));
  board->Program(BitstreamAt(path_), c.Add(1));
  board->Reset(c.Add(2));
  board.reset();
  // Each answered exactly once: done or cancelled.
  c.Wait(3);
  for (int i = 0; i < 3; ++i) {
    const absl::StatusCode code = c.status(i).code();
    EXPECT_TRUE(code == absl::StatusCode::kOk || code == absl::StatusCode::kCancelled)
        << c.status(i);
  }
}

// Open errors name the board and the file.

TEST_F(XrtBoardTest, MissingXclbin) {
  XrtBoardOptions o = Options();
  o.xclbin_path = dir_ + "/missing.xclbin";
  absl::Status s = OpenError(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr("board xrt0: xclbin " + o.xclbin_path));
}

TEST_F(XrtBoardTest, BadMagic) {
  XrtBoardOptions o = Options();
  ASSERT_TRUE(WriteWholeFile(o.xclbin_path, std::string(600, 'x')).ok());
  absl::Status s = OpenError(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(),
              HasSubstr("board xrt0: " + o.xclbin_path + ": not an xclbin: bad magic"));
}

TEST_F(XrtBoardTest, WrongUuid) {
  XrtBoardOptions o = Options();
  XclbinSpec spec =
      SpecWithManifest(SmallManifest("xclbin_uuid: \"00112233445566778899aabbccddeeff\""));
  WriteXclbin(o.xclbin_path, spec);  // a random uuid
  absl::Status s = OpenError(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("board xrt0: xclbin id mismatch"));
  EXPECT_THAT(s.message(), HasSubstr(o.xclbin_path));
}

TEST_F(XrtBoardTest, UnknownKernel) {
  XrtBoardOptions o = Options();
  XclbinSpec spec = SpecWithManifest(SmallManifest());
  spec.kernel.name = "vadd";
  spec.kernel.instance = "vadd_1";
  WriteXclbin(o.xclbin_path, spec);
  absl::Status s = OpenError(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("board xrt0: " + o.xclbin_path + ": unknown kernel"));
}

TEST_F(XrtBoardTest, KernelBreakingTheContract) {
  XrtBoardOptions o = Options();
  XclbinSpec spec = SpecWithManifest(SmallManifest());
  spec.kernel.args.pop_back();  // no n_images
  WriteXclbin(o.xclbin_path, spec);
  absl::Status s = OpenError(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("breaks the kernel contract"));
  EXPECT_THAT(s.message(), HasSubstr(o.xclbin_path));

  spec = SpecWithManifest(SmallManifest());
  spec.kernel.args[2].size = 8;  // a 64-bit n_images
  WriteXclbin(o.xclbin_path, spec);
  s = OpenError(o);
  EXPECT_THAT(s.message(), HasSubstr("must be the 4-byte scalar n_images"));
}

TEST_F(XrtBoardTest, MissingDevice) {
  XrtBoardOptions o = Options();
  o.device = "0000:99:00.1";
  absl::Status s = OpenError(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(s.message(), HasSubstr("board xrt0: opening XRT device 0000:99:00.1"));
  EXPECT_THAT(s.message(), HasSubstr(o.xclbin_path));
}

TEST_F(XrtBoardTest, OptionsBeyondTheBitstreamsLimits) {
  XrtBoardOptions o = Options("max_images_per_run: 4");
  absl::Status s = OpenError(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("exceeds the bitstream's limit of 4"));
  o.max_images_per_run = 0;
  EXPECT_EQ(OpenError(o).code(), absl::StatusCode::kInvalidArgument);
  o = Options();
  o.num_slots = 0;
  EXPECT_EQ(OpenError(o).code(), absl::StatusCode::kInvalidArgument);
  o = Options();
  o.device.clear();
  EXPECT_THAT(OpenError(o).message(), HasSubstr("no device"));
}

TEST_F(XrtBoardTest, ListsDevices) {
  // The no-op device is not enumerated: the list is empty, not an error.
  absl::StatusOr<std::vector<std::string>> devices = ListXrtDevices();
  ASSERT_TRUE(devices.ok()) << devices.status();
  for (const std::string& d : *devices) EXPECT_FALSE(d.empty());
}

}  // namespace
}  // namespace hgpipe::accel
