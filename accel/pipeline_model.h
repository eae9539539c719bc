// The timing of runs on one streaming pipeline, as pure arithmetic: the
// emulated board uses it to decide when a run completes, and the scheduler
// uses the same model to predict when a board's input stream goes idle.
#ifndef HGPIPE_ACCEL_PIPELINE_MODEL_H_
#define HGPIPE_ACCEL_PIPELINE_MODEL_H_

#include <cstddef>
#include <cstdint>

#include "absl/time/time.h"
#include "accel/bitstream.h"

namespace hgpipe::accel {

struct RunTimes {
  absl::Time input_start;   // first image enters the pipeline
  absl::Time input_end;     // the input stream is free for the next run
  absl::Time first_output;  // image 0's output is ready
  absl::Time done;          // the last image's output is ready (TLAST)
};

// A run of n images submitted at t streams its input from
//   s = max(t + run_overhead, previous run's input_end);
// image k enters at s + k*T and is out at s + k*T + L (T = II, or the link
// time per image if slower; L = pipeline latency). Runs queued back to back
// overlap inside the pipeline; an idle input stream is a bubble.
// Not thread-safe: callers serialize.
class PipelineModel {
 public:
  PipelineModel(PipelineTiming timing, size_t image_input_bytes);

  // Records a run of n >= 1 images submitted at `submit` (non-decreasing
  // across calls) and returns its times.
  RunTimes Submit(absl::Time submit, uint32_t n);
  // What Submit would return, without recording the run.
  RunTimes Predict(absl::Time submit, uint32_t n) const;
  // Takes back input time recorded for runs (or their last images) that
  // will not be submitted after all: the input stream is free at
  // `input_free_at`, no later than now recorded. Only the caller knows
  // whether a run recorded later depends on what is taken back, so it must
  // pass what Submit would have left without it.
  void TakeBack(absl::Time input_free_at);

  // When the input stream is free (the past if it is idle).
  absl::Time input_free_at() const { return input_free_at_; }
  // Time the input stream spends on n images.
  absl::Duration InputTime(uint32_t n) const { return image_time_ * n; }
  absl::Duration image_time() const { return image_time_; }
  absl::Duration latency() const { return latency_; }
  const PipelineTiming& timing() const { return timing_; }

 private:
  PipelineTiming timing_;
  absl::Duration image_time_;
  absl::Duration latency_;
  absl::Time input_free_at_ = absl::InfinitePast();
};

}  // namespace hgpipe::accel

#endif  // HGPIPE_ACCEL_PIPELINE_MODEL_H_
