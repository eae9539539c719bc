#include "scheduler/variant_router.h"

#include <map>
#include <memory>
#include <random>
#include <vector>

#include "accel/emulated_board.h"
#include "accel/faulty_board.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hgpipe::scheduler {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ChooseVariantTest, MostAccurateThatMeetsTheDeadlineElseTheEarliest) {
  const absl::Time t0 = absl::UnixEpoch();
  const absl::Time deadline = t0 + absl::Milliseconds(5);
  std::vector<RouteCandidate> c = {
      {0, 0.90, t0 + absl::Milliseconds(9)},
      {1, 0.88, t0 + absl::Milliseconds(4)},
      {2, 0.80, t0 + absl::Milliseconds(2)},
  };
  EXPECT_EQ(ChooseVariant(c, deadline), 1);
  EXPECT_EQ(ChooseVariant(c, absl::InfiniteFuture()), 0);
  // None in time: the one predicted first (the scheduler then refuses it).
  EXPECT_EQ(ChooseVariant(c, t0 + absl::Milliseconds(1)), 2);
  c[2].predicted = absl::InfiniteFuture();
  EXPECT_EQ(ChooseVariant(c, t0 + absl::Milliseconds(1)), 1);
  EXPECT_EQ(ChooseVariant({}, deadline), -1);
}

TEST(SplitBoardsTest, LeastAccuracyGivenUpForTheCapacityAsked) {
  const std::vector<RoutedVariant> v = {
      {"full", {}, 0.90, 1000}, {"skip", {}, 0.89, 1500}, {"fast", {}, 0.80, 4000}};
  EXPECT_THAT(SplitBoards(v, 4, 0.0, 3000), ElementsAre(4, 0, 0));
  // 4 x 1000 < 5000: the skip variant costs 1 point for 500/s a board, the
  // fast one 10 points for 3000/s: skip first.
  EXPECT_THAT(SplitBoards(v, 4, 0.0, 5000), ElementsAre(2, 2, 0));
  EXPECT_THAT(SplitBoards(v, 4, 0.0, 6000), ElementsAre(0, 4, 0));
  // Past what skip alone gives, a fast board.
  const std::vector<int> s = SplitBoards(v, 4, 0.0, 8000);
  EXPECT_GE(s[0] * 1000 + s[1] * 1500 + s[2] * 4000, 8000);
  EXPECT_EQ(s[0] + s[1] + s[2], 4);
  // A floor keeps variants below it out, even when short.
  EXPECT_THAT(SplitBoards(v, 4, 0.85, 100000), ElementsAre(0, 4, 0));
  EXPECT_THAT(SplitBoards(v, 4, 0.95, 100), ElementsAre(0, 0, 0));
}

// A model of four variants on a SimClock: "full" (HG-PIPE's DeiT-tiny
// timing, top-1 0.90), "skip" (1.5x its rate, 0.89), "taylor" (3x, 0.88)
// and "fast" (4x, 0.70), every board starting on "full", timing-only
// emulated boards.
class VariantRouterTest : public ::testing::Test {
 protected:
  static constexpr size_t kImageBytes = 196 * 768;
  static constexpr uint32_t kClasses = 1000;

  ~VariantRouterTest() override {
    if (scheduler_ != nullptr) scheduler_->Shutdown();
    clock_.RunUntilIdle();
  }

  std::shared_ptr<const accel::Bitstream> Variant(uint64_t interval_cycles) {
    auto kernel = accel::VerifyKernel();
    accel::BitstreamManifest m = kernel->manifest();
    m.timing.interval_cycles = interval_cycles;
    return std::make_shared<const accel::Bitstream>(accel::Bitstream{m, kernel, ""});
  }

