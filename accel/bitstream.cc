#include "accel/bitstream.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace hgpipe::accel {

absl::Status DeviceGeometry::Validate() const {
  if (tokens == 0 || tokens % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("geometry.tokens must be even and > 0, got ", tokens));
  }
  if (token_values == 0 || token_values % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("geometry.token_values must be even and > 0, got ", token_values));
  }
  if (classes == 0 || classes > (1u << 20)) {
    return absl::InvalidArgumentError(
        absl::StrCat("geometry.classes must be in [1, 2^20], got ", classes));
  }
  return absl::OkStatus();
}

absl::Status MeasuredAccuracy::Validate() const {
  if (!(top1 >= 0 && top1 <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("accuracy.top1 must be a fraction in (0, 1], got ", top1));
  }
  if (measured() && dataset.empty()) {
    return absl::InvalidArgumentError(
        "accuracy.dataset: required with accuracy.top1 (what it was measured on)");
  }
  if (!measured() && !dataset.empty()) {
    return absl::InvalidArgumentError("accuracy.top1: required with accuracy.dataset");
  }
  return absl::OkStatus();
}

absl::Duration PipelineTiming::interval() const {
  return absl::Seconds(static_cast<double>(interval_cycles) / clock_hz);
}

absl::Duration PipelineTiming::latency() const {
  return absl::Seconds(static_cast<double>(latency_cycles) / clock_hz);
}

absl::Duration PipelineTiming::image_input_time(size_t input_bytes) const {
  absl::Duration t = interval();
  if (link_bytes_per_second > 0) {
    t = std::max(t, absl::Seconds(static_cast<double>(input_bytes) / link_bytes_per_second));
  }
  return t;
}

double PipelineTiming::pipeline_depth() const {
  return static_cast<double>(latency_cycles) / static_cast<double>(interval_cycles);
}

double PipelineTiming::max_images_per_second() const {
  return clock_hz / static_cast<double>(interval_cycles);
}

absl::Status PipelineTiming::Validate() const {
  if (!(clock_hz > 0) || !std::isfinite(clock_hz)) {
    return absl::InvalidArgumentError(absl::StrCat("timing.clock_hz must be > 0, got ", clock_hz));
  }
  if (interval_cycles == 0) {
    return absl::InvalidArgumentError("timing.interval_cycles must be > 0");
  }
  if (latency_cycles < interval_cycles) {
    return absl::InvalidArgumentError(absl::StrCat("timing.latency_cycles (", latency_cycles,
                                                   ") must be >= timing.interval_cycles (",
                                                   interval_cycles, ")"));
  }
  if (run_overhead < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("timing.run_overhead must be >= 0");
  }
  if (link_bytes_per_second < 0) {
    return absl::InvalidArgumentError("timing.link_bytes_per_second must be >= 0 (0: unlimited)");
  }
  return absl::OkStatus();
}

}  // namespace hgpipe::accel
