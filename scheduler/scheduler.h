// The scheduler: per-model image queues, run forming, and dispatch that keeps
// every board's pipeline fed. It knows boards only through accel::Board and
// time only through hgpipe::Clock, so the same code serves on the wall clock
// and runs as a discrete-event simulation on a SimClock. It never links gRPC.
//
// How runs are formed (docs/scheduling.md has the picture): HG-PIPE is a
// batch-1 pipeline that takes an image every interval, so a run amortizes only
// per-run overhead. A board whose input stream is idle gets queued images at
// once (after at most `max_queue_delay`). A busy board gets its next run when
// its predicted input end comes within `dispatch_lead`: that run carries
// everything that queued meanwhile (up to `max_images_per_run`) and is queued
// on the board before the current run drains, so runs overlap in the pipeline
// (image overlap). Light load gives small runs and low latency; heavy load
// gives large runs. Among a model's boards with a free slot, a run goes to the
// one whose input frees first, i.e. where it would complete first.
//
// A failed run marks its board unhealthy and puts its images back at the head
// of the queue for the model's other boards; with no healthy board left, the
// model's queued requests fail with UNAVAILABLE. Every image is answered
// exactly once.
//
// Thread safety: all public methods are thread-safe.
#ifndef HGPIPE_SCHEDULER_SCHEDULER_H_
#define HGPIPE_SCHEDULER_SCHEDULER_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "accel/board.h"
#include "accel/pipeline_model.h"
#include "base/clock.h"

namespace hgpipe::scheduler {

// One request: n images for one model. Buffers are the caller's and must stay
// valid until `done` has been called.
struct InferRequest {
  // n_images * input_bytes int8 values, each image flat [tokens][values].
  const int8_t* images = nullptr;
  uint32_t n_images = 0;
  // Receives n_images * classes decoded logits, image-major, before done(OK).
  int32_t* logits = nullptr;
  // Called exactly once with OK or the reason the request failed, on a
  // scheduler or board thread, with no scheduler lock held. Must not block.
  absl::AnyInvocable<void(absl::Status)> done;
};

struct ModelOptions {
  std::string name;
  // Default: 32. Capped by each board's max_images_per_run().
  uint32_t max_images_per_run = 32;
  // How long an idle board waits for more images before starting a run that
  // is not full. Default: 0 (start at once: the pipeline is batch-1).
  absl::Duration max_queue_delay = absl::ZeroDuration();
  // Queued images beyond which Enqueue refuses requests. Default: 4096.
  uint32_t max_queue_images = 4096;
};

// Receives what the scheduler does, for metrics. Ids are dense: model ids
// in AddModel order, board ids in order across all models. Methods other
// than QueueDepth are called with no scheduler lock held, possibly
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
  virtual void RunFinished(int model_id, int board_id, uint32_t images,
                           absl::Duration device_time,
                           const absl::Status& status) {}
  virtual void BoardHealth(int model_id, int board_id, bool healthy) {}
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
  };

  struct BoardStatus {
    int board_id;
    std::string name;
    bool healthy;
    uint32_t images_in_flight;
  };

  static absl::StatusOr<std::unique_ptr<Scheduler>> Create(Options options);
  // Shuts down (see Shutdown), then destroys the boards.
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Adds a model served by `boards` (at least one, all with the same device
  // geometry), taking ownership of them. Returns the model id.
  // AlreadyExists, InvalidArgument.
  absl::StatusOr<int> AddModel(const ModelOptions& options,
                               std::vector<std::unique_ptr<accel::Board>> boards);

  // Queues a request. On OK the scheduler will call request->done exactly
  // once. On error it does not; the caller answers with the returned status:
  // NotFound (unknown model), InvalidArgument (no images / null buffers),
  // ResourceExhausted (queue full), Unavailable (shutting down or no healthy
  // board).
  absl::Status Enqueue(absl::string_view model,
                       std::unique_ptr<InferRequest> request);

  // Whether the model exists and has a healthy board.
  bool ModelReady(absl::string_view model) const;
  std::vector<BoardStatus> Boards(absl::string_view model) const;

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

  explicit Scheduler(Options options);

  // Forms runs for `m` and claims their slots; the caller launches them
  // after releasing mu_.
  void DispatchLocked(Model& m, std::vector<std::unique_ptr<Run>>* runs)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ArmTimerLocked(Model& m, absl::Time due) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnTimer(int model_id, uint64_t seq, absl::Time due)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Packs the run's images into its slot and submits it. No lock held.
  void Launch(std::unique_ptr<Run> run) ABSL_LOCKS_EXCLUDED(mu_);
  void OnRunDone(std::unique_ptr<Run> run, absl::Status status)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Fails every queued request of `m` with `status`; collects their
  // callbacks into `done`.
  void FailQueuedLocked(Model& m, const absl::Status& status,
                        std::vector<std::unique_ptr<Request>>* done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Delivers finished requests and launches runs, outside mu_.
  void Deliver(std::vector<std::unique_ptr<Request>> done,
               std::vector<std::unique_ptr<Run>> runs) ABSL_LOCKS_EXCLUDED(mu_);
  bool Idle() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Constant after construction.
  Clock* const clock_;
  Observer* const observer_;
  const absl::Duration dispatch_lead_;

  mutable hgpipe::Mutex mu_;
  bool accepting_ ABSL_GUARDED_BY(mu_) = true;
  std::vector<std::unique_ptr<Model>> models_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int> model_ids_ ABSL_GUARDED_BY(mu_);
  int next_board_id_ ABSL_GUARDED_BY(mu_) = 0;
  // Accepted requests not yet answered, and callbacks being delivered.
  uint64_t open_requests_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t delivering_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace hgpipe::scheduler

#endif  // HGPIPE_SCHEDULER_SCHEDULER_H_
