// Fault injection as a board decorator: a FaultyBoard wraps any Board
// (emulated or XRT), forwards everything to it, and makes its runs fail,
// hang, slow down or return wrong outputs as a FaultInjection says, to
// exercise the scheduler's recovery (watchdog, reset, canaries, failover)
// without touching the production boards.
//
// Thread safety and callbacks: Board's contract. Completions come from the
// wrapped board's threads, except slowed runs (from `clock`'s timer thread)
// and runs the wrapper answers itself on Reset or destruction (on the
// caller's thread).
#ifndef HGPIPE_ACCEL_FAULTY_BOARD_H_
#define HGPIPE_ACCEL_FAULTY_BOARD_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "accel/board.h"
#include "base/clock.h"
#include "base/mutex.h"

namespace hgpipe::accel {

// A fault a FaultyBoard injects into the runs of the board it wraps. Runs
// are counted from the wrapper's creation and again from each successful
// Program: runs 1..after_runs behave, every later one has the fault.
//
//   kFail  the run completes (when the board completes it) with UNAVAILABLE,
//          and Health() turns UNAVAILABLE, as a board that lost its PCIe link.
//   kHang  the run never completes until Reset aborts it. Health() stays OK:
//          a hung board looks fine, which is why the scheduler has a
//          watchdog.
//   kSlow  the run takes slow_factor times what the board took (latency and
//          the interval between completions scaled; the manifest keeps the
//          declared timing).
//   kCorrupt  the run completes OK when the board completes it, with a wrong output
//          (the lowest bit of each image's first output word flipped), as a
//          bad bitstream or a flipped bit would: only a canary (a known
//          input with its known output) catches it.
//
// Reset clears a fault for good unless it is `permanent`. A triggered kFail
// makes Program fail with UNAVAILABLE until a Reset clears it, so a permanent
// one makes every later Program fail (a dead card); a permanent kHang or
// kSlow triggers again after `after_runs` runs counted from the
// re-programming (so a probe run after recovery hangs again with
// after_runs = 0).
struct FaultInjection {
  enum class Kind { kNone, kFail, kHang, kSlow, kCorrupt };
  Kind kind = Kind::kNone;
  // Runs that succeed before the fault.
  uint64_t after_runs = 0;
  // kSlow only: >= 1.
  double slow_factor = 4;
  bool permanent = false;

  // The spec ParseFaultInjection reads: "none", "fail@3", "hang@0:permanent",
  // "slow@10:x2.5", ...
  std::string ToString() const;
  friend bool operator==(const FaultInjection&, const FaultInjection&) = default;
};

// Parses a fault spec (e.g. a server flag):
//   "" | "none" | KIND "@" N [":x" FACTOR] [":permanent"]
// where KIND is fail, hang, slow or corrupt, N the runs that succeed first (an
// unsigned integer), and ":xFACTOR" (slow only, FACTOR >= 1, default 4) the
// slow-down. InvalidArgument quoting the spec otherwise.
absl::StatusOr<FaultInjection> ParseFaultInjection(absl::string_view spec);

class FaultyBoard final : public Board {
 public:
  // InvalidArgument for a null board or clock, or a slow_factor below 1.
  // `clock` (the one the wrapped board runs on, for slowed runs) must
  // outlive the wrapper.
  static absl::StatusOr<std::unique_ptr<FaultyBoard>> Create(std::unique_ptr<Board> board,
                                                             FaultInjection fault, Clock* clock);
  // The wrapped board is destroyed first (its runs answered as it answers
  // them), then runs the wrapper holds (hung or slowed) are answered
  // CANCELLED on the destroying thread.
  ~FaultyBoard() override;
  FaultyBoard(const FaultyBoard&) = delete;
  FaultyBoard& operator=(const FaultyBoard&) = delete;

  const BoardInfo& info() const override { return board_->info(); }
  const BitstreamManifest& manifest() const override { return board_->manifest(); }
  int num_slots() const override { return board_->num_slots(); }
  uint32_t max_images_per_run() const override { return board_->max_images_per_run(); }
  RunSlotBuffers slot(int index) override { return board_->slot(index); }
  // The wrapped board's, plus: FailedPrecondition (at once) after a Program
  // that the injected kFail made fail.
  void Submit(int index, uint32_t n, DoneCallback done) override;
  // UNAVAILABLE after an injected kFail; FAILED_PRECONDITION after a Program
  // it made fail; otherwise the wrapped board's (a hung or slow board looks
  // healthy).
  absl::Status Health() const override;
  // The wrapped board's, plus: FailedPrecondition (at once) while a hung or
  // slowed run is held; after a triggered kFail, UNAVAILABLE once the wrapped
  // board has programmed.
  void Program(std::shared_ptr<const Bitstream> bitstream, DoneCallback done) override;
  // The wrapped board's; runs the wrapper holds are answered ABORTED before
  // `done`. Clears the fault for good unless it is permanent.
  void Reset(DoneCallback done) override;

  const FaultInjection& fault() const { return fault_; }

 private:
  struct Run;
  FaultyBoard(std::unique_ptr<Board> board, FaultInjection fault, Clock* clock);
  // The wrapped board completed `run`, or refused it.
  void OnDone(const std::shared_ptr<Run>& run, absl::Status status) ABSL_LOCKS_EXCLUDED(mu_);
  void OnSlowTimer(uint64_t id) ABSL_LOCKS_EXCLUDED(mu_);
  // Flips the lowest bit of each of the run's images' first output word.
  void Corrupt(const Run& run);

  const FaultInjection fault_;
  Clock* const clock_;
  const std::string name_;        // the wrapped board's
  std::unique_ptr<Board> board_;  // reset first by the destructor

  mutable hgpipe::Mutex mu_;
  // Whether fault_ can still trigger, runs counted towards it, and what
  // has triggered.
  bool armed_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t runs_counted_ ABSL_GUARDED_BY(mu_) = 0;
  bool failed_ ABSL_GUARDED_BY(mu_) = false;  // kFail triggered
  bool slowed_ ABSL_GUARDED_BY(mu_) = false;  // kSlow triggered
  // Why the last Program failed because of kFail; OK otherwise.
  absl::Status program_error_ ABSL_GUARDED_BY(mu_);
  // Bumped by Reset: a run of an older epoch that completes is answered
  // ABORTED instead of being held.
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_run_id_ ABSL_GUARDED_BY(mu_) = 0;
  // Slowed delivery: when the wrapped board last completed a run, and when
  // the wrapper last delivers one.
  absl::Time last_board_done_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time last_delivery_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // Runs the wrapped board has completed and the wrapper holds: hung (no
  // timer) or slowed (until their timer), by id.
  std::map<uint64_t, std::shared_ptr<Run>> held_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hgpipe::accel

#endif  // HGPIPE_ACCEL_FAULTY_BOARD_H_
