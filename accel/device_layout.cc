#include "accel/device_layout.h"

#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace hgpipe::accel {
namespace {

// Device order is the two token rows interleaved as 16-bit pairs of values:
// out = [r0[0..1], r1[0..1], r0[2..3], r1[2..3], ...]. Packing interleaves
// the rows' 16-bit lanes; unpacking splits them again. Both run once per
// image on the host's hot path (150 KB each), hence the SSE2 versions; the
// plain loops below are the definition and serve other hosts (VCK190 ARM).
void InterleaveRows(const int8_t* r0, const int8_t* r1, size_t pairs, int8_t* out) {
  size_t i = 0;
#if defined(__SSE2__)
  for (; i + 8 <= pairs; i += 8) {  // 8 pairs = 16 bytes of each row
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r0 + 2 * i));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r1 + 2 * i));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 4 * i), _mm_unpacklo_epi16(a, b));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 4 * i + 16), _mm_unpackhi_epi16(a, b));
  }
#endif
  for (; i < pairs; ++i) {
    std::memcpy(out + 4 * i, r0 + 2 * i, 2);
    std::memcpy(out + 4 * i + 2, r1 + 2 * i, 2);
  }
}

void SplitRows(const int8_t* in, size_t pairs, int8_t* r0, int8_t* r1) {
  size_t i = 0;
#if defined(__SSE2__)
  for (; i + 8 <= pairs; i += 8) {
    // 32 bytes = 8 beats of [r0 pair, r1 pair]: gather the even and odd
    // 16-bit lanes.
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + 4 * i));
    const __m128i y = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + 4 * i + 16));
    // Deinterleave 16-bit lanes: shuffle each half to [evens, odds].
    const __m128i xs = _mm_shufflehi_epi16(_mm_shufflelo_epi16(x, 0xD8), 0xD8);
    const __m128i ys = _mm_shufflehi_epi16(_mm_shufflelo_epi16(y, 0xD8), 0xD8);
    const __m128i xe = _mm_shuffle_epi32(xs, 0xD8);  // [x evens (4), x odds (4)]
    const __m128i ye = _mm_shuffle_epi32(ys, 0xD8);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(r0 + 2 * i), _mm_unpacklo_epi64(xe, ye));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(r1 + 2 * i), _mm_unpackhi_epi64(xe, ye));
  }
#endif
  for (; i < pairs; ++i) {
    std::memcpy(r0 + 2 * i, in + 4 * i, 2);
    std::memcpy(r1 + 2 * i, in + 4 * i + 2, 2);
  }
}

}  // namespace

void PackImage(const DeviceGeometry& g, const int8_t* flat, int8_t* device) {
  const size_t row = g.token_values;
  for (uint32_t tp = 0; tp < g.tokens / 2; ++tp) {
    const int8_t* r0 = flat + 2 * tp * row;
    InterleaveRows(r0, r0 + row, row / 2, device + 2 * tp * row);
  }
}

void UnpackImage(const DeviceGeometry& g, const int8_t* device, int8_t* flat) {
  const size_t row = g.token_values;
  for (uint32_t tp = 0; tp < g.tokens / 2; ++tp) {
    int8_t* r0 = flat + 2 * tp * row;
    SplitRows(device + 2 * tp * row, row / 2, r0, r0 + row);
  }
}

}  // namespace hgpipe::accel
