// Small JPEG / PNG encoders over the same libraries the decoder uses, for
// tests, benchmarks and clients that make images (not on the serving path).
//
// Thread safety: all functions may be called concurrently.
#ifndef HGPIPE_PREPROCESS_IMAGE_ENCODER_H_
#define HGPIPE_PREPROCESS_IMAGE_ENCODER_H_

#include <array>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace hgpipe::preprocess {

struct JpegSpec {
  int width = 0;
  int height = 0;
  // 1 (gray), 3 (RGB) or 4 (CMYK, for testing rejection).
  int channels = 3;
  int quality = 90;
  // Chroma subsampling of color images: 444, 422 or 420.
  int subsampling = 420;
  bool progressive = false;
};

// `pixels`: height x width x channels bytes, row-major. InvalidArgument on a
// bad spec or size, Internal if libjpeg-turbo fails.
absl::StatusOr<std::vector<uint8_t>> EncodeJpeg(absl::Span<const uint8_t> pixels,
                                                const JpegSpec& spec);

struct PngSpec {
  int width = 0;
  int height = 0;
  // PNG color type: 0 gray, 2 RGB, 3 palette, 4 gray + alpha, 6 RGBA.
  int color_type = 2;
  // 1, 2, 4, 8 or 16, as the PNG specification allows for the color type.
  int bit_depth = 8;
  bool interlaced = false;  // Adam7
  // Color type 3 only: RGB entries.
  std::vector<std::array<uint8_t, 3>> palette;
};

// `samples`: the image in PNG sample layout, rows packed, 16-bit samples in
// host byte order (libspng's SPNG_FMT_PNG), sub-byte samples packed MSB first.
absl::StatusOr<std::vector<uint8_t>> EncodePng(absl::Span<const uint8_t> samples,
                                               const PngSpec& spec);

}  // namespace hgpipe::preprocess

#endif  // HGPIPE_PREPROCESS_IMAGE_ENCODER_H_
