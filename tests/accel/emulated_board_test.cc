#include "accel/emulated_board.h"

#include <random>
#include <vector>

#include "base/mutex.h"
#include "accel/device_layout.h"
#include "accel/verify_digest.h"
#include "gtest/gtest.h"

namespace hgpipe::accel {
namespace {

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
    o.kernel = *FindEmulatedKernel("verify");
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
  EXPECT_EQ(t.done - t0,
            timing.run_overhead + timing.interval() * 2 + timing.latency());
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
  o.kernel = *FindEmulatedKernel("verify");
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

TEST(EmulatedBoardTest, InjectedFaultFailsRunsAndMarksUnhealthy) {
  EmulatedBoard::Options o;
  o.fail_after_runs = 1;
  Fixture f(o);
  std::vector<absl::Status> got;
  for (int s = 0; s < 2; ++s) {
    f.board->Submit(s, 1, [&](absl::Status st) { got.push_back(st); });
  }
  f.clock.RunUntilIdle();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_TRUE(got[0].ok());
  EXPECT_EQ(got[1].code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(f.board->Health().code(), absl::StatusCode::kUnavailable);
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
  EXPECT_FALSE(FindEmulatedKernel("nope").ok());
}

}  // namespace
}  // namespace hgpipe::accel
