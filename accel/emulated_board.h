// A board without hardware: HG-PIPE's timing model (pipeline_model.h) driven
// by a Clock, executing the software Kernel of the bitstream it is programmed
// with. A run completes at the later of its modelled completion time and the
// end of its computation, so a slow host shows as a slow board, never as a
// board faster than the bitstream.
#ifndef HGPIPE_ACCEL_EMULATED_BOARD_H_
#define HGPIPE_ACCEL_EMULATED_BOARD_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "base/mutex.h"
#include "accel/board.h"
#include "accel/kernel.h"
#include "accel/pipeline_model.h"
#include "base/clock.h"

namespace hgpipe::accel {

class EmulatedBoard final : public Board {
 public:
  struct Options {
    std::string name = "sim0";
    // The bitstream's function. Required.
    std::shared_ptr<const Kernel> kernel;
    // Default: the kernel's manifest timing.
    std::optional<PipelineTiming> timing;
    // Default: 64.
    uint32_t max_images_per_run = 64;
    // Default: 4 runs queued at once.
    int num_slots = 4;
    // Required; must outlive the board.
    Clock* clock = nullptr;
    // Compute inside Submit on the caller's thread instead of on the board's
    // worker thread: deterministic, for discrete-event simulation.
    bool compute_inline = false;
    // Fault injection: every run after this many fails, and Health() turns
    // UNAVAILABLE, as a board that lost its PCIe link would. Default: never.
    std::optional<uint64_t> fail_after_runs;
  };

  // InvalidArgument if an option is out of range.
  static absl::StatusOr<std::unique_ptr<EmulatedBoard>> Create(Options options);
  // Requires that no run is in flight (every completion has been delivered).
  ~EmulatedBoard() override;
  EmulatedBoard(const EmulatedBoard&) = delete;
  EmulatedBoard& operator=(const EmulatedBoard&) = delete;

  const BoardInfo& info() const override { return info_; }
  const BitstreamManifest& manifest() const override { return manifest_; }
  int num_slots() const override { return static_cast<int>(slots_.size()); }
  uint32_t max_images_per_run() const override { return max_images_per_run_; }
  RunSlotBuffers slot(int index) override;
  void Submit(int index, uint32_t n, DoneCallback done) override;
  absl::Status Health() const override;

  // The modelled times of the most recent run (for tests).
  RunTimes last_run_times() const;

 private:
  struct Slot {
    std::vector<int8_t> input;
    std::vector<uint32_t> output;
  };
  // Completes when both its modelled time has come and its output is
  // computed; whichever happens second delivers `done`.
  struct Pending;
  struct Work {
    int slot;
    uint32_t n;
    std::shared_ptr<Pending> pending;
  };

  explicit EmulatedBoard(Options options);
  void WorkerLoop();
  void Compute(int slot, uint32_t n);

  // Constant after construction.
  const std::shared_ptr<const Kernel> kernel_;
  const uint32_t max_images_per_run_;
  Clock* const clock_;
  const bool compute_inline_;
  const std::optional<uint64_t> fail_after_runs_;
  BoardInfo info_;
  BitstreamManifest manifest_;
  std::vector<Slot> slots_;  // buffers are lent to the caller per slot()

  mutable hgpipe::Mutex mu_;
  PipelineModel model_ ABSL_GUARDED_BY(mu_);
  RunTimes last_run_ ABSL_GUARDED_BY(mu_);
  uint64_t runs_submitted_ ABSL_GUARDED_BY(mu_) = 0;
  bool failed_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<Work> work_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;

  std::thread worker_;  // runs the kernel unless compute_inline_
};

}  // namespace hgpipe::accel

#endif  // HGPIPE_ACCEL_EMULATED_BOARD_H_
