#include "scheduler/request_queue.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/mutex.h"
#include "gtest/gtest.h"

namespace hgpipe::scheduler {
namespace {

const absl::Time t0 = absl::FromUnixSeconds(1000);
absl::Time At(int64_t us) { return t0 + absl::Microseconds(us); }

class RequestQueueTest : public ::testing::Test {
 protected:
  // A request of n images at `level` that arrived at t0 + arrival_us.
  Request* Add(uint32_t n, uint32_t level, int64_t arrival_us,
               absl::Time deadline = absl::InfiniteFuture()) {
    auto r = std::make_unique<BufferRequest>();
    r->n_images = n;
    r->deadline = deadline;
    requests_.push_back(std::make_unique<Request>(std::move(r), At(arrival_us), level));
    return requests_.back().get();
  }

  // "name:index" for each image taken, names by request order of Add.
  std::string Names(const std::vector<ImageRef>& images) const {
    std::string s;
    for (const ImageRef& i : images) {
      for (size_t k = 0; k < requests_.size(); ++k) {
        if (requests_[k].get() == i.request) {
          if (!s.empty()) s += " ";
          s += std::string(1, static_cast<char>('a' + k)) + std::to_string(i.index);
        }
      }
    }
    return s;
  }

  // Takes a run with no deadline in the way (1 us per image, no latency).
  std::vector<ImageRef> Take(RequestQueue& q, uint32_t max, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) {
    std::vector<ImageRef> out;
    q.Take(
        max, now, [&](uint32_t) { return now; }, absl::Microseconds(1), absl::ZeroDuration(), &out,
        [](Request*, uint32_t, absl::Duration) { ADD_FAILURE() << "hopeless"; });
    return out;
  }

