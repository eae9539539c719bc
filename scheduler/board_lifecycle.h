// The boards' life cycle (docs/scheduling.md, "Faults: a board's life
// cycle"): the pool of boards, their phases, the watchdog, recovery (reset,
// reprogram, probe, backoff, retirement), periodic canaries, and giving a
// board to a model (programming, draining). The Scheduler hands all of it
// here and keeps requests, queues and runs; what the life cycle needs back
// from the Scheduler is the Host interface below.
//
// Thread safety: every method runs under the owning Scheduler's lock
// (scheduler/lock.h). Board calls (Reset, Program, the probe's Submit) are
// made without it, from timers the life cycle sets through Host::At; their
// completions come back through Host::Locked.
#ifndef HGPIPE_SCHEDULER_BOARD_LIFECYCLE_H_
#define HGPIPE_SCHEDULER_BOARD_LIFECYCLE_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "accel/board.h"
#include "base/clock.h"
#include "scheduler/lock.h"
#include "scheduler/state.h"

namespace hgpipe::scheduler {

class BoardLifecycle {
 public:
  // Runs under the scheduler's lock, adding what to deliver after it to
  // the Pending.
  using LockedFn = absl::AnyInvocable<void(Pending*)>;

  // What the life cycle needs from its Scheduler. Every method is called
  // under the scheduler's lock.
  class Host {
   public:
    virtual ~Host() = default;
    // Calls `fn` at `due` from the clock's thread, under the lock, then
    // delivers; nothing if the scheduler is being destroyed by then.
    virtual void At(absl::Time due, LockedFn fn) ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) = 0;
    // Calls `fn` at `due` from the clock's thread without the lock.
    virtual void AtUnlocked(absl::Time due, absl::AnyInvocable<void()> fn)
        ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) = 0;
    // Puts a run's images back at the heads of their queues.
    virtual void Requeue(Run& run, Pending* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) = 0;
    // Forms runs for `m` if a board can take them.
    virtual void Dispatch(ModelState& m, Pending* p)
        ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) = 0;
    // Answers the requests of `m` whose deadline can no longer be met.
    virtual void Expire(ModelState& m, Pending* p)
        ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) = 0;
    // Gives models with demand and no board a board (rebalance.h).
    virtual void Rebalance(Pending* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) = 0;
    // `m` has lost a board: if none can serve it any more, fails what it
    // queued (UNAVAILABLE, with `why`).
    virtual void LostBoard(ModelState& m, const absl::Status& why, Pending* p)
        ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) = 0;
    // Runs `fn` under the lock from a thread that does not hold it (a
    // board's completion), then delivers.
    virtual void Locked(LockedFn fn) ABSL_LOCKS_EXCLUDED(scheduler_lock) = 0;
  };

  struct Options {
    Clock* clock = nullptr;  // required
    // Scheduler::Options's fields of the same names.
    absl::Duration watchdog_margin;
    absl::Duration recovery_backoff;
    int max_recovery_attempts = 5;
    bool reprogram = true;
    absl::Duration canary_interval;
  };

  // `host` must outlive the life cycle.
  BoardLifecycle(const Options& options, Host* host);
  BoardLifecycle(const BoardLifecycle&) = delete;
  BoardLifecycle& operator=(const BoardLifecycle&) = delete;

  // ---- The pool.
  // Adds a board (idle until given a phase), taking ownership; its id is
  // its index, never reused.
  BoardState& Add(std::unique_ptr<accel::Board> board)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  // Every board ever added, by id.
  const std::vector<std::unique_ptr<BoardState>>& boards() const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) {
    return boards_;
  }
  BoardState* Find(int id) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  // Takes an idle board out for good (phase kRemoved) and returns it, to be
  // destroyed without the lock. FailedPrecondition (saying what it is
  // doing) unless idle with nothing outstanding.
  absl::StatusOr<std::unique_ptr<accel::Board>> Remove(BoardState& b, Pending* p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  // No more timers or board operations: the scheduler is being destroyed.
  void Stop() ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) { stopping_ = true; }
  bool stopping() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) { return stopping_; }
  // Board operations (Reset, Program, probe runs, abandoned runs, outputs
  // being delivered) whose completions have not arrived; the scheduler's
  // destructor waits for none.
  uint64_t operations() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) { return operations_; }
  void BeginOperation() ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) { ++operations_; }
  void EndOperation() ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) { --operations_; }

  // ---- Phases.
  // Records a phase change (and the Observer event). Serving adds `b` to
  // its model's serving boards, leaving serving removes it.
  void SetPhase(BoardState& b, BoardPhase phase, ModelState* m, const absl::Status& why, Pending* p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  // A board added with its model, programmed before the scheduler had it:
  // serving at once, and proved by a canary at once.
  void ServeNew(BoardState& b, ModelState& m, std::shared_ptr<const accel::Bitstream> loaded,
                Pending* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  // Whether a board serves `m` or can be given to it.
  bool Servable(const ModelState& m) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  // The earliest a board can serve `m`: now if one does, else from the
  // boards recovering or programmed for it (as long as their last Reset and
  // Program took) or that could be given to it; InfiniteFuture if none.
  absl::Time ReadyEstimate(const ModelState& m, absl::Time now) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  // Gives `b` to `m`: drained first if it has runs in flight, probed only
  // if it still holds m's bitstream, else programmed.
  void Give(BoardState& b, ModelState& m, Pending* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  // The model of `b` (idle, recovering or retired boards of a model being
  // removed) is gone: serving boards go idle, the others forget it.
  void ModelRemoved(BoardState& b, Pending* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);

  // ---- Runs, as they concern the life cycle.
  // A run left for `b` at `now`: arms the watchdog and the next canary.
  void RunFormed(BoardState& b, absl::Time now, bool requests)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  // A run of `b` completed (OK or not): a draining board with nothing left
  // is programmed for its next model; a canary waiting for a slot goes.
  void RunCompleted(BoardState& b, absl::Time now, Pending* p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  // `b` failed (a run failed or overshot the watchdog, or its canary
  // differed): its runs in flight are abandoned (requeued), it is reset,
  // and then reprogrammed and probed, or retired.
  void Fail(BoardState& b, const absl::Status& why, Pending* p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  // An abandoned run's completion arrived, or a delivery from a slot
  // finished: recovery may go on.
  void ContinueRecovery(BoardState& b, Pending* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  // The canary's output in `b`'s slot against the known one: OK, or
  // DataLoss naming the board, the model and what differed (also reported
  // to the Observer).
  absl::Status CheckCanary(BoardState& b, const ModelState& m, const accel::Canary& c, int slot,
                           Pending* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);

 private:
  void Program(BoardState& b, ModelState* m, Pending* p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  void Probe(BoardState& b, ModelState* m, Pending* p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  void Reset(BoardState& b) ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  void RetryRecovery(BoardState& b, const absl::Status& why, Pending* p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  void FailProbe(BoardState& b, const absl::Status& why, Pending* p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  void Admit(BoardState& b, Pending* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  void ArmWatchdog(BoardState& b) ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  absl::Time WatchdogDue(const BoardState& b) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  void OnWatchdog(BoardState& b, Pending* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  void ArmCanary(BoardState& b, absl::Time due) ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  void OnCanaryTimer(BoardState& b, uint64_t generation, Pending* p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  void OnOperationDone(BoardState& b, BoardPhase phase, absl::Status status, Pending* p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  void OnProbeDone(BoardState& b, int slot, uint64_t generation, const accel::Canary* canary,
                   absl::Status status, Pending* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  // The board calls, without the lock.
  void StartReset(int board_id) ABSL_LOCKS_EXCLUDED(scheduler_lock);
  void StartProgram(int board_id) ABSL_LOCKS_EXCLUDED(scheduler_lock);
  void StartProbe(int board_id) ABSL_LOCKS_EXCLUDED(scheduler_lock);

  const Options options_;
  Host* const host_;
  std::vector<std::unique_ptr<BoardState>> boards_ ABSL_GUARDED_BY(scheduler_lock);
  uint64_t operations_ ABSL_GUARDED_BY(scheduler_lock) = 0;
  bool stopping_ ABSL_GUARDED_BY(scheduler_lock) = false;
};

}  // namespace hgpipe::scheduler

#endif  // HGPIPE_SCHEDULER_BOARD_LIFECYCLE_H_