  // `slow`: every interval and latency times this (the overload bench's
  // scale), so that seconds of simulated load stay cheap.
  void Build(int boards, bool move_boards = true, uint64_t slow = 1) {
    Scheduler::Options so;
    so.clock = &clock_;
    so.dispatch_lead = absl::Microseconds(100);
    so.recovery_backoff = recovery_backoff_;
    scheduler_ = *Scheduler::Create(so);
    const uint64_t ii = 57'624 * slow;
    const std::vector<std::pair<std::string, uint64_t>> kinds = {
        {"full", ii}, {"skip", ii * 2 / 3}, {"taylor", ii / 3}, {"fast", ii / 4}};
    const std::vector<double> top1 = {0.90, 0.89, 0.88, 0.70};
    for (size_t i = 0; i < kinds.size(); ++i) {
      ModelOptions mo;
      mo.name = i == 0 ? "m" : "m@" + kinds[i].first;
      mo.bitstream = Variant(kinds[i].second);
      if (slow > 1) {
        auto m = mo.bitstream->manifest;
        m.timing.latency_cycles *= slow;
        mo.bitstream =
            std::make_shared<const accel::Bitstream>(accel::Bitstream{m, mo.bitstream->kernel, ""});
      }
      mo.max_queue_images = 100000;
      std::vector<std::unique_ptr<accel::Board>> bs;
      if (i == 0) {
        for (int b = 0; b < boards; ++b) {
          accel::EmulatedBoard::Options o;
          o.name = "sim" + std::to_string(b);
          o.kernel = mo.bitstream->kernel;
          o.timing = mo.bitstream->manifest.timing;
          o.clock = &clock_;
          o.compute_inline = true;
          o.compute = false;
          o.program_time = absl::Milliseconds(50);
          std::unique_ptr<accel::Board> board = *accel::EmulatedBoard::Create(o);
          if (b == boards - 1 && last_board_fault_.kind != accel::FaultInjection::Kind::kNone) {
            board = *accel::FaultyBoard::Create(std::move(board), last_board_fault_, &clock_);
          }
          bs.push_back(std::move(board));
        }
      }
      absl::StatusOr<ModelHandle> h = scheduler_->AddModel(mo, std::move(bs));
      ASSERT_TRUE(h.ok()) << h.status();
      handles_.push_back(*h);
      router_options_.variants.push_back(
          {kinds[i].first, *h, top1[i], mo.bitstream->manifest.timing.max_images_per_second()});
    }
    router_options_.model = "m";
    router_options_.scheduler = scheduler_.get();
    router_options_.clock = &clock_;
    router_options_.move_boards = move_boards;
    if (router_options_.min_move_interval == VariantRouter::Options().min_move_interval) {
      router_options_.min_move_interval = absl::Milliseconds(200);
    }
    auto r = VariantRouter::Create(router_options_);
    ASSERT_TRUE(r.ok()) << r.status();
    router_ = *std::move(r);
  }

  struct Outcome {
    uint64_t sent = 0, ok = 0, late = 0, refused_floor = 0;
    std::map<int, uint64_t> by_variant;  // answered OK
    std::map<std::string, uint64_t> errors;
  };

  // Poisson arrivals of 1-image requests at `rate` for `seconds`, each with
  // `timeout` and `floor`; runs the clock to the end.
  Outcome Drive(double rate, absl::Duration seconds, absl::Duration timeout,
                std::optional<double> floor, bool drain = true) {
    auto out = std::make_shared<Outcome>();
    std::exponential_distribution<double> gap(rate);
    const absl::Time end = clock_.Now() + seconds;
    absl::Time t = clock_.Now();
    while (true) {
      t += absl::Seconds(gap(rng_));
      if (t >= end) break;
      clock_.AdvanceTo(t);
      auto r = std::make_unique<BufferRequest>();
      r->images = image_.data();
      r->n_images = 1;
      r->logits = logits_.data();
      r->deadline = t + timeout;
      auto variant = std::make_shared<int>(-1);
      const absl::Time deadline = r->deadline;
      r->done = [this, out, variant, deadline](absl::Status s) {
        if (s.ok()) {
          ++out->ok;
          ++out->by_variant[*variant];
          if (clock_.Now() > deadline) ++out->late;
        } else {
          ++out->errors[std::string(absl::StatusCodeToString(s.code()))];
        }
      };
      ++out->sent;
      absl::StatusOr<int> v = router_->Enqueue(std::move(r), floor);
      if (v.ok()) {
        *variant = *v;
      } else {
        ++out->errors[std::string(absl::StatusCodeToString(v.status().code()))];
      }
    }
    if (drain) clock_.RunUntilIdle();
    return *out;
  }

