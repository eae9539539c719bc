#include "preprocess/image_decoder.h"

#include <spng.h>
#include <turbojpeg.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace hgpipe::preprocess {
namespace {

bool StartsWith(absl::Span<const uint8_t> bytes, const char* magic, size_t n, size_t at = 0) {
  return bytes.size() >= at + n && std::memcmp(bytes.data() + at, magic, n) == 0;
}

constexpr char kPngSignature[] = "\x89PNG\r\n\x1a\n";
constexpr size_t kPngSignatureSize = 8;

absl::Status TooLarge(uint64_t width, uint64_t height, uint64_t max_pixels) {
  return absl::InvalidArgumentError(absl::StrCat("image too large: ", width, "x", height, " = ",
                                                 width * height, " pixels, more than the limit of ",
                                                 max_pixels));
}

// ---- JPEG (TurboJPEG) ----

// One decompressor per thread: a tjhandle must not be used concurrently, and
// creating one per image costs more than decoding a small one.
class ThreadJpegDecompressor {
 public:
  ThreadJpegDecompressor() : handle_(tjInitDecompress()) {}
  ~ThreadJpegDecompressor() {
    if (handle_ != nullptr) tjDestroy(handle_);
  }
  ThreadJpegDecompressor(const ThreadJpegDecompressor&) = delete;
  ThreadJpegDecompressor& operator=(const ThreadJpegDecompressor&) = delete;
  tjhandle get() const { return handle_; }
  // A fresh handle. After a failed tjDecompressHeader3, TurboJPEG 2.1's
  // handle misreads the next, valid image ("Bogus marker length"), so after
  // any error the handle is replaced.
  void Reset() {
    if (handle_ != nullptr) tjDestroy(handle_);
    handle_ = tjInitDecompress();
  }

