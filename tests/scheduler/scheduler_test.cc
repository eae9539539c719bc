#include "scheduler/scheduler.h"

#include <algorithm>
#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/mutex.h"
#include "accel/emulated_board.h"
#include "accel/faulty_board.h"
#include "accel/verify_digest.h"
#include "gtest/gtest.h"

namespace hgpipe::scheduler {
namespace {

using accel::EmulatedBoard;

// An emulated board's options and, for a faulty one, the FaultyBoard's fault.
struct TestBoardOptions : EmulatedBoard::Options {
  accel::FaultInjection fault;
};

constexpr size_t kImageBytes = 196 * 768;
constexpr uint32_t kClasses = 1000;

// Records what the scheduler reports.
class RecordingObserver : public Observer {
 public:
  void RunStarted(int model_id, int board_id, uint32_t images, absl::Span<const absl::Duration>,
                  absl::Duration) override {
    hgpipe::MutexLock l(&mu);
    run_sizes.push_back(images);
    runs_per_board[board_id]++;
    images_per_board[board_id] += images;
  }
  void RunFinished(int, int, uint32_t, absl::Duration, const absl::Status& s) override {
    hgpipe::MutexLock l(&mu);
    if (!s.ok()) ++failed_runs;
  }
  void BoardPhaseChanged(int board_id, int model_id, BoardPhase phase, const absl::Status& why,
                         const BoardCounts& counts) override {
    hgpipe::MutexLock l(&mu);
    phases.push_back({board_id, phase});
    last_counts[board_id] = counts;
    if (phase == BoardPhase::kRecovering || phase == BoardPhase::kRetired) {
      if (unhealthy.empty() || unhealthy.back() != board_id) {
        unhealthy.push_back(board_id);
      }
    }
  }
  void DeadlineExpired(int, uint32_t images) override {
    hgpipe::MutexLock l(&mu);
    expired_images += images;
  }
  void CanaryFailed(int board_id, int, const absl::Status& what) override {
    hgpipe::MutexLock l(&mu);
    canary_failures.push_back({board_id, clock->Now()});
    canary_messages.push_back(std::string(what.message()));
  }
  void LateResultsDropped(int, uint32_t images) override {
    hgpipe::MutexLock l(&mu);
    late_images += images;
  }
  void FillsSkipped(int, uint32_t images) override {
    hgpipe::MutexLock l(&mu);
    skipped_fills += images;
  }
  void ImagesWithheld(int, uint32_t images) override {
    hgpipe::MutexLock l(&mu);
    withheld_images += images;
  }
  hgpipe::Mutex mu;
  std::vector<uint32_t> run_sizes;
  std::map<int, int> runs_per_board;
  std::map<int, uint64_t> images_per_board;
  int failed_runs = 0;
  std::vector<int> unhealthy;
  std::vector<std::pair<int, BoardPhase>> phases;
  std::map<int, BoardCounts> last_counts;
  uint64_t expired_images = 0;
  uint64_t late_images = 0;
  uint64_t skipped_fills = 0;
  uint64_t withheld_images = 0;
  Clock* clock = nullptr;
  std::vector<std::pair<int, absl::Time>> canary_failures;
  std::vector<std::string> canary_messages;
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
  ~SchedulerTest() override {
    clock_.RunUntilIdle();  // boards may still be recovering
  }

  static std::shared_ptr<const accel::Bitstream> VerifyBitstream() {
    auto kernel = accel::VerifyKernel();
    return std::make_shared<const accel::Bitstream>(
        accel::Bitstream{kernel->manifest(), kernel, ""});
  }

  std::unique_ptr<accel::Board> MakeBoard(int i, TestBoardOptions o) {
    o.name = "sim" + std::to_string(i);
    o.kernel = accel::VerifyKernel();
    o.clock = &clock_;
    o.compute_inline = true;
    std::unique_ptr<accel::Board> board = *EmulatedBoard::Create(o);
    if (o.fault.kind == accel::FaultInjection::Kind::kNone) return board;
    return *accel::FaultyBoard::Create(std::move(board), o.fault, &clock_);
  }

  // `faulty` boards get bo.fault; the others none.
  void Build(int boards, ModelOptions mo = {}, TestBoardOptions bo = {},
             absl::Duration lead = absl::Milliseconds(1), std::vector<int> faulty = {0},
             Scheduler::Options so = {}) {
    so.clock = &clock_;
    so.observer = &observer_;
    observer_.clock = &clock_;
    so.dispatch_lead = lead;
    scheduler_ = *Scheduler::Create(so);
    std::vector<std::unique_ptr<accel::Board>> bs;
    for (int i = 0; i < boards; ++i) {
      TestBoardOptions o = bo;
      if (std::find(faulty.begin(), faulty.end(), i) == faulty.end()) {
        o.fault = {};
      }
      bs.push_back(MakeBoard(i, o));
    }
    if (mo.name.empty()) mo.name = "verify";
    if (mo.bitstream == nullptr) mo.bitstream = VerifyBitstream();
    bitstream_ = mo.bitstream;
    absl::StatusOr<ModelHandle> added = AddModel(mo, std::move(bs));
    ASSERT_TRUE(added.ok()) << added.status();
  }

  // Adds a model and remembers its handle by name (a name added again
  // names the newest).
  absl::StatusOr<ModelHandle> AddModel(const ModelOptions& mo,
                                       std::vector<std::unique_ptr<accel::Board>> bs) {
    absl::StatusOr<ModelHandle> h = scheduler_->AddModel(mo, std::move(bs));
    if (h.ok()) handles_[mo.name] = *h;
    return h;
  }
  // The handle of the model last added as `name`; none for other names.
  ModelHandle H(const std::string& name) const {
    auto it = handles_.find(name);
    return it == handles_.end() ? ModelHandle() : it->second;
  }

  // Queues a request of n random images; the job must outlive the answer.
  absl::Status Submit(Job& job, uint32_t n, const char* model = "verify", uint32_t priority = 0,
                      absl::Time deadline = absl::InfiniteFuture()) {
    job.images.resize(n * kImageBytes);
    for (auto& v : job.images) v = static_cast<int8_t>(rng_());
    job.logits.assign(n * kClasses, 0);
    auto r = std::make_unique<BufferRequest>();
    r->images = job.images.data();
    r->n_images = n;
    r->logits = job.logits.data();
    r->priority = priority;
    r->deadline = deadline;
    r->done = [this, &job](absl::Status s) {
      ++job.calls;
      job.status = s;
      job.answered = clock_.Now();
    };
    return scheduler_->Enqueue(H(model), std::move(r));
  }

  static void ExpectOwnOutputs(const Job& job) {
    const uint32_t n = job.images.size() / kImageBytes;
    std::vector<int32_t> want(kClasses);
    for (uint32_t i = 0; i < n; ++i) {
      verify::ExpectedLogits(job.images.data() + i * kImageBytes, kImageBytes, kClasses,
                             want.data());
      ASSERT_TRUE(std::equal(want.begin(), want.end(), job.logits.begin() + i * kClasses))
          << "image " << i << " does not hold its own result";
    }
  }

