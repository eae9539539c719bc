#include "scheduler/scheduler.h"

#include <map>
#include <random>
#include <vector>

#include "base/mutex.h"
#include "accel/emulated_board.h"
#include "accel/verify_digest.h"
#include "gtest/gtest.h"

namespace hgpipe::scheduler {
namespace {

using accel::EmulatedBoard;

constexpr size_t kImageBytes = 196 * 768;
constexpr uint32_t kClasses = 1000;

// Records what the scheduler reports.
class RecordingObserver : public Observer {
 public:
  void RunStarted(int model_id, int board_id, uint32_t images,
                  absl::Span<const absl::Duration>, absl::Duration) override {
    hgpipe::MutexLock l(&mu);
    run_sizes.push_back(images);
    runs_per_board[board_id]++;
    images_per_board[board_id] += images;
  }
  void RunFinished(int, int, uint32_t, absl::Duration,
                   const absl::Status& s) override {
    hgpipe::MutexLock l(&mu);
    if (!s.ok()) ++failed_runs;
  }
  void BoardHealth(int, int board_id, bool healthy) override {
    hgpipe::MutexLock l(&mu);
    unhealthy.push_back(board_id);
  }
  hgpipe::Mutex mu;
  std::vector<uint32_t> run_sizes;
  std::map<int, int> runs_per_board;
  std::map<int, uint64_t> images_per_board;
  int failed_runs = 0;
  std::vector<int> unhealthy;
};

// A request whose buffers live here, and what came back.
struct Job {
  std::vector<int8_t> images;
  std::vector<int32_t> logits;
  int calls = 0;
  absl::Status status = absl::UnknownError("not answered");
  absl::Time answered;
};

class SchedulerTest : public ::testing::Test {
 protected:
  void Build(int boards, ModelOptions mo = {},
             EmulatedBoard::Options bo = {},
             absl::Duration lead = absl::Milliseconds(1)) {
    Scheduler::Options so;
    so.clock = &clock_;
    so.observer = &observer_;
    so.dispatch_lead = lead;
    scheduler_ = *Scheduler::Create(so);
    std::vector<std::unique_ptr<accel::Board>> bs;
    for (int i = 0; i < boards; ++i) {
      EmulatedBoard::Options o = bo;
      o.name = "sim" + std::to_string(i);
      o.kernel = *accel::FindEmulatedKernel("verify");
      o.clock = &clock_;
      o.compute_inline = true;
      if (i > 0) o.fail_after_runs.reset();  // faults only on board 0
      bs.push_back(*EmulatedBoard::Create(o));
    }
    if (mo.name.empty()) mo.name = "verify";
    ASSERT_TRUE(scheduler_->AddModel(mo, std::move(bs)).ok());
  }

  // Queues a request of n random images; the job must outlive the answer.
  absl::Status Submit(Job& job, uint32_t n, const char* model = "verify") {
    job.images.resize(n * kImageBytes);
    for (auto& v : job.images) v = static_cast<int8_t>(rng_());
    job.logits.assign(n * kClasses, 0);
    auto r = std::make_unique<InferRequest>();
    r->images = job.images.data();
    r->n_images = n;
    r->logits = job.logits.data();
    r->done = [this, &job](absl::Status s) {
      ++job.calls;
      job.status = s;
      job.answered = clock_.Now();
    };
    return scheduler_->Enqueue(model, std::move(r));
  }

  static void ExpectOwnOutputs(const Job& job) {
    const uint32_t n = job.images.size() / kImageBytes;
    std::vector<int32_t> want(kClasses);
    for (uint32_t i = 0; i < n; ++i) {
      verify::ExpectedLogits(job.images.data() + i * kImageBytes, kImageBytes,
                             kClasses, want.data());
      ASSERT_TRUE(std::equal(want.begin(), want.end(),
                             job.logits.begin() + i * kClasses))
          << "image " << i << " does not hold its own result";
    }
  }