 private:
  tjhandle handle_;
};

ThreadJpegDecompressor& JpegDecompressor() {
  thread_local ThreadJpegDecompressor decompressor;
  return decompressor;
}

bool IsTruncationMessage(absl::string_view message) {
  return absl::StrContains(message, "Premature end");
}

// Whether the data ends with the end-of-image marker (allowing a little
// padding after it, as some writers add).
bool EndsWithEoi(absl::Span<const uint8_t> encoded) {
  const size_t tail = std::min<size_t>(encoded.size(), 64);
  for (size_t i = encoded.size() - tail; i + 1 < encoded.size(); ++i) {
    if (encoded[i] == 0xFF && encoded[i + 1] == 0xD9) return true;
  }
  return false;
}

// libjpeg-turbo's message for a failed call, classified for the caller.
absl::Status JpegError(tjhandle tj, absl::Span<const uint8_t> encoded) {
  const std::string message = tjGetErrorStr2(tj);
  const bool has_eoi = EndsWithEoi(encoded);
  if (IsTruncationMessage(message) || !has_eoi) {
    return absl::InvalidArgumentError(absl::StrCat("truncated JPEG: ", message,
                                                   has_eoi ? "" : " (no end-of-image marker)"));
  }
  if (absl::StrContains(message, "Could not determine subsampling") ||
      absl::StrContains(message, "Unsupported")) {
    return absl::InvalidArgumentError(absl::StrCat("unsupported JPEG: ", message));
  }
  return absl::InvalidArgumentError(absl::StrCat("corrupt JPEG: ", message));
}

const char* JpegColorspaceName(int colorspace) {
  switch (colorspace) {
    case TJCS_RGB:
      return "RGB";
    case TJCS_YCbCr:
      return "YCbCr";
    case TJCS_GRAY:
      return "grayscale";
    case TJCS_CMYK:
      return "CMYK";
    case TJCS_YCCK:
      return "YCCK";
  }
  return "unknown";
}

// The smallest DCT scale meeting the caller's minimum size; 1/1 if none.
// Only 1/2, 1/4 and 1/8: libjpeg-turbo has SIMD inverse DCTs for those, and
// the other M/8 scales decode slower than the full image.
tjscalingfactor ChooseJpegScale(int width, int height, const DecodeOptions& options) {
  tjscalingfactor best = {1, 1};
  if (!options.jpeg_scaled_decode) return best;
  for (const tjscalingfactor f :
       {tjscalingfactor{1, 2}, tjscalingfactor{1, 4}, tjscalingfactor{1, 8}}) {
    const int w = TJSCALED(width, f);
    const int h = TJSCALED(height, f);
    if (w < options.jpeg_min_width || h < options.jpeg_min_height ||
        std::min(w, h) < options.jpeg_min_shorter_side) {
      continue;
    }
    // f < best  <=>  f.num * best.denom < best.num * f.denom
    if (int64_t{f.num} * best.denom < int64_t{best.num} * f.denom) best = f;
  }
  return best;
}

absl::StatusOr<ImageView> DecodeJpeg(absl::Span<const uint8_t> encoded,
                                     const DecodeOptions& options, ScratchBuffer* buffer) {
  ThreadJpegDecompressor& decompressor = JpegDecompressor();
  tjhandle tj = decompressor.get();
  if (tj == nullptr) {
    decompressor.Reset();  // try again next time
    return absl::InternalError("cannot create a TurboJPEG decompressor");
  }
  int width = 0, height = 0, subsampling = 0, colorspace = 0;
  if (tjDecompressHeader3(tj, encoded.data(), encoded.size(), &width, &height, &subsampling,
                          &colorspace) != 0) {
    // A warning alone still produced the header; the decode below repeats it
    // and decides, as for any warning.
    const bool warning_only = tjGetErrorCode(tj) == TJERR_WARNING && width > 0 && height > 0;
    if (!(warning_only && options.accept_jpeg_warnings)) {
      absl::Status error = JpegError(tj, encoded);
      decompressor.Reset();
      return error;
    }
  }
  if (width <= 0 || height <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("corrupt JPEG: dimensions ", width, "x", height));
  }
  if (uint64_t{static_cast<uint32_t>(width)} * static_cast<uint32_t>(height) > options.max_pixels) {
    return TooLarge(width, height, options.max_pixels);
  }
  if (colorspace == TJCS_CMYK || colorspace == TJCS_YCCK) {
    return absl::InvalidArgumentError(absl::StrCat("unsupported JPEG color space ",
                                                   JpegColorspaceName(colorspace),
                                                   " (only grayscale, YCbCr and RGB JPEGs)"));
  }
  const bool gray = options.want_gray || colorspace == TJCS_GRAY;
  const int channels = gray ? 1 : 3;
  const tjscalingfactor scale = ChooseJpegScale(width, height, options);
  const int out_width = TJSCALED(width, scale);
  const int out_height = TJSCALED(height, scale);
  const size_t row_stride = static_cast<size_t>(out_width) * channels;
  uint8_t* pixels = buffer->Get(row_stride * out_height);

  // Stop at the first warning unless warnings are accepted; LIMITSCANS bounds
  // the work a hostile progressive JPEG can cause.
  int flags = TJFLAG_LIMITSCANS;
  if (!options.accept_jpeg_warnings) flags |= TJFLAG_STOPONWARNING;
  if (tjDecompress2(tj, encoded.data(), encoded.size(), pixels, out_width,
                    static_cast<int>(row_stride), out_height, gray ? TJPF_GRAY : TJPF_RGB,
                    flags) != 0) {
    const bool warning_only = tjGetErrorCode(tj) == TJERR_WARNING;
    if (!(warning_only && options.accept_jpeg_warnings &&
          !IsTruncationMessage(tjGetErrorStr2(tj)))) {
      absl::Status error = JpegError(tj, encoded);
      decompressor.Reset();
      return error;
    }
  }
  ImageView view;
  view.pixels = pixels;
  view.height = out_height;
  view.width = out_width;
  view.channels = channels;
  view.pixel_stride = channels;
  view.row_stride = row_stride;
  return view;
}

// ---- PNG (libspng) ----

struct SpngCtxDeleter {
  void operator()(spng_ctx* ctx) const { spng_ctx_free(ctx); }
};

