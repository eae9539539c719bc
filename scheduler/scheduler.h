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
// spreads over idle boards, a saturated board takes up to its cap. A board holds at most num_slots() runs: its in-flight window, which
// the boards size from their pipeline depth.
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
// Thread safety: all public methods are thread-safe.
#ifndef HGPIPE_SCHEDULER_SCHEDULER_H_
#define HGPIPE_SCHEDULER_SCHEDULER_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <set>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "accel/board.h"
#include "accel/canary.h"
#include "accel/pipeline_model.h"
#include "base/clock.h"
#include "base/mutex.h"

namespace hgpipe::scheduler {

// One request: n images for one model. Buffers are the caller's and must stay
// valid until `done` has been called.
struct InferRequest {
  // n_images * input_bytes int8 values, each image flat [tokens][values].
  const int8_t* images = nullptr;
  uint32_t n_images = 0;
  // Receives n_images * classes decoded logits, image-major, before done(OK).
  int32_t* logits = nullptr;
  // 1 (highest) .. the model's priority_levels; 0 means the model's default.
  uint32_t priority = 0;
  // Answered DEADLINE_EXCEEDED, without reaching a board, if it cannot
  // complete by then; answered DEADLINE_EXCEEDED at this time at the latest
  // (done is then called while a board may still compute its images; the
  // scheduler no longer touches `images` or `logits` after that call).
  absl::Time deadline = absl::InfiniteFuture();
  // Called exactly once with OK or the reason the request failed, on a
  // scheduler or board thread, with no scheduler lock held. Must not block.
  absl::AnyInvocable<void(absl::Status)> done;
};

struct ModelOptions {
  std::string name;
  // What a board is programmed with to serve the model. Required to give the
  // model a board at run time (reprogramming, recovery); boards added with
  // the model must already hold it.
  std::shared_ptr<const accel::Bitstream> bitstream;
  // Default: 32. Capped by each board's max_images_per_run().
  uint32_t max_images_per_run = 32;
  // How long an idle board waits for more images before starting a run that
  // is not full. Default: 0 (start at once: the pipeline is batch-1).
  absl::Duration max_queue_delay = absl::ZeroDuration();
  // Enqueue refuses a request that would make the images queued at its
  // priority level and higher exceed this (lower levels do not count, so a
  // low-priority flood never refuses high priority). Default: 4096.
  uint32_t max_queue_images = 4096;
  // Priority levels 1..priority_levels; requests with priority 0 get
  // default_priority.
  uint32_t priority_levels = 1;
  uint32_t default_priority = 1;
  // Longest a level's oldest image waits while higher levels keep boards
  // busy before that level goes next for one run.
  absl::Duration max_starvation = absl::Milliseconds(100);
  // Most images in a run that holds images below the highest level (with
  // more than one level).
  uint32_t low_priority_run_images = 1;
  // The bitstream's canary (accel/canary.h), or none: the probe after
  // (re)programming is then a zero image whose output is not checked.
  std::shared_ptr<const accel::Canary> canary;
};

// Where a board is in its life cycle.
enum class BoardPhase {
  kServing,     // takes runs for its model
  kIdle,        // no model: free to be programmed for one
  kDraining,    // finishing its runs before reprogramming for another model
  kProgramming, // loading a bitstream
  kProbing,     // running the one-image probe before (re)admission
  kRecovering,  // failed: runs abandoned, reset in progress or backing off
  kRetired,     // gave up after max_recovery_attempts
  kRemoved,     // destroyed by RemoveBoard; its id is not reused
};
absl::string_view BoardPhaseName(BoardPhase phase);

// What has happened to a board so far, counted by the scheduler.
struct BoardCounts {
  uint64_t failures = 0;      // runs failed or timed out, recovery steps failed
  uint64_t recoveries = 0;    // successful re-admissions
  uint64_t programmings = 0;  // successful Program calls
};

// Receives what the scheduler does, for metrics. Ids are dense: model ids
// in AddModel order (never reused), board ids in order of addition. Methods
// other than QueueDepth are called with no scheduler lock held, possibly
// concurrently; all must be cheap.
class Observer {
 public:
  virtual ~Observer() = default;
  // Called under the scheduler's lock, so values arrive in order: must not
  // call back into the scheduler.
  virtual void QueueDepth(int model_id, uint64_t images) {}
  // A run left for a board. `queue_waits` has one entry per image.
  virtual void RunStarted(int model_id, int board_id, uint32_t images,
                          absl::Span<const absl::Duration> queue_waits,
                          absl::Duration input_time) {}
  // Not called for abandoned runs (their images are requeued).
  virtual void RunFinished(int model_id, int board_id, uint32_t images,
                           absl::Duration device_time,
                           const absl::Status& status) {}
  // A board changed phase; `model_id` is the model it serves or is being
  // given (-1 for none). `why` is empty or the failure that caused it.
  // `counts` are the board's as of this change (every count moves together
  // with a phase change, so they are never behind).
  virtual void BoardPhaseChanged(int board_id, int model_id, BoardPhase phase,
                                 const absl::Status& why, const BoardCounts& counts) {}
  // A board's output for the model's canary differed from the known one:
  // the board leaves service (BoardPhaseChanged follows). `what` says what
  // differed.
  virtual void CanaryFailed(int board_id, int model_id, const absl::Status& what) {}
  // A request expired in the queue (its deadline could not be met).
  virtual void DeadlineExpired(int model_id, uint32_t images) {}
  // Board results that came after their request's deadline, which had
  // already been answered DEADLINE_EXCEEDED: dropped.
  virtual void LateResultsDropped(int model_id, uint32_t images) {}
};

class Scheduler {
 public:
  struct Options {
    // Required; must outlive the scheduler.
    Clock* clock = nullptr;
    // Optional; must outlive the scheduler.
    Observer* observer = nullptr;
    // How far ahead of a busy board's predicted input end its next run is
    // submitted: covers run overhead, packing images on the host and timer
    // jitter. Default: 1 ms (about 7 images at HG-PIPE's interval).
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
  };

