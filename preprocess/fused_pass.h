// The fused pass after decode: crop window, resize (Pillow's resampler,
// exact), normalize, quantize, patchify and device-pack, in one pass over
// the decoded pixels, written into a caller-supplied span: the model input
// (flat, or device-packed for a board's input slot). Vectorized with
// Highway (simd_kernels.h); equal bit for bit to the scalar path
// (resample.h + the lookup table + Patchify in preprocessor.cc), which
// tests/preprocess/fused_pass_test.cc checks on many sizes and options.
//
// Steady state allocates nothing: all memory is the caller's FusedScratch,
// grown to the largest image seen (one per thread in Preprocessor).
#ifndef HGPIPE_PREPROCESS_FUSED_PASS_H_
#define HGPIPE_PREPROCESS_FUSED_PASS_H_

#include <array>
#include <cstdint>

#include "absl/status/status.h"
#include "preprocess/image.h"
#include "preprocess/image_decoder.h"
#include "preprocess/options.h"
#include "preprocess/resample.h"
#include "preprocess/simd_kernels.h"

namespace hgpipe::preprocess {

// Reused between calls on one thread.
// What a direction's taps were computed for (ComputeTaps' arguments): a
// stream of same-sized photos reuses them.
struct TapsKey {
  int in_size = -1, out_size = -1, first_out = -1, count = -1;
  ResizeFilter filter = ResizeFilter::kBilinear;
  friend bool operator==(const TapsKey&, const TapsKey&) = default;
};

struct FusedScratch {
  Taps taps_x, taps_y;
  TapsKey taps_x_key, taps_y_key;
  // The source columns taps_x reads (its `first` counts from x0).
  int taps_x_x0 = 0, taps_x_x1 = 0;
  ScratchBuffer source_planes;  // one source row, split into channels, padded
  ScratchBuffer resized_rows;   // horizontally resampled rows, per channel
  ScratchBuffer quantized;      // the model image, int8, [channel][height][width]
  std::vector<const uint8_t*> row_pointers;
  // The plan of the image under way (PlanFusedPass).
  bool need_x = false;
  bool need_y = false;
  Rect source_rect;

  // Frees buffers above `keep` bytes (see ScratchBuffer::TrimTo).
  void TrimTo(size_t keep) {
    source_planes.TrimTo(keep);
    resized_rows.TrimTo(keep);
    quantized.TrimTo(keep);
  }
};

// Whether FusedPass handles `o`: values channel-major (or one channel).
// Others (HWC RGB) take the scalar path.
bool FusedPassApplies(const Options& o);

// Where the model image comes from in `src`: the window at (top, left) of
// src resized to resized_height x resized_width (no resize: the window at
// (top, left) of src itself).
struct Window {
  bool resize = false;
  int resized_height = 0;
  int resized_width = 0;
  int top = 0;
  int left = 0;
};

// Plans the pass for a source_width x source_height image (after any DCT
// scaling) into `scratch` and returns the source rectangle it reads.
Rect PlanFusedPass(const Options& o, const Window& window, int source_width, int source_height,
                   FusedScratch* scratch);

// Runs the pass PlanFusedPass planned on `region`, a part of the image that
// covers the planned rectangle, writing the model input into `out`, which
// holds o.input_bytes() in o.output_layout. lut[c][v] is the int8 value of
// channel c's pixel value v (normalized and quantized). `region` has 1 or 3
// channels (1 -> 3 replicates). Requires FusedPassApplies(o) and a window
// inside the (resized) image, as Preprocessor's geometry makes.
// Internal if `region` does not cover the planned rectangle (a bug, not bad
// input).
absl::Status RunFusedPass(const Options& o, const std::array<std::array<int8_t, 256>, 3>& lut,
                          const DecodedRegion& region, int8_t* out, FusedScratch* scratch);

// Both on a whole image.
absl::Status FusedPass(const Options& o, const std::array<std::array<int8_t, 256>, 3>& lut,
                       const ImageView& src, const Window& window, int8_t* out,
                       FusedScratch* scratch);

}  // namespace hgpipe::preprocess

#endif  // HGPIPE_PREPROCESS_FUSED_PASS_H_
