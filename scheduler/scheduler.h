// The scheduler: per-model priority queues, run forming, routing over a pool
// of boards, deadlines, board recovery and reprogramming. It knows boards only
// through accel::Board and time only through hgpipe::Clock, so the same code
// serves on the wall clock and runs as a discrete-event simulation on a
// SimClock (plan/simulation.h). It never links gRPC. docs/scheduling.md has
// the pictures; the contracts are here.
//
// Queues. Each model has one FIFO per priority level (1 = highest). A run
// takes images from the highest non-empty level first; a lower level whose
// oldest image has waited `max_starvation` goes first once, so no level
// starves. A run that holds lower-priority images is capped at
// `low_priority_run_images` (default 1): a higher-priority image that
// arrives later waits behind at most that many images on a board.
//
// Dispatch. A board whose input stream is idle gets queued images at once
// (after at most `max_queue_delay`). A busy board gets its next run when its
// predicted input end comes within `dispatch_lead`, so the run is queued
// before the current one drains (image overlap) and carries everything that
// queued meanwhile: small runs when idle, up to `max_images_per_run` under
// load. Each run goes to the board of its model where its first image is
// predicted to complete first (each board's timing model, fed with the runs
// in flight there, plus how late it has been), and takes only the images
// that board completes before any other could (water-filling): a burst
// spreads over idle boards, a saturated board takes up to its cap. A board
// holds at most num_slots() runs: its in-flight window, which the boards
// size from their pipeline depth.
//
// Deadlines. A request whose deadline cannot be met (predicted at Enqueue, or
// at dispatch for the board chosen) is answered DEADLINE_EXCEEDED and never
// reaches a board; queued requests are also expired by a timer. A deadline
// is a promise: a request still on a board when it passes (a slow or hung
// board) is answered DEADLINE_EXCEEDED then, and the board's result, when
// it comes, is dropped (Observer::LateResultsDropped).
//
// Canaries. A model may have a canary (an input with its known output). A
// board's probe after every (re)programming runs it, and every serving
// board runs it again every `canary_interval`, as a run of its own among
// the model's; an output that differs in any bit takes the board out of
// service as a failed run does (Observer::CanaryFailed says what differed).
//
// Faults. A run that fails, or that overshoots its predicted completion by
// `watchdog_margin`, takes its board out of service: every run in flight
// there is abandoned (its images go back to the head of their queues, for
// the model's other boards; a late completion is ignored), the board is
// Reset, reprogrammed with its model's bitstream, probed with a one-image
// run, and re-admitted. Recovery that fails is retried with backoff, up to
// `max_recovery_attempts`, then the board is retired. Every image is
// answered exactly once.
//
// Reprogramming. A model with queued images and no board is given one: an
// idle board (no in-flight run, its model has nothing queued), or one drained
// from a model with several boards, is programmed with the model's
// bitstream. Queued requests wait (subject to their deadlines), none is
// dropped.
//
// Data path. When a run is formed, each of its images is filled into the
// board's slot (InferRequest::Fill: a copy, or preprocessing straight into
// the slot), off the clock's timer thread: on the caller of Enqueue when it
// formed the run and the fill is light, else on Options::fill_executor.
// A run's fill delay is the fill executor's backlog (the decodes of runs
// formed and not yet filled, at each model's learned cost per image,
// spread over Executor::concurrency threads) plus the run's own fill: its
// decodes, each thread taking its share in turn, or a copy's learned
// time. Dispatch forms a
// busy board's next run that much earlier than `dispatch_lead` alone, and
// predicts and admits deadlines with it, so decoding at dispatch neither
// starves a board nor breaks a deadline promise. When decoding is slower
// than the boards, a deadline is admitted against the executor's rate for
// the images ahead, not the boards' alone. The backlog is the one now, not
// a smoothed past: a burst that made fills wait is forgotten once it is
// filled, so an idle executor never refuses a deadline it can meet.
// When the run completes, each image's output words go to its request
// (InferRequest::Output) with no scheduler lock held, on the thread that
// answers.
//
// Rooms. This class keeps the API, the lock and the deliver-after-unlock
// step, and forms, launches and completes runs; it hands the rest to its
// rooms, each under its lock (scheduler/lock.h): a model's queue
// (request_queue.h), run sizing (run_sizing.h, pure functions), the boards'
// life cycle (board_lifecycle.h) and rebalancing (rebalance.h).
// docs/scheduling.md has the map.
//
// Names are for the edge: AddModel returns a ModelHandle that every later
// call takes; the name only appears in messages and Observer::ModelAdded.
//
// Thread safety: all public methods are thread-safe.
#ifndef HGPIPE_SCHEDULER_SCHEDULER_H_
#define HGPIPE_SCHEDULER_SCHEDULER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "accel/board.h"
#include "base/clock.h"
#include "base/executor.h"
#include "base/mutex.h"
#include "scheduler/board_lifecycle.h"
#include "scheduler/infer_request.h"
#include "scheduler/lock.h"
#include "scheduler/model_options.h"
#include "scheduler/observer.h"
#include "scheduler/state.h"