  struct ModelStatus {
    int model_id;
    std::string name;
    bool ready;
    uint64_t queued_images;
  };

  static absl::StatusOr<std::unique_ptr<Scheduler>> Create(Options options);
  // Shuts down (see Shutdown), then destroys the boards. On a SimClock,
  // advance the clock until idle first if a board may be recovering.
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Adds a model and the boards that serve it (possibly none: it gets one by
  // reprogramming), taking ownership. Boards must hold options.bitstream (or
  // its geometry, without one). Returns the model id.
  // AlreadyExists, InvalidArgument.
  absl::StatusOr<int> AddModel(const ModelOptions& options,
                               std::vector<std::unique_ptr<accel::Board>> boards);
  // Adds a board serving no model, free to be programmed. Returns its id.
  int AddIdleBoard(std::unique_ptr<accel::Board> board);

  // Destroys an idle board (no model, no operation under way): the
  // emulated boards made for one load of a model go with it. The id stays,
  // in phase kRemoved. NotFound (no such id), FailedPrecondition (the board
  // is not idle: serving, being programmed for a model, recovering...).
  absl::Status RemoveBoard(int board_id);

  // Stops accepting requests for `model`; once every accepted one is
  // answered, releases its boards (idle, their bitstream kept) and forgets
  // the name, then calls `done` (no lock held). NotFound if no such model.
  absl::Status RemoveModel(absl::string_view model,
                           absl::AnyInvocable<void()> done);

  // Queues a request. On OK the scheduler will call request->done exactly
  // once. On error it does not; the caller answers with the returned status:
  // NotFound (unknown model), InvalidArgument (no images, null buffers, bad
  // priority), ResourceExhausted (queue full), DeadlineExceeded (cannot
  // finish in time), Unavailable (shutting down, or no board can serve it).
  absl::Status Enqueue(absl::string_view model,
                       std::unique_ptr<InferRequest> request);

  // When a request of `images` images at `priority` (0: the model's default)
  // would be answered if it were queued now: the prediction Enqueue checks
  // deadlines against (the queue ahead at its level and above, spread over
  // the model's boards, plus the pipeline latency; without a serving board,
  // from when one could serve). For routing between a model's variants
  // (scheduler/variant_router.h). NotFound (unknown model), InvalidArgument
  // (bad priority), Unavailable (no board can serve it).
  absl::StatusOr<absl::Time> PredictCompletion(absl::string_view model, uint32_t images,
                                               uint32_t priority = 0) const;
  // Gives the board `board_id` to `model` as rebalancing does: a board
  // serving another model stops taking runs, drains, and is reprogrammed and
  // probed (an idle one at once). OK if it already serves or is on its way to
  // `model`. NotFound (no such board or model), FailedPrecondition (the board
  // is not serving or idle, the model has no bitstream, or the board is the
  // last of a model with queued images: that model would only take it back).
  absl::Status MoveBoard(int board_id, absl::string_view model);

  // Whether the model is loaded and can be served: a board serves it or can
  // be given to it.
  bool ModelReady(absl::string_view model) const;
  // The model's id, or -1.
  int ModelId(absl::string_view model) const;
  // The boards serving `model`; every board if `model` is empty.
  std::vector<BoardStatus> Boards(absl::string_view model = "") const;
  std::vector<ModelStatus> Models() const;

  // Refuses new requests, then waits until every accepted one is answered.
  // Idempotent.
  void Shutdown();

 private:
  struct Request;
  struct ImageRef {
    Request* request;
    uint32_t index;
  };
  struct BoardState;
  struct Model;
  struct Run;
  // Work collected under mu_ and carried out after releasing it: runs to
  // launch, requests to answer, observer events.
  struct Pending;

  explicit Scheduler(Options options);

  Model* FindModelLocked(absl::string_view name) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int AddBoardLocked(std::unique_ptr<accel::Board> board)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether a board serves `m` or can be given to it.
  bool ServableLocked(const Model& m) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The earliest a board can serve `m`: now if one does, else from the
  // boards recovering or programmed for it (as long as their last Reset and
  // Program took) or that could be given to it; InfiniteFuture if none.
  absl::Time ReadyEstimateLocked(const Model& m, absl::Time now) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // When n images at `level` would be answered, from the queue ahead and the
  // model's boards.
  absl::Time EstimateDoneLocked(const Model& m, uint32_t level, uint32_t n,
                                absl::Time now) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Forms runs for `m` and claims their slots; expires requests that can no
  // longer meet their deadline.
  void DispatchLocked(Model& m, Pending* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // How many images `best` (ready; its next image done at `first_done`)
  // should take: those it completes before any other board could.
  uint32_t RunSizeLocked(const Model& m, const BoardState& best,
                         absl::Time first_done, absl::Time now) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Takes the images of the next run (at most `max`) in priority order,
  // failing requests that would finish after their deadline from `start`.
  void TakeImagesLocked(Model& m, uint32_t max, absl::Time start,
                        absl::Duration image_time, absl::Duration latency,
                        std::vector<ImageRef>* out, Pending* p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ExpireLocked(Model& m, absl::Time now, Pending* p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Answers `r` with `status` for its queued images; images on a board
  // finish first.
  void FailRequestLocked(Model& m, Request* r, const absl::Status& status,
                         Pending* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The request's deadline passed with images on a board: calls its done
  // now (once no run still reads its images) and drops the board's results
  // when they come.
  void DetachLocked(Model& m, Request& r, Pending* p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Counts one answered image of `r`; `r` is done when it was the last.
  void AnswerImageLocked(Model& m, Request* r, Pending* p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FailQueuedLocked(Model& m, const absl::Status& status, Pending* p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Puts a run's images back at the head of their queues.
  void RequeueLocked(Run& run, Pending* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Board life cycle (docs/scheduling.md, "Faults").
  void SetPhaseLocked(BoardState& b, BoardPhase phase, Model* model,
                      const absl::Status& why, Pending* p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FailBoardLocked(BoardState& b, const absl::Status& why, Pending* p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ContinueRecoveryLocked(BoardState& b, Pending* p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RetryRecoveryLocked(BoardState& b, const absl::Status& why, Pending* p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AdmitLocked(BoardState& b, Pending* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Move `b` to programming / probing for `m`, or reset it. The board call
  // itself starts from the clock's thread, never inside a completion
  // callback of the same board (a board may still count that run in flight).
  void ProgramLocked(BoardState& b, Model* m, Pending* p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ProbeLocked(BoardState& b, Model* m, Pending* p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ResetLocked(BoardState& b) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The probe failed or timed out: its result is ignored from now on.
  void FailProbeLocked(BoardState& b, const absl::Status& why, Pending* p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Fails the model's queued requests if no board can serve it any more.
  void CheckServableLocked(Model& m, const absl::Status& why, Pending* p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Gives models with demand and no board a board.
  void RebalanceLocked(Pending* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Hands `donor` to `m`: drains it, or probes or programs it at once.
  void GiveBoardLocked(BoardState& donor, Model& m, Pending* p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeFinishRemovalLocked(Model& m, Pending* p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ArmWatchdogLocked(BoardState& b) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Time WatchdogDueLocked(const BoardState& b) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnWatchdog(int board_id) ABSL_LOCKS_EXCLUDED(mu_);
  // Canaries (docs/scheduling.md, "Canaries"): the next periodic one for a
  // serving board, and running it as a run of its own.
  void ArmCanaryLocked(BoardState& b, absl::Time due)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnCanaryTimer(int board_id, uint64_t generation) ABSL_LOCKS_EXCLUDED(mu_);
  // The canary's output in `b`'s slot against the known one: OK, or
  // DataLoss naming the board, the model and what differed.
  absl::Status CheckCanaryLocked(BoardState& b, const Model& m, int slot, Pending* p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartReset(int board_id) ABSL_LOCKS_EXCLUDED(mu_);
  void StartProgram(int board_id) ABSL_LOCKS_EXCLUDED(mu_);
  void StartProbe(int board_id) ABSL_LOCKS_EXCLUDED(mu_);
  void OnBoardOpDone(int board_id, BoardPhase phase, absl::Status status)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Sets a timer calling `fn` (which takes mu_ itself) at `due`, tracked so
  // the destructor can cancel it.
  void RunAtLocked(absl::Time due, absl::AnyInvocable<void()> fn)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ArmDispatchTimerLocked(Model& m, absl::Time due)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnDispatchTimer(int model_id, absl::Time due) ABSL_LOCKS_EXCLUDED(mu_);
  // Packs the run's images into its slot and submits it.
  void Launch(std::unique_ptr<Run> run) ABSL_LOCKS_EXCLUDED(mu_);
  void OnRunDone(std::unique_ptr<Run> run, absl::Status status)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Marks `p` as answering requests (Shutdown waits for it).
  void CountLocked(Pending* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Finish(Pending p) ABSL_LOCKS_EXCLUDED(mu_);
  bool Idle() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool BoardsQuiet() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Constant after construction.
  Clock* const clock_;
  Observer* const observer_;
  const Options options_;

  mutable hgpipe::Mutex mu_;
  bool accepting_ ABSL_GUARDED_BY(mu_) = true;
  bool destroying_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::unique_ptr<Model>> models_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int> model_ids_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<BoardState>> boards_ ABSL_GUARDED_BY(mu_);
  // Accepted requests not yet answered, and callbacks being delivered.
  uint64_t open_requests_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t delivering_ ABSL_GUARDED_BY(mu_) = 0;
  // Board operations (Reset, Program, probe runs, abandoned runs) whose
  // callbacks have not arrived.
  uint64_t board_ops_ ABSL_GUARDED_BY(mu_) = 0;
  // Pending timers by our own sequence number (a callback cannot know the id
  // RunAt returns), so the destructor can cancel exactly those.
  absl::flat_hash_map<uint64_t, Clock::TimerId> timers_ ABSL_GUARDED_BY(mu_);
  uint64_t timer_seq_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace hgpipe::scheduler

#endif  // HGPIPE_SCHEDULER_SCHEDULER_H_
