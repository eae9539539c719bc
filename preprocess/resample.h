// Antialiased image resampling, value for value the same as Pillow's
// Image.resize (libImaging/Resample.c: separable convolution, coefficients
// normalized to 22-bit fixed point, horizontal pass to 8 bits, then
// vertical), so models trained on torchvision + PIL pipelines see the same
// pixels. Only a window of the resized image is computed: resize and center
// crop in one step.
//
// Written here rather than taken from stb_image_resize (Debian's libstb-dev),
// whose v0.97 aborts on an assertion for some scale factors
// (nothings/stb#1449), which a server fed arbitrary image sizes cannot risk.
#ifndef HGPIPE_PREPROCESS_RESAMPLE_H_
#define HGPIPE_PREPROCESS_RESAMPLE_H_

#include <cstdint>
#include <vector>

#include "preprocess/image.h"
#include "preprocess/options.h"
#include "preprocess/simd_kernels.h"

namespace hgpipe::preprocess {

// Reused between calls on one thread, so steady state allocates nothing.
struct ResampleScratch {
  std::vector<int32_t> coefficients_x, coefficients_y;
  std::vector<int> bounds_x, bounds_y;
  std::vector<int32_t> accumulator;
  ScratchBuffer intermediate;
};

// Computes the window [left, left + crop_width) x [top, top + crop_height) of
// `src` resized to out_width x out_height with `filter`, and writes it to
// `dst`: crop_height rows of crop_width * src.channels bytes, packed. Equals
// Pillow's img.resize((out_width, out_height), BILINEAR or BICUBIC)
// .crop((left, top, left + crop_width, top + crop_height)).
// Requires: the window inside the resized image, all sizes positive,
// src.channels 1 or 3 (src.pixel_stride may be larger, e.g. RGBA).
void ResampleCrop(const ImageView& src, int out_width, int out_height, int left, int top,
                  int crop_width, int crop_height, ResizeFilter filter, uint8_t* dst,
                  ResampleScratch* scratch);

// Pillow's taps for outputs [first_out, first_out + count) of an in_size ->
// out_size resize, laid out for simd::HorizontalRow: output i reads taps[i]
// inputs from first[i] on, coefficients at coefficients[i * stride], zero
// past taps[i]; stride is a multiple of simd::kTapPadding. Reuses the
// vectors' memory.
struct Taps {
  std::vector<int32_t> first;
  std::vector<int32_t> taps;
  std::vector<int32_t> coefficients;
  int stride = 0;
  // For simd::HorizontalRowMadd; empty when it does not apply.
  simd::MaddCoefficients madd;
  // Scratch for the computation.
  std::vector<int> bounds;
  std::vector<int32_t> raw;
};
void ComputeTaps(int in_size, int out_size, int first_out, int count, ResizeFilter filter,
                 Taps* taps);

}  // namespace hgpipe::preprocess

#endif  // HGPIPE_PREPROCESS_RESAMPLE_H_
