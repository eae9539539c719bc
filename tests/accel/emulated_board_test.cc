#include "accel/emulated_board.h"

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "accel/device_layout.h"
#include "accel/verify_digest.h"
#include "base/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "board_test_helpers.h"

namespace hgpipe::accel {
namespace {

using board_test::Events;
using board_test::OneRun;
using board_test::ProgramBoard;
using board_test::ResetBoard;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<int8_t> RandomImage(const DeviceGeometry& g, uint32_t seed) {
  std::vector<int8_t> img(g.input_bytes());
  std::mt19937 rng(seed);
  for (auto& v : img) v = static_cast<int8_t>(rng());
  return img;
}

struct Fixture {
  SimClock clock;
  std::unique_ptr<EmulatedBoard> board;
  explicit Fixture(EmulatedBoard::Options o = {}) {
    o.kernel = VerifyKernel();
    o.clock = &clock;
    o.compute_inline = true;
    o.max_images_per_run = 8;
    o.num_slots = 3;
    board = *EmulatedBoard::Create(std::move(o));
  }
  void Write(int slot, uint32_t k, const std::vector<int8_t>& flat) {
    const DeviceGeometry& g = board->manifest().geometry;
    PackImage(g, flat.data(), board->slot(slot).input.data() + k * g.input_bytes());
  }
};

TEST(EmulatedBoardTest, CompletesAtTheModelledTimeWithTheKernelsOutput) {
  Fixture f;
  const DeviceGeometry& g = f.board->manifest().geometry;
  std::vector<std::vector<int8_t>> imgs;
  for (uint32_t k = 0; k < 3; ++k) {
    imgs.push_back(RandomImage(g, k));
    f.Write(0, k, imgs.back());
  }
  const absl::Time t0 = f.clock.Now();
  absl::Time done_at = absl::InfinitePast();
  absl::Status status = absl::UnknownError("not called");
  f.board->Submit(0, 3, [&](absl::Status s) {
    status = s;
    done_at = f.clock.Now();
  });
  const RunTimes t = f.board->last_run_times();
  f.clock.AdvanceTo(t.done - absl::Nanoseconds(1));
  EXPECT_FALSE(status.ok()) << "completed before its modelled time";
  f.clock.RunUntilIdle();
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(done_at, t.done);
  const PipelineTiming& timing = f.board->manifest().timing;
  EXPECT_EQ(t.done - t0, timing.run_overhead + timing.interval() * 2 + timing.latency());
  for (uint32_t k = 0; k < 3; ++k) {
    std::vector<int32_t> want(g.classes);
    verify::ExpectedLogits(imgs[k].data(), imgs[k].size(), g.classes, want.data());
    for (uint32_t j = 0; j < g.classes; ++j) {
      ASSERT_EQ(DecodeLogitWord(f.board->slot(0).output[k * g.classes + j]), want[j])
          << "image " << k << " class " << j;
    }
  }
}

TEST(EmulatedBoardTest, RunsQueuedBackToBackCompleteInOrderOneIntervalApart) {
  Fixture f;
  std::vector<int> order;
  std::vector<absl::Time> when;
  for (int s = 0; s < 3; ++s) {
    f.board->Submit(s, 1, [&, s](absl::Status st) {
      ASSERT_TRUE(st.ok());
      order.push_back(s);
      when.push_back(f.clock.Now());
    });
  }
  f.clock.RunUntilIdle();
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2}));
  const absl::Duration ii = f.board->manifest().timing.interval();
  EXPECT_EQ(when[1] - when[0], ii);
  EXPECT_EQ(when[2] - when[1], ii);
}

TEST(EmulatedBoardTest, WorkerThreadComputeWithRealClock) {
  RealClock clock;
  EmulatedBoard::Options o;
  o.kernel = VerifyKernel();
  o.clock = &clock;
  o.max_images_per_run = 2;
  auto board = *EmulatedBoard::Create(o);
  hgpipe::Notification done;
  absl::Status status;
  const absl::Time start = absl::Now();
  board->Submit(1, 2, [&](absl::Status s) {
    status = s;
    done.Notify();
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(60)));
  EXPECT_TRUE(status.ok());
  EXPECT_GE(absl::Now() - start, board->manifest().timing.latency());
}

TEST(EmulatedBoardTest, RejectsBadRunsAndBadOptions) {
  Fixture f;
  absl::Status st;
  f.board->Submit(0, 9, [&](absl::Status s) { st = s; });  // > max 8
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  f.board->Submit(7, 1, [&](absl::Status s) { st = s; });  // no slot 7
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EmulatedBoard::Options o;
  EXPECT_FALSE(EmulatedBoard::Create(o).ok());  // no kernel, no clock
}

