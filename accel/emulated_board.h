// A board without hardware: HG-PIPE's timing model (pipeline_model.h) driven
// by a Clock, executing the software Kernel of the bitstream it is programmed
// with. A run completes at the later of its modelled completion time and the
// end of its computation, so a slow host shows as a slow board, never as a
// board faster than the bitstream.
//
// Programming and reset are modelled too: Program takes `program_time` on the
// board's clock (an xclbin download), Reset takes `reset_time`. Faults are
// injected by wrapping a board in a FaultyBoard (accel/faulty_board.h).
//
// Callbacks: run completions and Program/Reset `done` are called with no
// board lock held: from the clock's timer thread (a SimClock's Advance
// caller), from the worker thread that computes the kernel, or, for a run
// aborted by Reset, from the Reset caller. Requests refused at once (bad run,
// board not programmed, bad bitstream) are answered inside the call, on the
// caller's thread.
#ifndef HGPIPE_ACCEL_EMULATED_BOARD_H_
#define HGPIPE_ACCEL_EMULATED_BOARD_H_

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "accel/board.h"
#include "accel/kernel.h"
#include "accel/pipeline_model.h"
#include "base/clock.h"
#include "base/mutex.h"

namespace hgpipe::accel {

class EmulatedBoard final : public Board {
 public:
  struct Options {
    std::string name = "sim0";
    // The bitstream's function. Required: the board starts programmed with
    // it (its manifest, with `timing` if set).
    std::shared_ptr<const Kernel> kernel;
    // Default: the kernel's manifest timing.
    std::optional<PipelineTiming> timing;
    // Default: 64. Unchanged by Program.
    uint32_t max_images_per_run = 64;
    // Runs queued at once. 0 (default): the in-flight window comes from the
    // pipeline depth, ceil(latency / II) + 2 slots (17 for HG-PIPE DeiT-tiny),
    // so even 1-image runs can keep the pipeline full. Fixed at creation:
    // Program resizes the slots' buffers, never their number.
    int num_slots = 0;
    // Required; must outlive the board.
    Clock* clock = nullptr;
    // Compute inside Submit on the caller's thread instead of on the board's
    // worker thread: deterministic, for discrete-event simulation.
    bool compute_inline = false;
    // false: timing only. The kernel is never run and outputs stay zero
    // (slots are still allocated): for discrete-event simulation of many
    // images, where computing them would dominate.
    bool compute = true;
    // How long Program takes (an xclbin download), and Reset, on `clock`.
    absl::Duration program_time = absl::Seconds(1);
    absl::Duration reset_time = absl::Milliseconds(200);
  };

  // InvalidArgument if an option is out of range.
  static absl::StatusOr<std::unique_ptr<EmulatedBoard>> Create(Options options);
  // Safe at any time except concurrently with another call on the board:
  // runs still in flight and a pending Program or
  // Reset are answered CANCELLED, on the destroying thread, and their
  // timers are cancelled.
  ~EmulatedBoard() override;
  EmulatedBoard(const EmulatedBoard&) = delete;
  EmulatedBoard& operator=(const EmulatedBoard&) = delete;

  const BoardInfo& info() const override { return info_; }
  // Not during Program (Board's contract).
  const BitstreamManifest& manifest() const override { return manifest_; }
  int num_slots() const override { return num_slots_; }
  uint32_t max_images_per_run() const override { return max_images_per_run_; }
  // Not during Program (Board's contract).
  RunSlotBuffers slot(int index) override;
  // Refused at once: InvalidArgument for a bad slot or image count;
  // FailedPrecondition ("board NAME: not programmed") after Reset, during
  // Program or Reset and after a failed Program, and for a slot in flight.
  void Submit(int index, uint32_t n, DoneCallback done) override;
  // FAILED_PRECONDITION while not programmed (after Reset, during Program or
  // Reset, after a failed Program); otherwise OK.
  absl::Status Health() const override;
  // Board's contract, plus: InvalidArgument (at once) for a null bitstream
  // or kernel, a kernel whose geometry is not the manifest's, or an invalid
  // manifest; FailedPrecondition (at once) with a run in flight or a
  // Program or Reset in progress. Otherwise `done` is called after
  // program_time, from the clock's thread. A Reset meanwhile aborts it
  // (ABORTED).
  void Program(std::shared_ptr<const Bitstream> bitstream, DoneCallback done) override;
  // Board's contract: runs in flight are answered ABORTED before Reset
  // returns, except one whose kernel is computing right then, answered by the
  // computing thread when it ends (the slot is not touched afterwards);
  // `done` (OK) follows both and reset_time. FailedPrecondition (at once)
  // if a Reset is already in progress.
  void Reset(DoneCallback done) override;

