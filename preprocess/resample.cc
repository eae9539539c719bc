#include "preprocess/resample.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "preprocess/simd_kernels.h"

namespace hgpipe::preprocess {
namespace {

// Pillow's fixed point: 8 bits of pixel, 2 of headroom, 22 of fraction.
constexpr int kPrecisionBits = 32 - 8 - 2;
constexpr int32_t kHalf = 1 << (kPrecisionBits - 1);

double BilinearKernel(double x) {
  x = std::fabs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

// Keys' cubic with a = -0.5 (Catmull-Rom), as Pillow's BICUBIC.
double BicubicKernel(double x) {
  constexpr double a = -0.5;
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

[[gnu::always_inline]] inline uint8_t Clip8(int32_t v) {
  if (v >= (1 << kPrecisionBits << 8)) return 255;
  if (v <= 0) return 0;
  return static_cast<uint8_t>(v >> kPrecisionBits);
}

// The vertical pass's row loops. They vectorize; on x86-64 an AVX2 build of
// them is also compiled and chosen at run time when the CPU has it (Debian's
// baseline is SSE2, which lacks a packed 32-bit multiply; AVX2 halves the
// pass). Plain function pointers, not ifunc-based target_clones, which crash
// at load time under ThreadSanitizer.
[[gnu::always_inline]] inline void AccumulateRowBody(int32_t* __restrict sum,
                                                     const uint8_t* __restrict row, int n,
                                                     int32_t k) {
  for (int i = 0; i < n; ++i) sum[i] += row[i] * k;
}
[[gnu::always_inline]] inline void ClipRowBody(const int32_t* __restrict sum,
                                               uint8_t* __restrict out, int n) {
  for (int i = 0; i < n; ++i) out[i] = Clip8(sum[i]);
}

void AccumulateRowGeneric(int32_t* sum, const uint8_t* row, int n, int32_t k) {
  AccumulateRowBody(sum, row, n, k);
}
void ClipRowGeneric(const int32_t* sum, uint8_t* out, int n) { ClipRowBody(sum, out, n); }

using AccumulateRowFn = void (*)(int32_t*, const uint8_t*, int, int32_t);
using ClipRowFn = void (*)(const int32_t*, uint8_t*, int);

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2"))) void AccumulateRowAvx2(int32_t* sum, const uint8_t* row, int n,
                                                       int32_t k) {
  AccumulateRowBody(sum, row, n, k);
}
__attribute__((target("avx2"))) void ClipRowAvx2(const int32_t* sum, uint8_t* out, int n) {
  ClipRowBody(sum, out, n);
}
bool HasAvx2() { return __builtin_cpu_supports("avx2"); }
#else
constexpr AccumulateRowFn AccumulateRowAvx2 = AccumulateRowGeneric;
constexpr ClipRowFn ClipRowAvx2 = ClipRowGeneric;
bool HasAvx2() { return false; }
#endif

void AccumulateRow(int32_t* sum, const uint8_t* row, int n, int32_t k) {
  static const AccumulateRowFn fn = HasAvx2() ? AccumulateRowAvx2 : AccumulateRowGeneric;
  fn(sum, row, n, k);
}
void ClipRow(const int32_t* sum, uint8_t* out, int n) {
  static const ClipRowFn fn = HasAvx2() ? ClipRowAvx2 : ClipRowGeneric;
  fn(sum, out, n);
}

// Pillow's precompute_coeffs + normalize_coeffs_8bpc for output indices
// [first, first + count) of an in_size -> out_size resize. bounds[2i] is the
// first source index of output first + i, bounds[2i + 1] the number of taps;
// taps at coefficients[i * ksize ...]. Returns ksize.
int PrecomputeCoefficients(int in_size, int out_size, int first, int count, ResizeFilter filter,
                           std::vector<int>* bounds, std::vector<int32_t>* coefficients) {
  const bool bicubic = filter == ResizeFilter::kBicubic;
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = (bicubic ? 2.0 : 1.0) * filterscale;
  const int ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  bounds->resize(static_cast<size_t>(count) * 2);
  coefficients->assign(static_cast<size_t>(count) * ksize, 0);
  double weights[512];
  std::vector<double> big_weights;
  double* w = weights;
  if (ksize > 512) {
    big_weights.resize(ksize);
    w = big_weights.data();
  }
  const double ss = 1.0 / filterscale;
  for (int i = 0; i < count; ++i) {
    const double center = (first + i + 0.5) * scale;
    // Truncation, as Pillow's (int) casts.
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double total = 0.0;
    for (int x = 0; x < xmax; ++x) {
      const double arg = (x + xmin - center + 0.5) * ss;
      w[x] = bicubic ? BicubicKernel(arg) : BilinearKernel(arg);
      total += w[x];
    }
    int32_t* k = coefficients->data() + static_cast<size_t>(i) * ksize;
    for (int x = 0; x < xmax; ++x) {
      const double v = total != 0.0 ? w[x] / total : w[x];
      k[x] = v < 0 ? static_cast<int32_t>(-0.5 + v * (1 << kPrecisionBits))
                   : static_cast<int32_t>(0.5 + v * (1 << kPrecisionBits));
    }
    (*bounds)[2 * i] = xmin;
    (*bounds)[2 * i + 1] = xmax;
  }
  return ksize;
}

// Rows [row_first, row_first + rows) of `src`, horizontally resampled to the
// output columns the coefficients describe, into `dst` (packed, `dst_stride`
// bytes per row).
template <int C>
void HorizontalPass(const ImageView& src, int row_first, int rows, int out_count, int ksize,
                    const int* bounds, const int32_t* coefficients, uint8_t* dst,
                    size_t dst_stride) {
  for (int r = 0; r < rows; ++r) {
    const uint8_t* in = src.pixels + static_cast<size_t>(row_first + r) * src.row_stride;
    uint8_t* out = dst + static_cast<size_t>(r) * dst_stride;
    for (int xx = 0; xx < out_count; ++xx) {
      const int xmin = bounds[2 * xx];
      const int taps = bounds[2 * xx + 1];
      const int32_t* k = coefficients + static_cast<size_t>(xx) * ksize;
      int32_t sum[C];
      for (int c = 0; c < C; ++c) sum[c] = kHalf;
      const uint8_t* p = in + static_cast<size_t>(xmin) * src.pixel_stride;
      for (int x = 0; x < taps; ++x, p += src.pixel_stride) {
        for (int c = 0; c < C; ++c) sum[c] += p[c] * k[x];
      }
      for (int c = 0; c < C; ++c) out[xx * C + c] = Clip8(sum[c]);
    }
  }
}

// Vertical pass over `width` pixels per row: output row i takes taps from
// input rows bounds[2i] - row_offset ... of `in` (row_stride / pixel_stride
// bytes apart), written packed to dst.
template <int C>
void VerticalPass(const uint8_t* in, size_t row_stride, int pixel_stride, int row_offset, int width,
                  int out_rows, int ksize, const int* bounds, const int32_t* coefficients,
                  uint8_t* dst, std::vector<int32_t>* acc) {
  const int n = width * C;
  acc->resize(n);
  int32_t* sum = acc->data();
  for (int yy = 0; yy < out_rows; ++yy) {
    const int ymin = bounds[2 * yy] - row_offset;
    const int taps = bounds[2 * yy + 1];
    const int32_t* k = coefficients + static_cast<size_t>(yy) * ksize;
    std::fill(sum, sum + n, kHalf);
    for (int y = 0; y < taps; ++y) {
      const uint8_t* row = in + static_cast<size_t>(ymin + y) * row_stride;
      const int32_t ky = k[y];
      if (pixel_stride == C) {
        AccumulateRow(sum, row, n, ky);
      } else {
        for (int x = 0; x < width; ++x) {
          for (int c = 0; c < C; ++c) sum[x * C + c] += row[x * pixel_stride + c] * ky;
        }
      }
    }
    ClipRow(sum, dst + static_cast<size_t>(yy) * n, n);
  }
}

template <int C>
void ResampleCropImpl(const ImageView& src, int out_width, int out_height, int left, int top,
                      int crop_width, int crop_height, ResizeFilter filter, uint8_t* dst,
                      ResampleScratch* s) {
  const bool need_horizontal = out_width != src.width;
  const bool need_vertical = out_height != src.height;
  const size_t dst_stride = static_cast<size_t>(crop_width) * C;
  std::vector<int32_t>* acc = &s->accumulator;

  int ksize_x = 0, ksize_y = 0;
  if (need_horizontal) {
    ksize_x = PrecomputeCoefficients(src.width, out_width, left, crop_width, filter, &s->bounds_x,
                                     &s->coefficients_x);
  }
  if (need_vertical) {
    ksize_y = PrecomputeCoefficients(src.height, out_height, top, crop_height, filter, &s->bounds_y,
                                     &s->coefficients_y);
  }

  if (need_horizontal && need_vertical) {
    // Source rows the window's output rows read.
    const int row_first = s->bounds_y[0];
    const int row_last =
        s->bounds_y[2 * (crop_height - 1)] + s->bounds_y[2 * (crop_height - 1) + 1];
    const int rows = row_last - row_first;
    uint8_t* tmp = s->intermediate.Get(static_cast<size_t>(rows) * dst_stride);
    HorizontalPass<C>(src, row_first, rows, crop_width, ksize_x, s->bounds_x.data(),
                      s->coefficients_x.data(), tmp, dst_stride);
    VerticalPass<C>(tmp, dst_stride, C, row_first, crop_width, crop_height, ksize_y,
                    s->bounds_y.data(), s->coefficients_y.data(), dst, acc);
  } else if (need_horizontal) {
    HorizontalPass<C>(src, top, crop_height, crop_width, ksize_x, s->bounds_x.data(),
                      s->coefficients_x.data(), dst, dst_stride);
  } else if (need_vertical) {
    const uint8_t* first_column = src.pixels + static_cast<size_t>(left) * src.pixel_stride;
    VerticalPass<C>(first_column, src.row_stride, src.pixel_stride, 0, crop_width, crop_height,
                    ksize_y, s->bounds_y.data(), s->coefficients_y.data(), dst, acc);
  } else {
    for (int y = 0; y < crop_height; ++y) {
      const uint8_t* p = src.At(top + y, left);
      uint8_t* q = dst + static_cast<size_t>(y) * dst_stride;
      for (int x = 0; x < crop_width; ++x, p += src.pixel_stride) std::memcpy(q + x * C, p, C);
    }
  }
}

}  // namespace

void ComputeTaps(int in_size, int out_size, int first_out, int count, ResizeFilter filter,
                 Taps* t) {
  const int ksize =
      PrecomputeCoefficients(in_size, out_size, first_out, count, filter, &t->bounds, &t->raw);
  const int pad = simd::kTapPadding;
  t->stride = (ksize + pad - 1) / pad * pad;
  t->first.resize(count);
  t->taps.resize(count);
  t->coefficients.assign(static_cast<size_t>(count) * t->stride, 0);
  for (int i = 0; i < count; ++i) {
    t->first[i] = t->bounds[2 * i];
    t->taps[i] = t->bounds[2 * i + 1];
    std::memcpy(&t->coefficients[static_cast<size_t>(i) * t->stride],
                &t->raw[static_cast<size_t>(i) * ksize], sizeof(int32_t) * t->taps[i]);
  }
  // The 16-bit split, when every output has at most 8 taps and no two taps'
  // magnitudes exceed 1.5 (a pair's products then fit 31 bits).
  bool split = true;
  for (int i = 0; i < count && split; ++i) {
    const int32_t* k = &t->coefficients[static_cast<size_t>(i) * t->stride];
    split = t->taps[i] <= 8;
    for (int j = 0; j + 1 < 8 && split; j += 2) {
      split = int64_t{std::abs(k[j])} + std::abs(k[j + 1]) <= (int64_t{3} << (kPrecisionBits - 1));
    }
  }
  const size_t groups = static_cast<size_t>(count) / 8;
  t->madd.hi.clear();
  t->madd.lo.clear();
  if (!split || groups == 0) return;
  t->madd.hi.assign(groups * 64, 0);
  t->madd.lo.assign(groups * 64, 0);
  for (int i = 0; i < static_cast<int>(groups * 8); ++i) {
    const int32_t* k = &t->coefficients[static_cast<size_t>(i) * t->stride];
    for (int j = 0; j < 8; ++j) {
      const int32_t hi = k[j] >> 11;  // floor: lo = k - hi * 2^11 is in [0, 2^11)
      t->madd.hi[simd::MaddCoefficientIndex(i, j)] = static_cast<int16_t>(hi);
      t->madd.lo[simd::MaddCoefficientIndex(i, j)] = static_cast<int16_t>(k[j] - hi * 2048);
    }
  }
}

void ResampleCrop(const ImageView& src, int out_width, int out_height, int left, int top,
                  int crop_width, int crop_height, ResizeFilter filter, uint8_t* dst,
                  ResampleScratch* scratch) {
  if (src.channels == 1) {
    ResampleCropImpl<1>(src, out_width, out_height, left, top, crop_width, crop_height, filter, dst,
                        scratch);
  } else {
    ResampleCropImpl<3>(src, out_width, out_height, left, top, crop_width, crop_height, filter, dst,
                        scratch);
  }
}

}  // namespace hgpipe::preprocess
