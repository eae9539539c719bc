#include "base/clock.h"

#include <vector>

#include "base/mutex.h"
#include "gtest/gtest.h"

namespace hgpipe {
namespace {

TEST(SimClockTest, RunsTimersInDueOrderAndSetsNow) {
  SimClock clock;
  const absl::Time t0 = clock.Now();
  std::vector<int> order;
  std::vector<absl::Time> seen;
  clock.RunAt(t0 + absl::Milliseconds(3), [&] {
    order.push_back(3);
    seen.push_back(clock.Now());
  });
  clock.RunAt(t0 + absl::Milliseconds(1), [&] {
    order.push_back(1);
    seen.push_back(clock.Now());
  });
  clock.RunAt(t0 + absl::Milliseconds(1), [&] {
    order.push_back(2);
    seen.push_back(clock.Now());
  });
  clock.Advance(absl::Milliseconds(2));
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
  EXPECT_EQ(clock.Now(), t0 + absl::Milliseconds(2));
  clock.RunUntilIdle();
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(seen[0], t0 + absl::Milliseconds(1));
  EXPECT_EQ(seen[2], t0 + absl::Milliseconds(3));
}

TEST(SimClockTest, CancelPreventsRunAndTimersMaySetTimers) {
  SimClock clock;
  int ran = 0;
  const auto id = clock.RunAt(clock.Now() + absl::Seconds(1), [&] { ++ran; });
  EXPECT_TRUE(clock.Cancel(id));
  EXPECT_FALSE(clock.Cancel(id));
  clock.RunAt(clock.Now() + absl::Seconds(1),
              [&] { clock.RunAt(clock.Now() + absl::Seconds(1), [&] { ran += 10; }); });
  clock.RunUntilIdle();
  EXPECT_EQ(ran, 10);
  EXPECT_EQ(clock.Now(), absl::UnixEpoch() + absl::Seconds(2));
  EXPECT_FALSE(clock.HasPendingTimers());
}

TEST(RealClockTest, RunsATimerNoEarlierThanItsDueTime) {
  RealClock clock;
  hgpipe::Notification fired;
  absl::Time ran_at;
  const absl::Time due = clock.Now() + absl::Milliseconds(5);
  clock.RunAt(due, [&] {
    ran_at = absl::Now();
    fired.Notify();
  });
  ASSERT_TRUE(fired.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_GE(ran_at, due);
}

TEST(RealClockTest, CancelledTimerNeverRunsAndCancelWaitsForRunningOne) {
  RealClock clock;
  int ran = 0;
  const auto far = clock.RunAt(clock.Now() + absl::Hours(1), [&] { ++ran; });
  EXPECT_TRUE(clock.Cancel(far));

  hgpipe::Notification started, release;
  bool finished = false;
  const auto now_id = clock.RunAt(clock.Now(), [&] {
    started.Notify();
    release.WaitForNotification();
    finished = true;
  });
  started.WaitForNotification();
  release.Notify();
  EXPECT_FALSE(clock.Cancel(now_id));  // it was running: waits for it
  EXPECT_TRUE(finished);
  EXPECT_EQ(ran, 0);
}

}  // namespace
}  // namespace hgpipe
