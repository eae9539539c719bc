// One model's queue: its accepted requests' images waiting for a board, one
// FIFO per priority level, and the deadline indexes that expire them
// (docs/scheduling.md, "Priorities, starvation, deadlines"). It knows no
// board and no clock: callers pass the times it needs, so every rule here is
// tested on its own (tests/scheduler/request_queue_test.cc).
//
// Thread safety: runs under the owning Scheduler's lock (scheduler/lock.h);
// so do the Request fields it reads and writes.
#ifndef HGPIPE_SCHEDULER_REQUEST_QUEUE_H_
#define HGPIPE_SCHEDULER_REQUEST_QUEUE_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <set>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "scheduler/infer_request.h"
#include "scheduler/lock.h"

namespace hgpipe::scheduler {

// An accepted request as the scheduler tracks it until it is answered.
struct Request {
  Request(std::unique_ptr<InferRequest> r, absl::Time arrival, uint32_t level)
      : request(std::move(r)),
        arrival(arrival),
        deadline(request->deadline),
        level(level),
        unanswered(request->n_images),
        queued(request->n_images) {}

  // The caller's request. Read without the lock by the fill and delivery
  // steps; moved out only when the request is answered early (Detach),
  // which waits until no run fills or delivers it.
  std::unique_ptr<InferRequest> request;
  // Constant after construction.
  const absl::Time arrival;
  const absl::Time deadline;
  const uint32_t level;  // 0-based priority level

  // Images neither computed nor failed yet, and of those the ones in a
  // queue (not on a board).
  uint32_t unanswered ABSL_GUARDED_BY(scheduler_lock);
  uint32_t queued ABSL_GUARDED_BY(scheduler_lock);
  // Images in runs being filled (InferRequest::Fill reads the caller's
  // input) and being delivered (InferRequest::Output writes its output):
  // the request cannot be answered early while either is non-zero.
  uint32_t filling ABSL_GUARDED_BY(scheduler_lock) = 0;
  uint32_t delivering ABSL_GUARDED_BY(scheduler_lock) = 0;
  // The first error, if any.
  absl::Status status ABSL_GUARDED_BY(scheduler_lock);
  // Answered before its images are done (its deadline passed with images on
  // a board, or one of its images could not be filled): as soon as nothing
  // reads or writes its buffers (detach_pending), then `detached`: Done was
  // called and the board results still to come are dropped, counted as
  // late when `late` (a deadline).
  bool detach_pending ABSL_GUARDED_BY(scheduler_lock) = false;
  bool detached ABSL_GUARDED_BY(scheduler_lock) = false;
  bool late ABSL_GUARDED_BY(scheduler_lock) = false;
  // Its images at this index or above are not filled (not decoded): their
  // results would be dropped. 0 with the first of those (under the lock);
  // lowered to i + 1 by the fill step itself the moment image i fails
  // (without the lock: the request fails when that run is submitted). The
  // images below a failed one are still filled, so that the error
  // reported, the lowest image's, does not depend on which decode failed
  // first. Read by the fill step without the lock.
  std::atomic<uint32_t> fill_limit{UINT32_MAX};
};

// One image of a request.
struct ImageRef {
  Request* request;
  uint32_t index;
  // Set when its run completes: its output goes to its request (false when
  // the request was answered early and the result is dropped).
  bool deliver = false;
};

class RequestQueue {
 public:
  struct Options {
    uint32_t levels = 1;
    // Longest a level's oldest image waits while higher levels are served
    // before that level goes first for one run.
    absl::Duration max_starvation = absl::Milliseconds(100);
    // Most images in a run that holds images below the highest level.
    uint32_t low_priority_run_images = 1;
  };
  explicit RequestQueue(const Options& options);
  RequestQueue(const RequestQueue&) = delete;
  RequestQueue& operator=(const RequestQueue&) = delete;

  // Queues every image of `r` at its level, behind what is there, and
  // indexes its deadline (if any) both as queued and as promised.
  void Push(Request* r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);

