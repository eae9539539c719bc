#include "accel/faulty_board.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "accel/emulated_board.h"
#include "accel/kernel.h"
#include "base/clock.h"
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

// An emulated board (the wrapped one, kept for its modelled times) inside a
// FaultyBoard.
struct Fixture {
  SimClock clock;
  EmulatedBoard* emulated = nullptr;
  std::unique_ptr<Board> board;
  explicit Fixture(FaultInjection fault = {}) {
    EmulatedBoard::Options o;
    o.kernel = VerifyKernel();
    o.clock = &clock;
    o.compute_inline = true;
    o.max_images_per_run = 8;
    o.num_slots = 3;
    std::unique_ptr<EmulatedBoard> e = *EmulatedBoard::Create(std::move(o));
    emulated = e.get();
    board = *FaultyBoard::Create(std::move(e), fault, &clock);
  }
};

FaultInjection WithFault(absl::string_view spec) {
  absl::StatusOr<FaultInjection> f = ParseFaultInjection(spec);
  EXPECT_TRUE(f.ok()) << f.status();
  return f.ok() ? *f : FaultInjection{};
}

std::shared_ptr<const Bitstream> VerifyBitstream() {
  auto b = std::make_shared<Bitstream>();
  b->kernel = VerifyKernel();
  b->manifest = b->kernel->manifest();
  return b;
}

TEST(FaultyBoardTest, WithoutAFaultForwardsEverything) {
  Fixture f;
  EXPECT_EQ(f.board->info().name, "sim0");
  EXPECT_EQ(f.board->info().kind, "emulated");
  EXPECT_EQ(f.board->num_slots(), 3);
  EXPECT_EQ(f.board->max_images_per_run(), 8u);
  EXPECT_EQ(f.board->slot(1).input.data(), f.emulated->slot(1).input.data());
  const DeviceGeometry& g = f.board->manifest().geometry;
  for (size_t i = 0; i < g.input_bytes(); ++i) {
    f.board->slot(0).input[i] = static_cast<int8_t>(i * 7);
  }
  std::vector<uint32_t> want(g.output_words());
  VerifyKernel()->Compute(f.board->slot(0).input.data(), 1, want.data());
  for (int i = 0; i < 20; ++i) {
    const absl::Time t0 = f.clock.Now();
    ASSERT_TRUE(OneRun(f).ok()) << i;
    EXPECT_EQ(f.clock.Now(), f.emulated->last_run_times().done);
    EXPECT_GT(f.clock.Now(), t0);
    EXPECT_THAT(std::vector<uint32_t>(f.board->slot(0).output.begin(),
                                      f.board->slot(0).output.begin() + g.output_words()),
                ::testing::ContainerEq(want));
  }
  ResetBoard(f);
  EXPECT_EQ(f.board->Health().code(), absl::StatusCode::kFailedPrecondition);
  ProgramBoard(f, VerifyBitstream());
  EXPECT_TRUE(f.board->Health().ok());
}