  // The modelled times of the most recent run (for tests).
  RunTimes last_run_times() const;

 private:
  struct Slot {
    std::vector<int8_t> input;
    std::vector<uint32_t> output;
  };
  // A run accepted by Submit. It completes when its modelled time has come
  // (its timer) and its output is computed; whichever happens second
  // delivers `done`. Whoever removes it from runs_ answers it.
  struct Run {
    uint64_t id = 0;
    int slot = 0;
    uint32_t n = 0;
    std::shared_ptr<const Kernel> kernel;
    DoneCallback done;
    int parts = 0;             // timer and/or computation still to come
    Clock::TimerId timer = 0;  // 0: none (hung) or fired
    bool computing = false;    // the kernel is writing its slot right now
    bool aborted = false;      // by Reset; answered when computing ends
  };
  // A Program or Reset in progress.
  enum class Op { kNone, kProgram, kReset };

  explicit EmulatedBoard(Options options);
  void WorkerLoop();
  // Runs the kernel outside the lock, then completes its part of the run.
  void ComputeAndArrive(const std::shared_ptr<Run>& run) ABSL_LOCKS_EXCLUDED(mu_);
  void OnRunTimer(uint64_t id) ABSL_LOCKS_EXCLUDED(mu_);
  void OnProgramTimer(uint64_t op_id) ABSL_LOCKS_EXCLUDED(mu_);
  void OnResetTimer(uint64_t op_id) ABSL_LOCKS_EXCLUDED(mu_);
  // One of Reset's conditions (timer, aborted runs answered, computing runs
  // done) is met; returns Reset's `done` when it was the last.
  DoneCallback ResetPartDoneLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes a run from runs_ and frees its slot.
  void ForgetLocked(const Run& run) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetTimingLocked(const PipelineTiming& timing) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status NotProgrammedLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Constant after construction.
  const uint32_t max_images_per_run_;
  const int num_slots_;
  Clock* const clock_;
  const bool compute_inline_;
  const bool compute_;
  const absl::Duration program_time_;
  const absl::Duration reset_time_;
  BoardInfo info_;

  // Written only by Program's completion, with no run in flight; read by
  // callers outside Program (Board's contract) and by runs under mu_.
  BitstreamManifest manifest_;
  std::vector<Slot> slots_;  // buffers are lent to the caller per slot()

  mutable hgpipe::Mutex mu_;
  std::shared_ptr<const Kernel> kernel_ ABSL_GUARDED_BY(mu_);
  bool programmed_ ABSL_GUARDED_BY(mu_) = true;
  // Why a Program failed; OK otherwise.
  absl::Status program_error_ ABSL_GUARDED_BY(mu_);
  PipelineModel model_ ABSL_GUARDED_BY(mu_);
  // Runs start no earlier than this (continuity when the timing changes).
  absl::Time input_floor_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  RunTimes last_run_ ABSL_GUARDED_BY(mu_);
  // Runs in flight by id (submission order), and their slots.
  std::map<uint64_t, std::shared_ptr<Run>> runs_ ABSL_GUARDED_BY(mu_);
  std::vector<bool> slot_busy_ ABSL_GUARDED_BY(mu_);
  uint64_t next_run_id_ ABSL_GUARDED_BY(mu_) = 0;
  // The Program or Reset in progress.
  Op op_ ABSL_GUARDED_BY(mu_) = Op::kNone;
  uint64_t op_id_ ABSL_GUARDED_BY(mu_) = 0;  // matches the op's timer
  Clock::TimerId op_timer_ ABSL_GUARDED_BY(mu_) = 0;
  DoneCallback op_done_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const Bitstream> programming_ ABSL_GUARDED_BY(mu_);
  int reset_parts_ ABSL_GUARDED_BY(mu_) = 0;
  // Kernel computations queued for the worker thread.
  std::deque<std::shared_ptr<Run>> work_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;

  std::thread worker_;  // runs the kernel unless compute_inline_ or !compute_
};

}  // namespace hgpipe::accel

#endif  // HGPIPE_ACCEL_EMULATED_BOARD_H_