  SimClock clock_;
  // Set before Build: the fault of the last board of "full", and the
  // scheduler's recovery backoff.
  accel::FaultInjection last_board_fault_;
  absl::Duration recovery_backoff_ = Scheduler::Options().recovery_backoff;
  std::unique_ptr<Scheduler> scheduler_;
  VariantRouter::Options router_options_;
  std::vector<ModelHandle> handles_;
  std::unique_ptr<VariantRouter> router_;
  std::vector<int8_t> image_ = std::vector<int8_t>(kImageBytes);
  std::vector<int32_t> logits_ = std::vector<int32_t>(kClasses);
  std::mt19937_64 rng_{7};
};

TEST_F(VariantRouterTest, AFloorNoVariantReachesNamesTheBestAvailable) {
  Build(1);
  auto r = std::make_unique<BufferRequest>();
  r->images = image_.data();
  r->n_images = 1;
  r->logits = logits_.data();
  r->done = [](absl::Status) { ADD_FAILURE() << "answered"; };
  absl::StatusOr<int> v = router_->Enqueue(std::move(r), 0.95);
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(v.status().message(),
              HasSubstr("no variant reaches the minimum accuracy 0.9500; the best "
                        "available is 'full' with top-1 0.9000"));
}

TEST_F(VariantRouterTest, WithoutAFloorOnlyTheMostAccurateAnswers) {
  Build(2);
  const double capacity = 2 * router_->variants()[0].images_per_second;
  const Outcome o = Drive(2 * capacity, absl::Seconds(1), absl::Milliseconds(5), std::nullopt);
  EXPECT_EQ(o.by_variant.size(), 1u);
  EXPECT_EQ(o.by_variant.count(0), 1u);
  EXPECT_EQ(o.late, 0u);
  // Twice the capacity: about half must be refused.
  EXPECT_LT(o.ok, o.sent * 6 / 10);
  EXPECT_EQ(router_->moves(), 0u);
}

TEST_F(VariantRouterTest, OverloadMovesBoardsToFasterVariantsAboveTheFloor) {
  Build(2);
  const double capacity = 2 * router_->variants()[0].images_per_second;
  // Warm up: boards move to what the load needs.
  Drive(2 * capacity, absl::Seconds(1), absl::Milliseconds(5), 0.85, /*drain=*/false);
  const uint64_t moves_warm = router_->moves();
  EXPECT_GE(moves_warm, 1u);
  Outcome o = Drive(2 * capacity, absl::Seconds(1.5), absl::Milliseconds(5), 0.85);
  // Never below the floor: the 0.70 variant answers nothing.
  EXPECT_EQ(o.by_variant.count(3), 0u);
  EXPECT_GT(o.by_variant[2], 0u);
  EXPECT_EQ(o.late, 0u);
  std::string errors;
  for (const auto& [code, n] : o.errors) errors += code + " " + std::to_string(n) + " ";
  EXPECT_GE(o.ok, o.sent * 95 / 100) << errors;
  // Steady demand, steady split: at most one move after the warm-up.
  EXPECT_LE(router_->moves(), moves_warm + 1);
}