namespace hgpipe::scheduler {

// A model added to a Scheduler: what every later call about it takes. A
// cheap value; a default-constructed handle names no model. Its id is the
// Observer's model id.
class ModelHandle {
 public:
  ModelHandle() = default;
  bool valid() const { return id_ >= 0; }
  int id() const { return id_; }
  friend bool operator==(ModelHandle a, ModelHandle b) { return a.id_ == b.id_; }

 private:
  friend class Scheduler;
  explicit ModelHandle(int id) : id_(id) {}
  int id_ = -1;
};

class Scheduler final : private BoardLifecycle::Host {
 public:
  struct Options {
    // Required; must outlive the scheduler.
    Clock* clock = nullptr;
    // Optional; must outlive the scheduler.
    Observer* observer = nullptr;
    // Where runs are filled (InferRequest::Fill) when not on the caller of
    // Enqueue: those formed by timers and board completions, and every run
    // holding heavy fills (decoding). Optional; must outlive the scheduler.
    // Default: none: every run is filled on the thread that formed it.
    Executor* fill_executor = nullptr;
    // How far ahead of a busy board's predicted input end its next run is
    // formed: covers a light fill, the run overhead and timer jitter. The
    // model's observed fill time (decoding) is added to it.
    // Default: 1 ms (about 7 images at HG-PIPE's interval).
    absl::Duration dispatch_lead = absl::Milliseconds(1);
    // A run still out this long after its predicted completion marks its
    // board failed. Zero disables the watchdog. Default: 2 s.
    absl::Duration watchdog_margin = absl::Seconds(2);
    // Delay before retrying a recovery that failed; doubles per attempt.
    absl::Duration recovery_backoff = absl::Milliseconds(500);
    int max_recovery_attempts = 5;
    // Whether boards may be reprogrammed for models with demand and no board.
    bool reprogram = true;
    // How often each serving board runs its model's canary (models with
    // one), besides the probe after every (re)programming. Zero: only then.
    absl::Duration canary_interval = absl::ZeroDuration();
  };

  struct BoardStatus {
    int board_id;
    std::string name;
    int model_id;  // -1: none
    BoardPhase phase;
    uint32_t images_in_flight;
    BoardCounts counts;
    // Out of service after a failure: backing off, or being reset,
    // reprogrammed or probed to return (phase kRecovering, kProgramming or
    // kProbing). False for the same phases after a move or a load.
    bool recovering = false;
  };

  struct ModelStatus {
    ModelHandle model;
    std::string name;
    bool ready;
    uint64_t queued_images;
  };

