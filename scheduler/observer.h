// What the scheduler reports about itself, for metrics, statistics and
// logs. Included by scheduler.h.
#ifndef HGPIPE_SCHEDULER_OBSERVER_H_
#define HGPIPE_SCHEDULER_OBSERVER_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "scheduler/model_options.h"

namespace hgpipe::scheduler {

// Receives what the scheduler does. Ids are dense: model ids in AddModel
// order (never reused; ModelHandle::id()), board ids in order of addition.
// Every id is announced (ModelAdded, BoardAdded) before any other event
// names it. Methods other than QueueDepth, ModelAdded and BoardAdded are
// called with no scheduler lock held, possibly concurrently; all must be
// cheap.
class Observer {
 public:
  virtual ~Observer() = default;
  // Called under the scheduler's lock, so they arrive in order and before
  // anything else about the id: must not call back into the scheduler.
  // `name` is the model's (two loads of a model, one draining while the
  // next serves, share it) or the board's (accel::BoardInfo::name).
  virtual void ModelAdded(int model_id, absl::string_view name) {}
  virtual void BoardAdded(int board_id, absl::string_view name) {}
  // Called under the scheduler's lock, so values arrive in order: must not
  // call back into the scheduler.
  virtual void QueueDepth(int model_id, uint64_t images) {}
  // A run left for a board. `queue_waits` has one entry per image: from its
  // arrival until it was in the board's slot (the fill step included).
  virtual void RunStarted(int model_id, int board_id, uint32_t images,
                          absl::Span<const absl::Duration> queue_waits, absl::Duration input_time) {
  }
  // Not called for abandoned runs (their images are requeued).
  virtual void RunFinished(int model_id, int board_id, uint32_t images, absl::Duration device_time,
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
  // Images of a formed run that were not filled (not decoded, not copied)
  // because their request had been answered early or another of its images
  // failed: the fill work the scheduler saved. They are withheld from the
  // board too (below) unless their run went before the request was
  // answered (an image of another run failed), and then dropped.
  virtual void FillsSkipped(int model_id, uint32_t images) {}
  // Images of a filled run taken out of it before it went to the board:
  // their requests had been answered early (a deadline passed, or another
  // of their images failed). When that was all of them, the run was not
  // sent at all. Board time saved for the next run.
  virtual void ImagesWithheld(int model_id, uint32_t images) {}
};

}  // namespace hgpipe::scheduler

#endif  // HGPIPE_SCHEDULER_OBSERVER_H_