  SimClock clock_;
  RecordingObserver observer_;
  std::unique_ptr<Scheduler> scheduler_;
  std::mt19937 rng_{42};
};

TEST_F(SchedulerTest, IdleBoardStartsAtOnceAndAnswersWithOwnOutputs) {
  Build(1);
  const absl::Time t0 = clock_.Now();
  Job job;
  ASSERT_TRUE(Submit(job, 3).ok());
  clock_.RunUntilIdle();
  ASSERT_TRUE(job.status.ok()) << job.status;
  EXPECT_EQ(job.calls, 1);
  ExpectOwnOutputs(job);
  EXPECT_EQ(observer_.run_sizes, (std::vector<uint32_t>{3}));
  const accel::PipelineTiming t;
  EXPECT_EQ(job.answered - t0, t.run_overhead + t.interval() * 2 + t.latency());
}

TEST_F(SchedulerTest, ImagesFromRequestsQueuedWhileBusyShareTheNextRun) {
  Build(1);
  Job first;
  ASSERT_TRUE(Submit(first, 20).ok());  // the board streams for 2.7 ms
  std::vector<Job> later(5);
  for (auto& j : later) {
    clock_.Advance(absl::Microseconds(100));
    ASSERT_TRUE(Submit(j, 2).ok());
  }
  clock_.RunUntilIdle();
  EXPECT_EQ(observer_.run_sizes, (std::vector<uint32_t>{20, 10}));
  ExpectOwnOutputs(first);
  for (const auto& j : later) {
    EXPECT_TRUE(j.status.ok());
    EXPECT_EQ(j.calls, 1);
    ExpectOwnOutputs(j);
  }
}

TEST_F(SchedulerTest, SaturatedBoardNeverIdlesBetweenRuns) {
  ModelOptions mo;
  mo.max_images_per_run = 16;
  Build(1, mo);
  // Offer 2,000 images at 10,000/s, faster than the board's 7,375/s.
  std::vector<Job> jobs(1000);
  const absl::Time t0 = clock_.Now();
  for (auto& j : jobs) {
    ASSERT_TRUE(Submit(j, 2).ok());
    clock_.Advance(absl::Microseconds(200));
  }
  clock_.RunUntilIdle();
  absl::Time last = t0;
  for (const auto& j : jobs) {
    ASSERT_TRUE(j.status.ok());
    last = std::max(last, j.answered);
  }
  const accel::PipelineTiming t;
  // Once the queue has built up (job 250 on), the board must stream the
  // remaining images back to back: one interval each, plus at most one run
  // that was partly done when job 250 was answered. A gap is a bubble.
  const double steady = absl::ToDoubleSeconds(last - jobs[250].answered);
  const double ideal = absl::ToDoubleSeconds(t.interval() * (2 * 749 + 16));
  EXPECT_LT(steady, ideal * 1.001) << "the input stream idled between runs";
  // And over the whole test, ramp-up included, within 0.5 %.
  EXPECT_LT(absl::ToDoubleSeconds(last - t0),
            absl::ToDoubleSeconds(t.run_overhead + t.interval() * 1999 +
                                  t.latency()) * 1.005);
  // Under load runs grow to the cap.
  EXPECT_EQ(*std::max_element(observer_.run_sizes.begin(),
                              observer_.run_sizes.end()), 16u);
}

TEST_F(SchedulerTest, SpreadsWorkOverAllBoards) {
  Build(2);
  std::vector<Job> jobs(400);
  const absl::Time t0 = clock_.Now();
  for (auto& j : jobs) {
    ASSERT_TRUE(Submit(j, 2).ok());
    clock_.Advance(absl::Microseconds(70));  // ~28,000 images/s offered
  }
  clock_.RunUntilIdle();
  absl::Time last = t0;
  for (const auto& j : jobs) {
    ASSERT_TRUE(j.status.ok());
    last = std::max(last, j.answered);
  }
  ASSERT_EQ(observer_.images_per_board.size(), 2u);
  EXPECT_NEAR(observer_.images_per_board[0], 400, 40);
  EXPECT_NEAR(observer_.images_per_board[1], 400, 40);
  // Two boards finish 800 images in about half of one board's time.
  const accel::PipelineTiming t;
  EXPECT_LT(last - t0, t.interval() * 800 * 0.55 + t.latency() * 2);
}

TEST_F(SchedulerTest, FailedBoardsImagesGoToTheOtherBoardExactlyOnce) {
  EmulatedBoard::Options bo;
  bo.fail_after_runs = 2;
  Build(2, {}, bo);
  std::vector<Job> jobs(300);
  for (auto& j : jobs) {
    ASSERT_TRUE(Submit(j, 3).ok());
    clock_.Advance(absl::Microseconds(150));
  }
  clock_.RunUntilIdle();
  for (const auto& j : jobs) {
    ASSERT_TRUE(j.status.ok()) << j.status;
    ASSERT_EQ(j.calls, 1);
    ExpectOwnOutputs(j);
  }
  EXPECT_GE(observer_.failed_runs, 1);
  EXPECT_EQ(observer_.unhealthy, (std::vector<int>{0}));
  const auto boards = scheduler_->Boards("verify");
  ASSERT_EQ(boards.size(), 2u);
  EXPECT_FALSE(boards[0].healthy);
  EXPECT_TRUE(boards[1].healthy);
  EXPECT_TRUE(scheduler_->ModelReady("verify"));
}

TEST_F(SchedulerTest, NoHealthyBoardLeftFailsRequestsWithUnavailable) {
  EmulatedBoard::Options bo;
  bo.fail_after_runs = 0;
  Build(1, {}, bo);
  Job a, b;
  ASSERT_TRUE(Submit(a, 2).ok());
  ASSERT_TRUE(Submit(b, 2).ok());
  clock_.RunUntilIdle();
  EXPECT_EQ(a.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(b.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(a.calls, 1);
  EXPECT_EQ(b.calls, 1);
  EXPECT_FALSE(scheduler_->ModelReady("verify"));
  Job c;
  EXPECT_EQ(Submit(c, 1).code(), absl::StatusCode::kUnavailable);
}

TEST_F(SchedulerTest, QueueLimitAndUnknownModelAreRefusedAtOnce) {
  ModelOptions mo;
  mo.max_queue_images = 10;
  mo.max_images_per_run = 4;
  EmulatedBoard::Options bo;
  bo.num_slots = 1;
  Build(1, mo, bo);
  Job a, b, c, d;
  ASSERT_TRUE(Submit(a, 4).ok());  // takes the only slot
  ASSERT_TRUE(Submit(b, 8).ok());  // queued
  EXPECT_EQ(Submit(c, 3).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(Submit(d, 1, "nope").code(), absl::StatusCode::kNotFound);
  clock_.RunUntilIdle();
  EXPECT_TRUE(a.status.ok());
  EXPECT_TRUE(b.status.ok());
  EXPECT_EQ(c.calls, 0);
  ExpectOwnOutputs(b);
}

TEST_F(SchedulerTest, MaxQueueDelayLetsAnIdleBoardWaitForARunToFill) {
  ModelOptions mo;
  mo.max_queue_delay = absl::Microseconds(300);
  mo.max_images_per_run = 8;
  Build(1, mo);
  std::vector<Job> jobs(3);
  for (auto& j : jobs) {
    ASSERT_TRUE(Submit(j, 1).ok());
    clock_.Advance(absl::Microseconds(50));
  }
  clock_.RunUntilIdle();
  EXPECT_EQ(observer_.run_sizes, (std::vector<uint32_t>{3}));
}

TEST_F(SchedulerTest, ShutdownWaitsForAcceptedRequestsAndRefusesNewOnes) {
  RealClock real;
  Scheduler::Options so;
  so.clock = &real;
  auto s = *Scheduler::Create(so);
  EmulatedBoard::Options o;
  o.kernel = *accel::FindEmulatedKernel("verify");
  o.clock = &real;
  std::vector<std::unique_ptr<accel::Board>> bs;
  bs.push_back(*EmulatedBoard::Create(o));
  ModelOptions mo;
  mo.name = "verify";
  ASSERT_TRUE(s->AddModel(mo, std::move(bs)).ok());
  std::vector<int8_t> images(4 * kImageBytes, 1);
  std::vector<int32_t> logits(4 * kClasses);
  hgpipe::Notification answered;
  auto r = std::make_unique<InferRequest>();
  r->images = images.data();
  r->n_images = 4;
  r->logits = logits.data();
  absl::Status got = absl::UnknownError("unset");
  r->done = [&](absl::Status st) {
    got = st;
    answered.Notify();
  };
  ASSERT_TRUE(s->Enqueue("verify", std::move(r)).ok());
  s->Shutdown();
  EXPECT_TRUE(answered.HasBeenNotified());
  EXPECT_TRUE(got.ok());
  auto r2 = std::make_unique<InferRequest>();
  r2->images = images.data();
  r2->n_images = 1;
  r2->logits = logits.data();
  EXPECT_EQ(s->Enqueue("verify", std::move(r2)).code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(SchedulerTest, ManyThreadsEnqueueConcurrentlyOnTheRealClock) {
  RealClock real;
  Scheduler::Options so;
  so.clock = &real;
  auto s = *Scheduler::Create(so);
  std::vector<std::unique_ptr<accel::Board>> bs;
  for (int i = 0; i < 2; ++i) {
    EmulatedBoard::Options o;
    o.name = "sim" + std::to_string(i);
    o.kernel = *accel::FindEmulatedKernel("verify");
    o.clock = &real;
    o.max_images_per_run = 8;
    bs.push_back(*EmulatedBoard::Create(o));
  }
  ModelOptions mo;
  mo.name = "verify";
  ASSERT_TRUE(s->AddModel(mo, std::move(bs)).ok());
  constexpr int kThreads = 4, kPerThread = 25;
  std::vector<Job> jobs(kThreads * kPerThread);
  std::vector<std::thread> threads;
  hgpipe::Mutex mu;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < kPerThread; ++i) {
        Job& j = jobs[t * kPerThread + i];
        const uint32_t n = 1 + rng() % 3;
        j.images.resize(n * kImageBytes);
        for (auto& v : j.images) v = static_cast<int8_t>(rng());
        j.logits.assign(n * kClasses, 0);
        auto r = std::make_unique<InferRequest>();
        r->images = j.images.data();
        r->n_images = n;
        r->logits = j.logits.data();
        r->done = [&mu, &j](absl::Status st) {
          hgpipe::MutexLock l(&mu);
          ++j.calls;
          j.status = st;
        };
        ASSERT_TRUE(s->Enqueue("verify", std::move(r)).ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  s->Shutdown();
  hgpipe::MutexLock l(&mu);
  for (const auto& j : jobs) {
    ASSERT_EQ(j.calls, 1);
    ASSERT_TRUE(j.status.ok());
    ExpectOwnOutputs(j);
  }
}

}  // namespace
}  // namespace hgpipe::scheduler
