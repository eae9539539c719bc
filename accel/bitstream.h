// What a bitstream is to the server: its I/O geometry and its pipeline timing.
// The figures are HG-PIPE's DeiT-tiny design on a VCK190 (the authors'
// paper, arXiv:2407.17879; docs/datapath.md); other bitstreams override them from their manifest.
#ifndef HGPIPE_ACCEL_BITSTREAM_H_
#define HGPIPE_ACCEL_BITSTREAM_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace hgpipe::accel {

// One image's device I/O. Input: `tokens` x `token_values` int8 patches
// (token 0 is the CLS placeholder the hardware overwrites). Output: `classes`
// 32-bit words, each a 19-bit two's-complement logit (device_layout.h).
struct DeviceGeometry {
  uint32_t tokens = 196;        // 14 x 14 patches of a 224 x 224 image
  uint32_t token_values = 768;  // 16 x 16 x 3
  uint32_t classes = 1000;

  size_t input_bytes() const { return size_t{tokens} * token_values; }
  size_t output_words() const { return classes; }
  size_t output_bytes() const { return output_words() * sizeof(uint32_t); }
  // OK, or InvalidArgument: the device stream packs 2 tokens x 2 values per
  // 32-bit beat, so both must be even and non-zero.
  absl::Status Validate() const;
};

// The timing model of a streaming pipeline (docs/scheduling.md, "A board's
// pipeline"). Defaults: HG-PIPE DeiT-tiny, 7,375 images/s at
// best, first result 1.92 ms after the first input.
struct PipelineTiming {
  double clock_hz = 425e6;
  uint64_t interval_cycles = 57'624;  // initiation interval II
  uint64_t latency_cycles = 816'584;  // first input to last output, one image
  // Kernel start and DMA descriptor set-up before a run's input streams.
  absl::Duration run_overhead = absl::Microseconds(10);
  // Host link, bytes/s; 0 means it never limits the input stream.
  double link_bytes_per_second = 0;

  absl::Duration interval() const;
  absl::Duration latency() const;
  // Time one image occupies the input stream: II, or the link if slower.
  absl::Duration image_input_time(size_t input_bytes) const;
  // Images inside the pipeline at steady state (latency / II, about 14.2).
  double pipeline_depth() const;
  double max_images_per_second() const;
  absl::Status Validate() const;
};

// What a bitstream's top-1 accuracy was measured to be, and on what: the
// basis on which a model's variants are ranked (docs/serving.md, "Variants").
struct MeasuredAccuracy {
  double top1 = 0;      // a fraction in (0, 1]; 0: not measured
  std::string dataset;  // e.g. "Fashion-MNIST test (10,000 images)"

  bool measured() const { return top1 > 0; }
  // OK, or InvalidArgument naming the field: top1 outside [0, 1] or not a
  // number, a dataset without a top1 or a top1 without a dataset.
  absl::Status Validate() const;
};

struct BitstreamManifest {
  std::string name;  // e.g. "verify", "deit_tiny"
  DeviceGeometry geometry;
  PipelineTiming timing;
  MeasuredAccuracy accuracy;
};

}  // namespace hgpipe::accel

#endif  // HGPIPE_ACCEL_BITSTREAM_H_