TEST_F(VariantRouterTest, BoardsReturnToTheAccurateVariantWhenDemandFalls) {
  Build(2);
  const double capacity = 2 * router_->variants()[0].images_per_second;
  Drive(2 * capacity, absl::Seconds(1), absl::Milliseconds(5), 0.85);
  ASSERT_GE(router_->moves(), 1u);
  // A light load: everything back on "full" once it has lasted shrink_hold
  // (5 s), then one move per interval.
  const Outcome o = Drive(0.3 * capacity, absl::Seconds(7), absl::Milliseconds(5), 0.85);
  int on_full = 0;
  for (const auto& b : scheduler_->Boards(handles_[0])) on_full += b.phase == BoardPhase::kServing;
  EXPECT_EQ(on_full, 2);
  EXPECT_EQ(o.late, 0u);
}

// Demand that wobbles from window to window (as Poisson arrivals do, here
// exaggerated): windows alternate between 1.4x and 0.6x of a steady overload. Each
// window alone says "grow" or "shrink"; the smoothed demand says neither,
// so the boards settle once and stay (the overload bench's flapping: a
// board moved back and forth, each move costing its reprogramming time).
TEST_F(VariantRouterTest, BunchedDemandDoesNotMoveBoardsBackAndForth) {
  router_options_.min_move_interval = absl::Milliseconds(500);
  Build(2, /*move_boards=*/true, /*slow=*/50);
  const double capacity = 2 * router_->variants()[0].images_per_second;
  Outcome total;
  uint64_t moves_warm = 0;
  for (int k = 0; k < 120; ++k) {
    const Outcome o = Drive((k % 2 == 0 ? 1.4 : 0.6) * 2 * capacity, absl::Milliseconds(250),
                            absl::Milliseconds(250), 0.85, /*drain=*/false);
    if (k == 19) moves_warm = router_->moves();  // 5 s to settle
    if (k < 20) continue;
    total.sent += o.sent;
    total.ok += o.ok;
    total.late += o.late;
  }
  clock_.RunUntilIdle();
  EXPECT_GE(moves_warm, 1u);
  EXPECT_LE(router_->moves(), moves_warm + 1) << "moves after the warm-up";
  EXPECT_EQ(total.late, 0u);
}

// A short lull (under shrink_hold) gives nothing back; a lasting one does.
TEST_F(VariantRouterTest, OnlyALastingLullMovesBoardsBackToAccuracy) {
  router_options_.min_move_interval = absl::Milliseconds(500);
  Build(2, /*move_boards=*/true, /*slow=*/50);
  const double capacity = 2 * router_->variants()[0].images_per_second;
  Drive(2 * capacity, absl::Seconds(8), absl::Milliseconds(250), 0.85, /*drain=*/false);
  const uint64_t moved = router_->moves();
  ASSERT_GE(moved, 1u);
  Drive(0.3 * capacity, absl::Seconds(3), absl::Milliseconds(250), 0.85, /*drain=*/false);
  EXPECT_EQ(router_->moves(), moved) << "a 3 s lull is shorter than shrink_hold (5 s)";
  Drive(2 * capacity, absl::Seconds(3), absl::Milliseconds(250), 0.85, /*drain=*/false);
  Drive(0.3 * capacity, absl::Seconds(12), absl::Milliseconds(250), 0.85);
  int on_full = 0;
  for (const auto& b : scheduler_->Boards(handles_[0])) on_full += b.phase == BoardPhase::kServing;
  EXPECT_EQ(on_full, 2) << "a 12 s lull: both boards back on the most accurate variant";
}