TEST(FaultyBoardTest, RefusedRunsAreNotCounted) {
  Fixture f(WithFault("fail@1"));
  Events e;
  f.board->Submit(7, 1, e.Add("bad slot"));  // refused by the board
  EXPECT_EQ(e.Of("bad slot").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(f.board->Health().ok());
  EXPECT_TRUE(OneRun(f).ok()) << "the first accepted run behaves";
  EXPECT_EQ(OneRun(f).code(), absl::StatusCode::kUnavailable);
}

TEST(FaultyBoardTest, CorruptRunsReportOkWithOneBitFlippedPerImage) {
  Fixture f(WithFault("corrupt@1"));
  const DeviceGeometry& g = f.board->manifest().geometry;
  std::vector<uint32_t> want(2 * g.output_words());
  VerifyKernel()->Compute(f.board->slot(0).input.data(), 2, want.data());
  for (int run = 0; run < 2; ++run) {
    Events e;
    f.board->Submit(0, 2, e.Add("run"));
    f.clock.RunUntilIdle();
    ASSERT_TRUE(e.Of("run").ok());
    const auto out = f.board->slot(0).output;
    for (uint32_t img = 0; img < 2; ++img) {
      for (uint32_t w = 0; w < g.output_words(); ++w) {
        const uint32_t flip = run == 1 && w == 0 ? 1u : 0u;
        ASSERT_EQ(out[img * g.output_words() + w], want[img * g.output_words() + w] ^ flip)
            << "run " << run << " image " << img << " word " << w;
      }
    }
  }
}

TEST(FaultyBoardTest, ProgramIsRefusedWhileAHungRunIsHeld) {
  Fixture f(WithFault("hang@0"));
  Events e;
  f.board->Submit(0, 1, e.Add("hung"));
  f.clock.RunUntilIdle();
  f.board->Program(VerifyBitstream(), e.Add("program"));
  EXPECT_EQ(e.Of("program").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(e.Of("program").message(), HasSubstr("1 runs in flight"));
  ResetBoard(f);
  EXPECT_EQ(e.Of("hung").code(), absl::StatusCode::kAborted);
  ProgramBoard(f, VerifyBitstream());
}

TEST(FaultyBoardTest, ResetAbortsASlowedRunBeforeItIsDelivered) {
  Fixture f(WithFault("slow@0:x100"));
  Events e;
  f.board->Submit(0, 1, e.Add("slow"));
  f.clock.AdvanceTo(f.emulated->last_run_times().done);
  EXPECT_EQ(e.Count("slow"), 0);
  ResetBoard(f);
  EXPECT_EQ(e.Of("slow").code(), absl::StatusCode::kAborted);
  f.clock.RunUntilIdle();
  EXPECT_EQ(e.Count("slow"), 1) << "answered once";
}

TEST(FaultyBoardTest, CreateRejectsBadArguments) {
  SimClock clock;
  EmulatedBoard::Options o;
  o.kernel = VerifyKernel();
  o.clock = &clock;
  FaultInjection slow;
  slow.kind = FaultInjection::Kind::kSlow;
  slow.slow_factor = 0.5;
  auto bad = FaultyBoard::Create(*EmulatedBoard::Create(o), slow, &clock);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("slow_factor must be >= 1"));
  EXPECT_EQ(FaultyBoard::Create(nullptr, {}, &clock).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FaultyBoard::Create(*EmulatedBoard::Create(o), {}, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(FaultyBoardTest, InjectedFaultFailsRunsAndMarksUnhealthy) {
  FaultInjection fault;
  fault.kind = FaultInjection::Kind::kFail;
  fault.after_runs = 1;
  Fixture f(fault);
  std::vector<absl::Status> got;
  for (int s = 0; s < 2; ++s) {
    f.board->Submit(s, 1, [&](absl::Status st) { got.push_back(st); });
  }
  f.clock.RunUntilIdle();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_TRUE(got[0].ok());
  EXPECT_EQ(got[1].code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(got[1].message(), HasSubstr("board sim0: injected fault, run failed"));
  EXPECT_EQ(f.board->Health().code(), absl::StatusCode::kUnavailable);
}

TEST(FaultyBoardTest, HungRunsNeverCompleteUntilResetAbortsThem) {
  Fixture f(WithFault("hang@1"));
  Events e;
  f.board->Submit(0, 1, e.Add("run0"));
  f.board->Submit(1, 1, e.Add("run1"));  // the second run hangs
  f.board->Submit(2, 2, e.Add("run2"));  // and every run after it
  f.clock.Advance(absl::Seconds(3600));
  EXPECT_FALSE(f.clock.HasPendingTimers());
  EXPECT_THAT(e.names, ElementsAre("run0"));
  EXPECT_TRUE(e.Of("run0").ok());
  EXPECT_TRUE(f.board->Health().ok()) << "a hung board looks healthy";

  const absl::Time t0 = f.clock.Now();
  absl::Time reset_at;
  f.board->Reset([&](absl::Status s) {
    e.Add("reset")(s);
    reset_at = f.clock.Now();
  });
  // The hung runs are answered first, in submission order.
  EXPECT_THAT(e.names, ElementsAre("run0", "run1", "run2"));
  for (const char* r : {"run1", "run2"}) {
    EXPECT_EQ(e.Of(r).code(), absl::StatusCode::kAborted) << r;
    EXPECT_THAT(e.Of(r).message(), HasSubstr("board sim0: run aborted by reset"));
  }
  f.clock.AdvanceTo(t0 + absl::Milliseconds(200) - absl::Nanoseconds(1));
  EXPECT_EQ(e.Count("reset"), 0) << "done before reset_time";
  f.clock.RunUntilIdle();
  ASSERT_EQ(e.Count("reset"), 1);
  EXPECT_TRUE(e.Of("reset").ok());
  EXPECT_EQ(reset_at - t0, absl::Milliseconds(200));
}

TEST(FaultyBoardTest, ATransientFaultIsClearedByReset) {
  for (const char* spec : {"fail@0", "hang@0", "slow@0:x3"}) {
    SCOPED_TRACE(spec);
    Fixture f(WithFault(spec));
    Events e;
    f.board->Submit(0, 1, e.Add("faulty"));
    f.clock.Advance(absl::Seconds(10));
    ResetBoard(f);
    ProgramBoard(f, VerifyBitstream());
    EXPECT_TRUE(f.board->Health().ok());
    // Never again, however many runs follow.
    const PipelineTiming& t = f.board->manifest().timing;
    for (int i = 0; i < 5; ++i) {
      const absl::Time t0 = f.clock.Now();
      ASSERT_TRUE(OneRun(f).ok()) << "run " << i;
      EXPECT_EQ(f.emulated->last_run_times().done - t0, t.run_overhead + t.latency());
    }
  }
}

TEST(FaultyBoardTest, APermanentFailKillsTheBoard) {
  Fixture f(WithFault("fail@1:permanent"));
  EXPECT_TRUE(OneRun(f).ok());
  EXPECT_EQ(OneRun(f).code(), absl::StatusCode::kUnavailable);
  ResetBoard(f);
  EXPECT_EQ(f.board->Health().code(), absl::StatusCode::kUnavailable);
  ProgramBoard(f, VerifyBitstream(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(f.board->Health().code(), absl::StatusCode::kUnavailable);
  const absl::Status s = OneRun(f);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("the last Program failed"));
}

TEST(FaultyBoardTest, APermanentHangReturnsAfterReprogramming) {
  Fixture f(WithFault("hang@1:permanent"));
  EXPECT_TRUE(OneRun(f).ok());
  Events e;
  f.board->Submit(0, 1, e.Add("hung"));
  f.clock.RunUntilIdle();
  EXPECT_TRUE(e.names.empty());
  ResetBoard(f);
  EXPECT_EQ(e.Of("hung").code(), absl::StatusCode::kAborted);
  ProgramBoard(f, VerifyBitstream());
  // after_runs counts again from the programming: one good run, then hangs.
  EXPECT_TRUE(OneRun(f).ok());
  f.board->Submit(0, 1, e.Add("hung again"));
  f.clock.RunUntilIdle();
  EXPECT_EQ(e.Count("hung again"), 0);
  EXPECT_TRUE(f.board->Health().ok());
  ResetBoard(f);
  EXPECT_EQ(e.Of("hung again").code(), absl::StatusCode::kAborted);
}

TEST(FaultyBoardTest, SlowRunsTakeTheFactorTimesTheBoardsTime) {
  Fixture f(WithFault("slow@1:x4:permanent"));
  const PipelineTiming t = f.board->manifest().timing;
  auto run_time = [&](uint32_t n) {
    const absl::Time t0 = f.clock.Now();
    Events e;
    f.board->Submit(0, n, e.Add("run"));
    f.clock.RunUntilIdle();
    EXPECT_TRUE(e.Of("run").ok());
    return f.clock.Now() - t0;
  };
  const absl::Duration one = t.run_overhead + t.latency();
  EXPECT_EQ(run_time(1), one);
  // An idle board's whole run time x4.
  const absl::Duration three = t.run_overhead + t.latency() + 2 * t.interval();
  EXPECT_LE(absl::AbsDuration(run_time(3) - 4 * three), absl::Nanoseconds(10));
  EXPECT_LE(absl::AbsDuration(run_time(1) - 4 * one), absl::Nanoseconds(10));
  EXPECT_TRUE(f.board->Health().ok());
  EXPECT_EQ(f.board->manifest().timing.interval(), t.interval())
      << "the manifest keeps the declared timing";
  // Permanent: normal again after reprogramming, slow after one more run.
  ResetBoard(f);
  ProgramBoard(f, VerifyBitstream());
  EXPECT_EQ(run_time(1), one);
  EXPECT_LE(absl::AbsDuration(run_time(1) - 4 * one), absl::Nanoseconds(10));
}

// Behind a run already in the pipeline, a slow run costs the factor times
// the interval the board added for it, not its whole latency again.
TEST(FaultyBoardTest, SlowRunsQueueBehindRunsAlreadyInThePipeline) {
  Fixture f(WithFault("slow@1:x2"));
  Events e;
  absl::Time fast_at, slow_at;
  f.board->Submit(0, 8, [&](absl::Status s) {
    e.Add("fast")(s);
    fast_at = f.clock.Now();
  });
  const absl::Time fast_done = f.emulated->last_run_times().done;
  f.board->Submit(1, 1, [&](absl::Status s) {
    e.Add("slow")(s);
    slow_at = f.clock.Now();
  });
  const absl::Time slow_done = f.emulated->last_run_times().done;
  ASSERT_GT(slow_done, fast_done);
  f.clock.RunUntilIdle();
  EXPECT_THAT(e.names, ElementsAre("fast", "slow"));
  EXPECT_EQ(fast_at, fast_done);
  EXPECT_LE(absl::AbsDuration((slow_at - fast_at) - 2 * (slow_done - fast_done)),
            absl::Nanoseconds(10));
}
TEST(FaultyBoardTest, DestroyingTheWrapperCancelsAHungRun) {
  {  // a hung run
    Fixture f(WithFault("hang@0"));
    Events e;
    f.board->Submit(0, 1, e.Add("hung"));
    f.board.reset();
    EXPECT_EQ(e.Of("hung").code(), absl::StatusCode::kCancelled);
  }
}

TEST(FaultInjectionTest, ParsesSpecs) {
  using K = FaultInjection::Kind;
  struct Case {
    const char* spec;
    K kind;
    uint64_t after;
    double factor;
    bool permanent;
  };
  for (const Case& c : std::vector<Case>{
           {"", K::kNone, 0, 4, false},
           {"none", K::kNone, 0, 4, false},
           {"fail@3", K::kFail, 3, 4, false},
           {"hang@0", K::kHang, 0, 4, false},
           {"hang@12:permanent", K::kHang, 12, 4, true},
           {"slow@2", K::kSlow, 2, 4, false},
           {"slow@2:x2.5", K::kSlow, 2, 2.5, false},
           {"slow@0:x10:permanent", K::kSlow, 0, 10, true},
           {"fail@18446744073709551615", K::kFail, UINT64_MAX, 4, false},
           {"corrupt@5", K::kCorrupt, 5, 4, false},
           {"corrupt@0:permanent", K::kCorrupt, 0, 4, true},
       }) {
    SCOPED_TRACE(c.spec);
    absl::StatusOr<FaultInjection> f = ParseFaultInjection(c.spec);
    ASSERT_TRUE(f.ok()) << f.status();
    EXPECT_EQ(f->kind, c.kind);
    EXPECT_EQ(f->after_runs, c.after);
    EXPECT_EQ(f->slow_factor, c.factor);
    EXPECT_EQ(f->permanent, c.permanent);
    absl::StatusOr<FaultInjection> back = ParseFaultInjection(f->ToString());
    ASSERT_TRUE(back.ok()) << f->ToString() << ": " << back.status();
    EXPECT_EQ(*back, *f) << f->ToString();
  }
  EXPECT_EQ(ParseFaultInjection("slow@2")->ToString(), "slow@2:x4");
  EXPECT_EQ(ParseFaultInjection("hang@1:permanent")->ToString(), "hang@1:permanent");
  FaultInjection odd;
  odd.kind = FaultInjection::Kind::kSlow;
  odd.slow_factor = 1.0 / 3 + 1;
  EXPECT_EQ(*ParseFaultInjection(odd.ToString()), odd) << odd.ToString();
}

TEST(FaultInjectionTest, RejectsBadSpecsQuotingThem) {
  for (const char* spec : {"fail",
                           "fail@",
                           "fail@x",
                           "fail@-1",
                           "fail@ 3",
                           "fail@3 ",
                           "oops@3",
                           "FAIL@3",
                           "fail@3:x2",
                           "hang@1:x2",
                           "slow@1:x0.5",
                           "slow@1:x",
                           "slow@1:xinf",
                           "slow@1:xnan",
                           "slow@1:x2:x3",
                           "fail@1:permanent:x2",
                           "slow@1:permanent:x2",
                           "fail@1:forever",
                           "fail@1:",
                           "@3",
                           "fail@99999999999999999999",
                           "none:permanent"}) {
    SCOPED_TRACE(spec);
    absl::StatusOr<FaultInjection> f = ParseFaultInjection(spec);
    ASSERT_FALSE(f.ok()) << f->ToString();
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(f.status().message(),
                HasSubstr(absl::StrCat("bad fault injection \"", spec, "\"")));
  }
}

}  // namespace
}  // namespace hgpipe::accel