// --- Program, Reset ---------------------------------------------------

// A second bitstream with another geometry and timing: 4 tokens x 8 values
// in, 10 classes out; image i's word j is the sum of its input bytes plus j.
class TinyKernel final : public Kernel {
 public:
  TinyKernel() {
    manifest_.name = "tiny";
    manifest_.geometry = {.tokens = 4, .token_values = 8, .classes = 10};
    manifest_.timing.clock_hz = 1e6;
    manifest_.timing.interval_cycles = 10;
    manifest_.timing.latency_cycles = 40;
  }
  const BitstreamManifest& manifest() const override { return manifest_; }
  void Compute(const int8_t* input, uint32_t n, uint32_t* output) const override {
    const DeviceGeometry& g = manifest_.geometry;
    for (uint32_t i = 0; i < n; ++i) {
      uint32_t sum = 0;
      for (size_t b = 0; b < g.input_bytes(); ++b) {
        sum += static_cast<uint8_t>(input[i * g.input_bytes() + b]);
      }
      for (uint32_t j = 0; j < g.classes; ++j) {
        output[i * g.output_words() + j] = sum + j;
      }
    }
  }

 private:
  BitstreamManifest manifest_;
};

std::shared_ptr<const Bitstream> BitstreamOf(std::shared_ptr<const Kernel> k) {
  auto b = std::make_shared<Bitstream>();
  b->manifest = k->manifest();
  b->kernel = std::move(k);
  return b;
}
std::shared_ptr<const Bitstream> VerifyBitstream() { return BitstreamOf(VerifyKernel()); }
std::shared_ptr<const Bitstream> TinyBitstream() {
  return BitstreamOf(std::make_shared<TinyKernel>());
}

TEST(EmulatedBoardTest, AResetBoardIsUnprogrammedUntilProgram) {
  Fixture f;
  ResetBoard(f);
  absl::Status s = OneRun(f);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("board sim0: not programmed"));
  EXPECT_EQ(f.board->Health().code(), absl::StatusCode::kFailedPrecondition);
  ProgramBoard(f, VerifyBitstream());
  EXPECT_TRUE(f.board->Health().ok());
  EXPECT_TRUE(OneRun(f).ok());
}