// What the smoothing costs: a surge is answered late by about the time the
// smoothed demand takes to cross the grow threshold. From a settled half
// load to twice the capacity, the 2 s horizon in 250 ms windows reaches
// 0.9 of the capacity in the third window (0.5 -> 0.68 -> 0.88 -> 1.05),
// so the first board moves about 0.75 s after the step; a router that
// reads each window alone (horizon 0) moves after the first (0.25 s).
class VariantRouterSurgeTest : public VariantRouterTest {
 protected:
  // How long after the step the first board moved.
  absl::Duration Reaction(absl::Duration horizon) {
    router_options_.min_move_interval = absl::Milliseconds(500);
    router_options_.demand_horizon = horizon;
    Build(2, /*move_boards=*/true, /*slow=*/50);
    const double capacity = 2 * router_->variants()[0].images_per_second;
    Drive(0.5 * capacity, absl::Seconds(8), absl::Milliseconds(250), 0.85, /*drain=*/false);
    EXPECT_EQ(router_->moves(), 0u) << "half the capacity moves nothing";
    const absl::Time step = clock_.Now();
    absl::Duration reaction = absl::InfiniteDuration();
    for (int k = 0; k < 60 && reaction == absl::InfiniteDuration(); ++k) {
      Drive(2 * capacity, absl::Milliseconds(50), absl::Milliseconds(250), 0.85,
            /*drain=*/false);
      if (router_->moves() > 0) reaction = clock_.Now() - step;
    }
    clock_.RunUntilIdle();
    return reaction;
  }
};

TEST_F(VariantRouterSurgeTest, SmoothedTheFirstBoardMovesWithinAboutThreeWindows) {
  const absl::Duration reaction = Reaction(VariantRouter::Options().demand_horizon);
  EXPECT_GE(reaction, absl::Milliseconds(500)) << "one window's surge alone moved a board";
  EXPECT_LE(reaction, absl::Milliseconds(1250)) << "the smoothing answered a 4x step late";
}

TEST_F(VariantRouterSurgeTest, UnsmoothedTheFirstBoardMovesAfterOneWindow) {
  const absl::Duration reaction = Reaction(absl::ZeroDuration());
  EXPECT_GE(reaction, absl::Milliseconds(250));
  EXPECT_LT(reaction, absl::Milliseconds(500));
}

// A board that keeps failing is not a move: while it backs off and fails
// again (here for minutes: 5 s backoff, doubling, 5 attempts), the healthy
// boards still go back to the accurate variant once demand has fallen.
TEST_F(VariantRouterTest, ARecoveringBoardDoesNotHoldTheOthersOnTheFastVariant) {
  router_options_.min_move_interval = absl::Milliseconds(500);
  last_board_fault_.kind = accel::FaultInjection::Kind::kFail;
  last_board_fault_.permanent = true;
  recovery_backoff_ = absl::Seconds(5);
  Build(3, /*move_boards=*/true, /*slow=*/50);
  const double capacity = 2 * router_->variants()[0].images_per_second;
  Drive(2 * capacity, absl::Seconds(8), absl::Milliseconds(250), 0.85, /*drain=*/false);
  ASSERT_GE(router_->moves(), 1u);
  Drive(0.3 * capacity, absl::Seconds(12), absl::Milliseconds(250), 0.85, /*drain=*/false);
  int on_full = 0, recovering = 0;
  for (const auto& b : scheduler_->Boards(handles_[0])) {
    on_full += b.phase == BoardPhase::kServing;
    recovering += b.recovering;
  }
  EXPECT_EQ(recovering, 1) << "the failing board is still in recovery";
  EXPECT_EQ(on_full, 2) << "both healthy boards back on the most accurate variant";
  clock_.RunUntilIdle();
}

TEST_F(VariantRouterTest, NegativeHorizonOrHoldIsRefused) {
  Build(1);
  VariantRouter::Options o = router_options_;
  o.shrink_hold = absl::Seconds(-1);
  absl::StatusOr<std::unique_ptr<VariantRouter>> r = VariantRouter::Create(o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("shrink_hold"));
  o = router_options_;
  o.demand_horizon = absl::Seconds(-1);
  EXPECT_THAT(VariantRouter::Create(o).status().message(), HasSubstr("demand_horizon"));
}

}  // namespace
}  // namespace hgpipe::scheduler