  static absl::StatusOr<std::unique_ptr<Scheduler>> Create(Options options);
  // Shuts down (see Shutdown), then destroys the boards. On a SimClock,
  // advance the clock until idle first if a board may be recovering.
  ~Scheduler() override;
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Adds a model and the boards that serve it (possibly none: it gets one by
  // reprogramming), taking ownership. Boards must hold options.bitstream (or
  // its geometry, without one). The Observer hears of the model and the
  // boards before this returns. Names need not be unique (a reload adds the
  // model again while the old load drains). InvalidArgument.
  absl::StatusOr<ModelHandle> AddModel(const ModelOptions& options,
                                       std::vector<std::unique_ptr<accel::Board>> boards);
  // Adds a board serving no model, free to be programmed. Returns its id.
  int AddIdleBoard(std::unique_ptr<accel::Board> board);

  // Destroys an idle board (no model, no operation under way): the
  // emulated boards made for one load of a model go with it. The id stays,
  // in phase kRemoved. NotFound (no such id), FailedPrecondition (the board
  // is not idle: serving, being programmed for a model, recovering...),
  // Unavailable (idle, but runs of the model it served, a delivery or a
  // reset are still to finish: try again shortly).
  absl::Status RemoveBoard(int board_id);

  // Stops accepting requests for `model`; once every accepted one is
  // answered, releases its boards (idle, their bitstream kept), then calls
  // `done` (no lock held). NotFound if no such model or already removed.
  absl::Status RemoveModel(ModelHandle model, absl::AnyInvocable<void()> done);

  // Queues a request. On OK the scheduler will call request->Done exactly
  // once. On error it does not; the caller answers with the returned status:
  // NotFound (no such model, or being removed), InvalidArgument (no images,
  // bad priority), ResourceExhausted (queue full), DeadlineExceeded (cannot
  // finish in time), Unavailable (shutting down, or no board can serve it).
  absl::Status Enqueue(ModelHandle model, std::unique_ptr<InferRequest> request);

  // When a request of `images` images at `priority` (0: the model's default)
  // would be answered if it were queued now: the prediction Enqueue checks
  // deadlines against (the queue ahead at its level and above, spread over
  // the model's boards, plus the pipeline latency; without a serving board,
  // from when one could serve). For routing between a model's variants
  // (scheduler/variant_router.h). NotFound (no such model, or being
  // removed), InvalidArgument (bad priority), Unavailable (no board can
  // serve it).
  absl::StatusOr<absl::Time> PredictCompletion(ModelHandle model, uint32_t images,
                                               uint32_t priority = 0) const;
  // Gives the board `board_id` to `model` as rebalancing does
  // (scheduler/rebalance.h, MoveBoard). NotFound (no such board or model),
  // FailedPrecondition (see MoveBoard there; also while shutting down).
  absl::Status MoveBoard(int board_id, ModelHandle model);

  // Whether the model is added, not removed, and can be served: a board
  // serves it or can be given to it.
  bool ModelReady(ModelHandle model) const;
  // The boards serving `model`; every board for a default handle.
  std::vector<BoardStatus> Boards(ModelHandle model = ModelHandle()) const;
  // The models added and not being removed.
  std::vector<ModelStatus> Models() const;

  // Refuses new requests, then waits until every accepted one is answered.
  // Idempotent.
  void Shutdown();

 private:
  explicit Scheduler(Options options);

  ModelState* FindLocked(ModelHandle h) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  BoardState& AddBoardLocked(std::unique_ptr<accel::Board> board)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  // When n images at `level` would be answered, from the queue ahead and the
  // model's boards.
  absl::Time EstimateDoneLocked(const ModelState& m, uint32_t level, uint32_t n,
                                absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  // How long after forming it a run of `n` images of `m` is expected in its
  // slot: the executor's backlog spread over its threads, then the run's
  // own fill: its decodes, each thread taking its share in turn, if
  // `decoding` (the share of the model's runs that decode, when it is not
  // known yet), else a copy.
  absl::Duration FillDelayLocked(const ModelState& m, uint64_t n, double decoding) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  // The fill executor's threads (1 without one: fills then run in turn).
  int FillThreads() const { return fill_executor_ == nullptr ? 1 : fill_executor_->concurrency(); }
  // The most images a run of `m` takes: max_images_per_run, or one round
  // of the executor's threads when deadlines are queued, the model's runs
  // mostly decode and the decodes are slower than a board takes images.
  uint32_t RunCapLocked(const ModelState& m) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);

  // Forms runs for `m` and claims their slots; expires requests that can no
  // longer meet their deadline.
  void DispatchLocked(ModelState& m, Pending* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  void ExpireLocked(ModelState& m, absl::Time now, Pending* p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  // Sets `r`'s status (if it has none) and answers `images` of its images.
  void AnswerFailedLocked(ModelState& m, Request* r, const absl::Status& status, uint32_t images,
                          Pending* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  // Answers `r` with `status` for its queued images; images on a board
  // finish first.
  void FailRequestLocked(ModelState& m, Request* r, const absl::Status& status, Pending* p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  // Answers `r` now with its status (once no run reads or writes its
  // buffers) and drops the board's results for it when they come; `late`:
  // they count as late results (its deadline passed).
  void DetachLocked(ModelState& m, Request& r, Pending* p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  // Counts one answered image of `r`; `r` is done when it was the last.
  void AnswerImageLocked(ModelState& m, Request* r, Pending* p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  void FailQueuedLocked(ModelState& m, const absl::Status& status, Pending* p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  void MaybeFinishRemovalLocked(ModelState& m, Pending* p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  void ArmDispatchTimerLocked(ModelState& m, absl::Time due)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);

  // BoardLifecycle::Host.
  void At(absl::Time due, BoardLifecycle::LockedFn fn) override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  void AtUnlocked(absl::Time due, absl::AnyInvocable<void()> fn) override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  void Requeue(Run& run, Pending* p) override ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  void Dispatch(ModelState& m, Pending* p) override ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) {
    DispatchLocked(m, p);
  }
  void Expire(ModelState& m, Pending* p) override ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  void Rebalance(Pending* p) override ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  void LostBoard(ModelState& m, const absl::Status& why, Pending* p) override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  void Locked(BoardLifecycle::LockedFn fn) override ABSL_LOCKS_EXCLUDED(scheduler_lock);

  // Fills the run's images into its slot (on this thread, or in parallel
  // on the fill executor), then submits it. `on_caller`: formed by Enqueue
  // on its caller's thread.
  void Launch(std::unique_ptr<Run> run, bool on_caller) ABSL_LOCKS_EXCLUDED(scheduler_lock);
  // Fills image i of the run into its slot; on error the image is zeroed
  // and the request's later images are not filled from then on. Sets
  // *skipped (and fills nothing) when its request was answered early or an
  // earlier image of it failed (Request::fill_limit).
  absl::Status FillImage(Run& run, size_t i, bool* skipped) ABSL_LOCKS_EXCLUDED(scheduler_lock);
  // Fills every image of the run on this thread, recording errors.
  void FillAll(Run& run) ABSL_LOCKS_EXCLUDED(scheduler_lock);
  void Submit(std::unique_ptr<Run> run) ABSL_LOCKS_EXCLUDED(scheduler_lock);
  // For a filled run about to be submitted: the images whose requests were
  // all answered early (their results would be dropped) leave it. The
  // places they leave before the run's new end take its last images
  // instead: `moves` says which to copy where in the slot, outside the
  // lock. Their input time goes back to the board's prediction where no
  // later run depends on it. If that is every image, the run is not sent:
  // its slot is free and the next run is formed. Returns how many left.
  struct SlotMove {
    uint32_t from, to;  // image places in the run's slot
  };
  using SlotMoves = absl::InlinedVector<SlotMove, 2>;
  uint32_t WithholdUnwantedLocked(Run& run, SlotMoves* moves, Pending* p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  // Counts a run's task on the fill executor (Shutdown waits for them).
  void FillTaskStarted() ABSL_LOCKS_EXCLUDED(scheduler_lock);
  void FillTaskDone() ABSL_LOCKS_EXCLUDED(scheduler_lock);
  void OnRunDone(std::unique_ptr<Run> run, absl::Status status) ABSL_LOCKS_EXCLUDED(scheduler_lock);
  // The rest of a completed run, with its outputs delivered (if any), or of
  // one withheld whole (no images left): the slot back, its images answered
  // (or requeued if it failed), the board's next step, the next runs.
  void CompleteRunLocked(Run& run, const absl::Status& status, Pending* p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);

  // Sets a timer calling `fn` (which takes the lock itself) at `due`,
  // tracked so the destructor can cancel it.
  void RunAtLocked(absl::Time due, absl::AnyInvocable<void()> fn)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  // The last step of every timer callback: until it, the timer stays in
  // timers_, so the destructor waits for a callback still using `this`.
  void ForgetTimer(uint64_t seq) ABSL_LOCKS_EXCLUDED(scheduler_lock);
  // Marks `p` as answering requests (Shutdown waits for it).
  void CountLocked(Pending* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  void Finish(Pending p) ABSL_LOCKS_EXCLUDED(scheduler_lock);
  bool Idle() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  bool BoardsQuiet() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);

  // Constant after construction.
  Clock* const clock_;
  Observer* const observer_;
  Executor* const fill_executor_;
  const Options options_;

  mutable hgpipe::Mutex mu_;
  // State below is protected by mu_, which holds scheduler_lock.
  bool accepting_ ABSL_GUARDED_BY(scheduler_lock) = true;
  bool destroying_ ABSL_GUARDED_BY(scheduler_lock) = false;
  // Every model added, by id (never freed: handles stay safe).
  std::vector<std::unique_ptr<ModelState>> models_ ABSL_GUARDED_BY(scheduler_lock);
  BoardLifecycle lifecycle_ ABSL_GUARDED_BY(scheduler_lock);
  // Accepted requests not yet answered, and callbacks being delivered.
  uint64_t open_requests_ ABSL_GUARDED_BY(scheduler_lock) = 0;
  uint64_t delivering_ ABSL_GUARDED_BY(scheduler_lock) = 0;
  // Runs handed to the fill executor whose task has not returned: the task
  // still uses the scheduler after the run's requests may be answered.
  uint64_t fill_tasks_ ABSL_GUARDED_BY(scheduler_lock) = 0;
  // The decode work of every model's runs formed and not yet filled
  // (Run::backlog, at each model's learned cost): what a run formed now
  // waits for before its own tasks run.
  absl::Duration fill_backlog_ ABSL_GUARDED_BY(scheduler_lock);
  // Timers pending or still running, by our own sequence number (a callback
  // cannot know the id RunAt returns), so the destructor can cancel exactly
  // those and wait for the running ones.
  absl::flat_hash_map<uint64_t, Clock::TimerId> timers_ ABSL_GUARDED_BY(scheduler_lock);
  uint64_t timer_seq_ ABSL_GUARDED_BY(scheduler_lock) = 0;
};

}  // namespace hgpipe::scheduler

#endif  // HGPIPE_SCHEDULER_SCHEDULER_H_
