// What the scheduler is told about a model (ModelOptions) and tells about a
// board (BoardPhase, BoardCounts). Included by scheduler.h.
#ifndef HGPIPE_SCHEDULER_MODEL_OPTIONS_H_
#define HGPIPE_SCHEDULER_MODEL_OPTIONS_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "accel/board.h"
#include "accel/canary.h"

namespace hgpipe::scheduler {

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
  kServing,      // takes runs for its model
  kIdle,         // no model: free to be programmed for one
  kDraining,     // finishing its runs before reprogramming for another model
  kProgramming,  // loading a bitstream
  kProbing,      // running the one-image probe before (re)admission
  kRecovering,   // failed: runs abandoned, reset in progress or backing off
  kRetired,      // gave up after max_recovery_attempts
  kRemoved,      // destroyed by RemoveBoard; its id is not reused
};
absl::string_view BoardPhaseName(BoardPhase phase);

// What has happened to a board so far, counted by the scheduler.
struct BoardCounts {
  uint64_t failures = 0;      // runs failed or timed out, recovery steps failed
  uint64_t recoveries = 0;    // successful re-admissions
  uint64_t programmings = 0;  // successful Program calls
};

}  // namespace hgpipe::scheduler

#endif  // HGPIPE_SCHEDULER_MODEL_OPTIONS_H_