  SimClock clock_;
  RecordingObserver observer_;
  std::shared_ptr<const accel::Bitstream> bitstream_;
  std::unique_ptr<Scheduler> scheduler_;
  std::map<std::string, ModelHandle> handles_;
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
            absl::ToDoubleSeconds(t.run_overhead + t.interval() * 1999 + t.latency()) * 1.005);
  // Under load runs grow to the cap.
  EXPECT_EQ(*std::max_element(observer_.run_sizes.begin(), observer_.run_sizes.end()), 16u);
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

using Fault = accel::FaultInjection;

Fault MakeFault(Fault::Kind kind, uint64_t after, bool permanent = false) {
  Fault f;
  f.kind = kind;
  f.after_runs = after;
  f.permanent = permanent;
  return f;
}

TEST_F(SchedulerTest, FailedBoardsImagesGoToTheOtherBoardExactlyOnce) {
  TestBoardOptions bo;
  bo.fault = MakeFault(Fault::Kind::kFail, 2);
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
  // The fault was transient: reset, reprogrammed, probed and back.
  const auto boards = scheduler_->Boards(H("verify"));
  ASSERT_EQ(boards.size(), 2u);
  EXPECT_EQ(boards[0].phase, BoardPhase::kServing);
  EXPECT_EQ(boards[0].counts.failures, 1u);
  EXPECT_EQ(boards[0].counts.recoveries, 1u);
  EXPECT_EQ(boards[0].counts.programmings, 1u);
  EXPECT_EQ(boards[1].counts.failures, 0u);
  EXPECT_TRUE(scheduler_->ModelReady(H("verify")));
}

TEST_F(SchedulerTest, NoHealthyBoardLeftFailsRequestsWithUnavailable) {
  TestBoardOptions bo;
  bo.fault = MakeFault(Fault::Kind::kFail, 0, /*permanent=*/true);
  Build(1, {}, bo);
  Job a, b;
  ASSERT_TRUE(Submit(a, 2).ok());
  ASSERT_TRUE(Submit(b, 2).ok());
  clock_.RunUntilIdle();
  EXPECT_EQ(a.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(b.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(a.calls, 1);
  EXPECT_EQ(b.calls, 1);
  // Recovery was tried max_recovery_attempts times before giving up.
  const auto boards = scheduler_->Boards(H("verify"));
  ASSERT_EQ(boards.size(), 1u);
  EXPECT_EQ(boards[0].phase, BoardPhase::kRetired);
  EXPECT_FALSE(scheduler_->ModelReady(H("verify")));
  // The failed run, then every failed recovery attempt (the bitstream is
  // refused); the observer saw the counts as they are.
  EXPECT_EQ(boards[0].counts.failures, 6u);
  EXPECT_EQ(boards[0].counts.recoveries, 0u);
  {
    hgpipe::MutexLock l(&observer_.mu);
    EXPECT_EQ(observer_.last_counts[0].failures, boards[0].counts.failures);
  }
  Job c;
  EXPECT_EQ(Submit(c, 1).code(), absl::StatusCode::kUnavailable);
}

TEST_F(SchedulerTest, QueueLimitAndUnknownModelAreRefusedAtOnce) {
  ModelOptions mo;
  mo.max_queue_images = 10;
  mo.max_images_per_run = 4;
  TestBoardOptions bo;
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
  TestBoardOptions o;
  o.kernel = accel::VerifyKernel();
  o.clock = &real;
  std::vector<std::unique_ptr<accel::Board>> bs;
  bs.push_back(*EmulatedBoard::Create(o));
  ModelOptions mo;
  mo.name = "verify";
  absl::StatusOr<ModelHandle> h = s->AddModel(mo, std::move(bs));
  ASSERT_TRUE(h.ok());
  std::vector<int8_t> images(4 * kImageBytes, 1);
  std::vector<int32_t> logits(4 * kClasses);
  hgpipe::Notification answered;
  auto r = std::make_unique<BufferRequest>();
  r->images = images.data();
  r->n_images = 4;
  r->logits = logits.data();
  absl::Status got = absl::UnknownError("unset");
  r->done = [&](absl::Status st) {
    got = st;
    answered.Notify();
  };
  ASSERT_TRUE(s->Enqueue(*h, std::move(r)).ok());
  s->Shutdown();
  EXPECT_TRUE(answered.HasBeenNotified());
  EXPECT_TRUE(got.ok());
  auto r2 = std::make_unique<BufferRequest>();
  r2->images = images.data();
  r2->n_images = 1;
  r2->logits = logits.data();
  EXPECT_EQ(s->Enqueue(*h, std::move(r2)).code(), absl::StatusCode::kUnavailable);
}

TEST_F(SchedulerTest, ManyThreadsEnqueueConcurrentlyOnTheRealClock) {
  RealClock real;
  Scheduler::Options so;
  so.clock = &real;
  auto s = *Scheduler::Create(so);
  std::vector<std::unique_ptr<accel::Board>> bs;
  for (int i = 0; i < 2; ++i) {
    TestBoardOptions o;
    o.name = "sim" + std::to_string(i);
    o.kernel = accel::VerifyKernel();
    o.clock = &real;
    o.max_images_per_run = 8;
    bs.push_back(*EmulatedBoard::Create(o));
  }
  ModelOptions mo;
  mo.name = "verify";
  absl::StatusOr<ModelHandle> h = s->AddModel(mo, std::move(bs));
  ASSERT_TRUE(h.ok());
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
        auto r = std::make_unique<BufferRequest>();
        r->images = j.images.data();
        r->n_images = n;
        r->logits = j.logits.data();
        r->done = [&mu, &j](absl::Status st) {
          hgpipe::MutexLock l(&mu);
          ++j.calls;
          j.status = st;
        };
        ASSERT_TRUE(s->Enqueue(*h, std::move(r)).ok());
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

// The acceptance test: a board dies under load (fails for good in
// the middle of a run), and every image of every request is answered
// exactly once, with its own result.
TEST_F(SchedulerTest, KillABoardUnderLoadEveryImageAnsweredExactlyOnce) {
  TestBoardOptions bo;
  bo.fault = MakeFault(Fault::Kind::kFail, 40, /*permanent=*/true);
  ModelOptions mo;
  mo.max_images_per_run = 8;
  Build(4, mo, bo, absl::Milliseconds(1), /*faulty=*/{2});
  std::mt19937 rng(7);
  std::vector<Job> jobs(1500);
  for (auto& j : jobs) {
    ASSERT_TRUE(Submit(j, 1 + rng() % 4).ok());
    clock_.Advance(absl::Microseconds(80));  // ~31,000 images/s: saturated
  }
  clock_.RunUntilIdle();
  for (const auto& j : jobs) {
    ASSERT_EQ(j.calls, 1);
    ASSERT_TRUE(j.status.ok()) << j.status;
    ExpectOwnOutputs(j);
  }
  const auto boards = scheduler_->Boards(H("verify"));
  EXPECT_EQ(boards[2].phase, BoardPhase::kRetired);
  EXPECT_EQ(boards[0].phase, BoardPhase::kServing);
  EXPECT_GE(observer_.failed_runs, 1);
}

// BoardStatus::recovering is the recovery of a failure, nothing after it: a
// dead board (its reprogramming fails too) that lost its model while backing
// off and went idle is not "recovering" when it is given to another model.
TEST_F(SchedulerTest, RecoveringEndsWhenTheFailedBoardGoesIdle) {
  TestBoardOptions bo;
  bo.fault = MakeFault(Fault::Kind::kFail, 0, /*permanent=*/true);
  Build(1, {}, bo);
  ModelOptions other;
  other.name = "b";
  other.bitstream = VerifyBitstream();
  ASSERT_TRUE(AddModel(other, {}).ok());
  Job failed;  // its run fails; it cannot wait out the backoff
  ASSERT_TRUE(Submit(failed, 1, "verify", 0, clock_.Now() + absl::Milliseconds(5)).ok());
  // The run fails, then the reprogramming: backing off after a failed step.
  while (scheduler_->Boards()[0].counts.failures < 2) clock_.Advance(absl::Microseconds(100));
  ASSERT_EQ(scheduler_->Boards()[0].phase, BoardPhase::kRecovering);
  EXPECT_TRUE(scheduler_->Boards()[0].recovering);
  bool removed = false;
  ASSERT_TRUE(scheduler_->RemoveModel(H("verify"), [&] { removed = true; }).ok());
  while (scheduler_->Boards()[0].phase != BoardPhase::kIdle) {
    clock_.Advance(absl::Milliseconds(10));
  }
  EXPECT_TRUE(removed);
  EXPECT_EQ(failed.calls, 1);
  EXPECT_FALSE(scheduler_->Boards()[0].recovering) << "idle";
  Job for_b;
  ASSERT_TRUE(Submit(for_b, 1, "b").ok());
  ASSERT_EQ(scheduler_->Boards()[0].phase, BoardPhase::kProgramming);
  EXPECT_FALSE(scheduler_->Boards()[0].recovering) << "programmed for b, not recovering";
  clock_.RunUntilIdle();  // the dead board fails b's programming and is retired
  EXPECT_EQ(for_b.calls, 1);
}

TEST_F(SchedulerTest, HungBoardIsCaughtByTheWatchdogResetAndReadmitted) {
  TestBoardOptions bo;
  bo.fault = MakeFault(Fault::Kind::kHang, 3);
  ModelOptions mo;
  mo.max_images_per_run = 8;
  Scheduler::Options so;
  so.watchdog_margin = absl::Milliseconds(20);
  Build(2, mo, bo, absl::Milliseconds(1), {0}, so);
  std::vector<Job> jobs(400);
  for (auto& j : jobs) {
    ASSERT_TRUE(Submit(j, 2).ok());
    clock_.Advance(absl::Microseconds(200));
  }
  clock_.RunUntilIdle();
  for (const auto& j : jobs) {
    ASSERT_EQ(j.calls, 1);
    ASSERT_TRUE(j.status.ok()) << j.status;
    ExpectOwnOutputs(j);
  }
  const auto boards = scheduler_->Boards(H("verify"));
  EXPECT_EQ(boards[0].counts.failures, 1u);
  EXPECT_EQ(boards[0].counts.recoveries, 1u);
  EXPECT_EQ(boards[0].phase, BoardPhase::kServing);
  // It went through the whole life cycle.
  std::vector<BoardPhase> seen;
  for (const auto& [id, phase] : observer_.phases) {
    if (id == 0) seen.push_back(phase);
  }
  EXPECT_EQ(seen, (std::vector<BoardPhase>{BoardPhase::kServing, BoardPhase::kRecovering,
                                           BoardPhase::kProgramming, BoardPhase::kProbing,
                                           BoardPhase::kServing}));
}

TEST_F(SchedulerTest, SlowBoardGetsLessWorkWithoutTrippingTheWatchdog) {
  TestBoardOptions bo;
  bo.fault = MakeFault(Fault::Kind::kSlow, 0);
  bo.fault.slow_factor = 4;
  Build(2, {}, bo);
  std::vector<Job> jobs(600);
  for (auto& j : jobs) {
    ASSERT_TRUE(Submit(j, 1).ok());
    clock_.Advance(absl::Microseconds(150));
  }
  clock_.RunUntilIdle();
  for (const auto& j : jobs) ASSERT_TRUE(j.status.ok());
  EXPECT_GT(observer_.images_per_board[1], 2 * observer_.images_per_board[0]);
  EXPECT_EQ(scheduler_->Boards(H("verify"))[0].counts.failures, 0u);
}

TEST_F(SchedulerTest, QueueIsSplitOverIdleBoards) {
  Build(4);
  Job j;
  ASSERT_TRUE(Submit(j, 8).ok());
  clock_.RunUntilIdle();
  ASSERT_TRUE(j.status.ok());
  EXPECT_EQ(observer_.run_sizes, (std::vector<uint32_t>{2, 2, 2, 2}));
  ExpectOwnOutputs(j);
}

TEST_F(SchedulerTest, RunGoesToTheBoardWhereItCompletesFirst) {
  // Board 0 has a pipeline three times as long: for one image the short
  // pipeline completes first even though both are idle.
  Scheduler::Options so;
  so.clock = &clock_;
  so.observer = &observer_;
  scheduler_ = *Scheduler::Create(so);
  std::vector<std::unique_ptr<accel::Board>> bs;
  TestBoardOptions slow;
  accel::PipelineTiming t;
  t.latency_cycles *= 3;
  slow.timing = t;
  bs.push_back(MakeBoard(0, slow));
  bs.push_back(MakeBoard(1, {}));
  ModelOptions mo;
  mo.name = "verify";
  ASSERT_TRUE(AddModel(mo, std::move(bs)).ok());
  Job j;
  ASSERT_TRUE(Submit(j, 1).ok());
  clock_.RunUntilIdle();
  EXPECT_EQ(observer_.runs_per_board[1], 1);
  EXPECT_EQ(observer_.runs_per_board.count(0), 0u);
}

TEST_F(SchedulerTest, HigherPriorityOvertakesQueuedLowerPriority) {
  ModelOptions mo;
  mo.priority_levels = 2;
  mo.default_priority = 2;
  mo.max_images_per_run = 4;
  mo.low_priority_run_images = 4;
  TestBoardOptions bo;
  bo.num_slots = 1;
  Build(1, mo, bo);
  std::vector<Job> low(6);
  for (auto& j : low) ASSERT_TRUE(Submit(j, 2).ok());
  Job high;
  ASSERT_TRUE(Submit(high, 1, "verify", 1).ok());
  clock_.RunUntilIdle();
  ASSERT_TRUE(high.status.ok());
  ExpectOwnOutputs(high);
  // The first request's run was already on the board; the high-priority
  // image leads the second run, ahead of every other low-priority image.
  int answered_before = 0;
  for (const auto& j : low) {
    ASSERT_TRUE(j.status.ok());
    if (j.answered < high.answered) ++answered_before;
  }
  EXPECT_EQ(answered_before, 1);
  Job bad;
  EXPECT_EQ(Submit(bad, 1, "verify", 3).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SchedulerTest, QueueLimitCountsOnlyImagesAtTheSameOrHigherPriority) {
  ModelOptions mo;
  mo.priority_levels = 2;
  mo.default_priority = 2;
  mo.max_queue_images = 6;
  mo.max_images_per_run = 2;
  mo.low_priority_run_images = 2;
  TestBoardOptions bo;
  bo.num_slots = 1;
  Build(1, mo, bo);
  Job running, low1, low2, high1, high2;
  ASSERT_TRUE(Submit(running, 2).ok());  // on the board
  ASSERT_TRUE(Submit(low1, 6).ok());     // the queue holds 6 low
  EXPECT_EQ(Submit(low2, 1).code(), absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(Submit(high1, 6, "verify", 1).ok());  // low does not count
  EXPECT_EQ(Submit(high2, 1, "verify", 1).code(), absl::StatusCode::kResourceExhausted);
  clock_.RunUntilIdle();
  EXPECT_TRUE(low1.status.ok());
  EXPECT_TRUE(high1.status.ok());
  EXPECT_LT(high1.answered, low1.answered);
}

TEST_F(SchedulerTest, LowPriorityIsNeverStarvedBeyondTheBound) {
  ModelOptions mo;
  mo.priority_levels = 2;
  mo.max_starvation = absl::Milliseconds(5);
  mo.max_images_per_run = 8;
  mo.max_queue_images = 100000;
  Build(1, mo);
  // High priority alone keeps the board saturated (10,000 images/s).
  Job low;
  std::vector<Job> high(1500);
  ASSERT_TRUE(Submit(high[0], 1, "verify", 1).ok());
  ASSERT_TRUE(Submit(low, 1, "verify", 2).ok());
  const absl::Time t0 = clock_.Now();
  for (size_t i = 1; i < high.size(); ++i) {
    clock_.Advance(absl::Microseconds(100));
    ASSERT_TRUE(Submit(high[i], 1, "verify", 1).ok());
  }
  clock_.RunUntilIdle();
  ASSERT_TRUE(low.status.ok());
  // Dispatched within the bound (plus the lead and one run ahead of it).
  const accel::PipelineTiming t;
  EXPECT_LT(low.answered - t0,
            absl::Milliseconds(5) + absl::Milliseconds(1) + t.interval() * 16 + t.latency());
}

TEST_F(SchedulerTest, DeadlinesAreAnsweredWithoutReachingABoard) {
  ModelOptions mo;
  mo.max_images_per_run = 4;
  TestBoardOptions bo;
  bo.num_slots = 1;
  Build(1, mo, bo);
  const accel::PipelineTiming t;
  const absl::Time t0 = clock_.Now();
  // Too short even for an idle board: refused at once.
  Job hopeless;
  EXPECT_EQ(Submit(hopeless, 1, "verify", 0, t0 + absl::Microseconds(500)).code(),
            absl::StatusCode::kDeadlineExceeded);
  // Behind 40 queued images (5.4 ms of input on the only board).
  std::vector<Job> ahead(10);
  for (auto& j : ahead) ASSERT_TRUE(Submit(j, 4).ok());
  Job late;
  EXPECT_EQ(Submit(late, 1, "verify", 0, t0 + absl::Milliseconds(3)).code(),
            absl::StatusCode::kDeadlineExceeded);
  // Plausible at Enqueue, but the board is held up (one slot, runs of 4).
  Job expires;
  ASSERT_TRUE(Submit(expires, 2, "verify", 0, t0 + absl::Milliseconds(9)).ok());
  Job fine;
  ASSERT_TRUE(Submit(fine, 1, "verify", 0, t0 + absl::Seconds(1)).ok());
  clock_.RunUntilIdle();
  EXPECT_EQ(expires.calls, 1);
  EXPECT_EQ(expires.status.code(), absl::StatusCode::kDeadlineExceeded) << expires.status;
  EXPECT_LE(expires.answered, t0 + absl::Milliseconds(9));
  EXPECT_TRUE(fine.status.ok());
  uint64_t computed = 0;
  for (const auto& [board, images] : observer_.images_per_board) computed += images;
  EXPECT_EQ(computed, 41u);  // 40 ahead + fine: nothing of `expires`
  EXPECT_EQ(observer_.expired_images, 2u);
}

// Two models, one board: demand for the model without a board reprograms
// the idle one, and the queued request waits for it instead of failing.
TEST_F(SchedulerTest, IdleBoardIsReprogrammedForAModelWithDemand) {
  Build(1);
  ModelOptions other;
  other.name = "other";
  other.bitstream = VerifyBitstream();  // a different bitstream object
  ASSERT_TRUE(AddModel(other, {}).ok());
  EXPECT_TRUE(scheduler_->ModelReady(H("other")));
  Job a;
  const absl::Time t0 = clock_.Now();
  ASSERT_TRUE(Submit(a, 3, "other").ok());
  clock_.RunUntilIdle();
  ASSERT_TRUE(a.status.ok()) << a.status;
  ExpectOwnOutputs(a);
  EXPECT_GE(a.answered - t0, TestBoardOptions{}.program_time);
  auto boards = scheduler_->Boards();
  ASSERT_EQ(boards.size(), 1u);
  EXPECT_EQ(boards[0].model_id, H("other").id());
  EXPECT_EQ(boards[0].counts.programmings, 1u);
  // And back, on demand.
  Job b;
  ASSERT_TRUE(Submit(b, 1, "verify").ok());
  clock_.RunUntilIdle();
  ASSERT_TRUE(b.status.ok());
  EXPECT_EQ(scheduler_->Boards()[0].model_id, H("verify").id());
  EXPECT_EQ(scheduler_->Boards()[0].counts.programmings, 2u);
}

TEST_F(SchedulerTest, BusyModelGivesUpABoardToAModelWithout) {
  Build(2);
  ModelOptions other;
  other.name = "other";
  other.bitstream = VerifyBitstream();
  ASSERT_TRUE(AddModel(other, {}).ok());
  // Keep "verify" busy on both boards, then ask for "other".
  std::vector<Job> busy(200);
  Job o;
  for (size_t i = 0; i < busy.size(); ++i) {
    ASSERT_TRUE(Submit(busy[i], 2).ok());
    if (i == 20) {
      ASSERT_TRUE(Submit(o, 1, "other").ok());
    }
    clock_.Advance(absl::Microseconds(150));
  }
  clock_.RunUntilIdle();
  ASSERT_TRUE(o.status.ok()) << o.status;
  for (const auto& j : busy) ASSERT_TRUE(j.status.ok());
  int serving_other = 0;
  for (const auto& b : scheduler_->Boards()) {
    if (b.model_id == H("other").id()) ++serving_other;
  }
  EXPECT_EQ(serving_other, 1);
}

TEST_F(SchedulerTest, RemoveModelAnswersQueuedRequestsThenFreesItsBoards) {
  Build(1);
  std::vector<Job> jobs(5);
  for (auto& j : jobs) ASSERT_TRUE(Submit(j, 4).ok());
  bool removed = false;
  ASSERT_TRUE(scheduler_->RemoveModel(H("verify"), [&] { removed = true; }).ok());
  Job refused;
  EXPECT_EQ(Submit(refused, 1).code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(removed);
  clock_.RunUntilIdle();
  EXPECT_TRUE(removed);
  for (const auto& j : jobs) EXPECT_TRUE(j.status.ok());
  EXPECT_EQ(scheduler_->Boards()[0].phase, BoardPhase::kIdle);
  EXPECT_TRUE(scheduler_->Models().empty());
  EXPECT_EQ(scheduler_->RemoveModel(H("verify"), [] {}).code(), absl::StatusCode::kNotFound);
  // Loaded again under the same name with the same bitstream object, the
  // idle board still holds it: no reprogramming, only a probe.
  ModelOptions again;
  again.name = "verify";
  again.bitstream = bitstream_;
  ASSERT_TRUE(AddModel(again, {}).ok());
  Job j;
  ASSERT_TRUE(Submit(j, 2).ok());
  clock_.RunUntilIdle();
  ASSERT_TRUE(j.status.ok()) << j.status;
  ExpectOwnOutputs(j);
  EXPECT_EQ(scheduler_->Boards()[0].counts.programmings, 0u);
  EXPECT_EQ(scheduler_->Boards()[0].phase, BoardPhase::kServing);
}

TEST_F(SchedulerTest, RemoveBoardTakesOnlyAnIdleBoardAndNeverUsesItAgain) {
  Build(2);
  EXPECT_EQ(scheduler_->RemoveBoard(7).code(), absl::StatusCode::kNotFound);
  absl::Status serving = scheduler_->RemoveBoard(0);
  EXPECT_EQ(serving.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(serving.message().find("serving"), absl::string_view::npos) << serving;
  EXPECT_NE(serving.message().find("verify"), absl::string_view::npos) << serving;

  bool removed = false;
  ASSERT_TRUE(scheduler_->RemoveModel(H("verify"), [&] { removed = true; }).ok());
  clock_.RunUntilIdle();
  ASSERT_TRUE(removed);
  ASSERT_TRUE(scheduler_->RemoveBoard(0).ok());
  EXPECT_EQ(scheduler_->RemoveBoard(0).code(), absl::StatusCode::kFailedPrecondition);
  std::vector<Scheduler::BoardStatus> boards = scheduler_->Boards();
  ASSERT_EQ(boards.size(), 2u);  // ids are not reused
  EXPECT_EQ(boards[0].phase, BoardPhase::kRemoved);
  EXPECT_EQ(boards[1].phase, BoardPhase::kIdle);

  // A new model is served by reprogramming the one board left, never the
  // removed one; with that one removed too, nothing can serve it.
  ModelOptions again;
  again.name = "verify";
  again.bitstream = bitstream_;
  ASSERT_TRUE(AddModel(again, {}).ok());
  std::vector<Job> jobs(3);
  for (auto& j : jobs) ASSERT_TRUE(Submit(j, 2).ok());
  clock_.RunUntilIdle();
  for (auto& j : jobs) {
    ASSERT_TRUE(j.status.ok()) << j.status;
    ExpectOwnOutputs(j);
  }
  EXPECT_EQ(scheduler_->Boards()[0].phase, BoardPhase::kRemoved);
  EXPECT_EQ(scheduler_->Boards()[1].phase, BoardPhase::kServing);
  removed = false;
  ASSERT_TRUE(scheduler_->RemoveModel(H("verify"), [&] { removed = true; }).ok());
  clock_.RunUntilIdle();
  ASSERT_TRUE(removed);
  ASSERT_TRUE(scheduler_->RemoveBoard(1).ok());
  again.name = "late";
  ASSERT_TRUE(AddModel(again, {}).ok());
  EXPECT_FALSE(scheduler_->ModelReady(H("late")));
  Job refused;
  EXPECT_EQ(Submit(refused, 1, "late").code(), absl::StatusCode::kUnavailable);
}

// Issue 12, bug 1: a model removed while its queued requests have no board
// (the only board is being programmed for another model) still gets one, so
// the requests are answered and the removal completes.
TEST_F(SchedulerTest, RemovingAModelWhoseQueueHasNoBoardStillServesIt) {
  Build(1);
  for (const char* name : {"a", "b"}) {
    ModelOptions mo;
    mo.name = name;
    mo.bitstream = VerifyBitstream();
    ASSERT_TRUE(AddModel(mo, {}).ok());
  }
  Job for_a, for_b;
  ASSERT_TRUE(Submit(for_a, 1, "a").ok());  // the board goes to "a"
  ASSERT_EQ(scheduler_->Boards()[0].phase, BoardPhase::kProgramming);
  EXPECT_FALSE(scheduler_->Boards()[0].recovering) << "programmed for a model, not recovering";
  ASSERT_TRUE(Submit(for_b, 2, "b").ok());  // no board can be had yet
  bool removed = false;
  ASSERT_TRUE(scheduler_->RemoveModel(H("b"), [&] { removed = true; }).ok());
  clock_.RunUntilIdle();
  EXPECT_TRUE(removed);
  EXPECT_EQ(for_a.calls, 1);
  EXPECT_TRUE(for_a.status.ok()) << for_a.status;
  ASSERT_EQ(for_b.calls, 1);
  ASSERT_TRUE(for_b.status.ok()) << for_b.status;
  ExpectOwnOutputs(for_b);
}

// Bug 1, second form: the model's only board is retired while requests
// wait; another model's idle board is reprogrammed for them even though the
// model is being removed.
TEST_F(SchedulerTest, RemovingAModelWhoseBoardRetiredStillServesIt) {
  TestBoardOptions bo;
  bo.fault = MakeFault(Fault::Kind::kFail, 0, /*permanent=*/true);
  Scheduler::Options so;
  so.max_recovery_attempts = 2;
  Build(1, {}, bo, absl::Milliseconds(1), {0}, so);
  ModelOptions other;
  other.name = "other";
  other.bitstream = VerifyBitstream();
  std::vector<std::unique_ptr<accel::Board>> bs;
  bs.push_back(MakeBoard(1, {}));
  ASSERT_TRUE(AddModel(other, std::move(bs)).ok());
  Job a;
  ASSERT_TRUE(Submit(a, 2).ok());
  bool removed = false;
  ASSERT_TRUE(scheduler_->RemoveModel(H("verify"), [&] { removed = true; }).ok());
  clock_.RunUntilIdle();
  EXPECT_TRUE(removed);
  ASSERT_EQ(a.calls, 1);
  ASSERT_TRUE(a.status.ok()) << a.status;
  ExpectOwnOutputs(a);
}

// With no board left anywhere, a model being removed fails what it queued
// (UNAVAILABLE) instead of keeping it, and the removal completes.
TEST_F(SchedulerTest, RemovingAModelNothingCanServeFailsItsQueue) {
  TestBoardOptions bo;
  bo.fault = MakeFault(Fault::Kind::kFail, 0, /*permanent=*/true);
  Scheduler::Options so;
  so.max_recovery_attempts = 2;
  Build(1, {}, bo, absl::Milliseconds(1), {0}, so);
  Job a;
  ASSERT_TRUE(Submit(a, 2).ok());
  bool removed = false;
  ASSERT_TRUE(scheduler_->RemoveModel(H("verify"), [&] { removed = true; }).ok());
  clock_.RunUntilIdle();
  EXPECT_TRUE(removed);
  ASSERT_EQ(a.calls, 1);
  EXPECT_EQ(a.status.code(), absl::StatusCode::kUnavailable) << a.status;
}

// Issue 12, bug 4: a deadline is kept once the request is on a board. A
// board four times slower than its manifest says completes after the
// deadline the dispatch predicted it would meet: the request is answered
// DEADLINE_EXCEEDED at its deadline, and the late result is dropped.
TEST_F(SchedulerTest, DeadlineIsKeptWhileTheRequestIsOnASlowBoard) {
  TestBoardOptions bo;
  bo.fault = MakeFault(Fault::Kind::kSlow, 0);
  bo.fault.slow_factor = 4;
  Build(1, {}, bo);
  const absl::Time t0 = clock_.Now();
  const absl::Time deadline = t0 + absl::Milliseconds(4);  // modelled: ~2 ms
  Job j;
  ASSERT_TRUE(Submit(j, 1, "verify", 0, deadline).ok());
  clock_.RunUntilIdle();
  ASSERT_EQ(j.calls, 1);
  EXPECT_EQ(j.status.code(), absl::StatusCode::kDeadlineExceeded) << j.status;
  EXPECT_LE(j.answered, deadline);
  EXPECT_NE(j.status.message().find("on a board"), absl::string_view::npos) << j.status;
  hgpipe::MutexLock l(&observer_.mu);
  EXPECT_EQ(observer_.late_images, 1u);
}

// A model unloaded right after its load: the board still computes the
// canary that proves a new board at once. It is idle but not yet quiet, so
// RemoveBoard says to try again (Unavailable) rather than that the board is
// in use, and removes it once the canary is done. The model manager retries
// on Unavailable; it used to keep such boards, and their slots, for good:
// each unload and load of a model grew the server by its boards' memory.
TEST_F(SchedulerTest, RemoveBoardAsksForARetryWhileAnUnloadedModelsCanaryRuns) {
  ModelOptions mo;
  mo.canary =
      std::make_shared<const accel::Canary>(accel::MakeVerifyCanary(accel::DeviceGeometry{}));
  mo.bitstream = VerifyBitstream();
  const std::weak_ptr<const accel::Bitstream> bitstream = mo.bitstream;
  Build(1, std::move(mo));
  bitstream_ = nullptr;                    // the fixture's reference
  clock_.Advance(absl::Microseconds(10));  // the canary is on the board
  bool removed = false;
  ASSERT_TRUE(scheduler_->RemoveModel(H("verify"), [&] { removed = true; }).ok());
  clock_.Advance(absl::Microseconds(10));
  ASSERT_TRUE(removed);
  const absl::Status busy = scheduler_->RemoveBoard(0);
  EXPECT_EQ(busy.code(), absl::StatusCode::kUnavailable) << busy;
  EXPECT_NE(busy.message().find("try again"), absl::string_view::npos) << busy;
  clock_.RunUntilIdle();  // the canary completes
  EXPECT_TRUE(scheduler_->RemoveBoard(0).ok());
  EXPECT_EQ(scheduler_->Boards()[0].phase, BoardPhase::kRemoved);
  // The removed board's state stays, but not the bitstream it held (its
  // weights: each unload and load of fmnist_vit kept 1 MB).
  EXPECT_TRUE(bitstream.expired());
}

// Under load, with one slow board of two: every request is answered by its
// deadline, either with its own outputs or DEADLINE_EXCEEDED, exactly once.
TEST_F(SchedulerTest, EveryAnswerComesByItsDeadlineUnderASlowBoard) {
  TestBoardOptions bo;
  bo.fault = MakeFault(Fault::Kind::kSlow, 0);
  bo.fault.slow_factor = 4;
  Build(2, {}, bo);
  std::mt19937 rng(3);
  std::vector<Job> jobs(250);
  std::vector<absl::Time> deadlines;
  for (auto& j : jobs) {
    const absl::Time d = clock_.Now() + absl::Milliseconds(3 + rng() % 8);
    deadlines.push_back(d);
    absl::Status s = Submit(j, 1 + rng() % 3, "verify", 0, d);
    if (!s.ok()) {
      ASSERT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
      j.calls = 1;
      j.status = s;
      j.answered = clock_.Now();
    }
    clock_.Advance(absl::Microseconds(300));
  }
  clock_.RunUntilIdle();
  int ok = 0;
  for (size_t i = 0; i < jobs.size(); ++i) {
    ASSERT_EQ(jobs[i].calls, 1) << i;
    ASSERT_LE(jobs[i].answered, deadlines[i]) << i;
    if (jobs[i].status.ok()) {
      ++ok;
      ExpectOwnOutputs(jobs[i]);
    } else {
      ASSERT_EQ(jobs[i].status.code(), absl::StatusCode::kDeadlineExceeded);
    }
  }
  EXPECT_GT(ok, 0);
  hgpipe::MutexLock l(&observer_.mu);
  EXPECT_GT(observer_.late_images, 0u);
}

// A removed model's bulk (its canary, and its bitstream once no board holds
// it) is released: load/unload cycles must not grow the server.
TEST_F(SchedulerTest, RemovedModelReleasesItsCanaryAndBitstream) {
  ModelOptions mo;
  mo.canary =
      std::make_shared<const accel::Canary>(accel::MakeVerifyCanary(accel::DeviceGeometry{}));
  mo.bitstream = VerifyBitstream();
  const std::weak_ptr<const accel::Canary> canary = mo.canary;
  const std::weak_ptr<const accel::Bitstream> bitstream = mo.bitstream;
  Scheduler::Options so;
  so.canary_interval = absl::Milliseconds(1);
  Build(1, std::move(mo), {}, absl::Milliseconds(1), {0}, so);
  bitstream_ = nullptr;  // the fixture's reference
  std::vector<Job> jobs(20);
  for (auto& j : jobs) {
    ASSERT_TRUE(Submit(j, 2).ok());
    clock_.Advance(absl::Microseconds(500));  // canary runs among the jobs
  }
  bool removed = false;
  ASSERT_TRUE(scheduler_->RemoveModel(H("verify"), [&] { removed = true; }).ok());
  clock_.RunUntilIdle();
  ASSERT_TRUE(removed);
  for (const auto& j : jobs) EXPECT_TRUE(j.status.ok()) << j.status;
  EXPECT_TRUE(canary.expired());
  // The idle board keeps the bitstream it holds (a reload of the same
  // bitstream needs no reprogramming); another model's takes its place.
  ModelOptions other;
  other.name = "other";
  other.bitstream = VerifyBitstream();
  ASSERT_TRUE(AddModel(other, {}).ok());
  Job j;
  ASSERT_TRUE(Submit(j, 1, "other").ok());
  clock_.RunUntilIdle();
  EXPECT_TRUE(j.status.ok()) << j.status;
  EXPECT_TRUE(bitstream.expired());
}

// Canaries: a board that starts returning wrong outputs (run reported OK)
// is caught by its next canary, within one interval of the first wrong
// answer, and leaves service; every answer after that is right.
TEST_F(SchedulerTest, CorruptBoardIsCaughtByItsCanaryWithinOneInterval) {
  TestBoardOptions bo;
  bo.fault = MakeFault(Fault::Kind::kCorrupt, 60);  // cleared by a reset
  ModelOptions mo;
  mo.canary =
      std::make_shared<const accel::Canary>(accel::MakeVerifyCanary(accel::DeviceGeometry{}));
  mo.max_images_per_run = 4;
  Scheduler::Options so;
  const absl::Duration interval = absl::Milliseconds(20);
  so.canary_interval = interval;
  Build(2, mo, bo, absl::Milliseconds(1), {0}, so);
  std::vector<Job> jobs(1000);
  for (auto& j : jobs) {
    ASSERT_TRUE(Submit(j, 1).ok());
    clock_.Advance(absl::Microseconds(150));
  }
  clock_.RunUntilIdle();
  absl::Time detected;
  {
    hgpipe::MutexLock l(&observer_.mu);
    ASSERT_FALSE(observer_.canary_failures.empty());
    EXPECT_EQ(observer_.canary_failures[0].first, 0);
    detected = observer_.canary_failures[0].second;
    EXPECT_NE(observer_.canary_messages[0].find("board sim0: canary (verify digest)"),
              std::string::npos)
        << observer_.canary_messages[0];
    EXPECT_NE(observer_.canary_messages[0].find("image 0 word 0: got"), std::string::npos)
        << observer_.canary_messages[0];
  }
  absl::Time first_wrong = absl::InfiniteFuture();
  int wrong = 0;
  std::vector<int32_t> want(kClasses);
  for (const Job& j : jobs) {
    ASSERT_EQ(j.calls, 1);
    ASSERT_TRUE(j.status.ok()) << j.status;
    verify::ExpectedLogits(j.images.data(), kImageBytes, kClasses, want.data());
    if (!std::equal(want.begin(), want.end(), j.logits.begin())) {
      ++wrong;
      first_wrong = std::min(first_wrong, j.answered);
      EXPECT_LE(j.answered, detected);  // nothing wrong after detection
    }
  }
  ASSERT_GT(wrong, 0);  // the fault did corrupt answers before the canary ran
  EXPECT_LE(detected - first_wrong, interval + absl::Milliseconds(3));
  const auto boards = scheduler_->Boards(H("verify"));
  EXPECT_GE(boards[0].counts.failures, 1u);
  EXPECT_GE(boards[0].counts.recoveries, 1u);  // the reset cleared the fault
  EXPECT_EQ(boards[0].phase, BoardPhase::kServing);
}

// A board that is wrong from the start is caught by the canary run when it
// is added, and its probes after every reprogramming fail the same way: it
// is retired, and no answer after the first canary came from it.
TEST_F(SchedulerTest, PermanentlyCorruptBoardFailsItsProbesAndIsRetired) {
  TestBoardOptions bo;
  bo.fault = MakeFault(Fault::Kind::kCorrupt, 0, /*permanent=*/true);
  ModelOptions mo;
  mo.canary =
      std::make_shared<const accel::Canary>(accel::MakeVerifyCanary(accel::DeviceGeometry{}));
  Scheduler::Options so;
  so.canary_interval = absl::Milliseconds(20);
  so.max_recovery_attempts = 3;
  Build(2, mo, bo, absl::Milliseconds(1), {0}, so);
  std::vector<Job> jobs(500);
  for (auto& j : jobs) {
    ASSERT_TRUE(Submit(j, 1).ok());
    clock_.Advance(absl::Microseconds(300));
  }
  clock_.RunUntilIdle();
  absl::Time detected;
  {
    hgpipe::MutexLock l(&observer_.mu);
    ASSERT_EQ(observer_.canary_failures.size(), 4u);  // canary + 3 probes
    detected = observer_.canary_failures[0].second;
  }
  std::vector<int32_t> want(kClasses);
  for (const Job& j : jobs) {
    ASSERT_TRUE(j.status.ok()) << j.status;
    verify::ExpectedLogits(j.images.data(), kImageBytes, kClasses, want.data());
    if (j.answered > detected) {
      ASSERT_TRUE(std::equal(want.begin(), want.end(), j.logits.begin()));
    }
  }
  EXPECT_EQ(scheduler_->Boards(H("verify"))[0].phase, BoardPhase::kRetired);
}

// Smaller bug of issue 12: while the model's only board recovers, a
// request whose deadline comes before the board can be back (as long as its
// last reset and programming took, after its backoff) is answered at once,
// not at its deadline or when the board is finally retired.
TEST_F(SchedulerTest, DeadlinesThatTheRecoveryWindowCannotMeetAreAnsweredEarly) {
  TestBoardOptions bo;
  bo.fault = MakeFault(Fault::Kind::kFail, 0, /*permanent=*/true);
  Build(1, {}, bo);
  const absl::Time t0 = clock_.Now();
  Job patient, waiting, hopeless;
  ASSERT_TRUE(Submit(patient, 1).ok());  // no deadline: waits for the verdict
  ASSERT_TRUE(Submit(waiting, 1, "verify", 0, t0 + absl::Seconds(6)).ok());
  // The run failed, the reset and the programming were tried once (and
  // the programming failed): the board backs off, then needs both again.
  clock_.Advance(absl::Milliseconds(1500));
  ASSERT_EQ(scheduler_->Boards()[0].phase, BoardPhase::kRecovering);
  const absl::Time t1 = clock_.Now();
  EXPECT_EQ(Submit(hopeless, 1, "verify", 0, t1 + absl::Milliseconds(300)).code(),
            absl::StatusCode::kDeadlineExceeded);
  clock_.RunUntilIdle();
  EXPECT_EQ(patient.status.code(), absl::StatusCode::kUnavailable) << patient.status;
  ASSERT_EQ(waiting.calls, 1);
  EXPECT_EQ(waiting.status.code(), absl::StatusCode::kDeadlineExceeded) << waiting.status;
  // Answered when a failed step pushed the board's return past its
  // deadline, well before the deadline itself and the retirement.
  EXPECT_LT(waiting.answered, t0 + absl::Milliseconds(5500));
  EXPECT_LT(waiting.answered, patient.answered);
  EXPECT_NE(waiting.status.message().find("recovering"), absl::string_view::npos) << waiting.status;
}

// The fill step (InferRequest::Fill, Output): a request's own code puts its
// images into the slot and takes its results, outside the scheduler's lock.
class FillingRequest final : public InferRequest {
 public:
  absl::Status Fill(uint32_t index, const accel::DeviceGeometry& g,
                    absl::Span<int8_t> slot) override {
    fills.fetch_add(1);
    if (clock != nullptr) clock->Advance(cost);  // the decode
    if (sequence != nullptr) {
      const int k = sequence->fetch_add(1);
      if (filled_at != nullptr) filled_at->push_back(k);
    }
    if (static_cast<int>(index) == fail_index || static_cast<int>(index) == also_fail) {
      return absl::InvalidArgumentError(absl::StrCat("image ", index, ": unreadable"));
    }
    return buffer.Fill(index, g, slot);
  }
  void Output(uint32_t index, const accel::DeviceGeometry& g,
              absl::Span<const uint32_t> words) override {
    outputs.fetch_add(1);
    buffer.Output(index, g, words);
  }
  void Done(absl::Status status) override { buffer.Done(std::move(status)); }

  BufferRequest buffer;
  int fail_index = -1;
  int also_fail = -1;
  // Each fill advances this clock by `cost`, as a decode takes time.
  SimClock* clock = nullptr;
  absl::Duration cost;
  // Fills counted on `sequence`; `filled_at`, if set, gets where each fell
  // in the order of all fills counted there (fills run one at a time when
  // this is set). Both outlive the request.
  std::atomic<int>* sequence = nullptr;
  std::vector<int>* filled_at = nullptr;
  std::atomic<int> fills{0};
  std::atomic<int> outputs{0};
};

// Runs what it is given when the test says.
class ManualExecutor final : public Executor {
 public:
  void Schedule(absl::AnyInvocable<void()> task) override {
    hgpipe::MutexLock l(&mu);
    tasks.push_back(std::move(task));
  }
  int concurrency() const override { return 1; }
  size_t pending() {
    hgpipe::MutexLock l(&mu);
    return tasks.size();
  }
  // Runs the oldest task, if any; false if there was none.
  bool RunOne() {
    absl::AnyInvocable<void()> task;
    {
      hgpipe::MutexLock l(&mu);
      if (tasks.empty()) return false;
      task = std::move(tasks.front());
      tasks.erase(tasks.begin());
    }
    task();
    return true;
  }
  // Runs every task queued so far (not those they queue), newest first.
  void RunAllNewestFirst() {
    std::vector<absl::AnyInvocable<void()>> now;
    {
      hgpipe::MutexLock l(&mu);
      now.swap(tasks);
    }
    for (auto it = now.rbegin(); it != now.rend(); ++it) (*it)();
  }
  // Runs every task queued so far (not those they queue).
  void RunAll() {
    std::vector<absl::AnyInvocable<void()>> now;
    {
      hgpipe::MutexLock l(&mu);
      now.swap(tasks);
    }
    for (auto& t : now) t();
  }
  hgpipe::Mutex mu;
  std::vector<absl::AnyInvocable<void()>> tasks ABSL_GUARDED_BY(mu);
};

class SchedulerFillTest : public SchedulerTest {
 protected:
  // A request of n random images for "verify" through FillingRequest.
  absl::Status SubmitFilling(Job& job, uint32_t n, int fail_index, bool heavy, FillingRequest** out,
                             absl::Duration cost = absl::ZeroDuration(),
                             absl::Time deadline = absl::InfiniteFuture(),
                             const std::function<void(FillingRequest&)>& configure = nullptr) {
    job.images.resize(n * kImageBytes);
    if (random_images_) {
      for (auto& v : job.images) v = static_cast<int8_t>(rng_());
    }
    job.logits.assign(n * kClasses, 0);
    auto r = std::make_unique<FillingRequest>();
    r->n_images = n;
    r->heavy_fill = heavy;
    r->fail_index = fail_index;
    if (cost > absl::ZeroDuration()) r->clock = &clock_;
    r->cost = cost;
    r->deadline = deadline;
    if (configure) configure(*r);
    r->buffer.images = job.images.data();
    r->buffer.logits = job.logits.data();
    r->buffer.done = [this, &job](absl::Status s) {
      ++job.calls;
      job.status = s;
      job.answered = clock_.Now();
    };
    *out = r.get();  // valid until Done
    return scheduler_->Enqueue(H("verify"), std::move(r));
  }
  // A photo request (heavy) whose fills are counted on `fills`.
  absl::Status SubmitCounted(Job& job, uint32_t n, int fail_index, std::atomic<int>* fills,
                             absl::Duration cost = absl::ZeroDuration(),
                             absl::Time deadline = absl::InfiniteFuture(), int also_fail = -1) {
    FillingRequest* r = nullptr;
    return SubmitFilling(job, n, fail_index, true, &r, cost, deadline, [&](FillingRequest& f) {
      f.sequence = fills;
      f.also_fail = also_fail;
    });
  }
  // Off for tests of many requests whose outputs are not checked.
  bool random_images_ = true;
  // Build(boards) with `exec` as the fill executor, the boards probed and
  // serving. The test resets scheduler_ before `exec` goes.
  void BuildFilling(ManualExecutor& exec, int boards = 1, ModelOptions mo = {}) {
    Scheduler::Options so;
    so.fill_executor = &exec;
    Build(boards, std::move(mo), {}, absl::Milliseconds(1), {}, so);
    Drain(exec);
  }
  uint64_t SkippedFills() {
    hgpipe::MutexLock l(&observer_.mu);
    return observer_.skipped_fills;
  }
  uint64_t Withheld() {
    hgpipe::MutexLock l(&observer_.mu);
    return observer_.withheld_images;
  }
  std::vector<uint32_t> RunSizes() {
    hgpipe::MutexLock l(&observer_.mu);
    return observer_.run_sizes;
  }
  // Until neither the clock nor the executor has work. The executor is
  // prompt: it runs what it was given before the clock moves on.
  void Drain(ManualExecutor& e) {
    do {
      e.RunAll();
    } while (clock_.RunUntilIdle(1) > 0 || e.pending() > 0);
  }
};

TEST_F(SchedulerFillTest, AnImageThatCannotBeFilledFailsOnlyItsRequest) {
  Build(1);
  Job bad, good;
  FillingRequest* b = nullptr;
  FillingRequest* g = nullptr;
  ASSERT_TRUE(SubmitFilling(bad, 3, 1, false, &b).ok());
  ASSERT_TRUE(SubmitFilling(good, 2, -1, false, &g).ok());
  clock_.RunUntilIdle();
  EXPECT_EQ(bad.calls, 1);
  EXPECT_EQ(bad.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status.message(), "image 1: unreadable");
  EXPECT_EQ(good.calls, 1);
  ASSERT_TRUE(good.status.ok()) << good.status;
  ExpectOwnOutputs(good);
}

TEST_F(SchedulerFillTest, LightFillsRunOnTheCallerHeavyOnesOnTheExecutor) {
  ManualExecutor exec;
  BuildFilling(exec);  // the board is probed and serving
  // Formed by Enqueue on this thread, light: filled and submitted here.
  Job light;
  FillingRequest* l = nullptr;
  ASSERT_TRUE(SubmitFilling(light, 2, -1, false, &l).ok());
  EXPECT_EQ(l->fills.load(), 2);
  EXPECT_EQ(exec.pending(), 0u);
  Drain(exec);
  ASSERT_TRUE(light.status.ok()) << light.status;
  ExpectOwnOutputs(light);
  // Heavy (decoding): one task per image on the executor; nothing reaches
  // the board before they ran.
  Job heavy;
  FillingRequest* h = nullptr;
  ASSERT_TRUE(SubmitFilling(heavy, 3, -1, true, &h).ok());
  EXPECT_EQ(h->fills.load(), 0);
  EXPECT_EQ(exec.pending(), 3u);
  clock_.Advance(absl::Milliseconds(10));
  EXPECT_EQ(heavy.calls, 0);
  Drain(exec);
  EXPECT_EQ(heavy.calls, 1);
  ASSERT_TRUE(heavy.status.ok()) << heavy.status;
  ExpectOwnOutputs(heavy);
  scheduler_.reset();  // before the executor it uses
}

TEST_F(SchedulerFillTest, AHeavyFillThatFailsAnswersOnceAndTheOthersAreServed) {
  ManualExecutor exec;
  BuildFilling(exec, 2);
  Job bad, good;
  FillingRequest* b = nullptr;
  FillingRequest* g = nullptr;
  ASSERT_TRUE(SubmitFilling(bad, 4, 2, true, &b).ok());
  ASSERT_TRUE(SubmitFilling(good, 4, -1, true, &g).ok());
  Drain(exec);
  EXPECT_EQ(bad.calls, 1);
  EXPECT_EQ(bad.status.message(), "image 2: unreadable");
  EXPECT_EQ(good.calls, 1);
  ASSERT_TRUE(good.status.ok()) << good.status;
  ExpectOwnOutputs(good);
  scheduler_.reset();  // before the executor it uses
}

// A request answered while its run waits for the executor (its deadline
// passed) is not decoded: the result would be dropped, and under overload
// those decodes are what the pool lacks. Another request is still served.
TEST_F(SchedulerFillTest, ARequestAnsweredLateIsNotDecoded) {
  ManualExecutor exec;
  BuildFilling(exec);
  Job late;
  std::atomic<int> late_fills{0};  // the request is gone once answered
  ASSERT_TRUE(SubmitCounted(late, 3, -1, &late_fills, absl::Milliseconds(1),
                            clock_.Now() + absl::Milliseconds(20))
                  .ok());
  ASSERT_EQ(exec.pending(), 3u);           // formed on the idle board, waiting to decode
  clock_.Advance(absl::Milliseconds(30));  // the executor is stuck; the deadline passes
  EXPECT_EQ(late.calls, 0) << "answered once nothing reads its buffers";
  const size_t runs = RunSizes().size();
  Drain(exec);
  EXPECT_EQ(late_fills.load(), 0) << "decoded for an answer already given";
  EXPECT_EQ(SkippedFills(), 3u);
  EXPECT_EQ(Withheld(), 3u) << "computed for an answer already given";
  EXPECT_EQ(RunSizes().size(), runs);
  EXPECT_EQ(late.calls, 1);
  EXPECT_EQ(late.status.code(), absl::StatusCode::kDeadlineExceeded) << late.status;
  Job ok;
  std::atomic<int> ok_fills{0};
  ASSERT_TRUE(SubmitCounted(ok, 2, -1, &ok_fills, absl::Milliseconds(1)).ok());
  Drain(exec);
  EXPECT_EQ(ok_fills.load(), 2);
  EXPECT_EQ(SkippedFills(), 3u);
  ASSERT_TRUE(ok.status.ok()) << ok.status;
  ExpectOwnOutputs(ok);
  scheduler_.reset();  // before the executor it uses
}

// An image that cannot be decoded fails its request: the request's images
// not yet started are not decoded (their results would be dropped), those
// of its run and of a run formed behind it, while another request in the
// same runs is served.
TEST_F(SchedulerFillTest, AFailedImageSparesTheRestOfItsRequest) {
  ManualExecutor exec;
  BuildFilling(exec);
  Job bad, good;
  std::atomic<int> bad_fills{0};
  std::atomic<int> good_fills{0};
  ASSERT_TRUE(SubmitCounted(bad, 3, 0, &bad_fills).ok());
  ASSERT_TRUE(SubmitCounted(good, 2, -1, &good_fills).ok());
  ASSERT_EQ(exec.pending(), 5u);  // formed on the idle board, the failing image first
  Drain(exec);
  EXPECT_EQ(bad_fills.load(), 1) << "decoded after one of its images failed";
  EXPECT_EQ(SkippedFills(), 2u);
  EXPECT_EQ(bad.calls, 1);
  EXPECT_EQ(bad.status.message(), "image 0: unreadable");
  EXPECT_EQ(good_fills.load(), 2);
  EXPECT_EQ(good.calls, 1);
  ASSERT_TRUE(good.status.ok()) << good.status;
  ExpectOwnOutputs(good);
  scheduler_.reset();  // before the executor it uses
}

// Two bad images of one request, decoded in parallel: whichever fails
// first, the error reported is the lowest image's (the images below a
// failed one are still decoded; those above it are not).
TEST_F(SchedulerFillTest, TheLowestFailedImageIsReportedWhicheverFailsFirst) {
  ManualExecutor exec;
  BuildFilling(exec);
  Job bad;
  std::atomic<int> fills{0};
  ASSERT_TRUE(
      SubmitCounted(bad, 4, 0, &fills, absl::ZeroDuration(), absl::InfiniteFuture(), 2).ok());
  ASSERT_EQ(exec.pending(), 4u);
  exec.RunAllNewestFirst();  // images 3, 2 (fails), 1, 0 (fails)
  Drain(exec);
  EXPECT_EQ(fills.load(), 4);
  EXPECT_EQ(bad.calls, 1);
  EXPECT_EQ(bad.status.message(), "image 0: unreadable");
  // Decoded in order, image 0 fails first and spares the other three.
  Job again;
  std::atomic<int> again_fills{0};
  ASSERT_TRUE(
      SubmitCounted(again, 4, 0, &again_fills, absl::ZeroDuration(), absl::InfiniteFuture(), 2)
          .ok());
  Drain(exec);
  EXPECT_EQ(again_fills.load(), 1);
  EXPECT_EQ(again.status.message(), "image 0: unreadable");
  scheduler_.reset();  // before the executor it uses
}

// Across runs: a request split over two runs formed one after the other,
// both waiting for the executor, the failing image the last of the first
// run to be decoded: the second run's images are not decoded.
TEST_F(SchedulerFillTest, AFailedImageSparesItsRequestsImagesInALaterRun) {
  ManualExecutor exec;
  BuildFilling(exec);
  Job bad;
  FillingRequest* b = nullptr;
  std::atomic<int> fills{0};
  constexpr uint32_t kImages = 40;
  ASSERT_TRUE(SubmitFilling(bad, kImages, -1, true, &b, absl::ZeroDuration(),
                            absl::InfiniteFuture(), [&](FillingRequest& r) { r.sequence = &fills; })
                  .ok());
  const size_t first = exec.pending();
  ASSERT_GT(first, 0u);
  ASSERT_LT(first, kImages) << "needs the request split over runs";
  // The executor runs tasks in order, so this is the first run's last fill
  // (read on this thread, by the executor's tasks).
  b->fail_index = static_cast<int>(first) - 1;
  // The board takes the next run before the first drains: formed on the
  // clock while the first still waits for the executor.
  for (int i = 0; i < 100 && exec.pending() == first; ++i) clock_.RunUntilIdle(1);
  ASSERT_GT(exec.pending(), first) << "no second run formed";
  const size_t second = exec.pending() - first;
  Drain(exec);
  EXPECT_EQ(fills.load(), static_cast<int>(first)) << "decoded after one of its images failed";
  EXPECT_EQ(SkippedFills(), second);
  EXPECT_EQ(bad.calls, 1);
  EXPECT_EQ(bad.status.message(), absl::StrCat("image ", first - 1, ": unreadable"));
  scheduler_.reset();  // before the executor it uses
}

// A run whose every image belongs to a request already failed is not sent
// to the board: the board's predicted input time goes back (the next
// request is predicted as on an idle board), its slot is free, and nothing
// is reported as computed.
TEST_F(SchedulerFillTest, ARunOfFailedRequestsIsNotSentToTheBoard) {
  ManualExecutor exec;
  BuildFilling(exec);
  const absl::Time now = clock_.Now();
  const absl::StatusOr<absl::Time> idle = scheduler_->PredictCompletion(H("verify"), 1, 0);
  ASSERT_TRUE(idle.ok()) << idle.status();
  const size_t runs = RunSizes().size();
  Job bad;
  std::atomic<int> fills{0};
  ASSERT_TRUE(SubmitCounted(bad, 3, 1, &fills).ok());
  ASSERT_EQ(exec.pending(), 3u);  // formed on the idle board
  const absl::StatusOr<absl::Time> busy = scheduler_->PredictCompletion(H("verify"), 1, 0);
  ASSERT_TRUE(busy.ok()) << busy.status();
  EXPECT_GT(*busy, *idle);
  exec.RunAll();  // image 1 fails, image 2 is skipped; the last task submits
  EXPECT_EQ(clock_.Now(), now);
  EXPECT_EQ(bad.calls, 1);
  EXPECT_EQ(bad.status.message(), "image 1: unreadable");
  EXPECT_EQ(fills.load(), 2);
  EXPECT_EQ(Withheld(), 3u);
  EXPECT_EQ(RunSizes().size(), runs) << "sent to the board";
  const absl::StatusOr<absl::Time> after = scheduler_->PredictCompletion(H("verify"), 1, 0);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(*after, *idle) << "the board's time was not given back";
  // Every slot is still the scheduler's to use.
  std::vector<Job> jobs(8);
  for (Job& j : jobs) {
    FillingRequest* r = nullptr;
    ASSERT_TRUE(SubmitFilling(j, 1, -1, true, &r).ok());
  }
  Drain(exec);
  for (const Job& j : jobs) {
    ASSERT_TRUE(j.status.ok()) << j.status;
    ExpectOwnOutputs(j);
  }
  EXPECT_EQ(Withheld(), 3u);
  scheduler_.reset();  // before the executor it uses
}

// In a run shared with good requests, a failed request's images do not go
// to the board wherever they are in the run: at its end they are cut, and
// a place they leave before the new end takes the run's last image (copied
// in the slot), so each request still gets its own results.
TEST_F(SchedulerFillTest, AFailedRequestsImagesAreTakenOutOfASharedRun) {
  ManualExecutor exec;
  ModelOptions mo;
  mo.max_queue_delay = absl::Microseconds(300);  // one run for all requests
  BuildFilling(exec, 1, mo);
  struct Case {
    const char* name;
    std::vector<int> fail;  // per request: the image that fails, or -1
    uint32_t sent;          // images the board computes
  } cases[] = {
      {"at the end", {-1, 0}, 2},
      {"at the front", {0, -1}, 2},
      {"in the middle", {-1, 1, -1}, 4},
      {"twice", {2, -1, 0, -1}, 4},
  };
  uint64_t withheld = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const size_t runs = RunSizes().size();
    std::vector<Job> jobs(c.fail.size());
    std::atomic<int> fills{0};
    for (size_t k = 0; k < jobs.size(); ++k) {
      const uint32_t n = c.fail[k] < 0 ? 2 : 3;
      ASSERT_TRUE(SubmitCounted(jobs[k], n, c.fail[k], &fills).ok());
      if (c.fail[k] >= 0) withheld += n;
    }
    ASSERT_EQ(exec.pending(), 0u) << "the idle board did not wait for its run to fill";
    Drain(exec);
    for (size_t k = 0; k < jobs.size(); ++k) {
      EXPECT_EQ(jobs[k].calls, 1);
      if (c.fail[k] >= 0) {
        EXPECT_EQ(jobs[k].status.message(), absl::StrCat("image ", c.fail[k], ": unreadable"));
      } else {
        ASSERT_TRUE(jobs[k].status.ok()) << jobs[k].status;
        ExpectOwnOutputs(jobs[k]);
      }
    }
    EXPECT_EQ(Withheld(), withheld);
    const std::vector<uint32_t> sizes = RunSizes();
    ASSERT_EQ(sizes.size(), runs + 1);
    EXPECT_EQ(sizes.back(), c.sent) << "the board computed images whose results were dropped";
  }
  scheduler_.reset();  // before the executor it uses
}

// Skipped images cost no time: they must not teach the scheduler that a
// decode is cheap. After runs whose first photo fails (the rest skipped),
// admission still counts a photo's whole cost: 41 photos of 1 ms on the
// one fill thread do not fit in 25 ms (they would at a quarter of it).
TEST_F(SchedulerFillTest, SkippedImagesDoNotTeachTheDecodeCost) {
  ManualExecutor exec;
  BuildFilling(exec);
  const absl::Duration cost = absl::Milliseconds(1);
  FillingRequest* r = nullptr;
  std::vector<Job> warm(8);
  for (Job& j : warm) {
    ASSERT_TRUE(SubmitFilling(j, 1, -1, true, &r, cost).ok());
    Drain(exec);
  }
  std::vector<Job> failing(8);
  for (Job& j : failing) {
    ASSERT_TRUE(SubmitFilling(j, 4, 0, true, &r, cost).ok());
    Drain(exec);
    EXPECT_EQ(j.status.code(), absl::StatusCode::kInvalidArgument) << j.status;
  }
  EXPECT_EQ(SkippedFills(), 24u);
  std::vector<Job> backlog(10);
  for (Job& j : backlog) ASSERT_TRUE(SubmitFilling(j, 4, -1, true, &r, cost).ok());
  Job urgent;
  const absl::Status admitted =
      SubmitFilling(urgent, 1, -1, true, &r, cost, clock_.Now() + absl::Milliseconds(25));
  EXPECT_EQ(admitted.code(), absl::StatusCode::kDeadlineExceeded) << admitted;
  Drain(exec);
  for (const Job& j : backlog) EXPECT_TRUE(j.status.ok()) << j.status;
  scheduler_.reset();  // before the executor it uses
}

// Under sustained photo overload the admission estimate holds: requests
// the scheduler admits are served in time, the rest refused at arrival.
// One fill thread decodes a photo in 1 ms of the clock; photos arrive
// every 0.5 ms for 1 s, each with 50 ms to live.
TEST_F(SchedulerFillTest, UnderPhotoOverloadAdmittedRequestsMeetTheirDeadlines) {
  ManualExecutor exec;
  BuildFilling(exec);
  random_images_ = false;
  const absl::Duration decode = absl::Milliseconds(1);
  FillingRequest* r = nullptr;
  std::vector<Job> warm(8);
  for (Job& j : warm) {
    ASSERT_TRUE(SubmitFilling(j, 1, -1, true, &r, decode).ok());
    Drain(exec);
  }
  std::deque<Job> open;  // admitted, in order of arrival
  int admitted = 0, refused = 0, served = 0, expired = 0;
  auto tally = [&](const Job& j) {
    EXPECT_EQ(j.calls, 1);
    if (j.status.ok()) {
      ++served;
    } else {
      EXPECT_EQ(j.status.code(), absl::StatusCode::kDeadlineExceeded) << j.status;
      ++expired;
    }
  };
  const absl::Time t0 = clock_.Now();
  for (int k = 0; k < 2000; ++k) {
    const absl::Time arrival = t0 + absl::Microseconds(500) * k;
    // The pool works until the arrival (a decode in progress runs to its
    // end: the request arrives at the next task boundary).
    while (clock_.Now() < arrival && exec.RunOne()) {
    }
    if (clock_.Now() < arrival) clock_.AdvanceTo(arrival);
    open.emplace_back();
    const absl::Status s =
        SubmitFilling(open.back(), 1, -1, true, &r, decode, clock_.Now() + absl::Milliseconds(50));
    if (s.ok()) {
      ++admitted;
    } else {
      ASSERT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
      ++refused;
      open.pop_back();
    }
    while (!open.empty() && open.front().calls > 0) {
      tally(open.front());
      open.pop_front();
    }
  }
  Drain(exec);
  for (const Job& j : open) tally(j);
  // The pool decodes about 1,000 photos in the second; those are served.
  EXPECT_GE(served, 900) << "admitted " << admitted << ", refused " << refused;
  EXPECT_LE(expired, admitted / 50) << "served " << served << ", refused " << refused;
  scheduler_.reset();  // before the executor it uses
}

// Decoding at dispatch takes time before a run reaches its board. The
// scheduler learns what a photo's decode costs and forms a busy board's
// next run that much earlier, so that the board's input does not wait for
// the decode. Every photo here takes 0 or 2 ms of the clock to decode;
// measured from the forming of a long run of copies (filled at once) to the
// forming of the next run, one photo, behind it.
TEST_F(SchedulerFillTest, SlowFillsFormABusyBoardsNextRunEarlier) {
  auto formed_after = [this](absl::Duration decode) {
    ManualExecutor exec;
    BuildFilling(exec);
    std::vector<Job> warm(8);
    for (Job& j : warm) {
      FillingRequest* r = nullptr;
      EXPECT_TRUE(SubmitFilling(j, 1, -1, true, &r, decode).ok());
      Drain(exec);
      EXPECT_TRUE(j.status.ok()) << j.status;
    }
    // 32 copies, the most a run takes: the board is busy for about 2.9 ms.
    Job busy, next;
    FillingRequest* r = nullptr;
    const absl::Time formed_busy = clock_.Now();
    EXPECT_TRUE(SubmitFilling(busy, 32, -1, false, &r).ok());
    EXPECT_TRUE(SubmitFilling(next, 1, -1, true, &r, decode).ok());
    while (exec.pending() == 0 && clock_.Now() - formed_busy < absl::Milliseconds(50)) {
      clock_.Advance(absl::Microseconds(50));
    }
    const absl::Duration formed = clock_.Now() - formed_busy;
    Drain(exec);
    EXPECT_TRUE(busy.status.ok()) << busy.status;
    EXPECT_TRUE(next.status.ok()) << next.status;
    scheduler_.reset();  // before the executor it uses
    return formed;
  };
  const absl::Duration prompt = formed_after(absl::ZeroDuration());
  const absl::Duration slow = formed_after(absl::Milliseconds(2));
  // Prompt: dispatch_lead (1 ms) before the input end. Slow: about the
  // learned decode (1.8 ms), weighted by the share of runs that decode
  // (0.9, then 0.675 after the copies' run), 1.2 ms earlier still.
  EXPECT_GT(prompt, absl::Milliseconds(1.5)) << "the long run must keep the board busy";
  EXPECT_LT(slow, prompt - absl::Milliseconds(0.9)) << "prompt " << prompt << ", slow " << slow;
  EXPECT_GT(slow, prompt - absl::Milliseconds(1.6)) << "prompt " << prompt << ", slow " << slow;
}

// The wait for the fill executor is its backlog now, not a smoothed past:
// after a burst of photos has been decoded, a short deadline that an idle
// executor can meet is admitted again. (Learned as one smoothed time from
// forming a run to its fill, the burst's waits of up to 30 ms refused every
// such request, and with none admitted nothing ever lowered it.)
TEST_F(SchedulerFillTest, AFillDelayFromABurstIsForgottenOnceTheBurstIsDecoded) {
  ManualExecutor exec;
  BuildFilling(exec);
  const absl::Duration decode = absl::Milliseconds(1);
  FillingRequest* r = nullptr;
  std::vector<Job> warm(8), burst(30);
  for (Job& j : warm) {
    EXPECT_TRUE(SubmitFilling(j, 1, -1, true, &r, decode).ok());
    Drain(exec);
  }
  for (Job& j : burst) EXPECT_TRUE(SubmitFilling(j, 1, -1, true, &r, decode).ok());
  // 30 decodes ahead on one thread: 10 ms is out of reach now.
  Job hopeless;
  EXPECT_EQ(SubmitFilling(hopeless, 1, -1, true, &r, decode, clock_.Now() + absl::Milliseconds(10))
                .code(),
            absl::StatusCode::kDeadlineExceeded);
  Drain(exec);
  for (const Job& j : burst) EXPECT_TRUE(j.status.ok()) << j.status;
  // Decoded: the executor is idle, and 10 ms is plenty, every time.
  std::vector<Job> after(3);
  for (Job& j : after) {
    const absl::Time deadline = clock_.Now() + absl::Milliseconds(10);
    const absl::Status admitted = SubmitFilling(j, 1, -1, true, &r, decode, deadline);
    ASSERT_TRUE(admitted.ok()) << admitted;
    Drain(exec);
    ASSERT_TRUE(j.status.ok()) << j.status;
    EXPECT_LE(j.answered, deadline);
  }
  scheduler_.reset();  // before the executor it uses
}

// Photos are decoded when their run is formed, so a high-priority photo
// waits behind no low-priority decode beyond the runs already formed: it is
// decoded before most of a backlog queued ahead of it.
TEST_F(SchedulerFillTest, AHighPriorityPhotoIsDecodedBeforeALowPriorityBacklog) {
  ManualExecutor exec;
  ModelOptions mo;
  mo.priority_levels = 2;
  mo.default_priority = 2;
  mo.max_images_per_run = 4;
  BuildFilling(exec, 1, mo);
  std::atomic<int> sequence{0};
  std::vector<int> low_at, high_at;
  std::vector<Job> low(16);
  FillingRequest* r = nullptr;
  for (Job& j : low) {
    EXPECT_TRUE(SubmitFilling(j, 2, -1, true, &r, absl::Milliseconds(1), absl::InfiniteFuture(),
                              [&](FillingRequest& f) {
                                f.sequence = &sequence;
                                f.filled_at = &low_at;
                              })
                    .ok());
  }
  Job high;
  ASSERT_TRUE(SubmitFilling(high, 1, -1, true, &r, absl::Milliseconds(1), absl::InfiniteFuture(),
                            [&](FillingRequest& f) {
                              f.sequence = &sequence;
                              f.filled_at = &high_at;
                              f.priority = 1;
                            })
                  .ok());
  Drain(exec);
  ASSERT_TRUE(high.status.ok()) << high.status;
  for (const Job& j : low) EXPECT_TRUE(j.status.ok()) << j.status;
  ASSERT_EQ(high_at.size(), 1u);
  ASSERT_EQ(low_at.size(), 32u);
  // Only the runs formed before it arrived (about dispatch_lead's worth of
  // the board's input) are decoded first, not the whole backlog.
  const auto first = static_cast<size_t>(
      std::count_if(low_at.begin(), low_at.end(), [&](int at) { return at < high_at[0]; }));
  EXPECT_LE(first, 16u) << "the high-priority photo was decoded behind " << first
                        << " low-priority ones";
  scheduler_.reset();  // before the executor it uses
}

// When decoding, not the board, bounds how fast a model's queue drains,
// deadline admission counts the fill executor: a request that cannot be
// decoded in time behind the photos ahead of it is refused at once, not
// left to expire at its deadline. One board (an image every ~140 us), one
// fill thread, 40 photos ahead; each photo takes 0 or 1 ms to decode.
TEST_F(SchedulerFillTest, AdmissionCountsDecodingWhenItIsSlowerThanTheBoards) {
  struct Outcome {
    absl::Status urgent, patient;  // at admission
    Job patient_job;
  };
  auto run = [this](absl::Duration cost) {
    auto o = std::make_unique<Outcome>();
    ManualExecutor exec;
    BuildFilling(exec);
    FillingRequest* r = nullptr;
    std::vector<Job> warm(8);
    for (Job& j : warm) {  // the scheduler learns the decode's cost
      EXPECT_TRUE(SubmitFilling(j, 1, -1, true, &r, cost).ok());
      Drain(exec);
      EXPECT_TRUE(j.status.ok()) << j.status;
    }
    std::vector<Job> backlog(10);
    for (Job& j : backlog) EXPECT_TRUE(SubmitFilling(j, 4, -1, true, &r, cost).ok());
    const absl::Time t0 = clock_.Now();
    Job urgent;
    o->urgent = SubmitFilling(urgent, 1, -1, true, &r, cost, t0 + absl::Milliseconds(25));
    o->patient = SubmitFilling(o->patient_job, 1, -1, true, &r, cost, t0 + absl::Milliseconds(150));
    Drain(exec);
    for (const Job& j : backlog) EXPECT_TRUE(j.status.ok()) << j.status;
    if (o->patient.ok()) {
      EXPECT_LE(o->patient_job.answered, t0 + absl::Milliseconds(150));
    }
    scheduler_.reset();  // before the executor it uses
    return o;
  };
  // Board-bound: 42 images take about 6 ms of the board.
  auto prompt = run(absl::ZeroDuration());
  EXPECT_TRUE(prompt->urgent.ok()) << prompt->urgent;
  EXPECT_TRUE(prompt->patient.ok()) << prompt->patient;
  // Decode-bound: 41 photos take 41 ms of the one fill thread.
  auto slow = run(absl::Milliseconds(1));
  EXPECT_EQ(slow->urgent.code(), absl::StatusCode::kDeadlineExceeded) << slow->urgent;
  ASSERT_TRUE(slow->patient.ok()) << slow->patient;
  EXPECT_TRUE(slow->patient_job.status.ok()) << slow->patient_job.status;
}

}  // namespace
}  // namespace hgpipe::scheduler
