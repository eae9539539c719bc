// The fused pass's per-row loops, vectorized with Google Highway (Debian's
// libhwy-dev) and dispatched at run time to the best target the CPU has
// (SSE4, AVX2, AVX-512; scalar elsewhere). Each is exact: integer
// arithmetic as Pillow's resampler (resample.h), and the scalar scalar lookup table
// (preprocessor.h), so results equal the scalar path's bit for bit
// (tests/preprocess/simd_kernels_test.cc).
//
// Thread safety: pure functions.
#ifndef HGPIPE_PREPROCESS_SIMD_KERNELS_H_
#define HGPIPE_PREPROCESS_SIMD_KERNELS_H_

#include <cstdint>

namespace hgpipe::preprocess::simd {

// Pillow's fixed point: coefficients with 22 fraction bits; a sum starts at
// half an output step and is clipped to 8 bits (resample.cc).
inline constexpr int kPrecisionBits = 22;

// Taps of one resampling direction, padded for vector loads: output i reads
// `taps[i]` source values from `first[i]` on, with coefficients
// coefficients[i * stride ...], zero beyond taps[i]. `stride` is a multiple
// of kTapPadding.
inline constexpr int kTapPadding = 16;

// out[i] = clip8(2^21 + sum_t coefficients[i * stride + t] * in[first[i] + t])
// for i < count. Reads in[first[i] .. first[i] + RoundUp(taps[i],
// kTapPadding)): the caller pads `in`.
void HorizontalRow(const uint8_t* in, const int32_t* first, const int32_t* taps,
                   const int32_t* coefficients, int stride, int count, uint8_t* out);

// out[i] = clip8(2^21 + sum_t k[t] * rows[t][i]) for i < n.
void VerticalRow(const uint8_t* const* rows, const int32_t* k, int taps, int n, uint8_t* out);

// out[i] = table[in[i]] for i < n: normalization and quantization through
// the preprocessor's 256-entry table (exact by construction).
void LookupRow(const uint8_t* in, int n, const int8_t* table, int8_t* out);

// Splits n interleaved pixels of `pixel_stride` bytes (3: RGB, 4: RGBA)
// into their first three channels.
void DeinterleaveRgb(const uint8_t* in, int pixel_stride, int n, uint8_t* r, uint8_t* g,
                     uint8_t* b);

}  // namespace hgpipe::preprocess::simd

#endif  // HGPIPE_PREPROCESS_SIMD_KERNELS_H_