  hgpipe::Mutex mu_;
  std::vector<std::unique_ptr<Request>> requests_;
};

RequestQueue::Options TwoLevels() {
  RequestQueue::Options o;
  o.levels = 2;
  o.max_starvation = absl::Milliseconds(100);
  o.low_priority_run_images = 1;
  return o;
}

TEST_F(RequestQueueTest, CountsByLevel) {
  SchedulerMutexLock l(&mu_);
  RequestQueue q(TwoLevels());
  EXPECT_EQ(q.size(), 0u);
  EXPECT_EQ(q.HighestLevelImages(), 0u);
  EXPECT_EQ(q.OldestArrival(), absl::InfiniteFuture());
  q.Push(Add(3, 1, 10));
  q.Push(Add(2, 0, 20));
  EXPECT_EQ(q.size(), 5u);
  EXPECT_EQ(q.ImagesAtOrAbove(0), 2u);
  EXPECT_EQ(q.ImagesAtOrAbove(1), 5u);
  EXPECT_EQ(q.HighestLevelImages(), 2u);
  EXPECT_EQ(q.OldestArrival(), At(10));
}

TEST_F(RequestQueueTest, HigherLevelFirst) {
  SchedulerMutexLock l(&mu_);
  RequestQueue q(TwoLevels());
  Request* low = Add(3, 1, 0);
  Request* high = Add(2, 0, 1000);
  q.Push(low);
  q.Push(high);
  EXPECT_EQ(Names(Take(q, 8, At(2000))), "b0 b1");
  EXPECT_EQ(high->queued, 0u);
  EXPECT_EQ(low->queued, 3u);
  EXPECT_EQ(q.size(), 3u);
  // A run holding lower-level images holds at most low_priority_run_images.
  EXPECT_EQ(Names(Take(q, 8, At(3000))), "a0");
  // The run's cap applies to every level.
  q.Push(Add(4, 0, 4000));
  EXPECT_EQ(Names(Take(q, 3, At(5000))), "c0 c1 c2");
}

TEST_F(RequestQueueTest, LowerLevelImagesFillARunUpToTheirCap) {
  SchedulerMutexLock l(&mu_);
  RequestQueue::Options o = TwoLevels();
  o.low_priority_run_images = 2;
  RequestQueue q(o);
  q.Push(Add(1, 0, 0));
  q.Push(Add(3, 1, 0));
  EXPECT_EQ(Names(Take(q, 8, At(10))), "a0 b0");
  EXPECT_EQ(Names(Take(q, 8, At(20))), "b1 b2");
}

TEST_F(RequestQueueTest, AStarvedLevelGoesFirstOnce) {
  SchedulerMutexLock l(&mu_);
  RequestQueue q(TwoLevels());
  q.Push(Add(3, 1, 0));
  q.Push(Add(4, 0, 50'000));
  // At 100 ms the low level's oldest image has waited max_starvation.
  EXPECT_EQ(Names(Take(q, 3, At(100'000))), "a0 b0 b1");
  // Served just now: it waits its turn again.
  EXPECT_EQ(Names(Take(q, 3, At(101'000))), "b2 b3");
  EXPECT_EQ(Names(Take(q, 3, At(150'000))), "a1");
  EXPECT_EQ(Names(Take(q, 3, At(151'000))), "a2");
}

TEST_F(RequestQueueTest, ARunStopsBeforeAnImageWouldMakeItLate) {
  SchedulerMutexLock l(&mu_);
  RequestQueue q(RequestQueue::Options{});
  // Images complete at start + k * 100 us + 2 ms.
  Request* a = Add(3, 0, 0, At(2150));
  q.Push(a);
  q.Push(Add(2, 0, 0));
  std::vector<ImageRef> out;
  q.Take(
      8, At(0), [](uint32_t) { return At(0); }, absl::Microseconds(100), absl::Milliseconds(2),
      &out, [](Request*, uint32_t, absl::Duration) { ADD_FAILURE() << "hopeless"; });
  // a0 at 2.0 ms, a1 at 2.1 ms; a2 at 2.2 ms would make the run late.
  EXPECT_EQ(Names(out), "a0 a1");
  EXPECT_EQ(a->queued, 1u);
  EXPECT_EQ(q.size(), 3u);
}

// Runs that decode start later the more images they hold (here 1 ms a
// decode): the run stops where the next image's decode would make an
// image in it late, and a request that makes it alone is not given up.
TEST_F(RequestQueueTest, ARunWhoseStartGrowsWithItsSizeStopsBeforeADeadline) {
  SchedulerMutexLock l(&mu_);
  RequestQueue q(RequestQueue::Options{});
  Request* a = Add(1, 0, 0, At(2500));  // alone: starts at 1 ms, done at 2 ms
  Request* b = Add(2, 0, 0);
  q.Push(a);
  q.Push(b);
  std::vector<ImageRef> out;
  auto start = [](uint32_t images) { return At(1000 * static_cast<int64_t>(images)); };
  q.Take(8, At(0), start, absl::Microseconds(100), absl::Milliseconds(1), &out,
         [](Request*, uint32_t, absl::Duration) { ADD_FAILURE() << "hopeless"; });
  // With b0 the run would start at 2 ms and a would be done at 3.1 ms.
  EXPECT_EQ(Names(out), "a0");
  EXPECT_EQ(b->queued, 2u);
  // No deadline in the way: the run grows as the board allows.
  out.clear();
  q.Take(8, At(0), start, absl::Microseconds(100), absl::Milliseconds(1), &out,
         [](Request*, uint32_t, absl::Duration) { ADD_FAILURE() << "hopeless"; });
  EXPECT_EQ(Names(out), "b0 b1");
}

TEST_F(RequestQueueTest, AHopelessRequestIsRemovedWhole) {
  SchedulerMutexLock l(&mu_);
  RequestQueue q(RequestQueue::Options{});
  Request* a = Add(2, 0, 0, At(1000));  // even first, done at 2 ms
  q.Push(a);
  q.Push(Add(1, 0, 0));
  std::vector<ImageRef> out;
  std::vector<std::pair<Request*, uint32_t>> hopeless;
  absl::Duration late;
  q.Take(
      8, At(0), [](uint32_t) { return At(0); }, absl::Microseconds(100), absl::Milliseconds(2),
      &out,
      [&](Request* r, uint32_t images, absl::Duration d) {
        hopeless.emplace_back(r, images);
        late = d;
      });
  ASSERT_EQ(hopeless.size(), 1u);
  EXPECT_EQ(hopeless[0].first, a);
  EXPECT_EQ(hopeless[0].second, 2u);
  EXPECT_EQ(late, absl::Milliseconds(1));
  EXPECT_EQ(a->queued, 0u);
  EXPECT_EQ(Names(out), "b0");
  EXPECT_EQ(q.size(), 0u);
  // Its queued deadline is gone; its promise stays until it is answered.
  int expired = 0;
  q.ExpireQueued(At(5000), absl::ZeroDuration(), [&](Request*, uint32_t) { ++expired; });
  EXPECT_EQ(expired, 0);
  EXPECT_EQ(q.ExpirePromises(At(0), [](Request*, uint32_t) {}), At(1000));
}

TEST_F(RequestQueueTest, RequeuePutsImagesBackAtTheHeadInOrder) {
  SchedulerMutexLock l(&mu_);
  RequestQueue q(RequestQueue::Options{});
  Request* a = Add(3, 0, 0);
  q.Push(a);
  std::vector<ImageRef> run = Take(q, 2, At(0));
  ASSERT_EQ(Names(run), "a0 a1");
  q.Push(Add(1, 0, 10));
  q.Requeue(run, [](Request*) { ADD_FAILURE() << "failed"; });
  EXPECT_EQ(a->queued, 3u);
  EXPECT_EQ(q.size(), 4u);
  EXPECT_EQ(Names(Take(q, 8, At(20))), "a0 a1 a2 b0");
}

TEST_F(RequestQueueTest, RequeueSkipsRequestsThatFailedMeanwhile) {
  SchedulerMutexLock l(&mu_);
  RequestQueue q(RequestQueue::Options{});
  Request* a = Add(2, 0, 0);
  Request* b = Add(1, 0, 0);
  q.Push(a);
  q.Push(b);
  std::vector<ImageRef> run = Take(q, 8, At(0));
  ASSERT_EQ(Names(run), "a0 a1 b0");
  a->status = absl::DeadlineExceededError("late");
  std::vector<Request*> failed;
  q.Requeue(run, [&](Request* r) { failed.push_back(r); });
  EXPECT_EQ(failed, (std::vector<Request*>{a, a}));
  EXPECT_EQ(a->queued, 0u);
  EXPECT_EQ(Names(Take(q, 8, At(1))), "b0");
}

TEST_F(RequestQueueTest, RemoveTakesOnlyThatRequestsQueuedImages) {
  SchedulerMutexLock l(&mu_);
  RequestQueue q(RequestQueue::Options{});
  Request* a = Add(3, 0, 0, At(5000));
  q.Push(a);
  q.Push(Add(1, 0, 0));
  ASSERT_EQ(Names(Take(q, 1, At(0))), "a0");
  EXPECT_EQ(q.Remove(a), 2u);
  EXPECT_EQ(a->queued, 0u);
  EXPECT_EQ(q.size(), 1u);
  EXPECT_EQ(q.Remove(a), 0u);
  EXPECT_EQ(Names(Take(q, 8, At(1))), "b0");
}

TEST_F(RequestQueueTest, PromisesExpireEvenWithImagesOnABoard) {
  SchedulerMutexLock l(&mu_);
  RequestQueue q(RequestQueue::Options{});
  Request* a = Add(2, 0, 0, At(3000));
  Request* b = Add(2, 0, 0, At(6000));
  Request* c = Add(1, 0, 0, At(9000));
  q.Push(a);
  q.Push(b);
  q.Push(c);
  ASSERT_EQ(Names(Take(q, 3, At(0))), "a0 a1 b0");  // a wholly on a board
  std::vector<std::pair<Request*, uint32_t>> expired;
  auto record = [&](Request* r, uint32_t n) { expired.emplace_back(r, n); };
  EXPECT_EQ(q.ExpirePromises(At(2999), record), At(3000));
  EXPECT_TRUE(expired.empty());
  EXPECT_EQ(q.ExpirePromises(At(6000), record), At(9000));
  ASSERT_EQ(expired.size(), 2u);
  EXPECT_EQ(expired[0], std::make_pair(a, 0u));
  EXPECT_EQ(expired[1], std::make_pair(b, 1u));  // b1 was still queued
  EXPECT_EQ(q.size(), 1u);
  // An answered request's promise is forgotten.
  q.Forget(c);
  expired.clear();
  EXPECT_EQ(q.ExpirePromises(At(10'000), record), absl::InfiniteFuture());
  EXPECT_TRUE(expired.empty());
}

TEST_F(RequestQueueTest, QueuedRequestsExpireWhenEvenAnImmediateRunIsLate) {
  SchedulerMutexLock l(&mu_);
  RequestQueue q(RequestQueue::Options{});
  Request* a = Add(1, 0, 0, At(2500));
  Request* b = Add(1, 0, 0, At(4000));
  q.Push(a);
  q.Push(b);
  q.Push(Add(1, 0, 0));  // no deadline: never expires
  std::vector<Request*> expired;
  auto record = [&](Request* r, uint32_t n) {
    EXPECT_EQ(n, 1u);
    expired.push_back(r);
  };
  // Two ms of least service time: a is due at 0.5 ms, b at 2 ms.
  EXPECT_EQ(q.ExpireQueued(At(0), absl::Milliseconds(2), record), At(500));
  EXPECT_TRUE(expired.empty());
  EXPECT_EQ(q.ExpireQueued(At(500), absl::Milliseconds(2), record), At(2000));
  EXPECT_EQ(expired, (std::vector<Request*>{a}));
  // Before a time: strictly earlier deadlines only.
  q.ExpireQueuedBefore(At(4000), record);
  EXPECT_EQ(expired.size(), 1u);
  q.ExpireQueuedBefore(At(4001), record);
  EXPECT_EQ(expired, (std::vector<Request*>{a, b}));
  EXPECT_EQ(q.size(), 1u);
}

}  // namespace
}  // namespace hgpipe::scheduler
