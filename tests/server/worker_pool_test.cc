#include "server/worker_pool.h"

#include <atomic>
#include <set>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "base/mutex.h"
#include "base/thread_name.h"
#include "gtest/gtest.h"

namespace hgpipe::server {
namespace {

// TrySubmitAll takes all of a batch or none: a batch that does not fit in
// what may wait is refused whole, while Schedule (the scheduler's fills,
// bounded by board slots) is never refused.
TEST(WorkerPoolTest, ABatchThatDoesNotFitIsRefusedWholeAndScheduleNeverIs) {
  absl::Notification release;
  std::atomic<int> ran{0};
  {
    WorkerPool pool(1, /*max_queued=*/3);
    absl::Notification started;
    pool.Schedule([&] {
      started.Notify();
      release.WaitForNotification();
    });
    started.WaitForNotification();  // the one thread is busy from here
    auto count = [&] { ++ran; };
    std::vector<WorkerPool::Task> two;
    two.emplace_back(count);
    two.emplace_back(count);
    EXPECT_TRUE(pool.TrySubmitAll(std::move(two)));
    std::vector<WorkerPool::Task> another_two;
    another_two.emplace_back(count);
    another_two.emplace_back(count);
    EXPECT_FALSE(pool.TrySubmitAll(std::move(another_two))) << "5 would wait, 3 may";
    for (int i = 0; i < 5; ++i) pool.Schedule(count);
    release.Notify();
  }  // the destructor runs what is queued
  EXPECT_EQ(ran.load(), 7);
}

TEST(WorkerPoolTest, TasksRunInOrderOnOneThreadAndThreadsAreNamed) {
  hgpipe::Mutex mu;
  std::vector<int> order;
  std::set<std::string> names;
  {
    WorkerPool pool(1, 16, "hgpipe-fill");
    for (int i = 0; i < 10; ++i) {
      pool.Schedule([&, i] {
        hgpipe::MutexLock l(&mu);
        order.push_back(i);
        names.insert(ThisThreadName());
      });
    }
  }
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(names, (std::set<std::string>{"hgpipe-fill-0"}));
  std::set<std::string> many;
  {
    WorkerPool pool(3, 64);
    absl::Notification go;
    std::atomic<int> waiting{0};
    for (int i = 0; i < 3; ++i) {
      // Each task holds its thread until all three run: one on each thread.
      pool.Schedule([&] {
        {
          hgpipe::MutexLock l(&mu);
          many.insert(ThisThreadName());
        }
        if (++waiting == 3) go.Notify();
        go.WaitForNotification();
      });
    }
  }
  EXPECT_EQ(many, (std::set<std::string>{"hgpipe-pool-0", "hgpipe-pool-1", "hgpipe-pool-2"}));
}

}  // namespace
}  // namespace hgpipe::server
