// The fused pass's per-row loops, vectorized with Google Highway (Debian's
// libhwy-dev) and dispatched at run time to the best target the CPU has
// (SSE4, AVX2, AVX-512; scalar elsewhere). Each is exact: integer
// arithmetic as Pillow's resampler (resample.h), the scalar lookup table
// (preprocessor.h) and the board's packing (accel/device_layout.h), so
// results equal the scalar path's bit for bit (SimdKernelsTest in
// tests/preprocess/fused_pass_test.cc).
//
// Thread safety: pure functions.
#ifndef HGPIPE_PREPROCESS_SIMD_KERNELS_H_
#define HGPIPE_PREPROCESS_SIMD_KERNELS_H_

#include <cstddef>
#include <cstdint>
#include <vector>

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

// The same coefficients split for 16-bit multiply-adds, exactly:
// k = hi * 2^11 + lo with 0 <= lo < 2^11, for outputs of at most 8 taps,
// laid out in groups of 8 outputs: group g's vector m (0..3) holds output
// 8g + m's 8 taps then output 8g + m + 4's (MaddCoefficientIndex). Empty
// when some output has more taps or a pair of taps could overflow.
struct MaddCoefficients {
  std::vector<int16_t> hi;
  std::vector<int16_t> lo;
};
inline size_t MaddCoefficientIndex(int output, int tap) {
  const int g = output / 8, m = output % 8;
  return static_cast<size_t>((g * 4 + m % 4) * 16 + (m / 4) * 8 + tap);
}

// HorizontalRow with `madd` (non-empty) used for whole groups of 8 outputs
// where the CPU has 16-lane 16-bit vectors; equal results.
void HorizontalRowMadd(const uint8_t* in, const int32_t* first, const int32_t* taps,
                       const int32_t* coefficients, int stride, const MaddCoefficients& madd,
                       int count, uint8_t* out);

// out[i] = clip8(2^21 + sum_t k[t] * rows[t][i]) for i < n.
void VerticalRow(const uint8_t* const* rows, const int32_t* k, int taps, int n, uint8_t* out);

// out[i] = table[in[i]] for i < n: normalization and quantization through
// the preprocessor's 256-entry table (exact by construction).
void LookupRow(const uint8_t* in, int n, const int8_t* table, int8_t* out);

// Splits n interleaved pixels of `pixel_stride` bytes (3: RGB, 4: RGBA)
// into their first three channels.
void DeinterleaveRgb(const uint8_t* in, int pixel_stride, int n, uint8_t* r, uint8_t* g,
                     uint8_t* b);

// Two tokens' rows into the device's input order (accel/device_layout.h):
// row r of token a (row_bytes at a + r * a_stride) and of token b, as
// 16-bit pairs interleaved: out + r * 2 * row_bytes holds a[0..1], b[0..1],
// a[2..3], b[2..3], ... `row_bytes` is even.
void InterleavePairRows(const int8_t* a, ptrdiff_t a_stride, const int8_t* b, ptrdiff_t b_stride,
                        int rows, int row_bytes, int8_t* out);

}  // namespace hgpipe::preprocess::simd

#endif  // HGPIPE_PREPROCESS_SIMD_KERNELS_H_
