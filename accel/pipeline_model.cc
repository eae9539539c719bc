#include "accel/pipeline_model.h"

#include <algorithm>

namespace hgpipe::accel {

PipelineModel::PipelineModel(PipelineTiming timing, size_t image_input_bytes)
    : timing_(timing),
      image_time_(timing.image_input_time(image_input_bytes)),
      latency_(timing.latency()) {}

RunTimes PipelineModel::Predict(absl::Time submit, uint32_t n) const {
  RunTimes t;
  t.input_start = std::max(submit + timing_.run_overhead, input_free_at_);
  t.input_end = t.input_start + image_time_ * n;
  t.first_output = t.input_start + latency_;
  t.done = t.input_start + image_time_ * (n - 1) + latency_;
  return t;
}

RunTimes PipelineModel::Submit(absl::Time submit, uint32_t n) {
  RunTimes t = Predict(submit, n);
  input_free_at_ = t.input_end;
  return t;
}

void PipelineModel::TakeBack(absl::Time input_free_at) {
  input_free_at_ = std::min(input_free_at_, input_free_at);
}

}  // namespace hgpipe::accel