TEST(EmulatedBoardTest, ProgramSwapsTheKernelGeometryAndTiming) {
  Fixture f;
  EXPECT_EQ(f.board->manifest().name, "verify");
  const int slots = f.board->num_slots();
  const absl::Time t0 = f.clock.Now();
  Events e;
  f.board->Program(TinyBitstream(), e.Add("program"));
  // Nothing runs while programming.
  EXPECT_EQ(f.board->Health().code(), absl::StatusCode::kFailedPrecondition);
  f.board->Submit(0, 1, e.Add("during"));
  EXPECT_EQ(e.Of("during").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(e.Of("during").message(), HasSubstr("programming in progress"));
  f.clock.AdvanceTo(t0 + absl::Seconds(1) - absl::Nanoseconds(1));
  EXPECT_EQ(e.Count("program"), 0) << "done before program_time";
  f.clock.AdvanceTo(t0 + absl::Seconds(1));
  ASSERT_EQ(e.Count("program"), 1);
  ASSERT_TRUE(e.Of("program").ok()) << e.Of("program");

  const BitstreamManifest& m = f.board->manifest();
  EXPECT_EQ(m.name, "tiny");
  EXPECT_EQ(m.geometry.input_bytes(), 32u);
  EXPECT_EQ(m.geometry.classes, 10u);
  EXPECT_EQ(f.board->num_slots(), slots);
  EXPECT_EQ(f.board->max_images_per_run(), 8u);
  for (int i = 0; i < slots; ++i) {
    EXPECT_EQ(f.board->slot(i).input.size(), 8u * 32u);
    EXPECT_EQ(f.board->slot(i).output.size(), 8u * 10u);
  }
  RunSlotBuffers s = f.board->slot(1);
  for (size_t b = 0; b < 64; ++b) s.input[b] = static_cast<int8_t>(b);
  const absl::Time t1 = f.clock.Now();
  f.board->Submit(1, 2, e.Add("tiny run"));
  f.clock.RunUntilIdle();
  ASSERT_TRUE(e.Of("tiny run").ok()) << e.Of("tiny run");
  // The new timing: 10 us interval, 40 us latency.
  EXPECT_EQ(f.clock.Now() - t1, m.timing.run_overhead + absl::Microseconds(10 + 40));
  // The new kernel: image 0 sums 0..31, image 1 sums 32..63.
  EXPECT_EQ(s.output[0], 496u);
  EXPECT_EQ(s.output[9], 496u + 9);
  EXPECT_EQ(s.output[10], 1520u);

  // And back.
  ProgramBoard(f, VerifyBitstream());
  EXPECT_EQ(f.board->manifest().name, "verify");
  EXPECT_EQ(f.board->slot(0).input.size(), 8u * 196u * 768u);
  const DeviceGeometry& g = f.board->manifest().geometry;
  const std::vector<int8_t> img = RandomImage(g, 5);
  f.Write(0, 0, img);
  ASSERT_TRUE(OneRun(f).ok());
  std::vector<int32_t> want(g.classes);
  verify::ExpectedLogits(img.data(), img.size(), g.classes, want.data());
  EXPECT_EQ(DecodeLogitWord(f.board->slot(0).output[7]), want[7]);
}

TEST(EmulatedBoardTest, ProgramTimeAndResetTimeAreOptions) {
  EmulatedBoard::Options o;
  o.program_time = absl::Milliseconds(30);
  o.reset_time = absl::ZeroDuration();
  Fixture f(o);
  const absl::Time t0 = f.clock.Now();
  Events e;
  f.board->Reset(e.Add("reset"));
  EXPECT_TRUE(e.names.empty()) << "done comes from the clock";
  f.clock.RunUntilIdle();
  EXPECT_THAT(e.names, ElementsAre("reset"));
  EXPECT_EQ(f.clock.Now(), t0);
  f.board->Program(TinyBitstream(), e.Add("program"));
  f.clock.RunUntilIdle();
  EXPECT_THAT(e.names, ElementsAre("reset", "program"));
  EXPECT_EQ(f.clock.Now() - t0, absl::Milliseconds(30));
}

TEST(EmulatedBoardTest, ProgramRefusals) {
  Fixture f;
  Events e;
  f.board->Program(nullptr, e.Add("null"));
  EXPECT_EQ(e.Of("null").code(), absl::StatusCode::kInvalidArgument);
  auto no_kernel = std::make_shared<Bitstream>();
  f.board->Program(no_kernel, e.Add("no kernel"));
  EXPECT_EQ(e.Of("no kernel").code(), absl::StatusCode::kInvalidArgument);
  auto mismatch = std::make_shared<Bitstream>(*TinyBitstream());
  mismatch->manifest.geometry.classes = 11;
  f.board->Program(mismatch, e.Add("mismatch"));
  EXPECT_EQ(e.Of("mismatch").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(e.Of("mismatch").message(), HasSubstr("geometry"));
  EXPECT_TRUE(f.board->Health().ok()) << "refusals leave the board as it was";

  f.board->Submit(0, 1, e.Add("run"));
  f.board->Program(TinyBitstream(), e.Add("in flight"));
  EXPECT_EQ(e.Of("in flight").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(e.Of("in flight").message(), HasSubstr("1 runs in flight"));
  f.clock.RunUntilIdle();
  EXPECT_TRUE(e.Of("run").ok());

  f.board->Program(TinyBitstream(), e.Add("first"));
  f.board->Program(VerifyBitstream(), e.Add("second"));
  EXPECT_EQ(e.Of("second").code(), absl::StatusCode::kFailedPrecondition);
  f.clock.RunUntilIdle();
  EXPECT_TRUE(e.Of("first").ok());
  EXPECT_EQ(f.board->manifest().name, "tiny");
  EXPECT_EQ(e.names.size(), 7u);
}

TEST(EmulatedBoardTest, AResetAbortsAProgramInProgress) {
  Fixture f;
  Events e;
  f.board->Program(TinyBitstream(), e.Add("program"));
  f.clock.Advance(absl::Milliseconds(500));
  f.board->Reset(e.Add("reset"));
  EXPECT_THAT(e.names, ElementsAre("program"));
  EXPECT_EQ(e.Of("program").code(), absl::StatusCode::kAborted);
  f.board->Reset(e.Add("second reset"));
  EXPECT_EQ(e.Of("second reset").code(), absl::StatusCode::kFailedPrecondition);
  f.clock.RunUntilIdle();
  EXPECT_THAT(e.names, ElementsAre("program", "second reset", "reset"));
  EXPECT_TRUE(e.Of("reset").ok());
  EXPECT_EQ(OneRun(f).code(), absl::StatusCode::kFailedPrecondition);
}

TEST(EmulatedBoardTest, DestroyingTheBoardCancelsWhatIsPending) {
  {  // a Reset in progress
    Fixture f;
    Events e;
    f.board->Reset(e.Add("reset"));
    f.board.reset();
    EXPECT_THAT(e.names, ElementsAre("reset"));
    EXPECT_EQ(e.Of("reset").code(), absl::StatusCode::kCancelled);
    EXPECT_FALSE(f.clock.HasPendingTimers()) << "its timer is cancelled";
  }
  {  // a Program in progress, and runs still queued
    Fixture f;
    Events e;
    f.board->Submit(0, 1, e.Add("run"));
    f.board.reset();
    EXPECT_EQ(e.Of("run").code(), absl::StatusCode::kCancelled);
    Fixture g;
    g.board->Program(TinyBitstream(), e.Add("program"));
    g.board.reset();
    EXPECT_EQ(e.Of("program").code(), absl::StatusCode::kCancelled);
    EXPECT_FALSE(g.clock.HasPendingTimers());
  }
}

TEST(EmulatedBoardTest, SlotsFollowThePipelineDepthByDefault) {
  SimClock clock;
  EmulatedBoard::Options o;
  o.kernel = VerifyKernel();
  o.clock = &clock;
  o.max_images_per_run = 1;  // small buffers: only the count matters here
  auto board = *EmulatedBoard::Create(o);
  // HG-PIPE DeiT-tiny: latency / II = 816,584 / 57,624 = 14.2 -> 15 + 2.
  EXPECT_EQ(board->num_slots(), 17);
  o.timing = TinyKernel().manifest().timing;  // 40 / 10 = 4 -> 6
  EXPECT_EQ((*EmulatedBoard::Create(o))->num_slots(), 6);
  o.num_slots = 2;
  EXPECT_EQ((*EmulatedBoard::Create(o))->num_slots(), 2);
  o.num_slots = -1;
  EXPECT_EQ(EmulatedBoard::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(EmulatedBoardTest, TimingOnlyBoardsLeaveOutputsZero) {
  for (bool inline_compute : {true, false}) {
    SCOPED_TRACE(inline_compute);
    SimClock clock;
    EmulatedBoard::Options o;
    o.kernel = VerifyKernel();
    o.clock = &clock;
    o.compute = false;
    o.compute_inline = inline_compute;
    o.max_images_per_run = 2;
    auto board = *EmulatedBoard::Create(o);
    RunSlotBuffers s = board->slot(0);
    ASSERT_EQ(s.output.size(), 2000u);
    for (auto& v : s.input) v = 7;
    Events e;
    const absl::Time t0 = clock.Now();
    board->Submit(0, 2, e.Add("run"));
    clock.RunUntilIdle();
    ASSERT_TRUE(e.Of("run").ok());
    const PipelineTiming& t = board->manifest().timing;
    EXPECT_EQ(clock.Now() - t0, t.run_overhead + t.interval() + t.latency());
    EXPECT_TRUE(std::all_of(s.output.begin(), s.output.end(), [](uint32_t w) { return w == 0; }));
  }
}

TEST(EmulatedBoardTest, SubmitRefusesASlotInFlight) {
  Fixture f;
  Events e;
  f.board->Submit(0, 1, e.Add("first"));
  f.board->Submit(0, 1, e.Add("again"));
  EXPECT_EQ(e.Of("again").code(), absl::StatusCode::kFailedPrecondition);
  f.clock.RunUntilIdle();
  EXPECT_TRUE(e.Of("first").ok());
}

// The worker thread computing a run when Reset comes: the run is answered
// (ABORTED) only once the kernel is off its slot, and Reset's done after it.
class BlockingKernel final : public Kernel {
 public:
  const BitstreamManifest& manifest() const override { return manifest_; }
  void Compute(const int8_t*, uint32_t, uint32_t*) const override {
    entered.Notify();
    release.WaitForNotification();
  }
  mutable hgpipe::Notification entered, release;

 private:
  BitstreamManifest manifest_;
};

TEST(EmulatedBoardTest, ResetWaitsForTheKernelComputingOnASlot) {
  SimClock clock;
  auto kernel = std::make_shared<BlockingKernel>();
  EmulatedBoard::Options o;
  o.kernel = kernel;
  o.clock = &clock;
  o.max_images_per_run = 1;
  auto board = *EmulatedBoard::Create(o);
  hgpipe::Mutex mu;
  std::vector<std::string> order;
  hgpipe::Notification reset_done;
  board->Submit(0, 1, [&](absl::Status s) {
    hgpipe::MutexLock l(&mu);
    order.push_back(absl::StrCat("run ", absl::StatusCodeToString(s.code())));
  });
  board->Submit(1, 1, [&](absl::Status s) {  // queued behind it
    hgpipe::MutexLock l(&mu);
    order.push_back(absl::StrCat("queued ", absl::StatusCodeToString(s.code())));
  });
  ASSERT_TRUE(kernel->entered.WaitForNotificationWithTimeout(absl::Seconds(60)));
  board->Reset([&](absl::Status s) {
    {
      hgpipe::MutexLock l(&mu);
      order.push_back(absl::StrCat("reset ", absl::StatusCodeToString(s.code())));
    }
    reset_done.Notify();
  });
  clock.Advance(absl::Seconds(10));  // past reset_time
  {
    hgpipe::MutexLock l(&mu);
    EXPECT_THAT(order, ElementsAre("queued ABORTED"))
        << "the computing run waits for its kernel, and Reset for it";
  }
  Events e;
  board->Program(VerifyBitstream(), e.Add("program"));
  EXPECT_EQ(e.Of("program").code(), absl::StatusCode::kFailedPrecondition)
      << "no Program while the kernel may still write a slot";
  kernel->release.Notify();
  ASSERT_TRUE(reset_done.WaitForNotificationWithTimeout(absl::Seconds(60)));
  {
    hgpipe::MutexLock l(&mu);
    EXPECT_THAT(order, ElementsAre("queued ABORTED", "run ABORTED", "reset OK"));
  }
  board.reset();
}

// Runs, resets and programs from several threads on the wall clock, for
// ThreadSanitizer: every callback exactly once, and every run the reset
// aborted answered before the reset's done. A run that finished just before
// the Reset may still be answering on another thread when done is called
// (Board::Reset's contract); the scheduler counts such deliveries itself.
TEST(EmulatedBoardTest, ResetAndProgramRaceWithRunsOnTheRealClock) {
  RealClock clock;
  EmulatedBoard::Options o;
  o.kernel = VerifyKernel();
  o.clock = &clock;
  o.max_images_per_run = 2;
  o.num_slots = 4;
  o.program_time = absl::Milliseconds(1);
  o.reset_time = absl::Milliseconds(1);
  auto board = *EmulatedBoard::Create(o);
  for (int round = 0; round < 5; ++round) {
    hgpipe::Mutex mu;
    int answered = 0, aborted = 0, aborted_at_reset = -1;
    for (int s = 0; s < 4; ++s) {
      board->Submit(s, 1 + s % 2, [&](absl::Status st) {
        hgpipe::MutexLock l(&mu);
        EXPECT_TRUE(st.ok() || st.code() == absl::StatusCode::kAborted) << st;
        if (!st.ok()) ++aborted;
        ++answered;
      });
    }
    hgpipe::Notification reset, programmed;
    board->Reset([&](absl::Status st) {
      EXPECT_TRUE(st.ok()) << st;
      {
        hgpipe::MutexLock l(&mu);
        aborted_at_reset = aborted;
      }
      reset.Notify();
    });
    ASSERT_TRUE(reset.WaitForNotificationWithTimeout(absl::Seconds(60)));
    board->Program(VerifyBitstream(), [&](absl::Status st) {
      EXPECT_TRUE(st.ok()) << st;
      programmed.Notify();
    });
    ASSERT_TRUE(programmed.WaitForNotificationWithTimeout(absl::Seconds(60)));
    EXPECT_TRUE(board->Health().ok());
    // The round's counters outlive every callback.
    hgpipe::MutexLock l(&mu);
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(
                                        +[](int* n) { return *n == 4; }, &answered),
                                    absl::Seconds(60)));
    EXPECT_EQ(aborted_at_reset, aborted) << "a run the reset aborted was answered after its done";
  }
}

TEST(EmulatedBoardTest, RejectsBadTimeOptions) {
  SimClock clock;
  EmulatedBoard::Options o;
  o.kernel = VerifyKernel();
  o.clock = &clock;
  o.reset_time = absl::Seconds(-1);
  EXPECT_EQ(EmulatedBoard::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hgpipe::accel