absl::Status PngError(int error) {
  if (error == SPNG_EOF || error == SPNG_IO_EOF) {
    return absl::InvalidArgumentError("truncated PNG: unexpected end of data");
  }
  if (error == SPNG_EUSER_WIDTH || error == SPNG_EUSER_HEIGHT) {
    return absl::InvalidArgumentError(absl::StrCat("image too large: PNG ", spng_strerror(error)));
  }
  return absl::InvalidArgumentError(absl::StrCat("corrupt PNG: ", spng_strerror(error)));
}

// PNG color types (PNG specification, IHDR).
constexpr int kPngGray = 0;
constexpr int kPngGrayAlpha = 4;

absl::StatusOr<ImageView> DecodePng(absl::Span<const uint8_t> encoded, const DecodeOptions& options,
                                    ScratchBuffer* buffer) {
  std::unique_ptr<spng_ctx, SpngCtxDeleter> ctx(spng_ctx_new(0));
  if (ctx == nullptr) return absl::InternalError("cannot create a libspng context");
  // Bound what hostile metadata can make libspng allocate: no chunk can be
  // longer than the input, and ancillary chunks we never read get little.
  const uint32_t max_side = static_cast<uint32_t>(
      std::min<uint64_t>(options.max_pixels, std::numeric_limits<int32_t>::max()));
  int error = spng_set_image_limits(ctx.get(), max_side, max_side);
  if (error == 0) error = spng_set_chunk_limits(ctx.get(), encoded.size(), 1 << 20);
  if (error == 0) error = spng_set_png_buffer(ctx.get(), encoded.data(), encoded.size());
  if (error != 0) return PngError(error);

  spng_ihdr ihdr;
  error = spng_get_ihdr(ctx.get(), &ihdr);
  if (error != 0) return PngError(error);
  if (uint64_t{ihdr.width} * ihdr.height > options.max_pixels) {
    return TooLarge(ihdr.width, ihdr.height, options.max_pixels);
  }
  // Deflate expands at most 1032:1, so a short input cannot hold a large
  // image: reject it before allocating its pixels.
  const int samples_per_pixel = ihdr.color_type == 2   ? 3
                                : ihdr.color_type == 4 ? 2
                                : ihdr.color_type == 6 ? 4
                                                       : 1;
  const uint64_t row_bytes =
      1 + (uint64_t{ihdr.width} * samples_per_pixel * ihdr.bit_depth + 7) / 8;
  constexpr uint64_t kMaxDeflateRatio = 1032;
  if (row_bytes * ihdr.height > (uint64_t{encoded.size()} + 1) * kMaxDeflateRatio) {
    return absl::InvalidArgumentError(absl::StrCat("truncated PNG: ", encoded.size(),
                                                   " bytes cannot hold a ", ihdr.width, "x",
                                                   ihdr.height, " image"));
  }
  // libspng converts every color type and bit depth (palette, 16-bit, alpha)
  // to RGB8; gray sources are then narrowed back to one channel.
  const bool gray_source = ihdr.color_type == kPngGray || ihdr.color_type == kPngGrayAlpha;
  const bool native_g8 = ihdr.color_type == kPngGray && ihdr.bit_depth <= 8;
  const int format = native_g8 ? SPNG_FMT_G8 : SPNG_FMT_RGB8;
  size_t size = 0;
  error = spng_decoded_image_size(ctx.get(), format, &size);
  if (error != 0) return PngError(error);
  const size_t width = ihdr.width;
  const size_t height = ihdr.height;
  const int decoded_channels = native_g8 ? 1 : 3;
  if (size != width * height * decoded_channels) {
    return absl::InternalError(absl::StrCat("libspng reports ", size, " bytes for a ", width, "x",
                                            height, "x", decoded_channels, " image"));
  }
  uint8_t* pixels = buffer->Get(size);
  error = spng_decode_image(ctx.get(), pixels, size, format, 0);
  if (error != 0) return PngError(error);

  int channels = decoded_channels;
  if (gray_source && decoded_channels == 3) {
    // R == G == B: keep one, in place (the read index never trails the write).
    const size_t n = width * height;
    for (size_t i = 0; i < n; ++i) pixels[i] = pixels[3 * i];
    channels = 1;
  }
  ImageView view;
  view.pixels = pixels;
  view.height = static_cast<int>(height);
  view.width = static_cast<int>(width);
  view.channels = channels;
  view.pixel_stride = channels;
  view.row_stride = width * channels;
  return view;
}

}  // namespace

