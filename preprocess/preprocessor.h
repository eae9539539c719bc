// Images -> the accelerator's int8 input, as declared by Options (options.h):
// decode, convert channels, resize / center crop, normalize, quantize and
// patchify. After the decode (of a JPEG, only the rectangle the model reads),
// one fused pass (fused_pass.h) does the rest and writes straight into the
// caller's span: with OutputLayout::kDevicePacked that can be a board's input
// slot, so no 150 KB intermediate copy or separate PackImage pass is needed.
// docs/preprocessing.md has the whole design.
//
// Steady state allocates nothing and takes no lock: scratch memory is per
// thread and kept (buffers over 8 MB are freed after their image);
// libjpeg-turbo's own per-image working memory is the exception.
//
// Thread safety: a Preprocessor is immutable after Create; every method is
// const and may be called from any number of threads at once (scratch memory
// is per thread), e.g. from the server's worker pool.
#ifndef HGPIPE_PREPROCESS_PREPROCESSOR_H_
#define HGPIPE_PREPROCESS_PREPROCESSOR_H_

#include <array>
#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "preprocess/image.h"
#include "preprocess/image_decoder.h"
#include "preprocess/options.h"

namespace hgpipe::preprocess {

class Preprocessor {
 public:
  // InvalidArgument naming the field if `options` does not validate.
  static absl::StatusOr<Preprocessor> Create(const Options& options);

  // A cheap value (about 1 KB): copy or move freely.
  Preprocessor(const Preprocessor&) = default;
  Preprocessor& operator=(const Preprocessor&) = default;

  const Options& options() const { return options_; }
  // Bytes of one image's output: tokens * token_values.
  size_t input_bytes() const { return options_.input_bytes(); }

  // Decodes a JPEG or PNG and writes the model's input into `out`, which must
  // hold exactly input_bytes() (in options().output_layout). InvalidArgument
  // says what is wrong with the image ("truncated JPEG: ...", "unsupported
  // image format GIF ...", "image too large: ..."), without an image index:
  // the caller adds that. On error `out` holds unspecified values.
  absl::Status EncodedToPatches(absl::Span<const uint8_t> encoded, absl::Span<int8_t> out) const;

  // What EncodedToPatches would refuse on the image's header alone (format,
  // size, pixel limit, color space), checked in microseconds without
  // decoding: a server refuses such images before queueing them. OK does
  // not promise that EncodedToPatches succeeds.
  absl::Status CheckEncoded(absl::Span<const uint8_t> encoded) const;

  // What PixelsToPatches refuses about a size (non-positive sides, a
  // channel count other than 1, 3 or 4, more pixels than the limit).
  absl::Status CheckPixels(int height, int width, int channels) const;

  // The same from raw UINT8 pixels, row-major HWC, `channels` 1 (gray), 3
  // (RGB) or 4 (RGBA, alpha ignored); `hwc` holds height*width*channels bytes
  // and is only read. InvalidArgument if a size is out of range.
  absl::Status PixelsToPatches(const uint8_t* hwc, int height, int width, int channels,
                               absl::Span<int8_t> out) const;
  // As above, also checking that `hwc` holds exactly height*width*channels.
  absl::Status PixelsToPatches(absl::Span<const uint8_t> hwc, int height, int width, int channels,
                               absl::Span<int8_t> out) const;

  // The int8 value a pixel value `v` of `channel` becomes (the normalization
  // and quantization step alone; exposed for tests and documentation).
  int8_t QuantizedValue(int channel, uint8_t v) const { return lut_[channel][v]; }

 private:
  explicit Preprocessor(const Options& options);
  absl::Status ImageToPatches(const ImageView& image, absl::Span<int8_t> out) const;
  // How EncodedToPatches decodes (limits, gray, DCT scaling).
  DecodeOptions Decoding() const;
  absl::Status CheckOutput(absl::Span<int8_t> out) const;

  Options options_;
  // lut_[c][v]: normalized and quantized value of channel c's pixel value v.
  std::array<std::array<int8_t, 256>, 3> lut_;
};

}  // namespace hgpipe::preprocess

#endif  // HGPIPE_PREPROCESS_PREPROCESSOR_H_
