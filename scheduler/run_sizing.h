// How big a run is and where it goes: pure functions of the boards' timing
// (docs/scheduling.md, "The dispatcher's choice"). No locks, no clock, no
// boards: the Scheduler describes its boards as BoardViews, so every rule
// is tested on numbers alone (tests/scheduler/run_sizing_test.cc).
#ifndef HGPIPE_SCHEDULER_RUN_SIZING_H_
#define HGPIPE_SCHEDULER_RUN_SIZING_H_

#include <cstdint>

#include "absl/time/time.h"
#include "absl/types/span.h"

namespace hgpipe::scheduler {

// One board of a model, as run sizing sees it at one instant.
struct BoardView {
  // Whether it can take a run now (a free slot).
  bool free_slot = false;
  // When its input stream goes idle by its timing model alone (not counting
  // how late it has been): readiness follows the model, so one late timer
  // does not hold images back.
  absl::Time input_free_at;
  // When an image submitted now would complete: its next run's start (the
  // run overhead from now, or its input end plus its lag) plus its latency.
  absl::Time next_done;
  // One image's time on its input stream.
  absl::Duration image_time;
  // Most images it takes in one run.
  uint32_t max_run = 0;
};

struct BoardChoice {
  // The ready board (a free slot, input ending within the lead) whose next
  // image completes first, or -1; when that image completes.
  int best = -1;
  absl::Time best_done = absl::InfiniteFuture();
  // When the next busy board (with a free slot) becomes ready.
  absl::Time next_ready = absl::InfiniteFuture();
};

// WHEN and WHERE: among `boards`, the ready one where an image completes
// first. A board is ready when input_free_at - lead <= now.
BoardChoice ChooseBoard(absl::Span<const BoardView> boards, absl::Time now, absl::Duration lead);

// HOW MANY (water-filling): the images `queued` (those of the level served
// next) go, in completion order, to whichever board completes each first,
// counting every board with a free slot. boards[best] takes image i of its
// run (done at best's next_done + i * its image_time) only while fewer than
// `queued` images complete earlier elsewhere: an idle pool splits a burst, a
// saturated board takes everything up to min(max_images_per_run, its
// max_run, queued). 0 when another board completes the next image sooner.
uint32_t RunSize(absl::Span<const BoardView> boards, int best, uint64_t queued,
                 uint32_t max_images_per_run);

// When the last of `images` images (a new request's and those queued ahead
// of it) would complete, spread evenly over the boards whose inputs free at
// `input_free_at` (with their lag), none starting before `start`; with no
// board, on one board from `start`. Each image takes `image_time` on a
// board's input, the last one `latency` more.
absl::Time EstimateCompletion(uint64_t images, absl::Time start,
                              absl::Span<const absl::Time> input_free_at, absl::Duration image_time,
                              absl::Duration latency);

}  // namespace hgpipe::scheduler

#endif  // HGPIPE_SCHEDULER_RUN_SIZING_H_