  // Images queued, in all and at `level` or higher (what a request of that
  // level waits behind: the queue limit and completion estimates).
  uint64_t size() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) { return size_; }
  uint64_t ImagesAtOrAbove(uint32_t level) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  // Images of the highest non-empty level (what run sizing shares out).
  uint64_t HighestLevelImages() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  // Whether a queued request has a deadline.
  bool HasDeadlines() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) {
    return !deadlines_.empty();
  }
  // When the oldest image at the head of a level arrived; InfiniteFuture
  // when empty.
  absl::Time OldestArrival() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);

  // A request the queue gave up on while taking: `images` of its images
  // were queued and are removed; it would have completed `late` after its
  // deadline even first in a run.
  using Hopeless = absl::FunctionRef<void(Request* r, uint32_t images, absl::Duration late)>;
  // Takes the images of the next run, at most `max`, into `out`. Levels
  // whose oldest image has waited max_starvation (since it arrived or the
  // level was last served) go first, oldest first, then every level in
  // priority order; runs holding images below the highest level take at
  // most low_priority_run_images of them. A run of k + 1 images starts at
  // start(k + 1) (later for a bigger run when its images must be decoded
  // first) and completes at start(k + 1) + k * image_time + latency; a run
  // stops before an image would push one already in it past its deadline,
  // and a request that misses its deadline even as the first image of a
  // run of one is removed (all its queued images) and passed to `hopeless`
  // at once.
  using RunStart = absl::FunctionRef<absl::Time(uint32_t images)>;
  void Take(uint32_t max, absl::Time now, RunStart start, absl::Duration image_time,
            absl::Duration latency, std::vector<ImageRef>* out, Hopeless hopeless)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);

  // Puts an abandoned run's images back at the heads of their levels, in
  // their order, ahead of newer work. Images of requests that failed
  // meanwhile (a non-OK status) are not queued: each is passed to `failed`.
  void Requeue(absl::Span<const ImageRef> images, absl::FunctionRef<void(Request*)> failed)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);

  // Removes `r`'s queued images and its queued-deadline entry; returns how
  // many images were removed (r->queued is reduced by as many).
  uint32_t Remove(Request* r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  // Forgets `r`'s promise (it is answered).
  void Forget(Request* r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);

  // Expiry, in three steps (the Scheduler answers each request as it is
  // passed, and arms a timer for the next time each step has work):
  //  1. promises: requests whose deadline has come, with images queued or
  //     on a board; removed from both indexes, their queued images removed
  //     (`images`). Returns the next promise's deadline.
  absl::Time ExpirePromises(absl::Time now,
                            absl::FunctionRef<void(Request* r, uint32_t images)> expired)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  //  2. queued requests whose deadline comes before `t` (the earliest a
  //     board can serve them, plus the least service time).
  void ExpireQueuedBefore(absl::Time t,
                          absl::FunctionRef<void(Request* r, uint32_t images)> expired)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);
  //  3. queued requests that even an immediate dispatch would answer late:
  //     deadline - min_service <= now. Returns when the next one would be.
  absl::Time ExpireQueued(absl::Time now, absl::Duration min_service,
                          absl::FunctionRef<void(Request* r, uint32_t images)> expired)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock);

 private:
  const Options options_;
  // One FIFO per priority level, and when each level last went into a run.
  std::vector<std::deque<ImageRef>> levels_ ABSL_GUARDED_BY(scheduler_lock);
  std::vector<absl::Time> level_served_ ABSL_GUARDED_BY(scheduler_lock);
  uint64_t size_ ABSL_GUARDED_BY(scheduler_lock) = 0;
  // Requests with a deadline and images still queued, by deadline.
  std::set<std::pair<absl::Time, Request*>> deadlines_ ABSL_GUARDED_BY(scheduler_lock);
  // Every request with a deadline not yet answered, by deadline: the
  // deadline is a promise even once its images are on a board.
  std::set<std::pair<absl::Time, Request*>> promises_ ABSL_GUARDED_BY(scheduler_lock);
};

}  // namespace hgpipe::scheduler

#endif  // HGPIPE_SCHEDULER_REQUEST_QUEUE_H_