ImageFormat DetectImageFormat(absl::Span<const uint8_t> b) {
  if (StartsWith(b, "\xFF\xD8", 2)) return ImageFormat::kJpeg;  // SOI marker
  if (StartsWith(b, kPngSignature, kPngSignatureSize)) return ImageFormat::kPng;
  // A cut-off signature is still a (truncated) PNG.
  if (b.size() >= 4 && b.size() < kPngSignatureSize &&
      std::memcmp(b.data(), kPngSignature, b.size()) == 0) {
    return ImageFormat::kPng;
  }
  if (StartsWith(b, "GIF87a", 6) || StartsWith(b, "GIF89a", 6)) return ImageFormat::kGif;
  if (StartsWith(b, "BM", 2) && b.size() >= 14) return ImageFormat::kBmp;
  if (StartsWith(b, "RIFF", 4) && StartsWith(b, "WEBP", 4, 8)) return ImageFormat::kWebp;
  if (StartsWith(b, "II*\0", 4) || StartsWith(b, "MM\0*", 4)) return ImageFormat::kTiff;
  if (StartsWith(b, "\0\0\0\x0CjP  \r\n\x87\n", 12) || StartsWith(b, "\xFF\x4F\xFF\x51", 4)) {
    return ImageFormat::kJpeg2000;
  }
  if (StartsWith(b, "\xFF\x0A", 2) || StartsWith(b, "\0\0\0\x0CJXL \r\n\x87\n", 12)) {
    return ImageFormat::kJpegXl;
  }
  if (StartsWith(b, "ftyp", 4, 4)) {
    for (const char* brand : {"heic", "heix", "hevc", "mif1", "msf1", "avif", "avis"}) {
      if (StartsWith(b, brand, 4, 8)) return ImageFormat::kHeif;
    }
  }
  if (StartsWith(b, "qoif", 4)) return ImageFormat::kQoi;
  return ImageFormat::kUnknown;
}

const char* ImageFormatName(ImageFormat format) {
  switch (format) {
    case ImageFormat::kUnknown:
      return "unknown";
    case ImageFormat::kJpeg:
      return "JPEG";
    case ImageFormat::kPng:
      return "PNG";
    case ImageFormat::kGif:
      return "GIF";
    case ImageFormat::kBmp:
      return "BMP";
    case ImageFormat::kWebp:
      return "WebP";
    case ImageFormat::kTiff:
      return "TIFF";
    case ImageFormat::kJpeg2000:
      return "JPEG 2000";
    case ImageFormat::kJpegXl:
      return "JPEG XL";
    case ImageFormat::kHeif:
      return "HEIF/AVIF";
    case ImageFormat::kQoi:
      return "QOI";
  }
  return "unknown";
}

absl::StatusOr<ImageView> DecodeImage(absl::Span<const uint8_t> encoded,
                                      const DecodeOptions& options, ScratchBuffer* buffer) {
  if (encoded.empty()) {
    return absl::InvalidArgumentError("empty image: 0 bytes");
  }
  const ImageFormat format = DetectImageFormat(encoded);
  switch (format) {
    case ImageFormat::kJpeg:
      return DecodeJpeg(encoded, options, buffer);
    case ImageFormat::kPng:
      return DecodePng(encoded, options, buffer);
    case ImageFormat::kUnknown: {
      std::string head;
      for (size_t i = 0; i < std::min<size_t>(encoded.size(), 8); ++i) {
        absl::StrAppendFormat(&head, "%s%02x", i == 0 ? "" : " ", encoded[i]);
      }
      return absl::InvalidArgumentError(absl::StrCat("unrecognized image format (", encoded.size(),
                                                     " bytes starting ", head,
                                                     "); supported: JPEG, PNG"));
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "unsupported image format ", ImageFormatName(format), "; supported: JPEG, PNG"));
  }
}

}  // namespace hgpipe::preprocess
