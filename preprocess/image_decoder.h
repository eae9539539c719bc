// Decoding of untrusted encoded images: JPEG (libjpeg-turbo's libjpeg API)
// and PNG (libspng), detected by their magic bytes. Any byte string is safe to
// pass: bad input yields InvalidArgument saying what is wrong, never a crash.
//
// Thread safety: all functions may be called concurrently; each thread keeps
// its own decoder state.
#ifndef HGPIPE_PREPROCESS_IMAGE_DECODER_H_
#define HGPIPE_PREPROCESS_IMAGE_DECODER_H_

#include <cstdint>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "preprocess/image.h"

namespace hgpipe::preprocess {

enum class ImageFormat {
  kUnknown,
  kJpeg,
  kPng,
  // Recognized only to be rejected by name.
  kGif,
  kBmp,
  kWebp,
  kTiff,
  kJpeg2000,
  kJpegXl,
  kHeif,  // HEIC / AVIF
  kQoi,
};

// The format announced by the first bytes (kUnknown if none matches).
ImageFormat DetectImageFormat(absl::Span<const uint8_t> bytes);
// "JPEG", "PNG", "GIF", ...
const char* ImageFormatName(ImageFormat format);

struct DecodeOptions {
  // Images declaring more pixels (width x height) are rejected before decoding.
  uint64_t max_pixels = 25'000'000;
  // The caller wants gray: a color JPEG is decoded straight to its luma.
  bool want_gray = false;
  // See Options::accept_jpeg_warnings.
  bool accept_jpeg_warnings = false;
  // JPEG DCT scaling: decode at the smallest scale of 1/2, 1/4, 1/8 whose
  // result is at least jpeg_min_width x jpeg_min_height and has a shorter
  // side of at least jpeg_min_shorter_side (full size if none). Off when false.
  bool jpeg_scaled_decode = false;
  int jpeg_min_width = 0;
  int jpeg_min_height = 0;
  int jpeg_min_shorter_side = 0;
};

// A rectangle of an image: columns [x0, x1), rows [y0, y1).
struct Rect {
  int x0 = 0;
  int y0 = 0;
  int x1 = 0;
  int y1 = 0;
};

// Given the size the image decodes to (after any DCT scaling), the
// rectangle the caller will read, or an error to stop the decode with.
using RegionChooser = absl::FunctionRef<absl::StatusOr<Rect>(int width, int height)>;

// Part of an image: `view` holds the pixels of columns [x, x + view.width)
// and rows [y, y + view.height) of the full_width x full_height image.
struct DecodedRegion {
  ImageView view;
  int full_width = 0;
  int full_height = 0;
  int x = 0;
  int y = 0;
};

// As DecodeImage, but a JPEG is decoded only as far as needed: at least the
// rectangle `choose` asks for (called once, after the header and before any
// pixel is decoded), plus a margin and libjpeg's block alignment; its other
// columns are skipped and its other rows entropy-decoded only, so corrupt or
// truncated data anywhere is still an error. Other formats are decoded
// whole (and `choose` called after). Errors as DecodeImage's, or choose's
// own.
absl::StatusOr<DecodedRegion> DecodeImageRegion(absl::Span<const uint8_t> encoded,
                                                const DecodeOptions& options, RegionChooser choose,
                                                ScratchBuffer* buffer);

// What the header alone tells about `encoded`, without decoding any pixel
// and cheaply (microseconds): OK if the format is supported and the header
// declares an image DecodeImage would accept; else the InvalidArgument
// DecodeImage would give (empty, unrecognized or unsupported format, a
// corrupt or truncated header, too many pixels, an unsupported JPEG color
// space). OK does not promise the rest of the data decodes.
absl::Status CheckImageHeader(absl::Span<const uint8_t> encoded, const DecodeOptions& options);

// Decodes `encoded` into `buffer` (grown as needed) and returns a view of it:
// 8-bit, packed rows, 1 channel for gray sources (and for JPEGs when
// want_gray) else 3 (RGB; alpha dropped, palettes expanded, 16-bit samples
// reduced to their high byte). The view is valid until `buffer` is next used.
// InvalidArgument: empty, unrecognized or unsupported format, corrupt or
// truncated data, unsupported JPEG color space, too many pixels; the message
// says which ("truncated JPEG: ...").
absl::StatusOr<ImageView> DecodeImage(absl::Span<const uint8_t> encoded,
                                      const DecodeOptions& options, ScratchBuffer* buffer);

}  // namespace hgpipe::preprocess

#endif  // HGPIPE_PREPROCESS_IMAGE_DECODER_H_
