// A fault XRT raises mid-run, while the request still completes on another
// board: the scheduler with an XRT board (no-op device, made to fail its
// first run inside XRT) and an emulated board running the real `verify`
// kernel. Under noop the XRT kernel computes nothing, so the digests prove
// that every image was answered by the emulated board, exactly once.
#include <fstream>
#include <map>
#include <random>

#include "base/mutex.h"

#include "accel/emulated_board.h"
#include "accel/verify_digest.h"
#include "accel/xrt/xrt_board.h"
#include "gtest/gtest.h"
#include "scheduler/scheduler.h"
#include "xrt_test_util.h"

namespace hgpipe::accel::testing {
namespace {

constexpr size_t kImageBytes = 196 * 768;

class CountingObserver : public scheduler::Observer {
 public:
  void RunFinished(int, int board_id, uint32_t, absl::Duration, const absl::Status& s) override {
    hgpipe::MutexLock l(&mu);
    (s.ok() ? ok_runs : failed_runs)[board_id]++;
  }
  // A board leaving service (any phase but kServing) counts as unhealthy.
  void BoardPhaseChanged(int board_id, int, scheduler::BoardPhase phase, const absl::Status&,
                         const scheduler::BoardCounts&) override {
    hgpipe::MutexLock l(&mu);
    if (phase != scheduler::BoardPhase::kServing) unhealthy[board_id]++;
  }
  hgpipe::Mutex mu;
  std::map<int, int> ok_runs, failed_runs, unhealthy;
};

TEST(XrtFailoverTest, FaultInsideXrtMidRunAndTheRequestCompletesOnTheOtherBoard) {
  UseXrtNoopDevice();
  const std::string dir = NewTestDir();
  const std::string xclbin = dir + "/verify.xclbin";
  WriteXclbin(xclbin, SpecWithManifest("model: \"verify\" "
                                       "geometry { tokens: 196 token_values: 768 classes: 1000 }"));
  RealClock clock;
  CountingObserver observer;
  scheduler::Scheduler::Options so;
  so.clock = &clock;
  so.observer = &observer;
  auto sched = *scheduler::Scheduler::Create(so);

  std::vector<std::unique_ptr<Board>> boards;
  XrtBoardOptions xo;
  xo.name = "xrt0";
  xo.device = "0";
  xo.xclbin_path = xclbin;
  xo.max_images_per_run = 8;
  xo.test_fault_after_runs = 0;  // the first run fails inside XRT
  auto xrt = OpenXrtBoard(xo);
  ASSERT_TRUE(xrt.ok()) << xrt.status();
  boards.push_back(*std::move(xrt));  // board 0: chosen first while both idle
  EmulatedBoard::Options eo;
  eo.name = "sim0";
  eo.kernel = VerifyKernel();
  eo.clock = &clock;
  eo.max_images_per_run = 8;
  boards.push_back(*EmulatedBoard::Create(eo));
  scheduler::ModelOptions mo;
  mo.name = "verify";
  mo.max_images_per_run = 8;
  absl::StatusOr<scheduler::ModelHandle> handle = sched->AddModel(mo, std::move(boards));
  ASSERT_TRUE(handle.ok());

  std::vector<int8_t> images(5 * kImageBytes);
  std::mt19937 rng(11);
  for (auto& v : images) v = static_cast<int8_t>(rng());
  std::vector<int32_t> logits(5 * 1000, 0);
  hgpipe::Notification done;
  absl::Status status;
  int calls = 0;
  auto req = std::make_unique<scheduler::BufferRequest>();
  req->images = images.data();
  req->n_images = 5;
  req->logits = logits.data();
  req->done = [&](absl::Status s) {
    status = s;
    ++calls;
    done.Notify();
  };
  ASSERT_TRUE(sched->Enqueue(*handle, std::move(req)).ok());
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(60)));
  sched->Shutdown();
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(calls, 1);
  std::vector<int32_t> want(1000);
  for (int i = 0; i < 5; ++i) {
    verify::ExpectedLogits(images.data() + i * kImageBytes, kImageBytes, 1000, want.data());
    EXPECT_TRUE(std::equal(want.begin(), want.end(), logits.begin() + i * 1000)) << "image " << i;
  }
  for (const auto& b : sched->Boards()) {
    if (b.board_id == 1) {
      EXPECT_EQ(b.phase, scheduler::BoardPhase::kServing);
    }
  }
  hgpipe::MutexLock l(&observer.mu);
  EXPECT_GE(observer.unhealthy[0], 1) << "the XRT board failed a run";
  EXPECT_EQ(observer.unhealthy[1], 0);
  EXPECT_EQ(observer.failed_runs[0], 1);
  EXPECT_GE(observer.ok_runs[1], 1);
}

}  // namespace
}  // namespace hgpipe::accel::testing
