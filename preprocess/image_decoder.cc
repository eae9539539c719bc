#include "preprocess/image_decoder.h"

// clang-format off
#include <cstddef>
#include <cstdio>
#include <jpeglib.h>  // needs size_t and FILE first
#include <jerror.h>
// clang-format on
#include <spng.h>

#include <algorithm>
#include <csetjmp>
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

// ---- JPEG (libjpeg-turbo's libjpeg API) ----
//
// The libjpeg API rather than TurboJPEG's, because it can decode part of an
// image: jpeg_crop_scanline skips the columns a model never reads (no
// inverse DCT, upsampling or color conversion for them) and
// jpeg_skip_scanlines the rows (entropy decoding only).

// libjpeg reports errors by calling error_exit, which must not return: it
// jumps back to the setjmp in DecodeJpegRegion. Warnings stop the decode too
// unless accepted (TurboJPEG's TJFLAG_STOPONWARNING); running out of data
// always does.
struct JpegErrorManager {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  bool accept_warnings = false;
  char message[JMSG_LENGTH_MAX];
};

[[noreturn]] void JpegErrorExit(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

void JpegEmitMessage(j_common_ptr cinfo, int level) {
  if (level >= 0) return;  // trace messages
  auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  if (cinfo->err->msg_code == JWRN_JPEG_EOF || !err->accept_warnings) {
    (*cinfo->err->format_message)(cinfo, err->message);
    std::longjmp(err->jump, 1);
  }
  ++cinfo->err->num_warnings;
}

// Bounds the work a hostile progressive JPEG can cause (as TurboJPEG's
// TJFLAG_LIMITSCANS): at most 500 scans.
constexpr int kMaxScans = 500;

void JpegProgress(j_common_ptr cinfo) {
  auto* d = reinterpret_cast<j_decompress_ptr>(cinfo);
  if (d->progressive_mode && d->input_scan_number > kMaxScans) {
    auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
    std::snprintf(err->message, sizeof(err->message), "progressive JPEG with more than %d scans",
                  kMaxScans);
    std::longjmp(err->jump, 1);
  }
}

// One decompressor per thread, reused image after image (its permanent
// memory pool stays; each image's working memory is libjpeg's own).
class ThreadJpegDecompressor {
 public:
  ThreadJpegDecompressor() {
    cinfo_.err = jpeg_std_error(&err_.pub);
    err_.pub.error_exit = JpegErrorExit;
    err_.pub.emit_message = JpegEmitMessage;
    progress_.progress_monitor = JpegProgress;
    jpeg_create_decompress(&cinfo_);  // fails only without memory (aborts)
    cinfo_.progress = &progress_;
  }
  ~ThreadJpegDecompressor() { jpeg_destroy_decompress(&cinfo_); }
  ThreadJpegDecompressor(const ThreadJpegDecompressor&) = delete;
  ThreadJpegDecompressor& operator=(const ThreadJpegDecompressor&) = delete;

  j_decompress_ptr cinfo() { return &cinfo_; }
  JpegErrorManager& err() { return err_; }

 private:
  jpeg_decompress_struct cinfo_;
  JpegErrorManager err_;
  jpeg_progress_mgr progress_;
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

// libjpeg's message for a failed decode, classified for the caller.
absl::Status JpegError(absl::string_view message, absl::Span<const uint8_t> encoded) {
  if (absl::StrContains(message, "Maximum supported image dimension")) {
    // libjpeg's own side limit, checked on the header (as ours on pixels).
    return absl::InvalidArgumentError(absl::StrCat("image too large: JPEG: ", message));
  }
  const bool has_eoi = EndsWithEoi(encoded);
  if (IsTruncationMessage(message) || !has_eoi) {
    return absl::InvalidArgumentError(
        absl::StrCat("truncated JPEG: ", message, has_eoi ? "" : " (no end-of-image marker)"));
  }
  if (absl::StrContains(message, "Unsupported") || absl::StrContains(message, "Sorry") ||
      absl::StrContains(message, "progressive JPEG with more than")) {
    return absl::InvalidArgumentError(absl::StrCat("unsupported JPEG: ", message));
  }
  return absl::InvalidArgumentError(absl::StrCat("corrupt JPEG: ", message));
}

const char* JpegColorspaceName(J_COLOR_SPACE colorspace) {
  switch (colorspace) {
    case JCS_RGB: return "RGB";
    case JCS_YCbCr: return "YCbCr";
    case JCS_GRAYSCALE: return "grayscale";
    case JCS_CMYK: return "CMYK";
    case JCS_YCCK: return "YCCK";
    default: return "unknown";
  }
}

// What a JPEG's header alone rules out: no pixels, too many, a color space
// we do not decode.
absl::Status CheckJpegHeader(const jpeg_decompress_struct& cinfo, const DecodeOptions& options) {
  const uint64_t width = cinfo.image_width, height = cinfo.image_height;
  if (width == 0 || height == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("corrupt JPEG: dimensions ", width, "x", height));
  }
  if (width * height > options.max_pixels) return TooLarge(width, height, options.max_pixels);
  const J_COLOR_SPACE colorspace = cinfo.jpeg_color_space;
  if (colorspace == JCS_CMYK || colorspace == JCS_YCCK) {
    return absl::InvalidArgumentError(absl::StrCat("unsupported JPEG color space ",
                                                   JpegColorspaceName(colorspace),
                                                   " (only grayscale, YCbCr and RGB JPEGs)"));
  }
  return absl::OkStatus();
}

// Reads a JPEG's header only (no entropy-coded data) and checks it.
absl::Status CheckJpegHeaderOnly(absl::Span<const uint8_t> encoded, const DecodeOptions& options) {
  ThreadJpegDecompressor& decompressor = JpegDecompressor();
  j_decompress_ptr cinfo = decompressor.cinfo();
  JpegErrorManager& err = decompressor.err();
  err.accept_warnings = options.accept_jpeg_warnings;
  err.pub.num_warnings = 0;
  if (setjmp(err.jump) != 0) {
    jpeg_abort_decompress(cinfo);
    return JpegError(err.message, encoded);
  }
  jpeg_mem_src(cinfo, encoded.data(), static_cast<unsigned long>(encoded.size()));
  const int header = jpeg_read_header(cinfo, TRUE);
  // No libjpeg call can fail after this: a Status may live.
  absl::Status s = header == JPEG_HEADER_OK
                       ? CheckJpegHeader(*cinfo, options)
                       : absl::InvalidArgumentError("corrupt JPEG: tables only, no image");
  jpeg_abort_decompress(cinfo);
  return s;
}

// The smallest DCT scale meeting the caller's minimum size; 1/1 if none.
// Only 1/2, 1/4 and 1/8: libjpeg-turbo has SIMD inverse DCTs for those; the
// other M/8 scales decode slower than the full image (a 500x375 photo at
// 6/8 or 7/8 took 1.3 to 1.5x as long as at 8/8, docs/BENCHMARKS.md).
int ChooseJpegScaleDenominator(int width, int height, const DecodeOptions& options) {
  int best = 1;
  if (!options.jpeg_scaled_decode) return best;
  for (const int denom : {2, 4, 8}) {
    // libjpeg's scaled size: ceil(size / denom).
    const int w = (width + denom - 1) / denom;
    const int h = (height + denom - 1) / denom;
    if (w < options.jpeg_min_width || h < options.jpeg_min_height ||
        std::min(w, h) < options.jpeg_min_shorter_side) {
      break;  // smaller scales are smaller still
    }
    best = denom;
  }
  return best;
}

// Columns and rows decoded beyond the requested rectangle, so the pixels a
// caller reads never sit at a crop edge, where libjpeg's upsampling lacks
// its neighbours.
constexpr int kRegionMargin = 16;

absl::StatusOr<DecodedRegion> DecodeJpegRegion(absl::Span<const uint8_t> encoded,
                                               const DecodeOptions& options, RegionChooser choose,
                                               ScratchBuffer* buffer) {
  ThreadJpegDecompressor& decompressor = JpegDecompressor();
  j_decompress_ptr cinfo = decompressor.cinfo();
  JpegErrorManager& err = decompressor.err();
  err.accept_warnings = options.accept_jpeg_warnings;
  err.pub.num_warnings = 0;
  // Nothing with a destructor may be created between here and the last
  // libjpeg call: a longjmp back here would skip it.
  absl::Status early;  // an error found between libjpeg calls
  DecodedRegion region;
  if (setjmp(err.jump) != 0) {
    jpeg_abort_decompress(cinfo);
    return JpegError(err.message, encoded);
  }
  jpeg_mem_src(cinfo, encoded.data(), static_cast<unsigned long>(encoded.size()));
  if (jpeg_read_header(cinfo, TRUE) != JPEG_HEADER_OK) {
    jpeg_abort_decompress(cinfo);
    return absl::InvalidArgumentError("corrupt JPEG: tables only, no image");
  }
  // Before anything is allocated for the pixels.
  if (absl::Status s = CheckJpegHeader(*cinfo, options); !s.ok()) {
    jpeg_abort_decompress(cinfo);
    return s;
  }
  const uint64_t width = cinfo->image_width, height = cinfo->image_height;
  const J_COLOR_SPACE colorspace = cinfo->jpeg_color_space;
  const bool gray = options.want_gray || colorspace == JCS_GRAYSCALE;
  const int channels = gray ? 1 : 3;
  cinfo->out_color_space = gray ? JCS_GRAYSCALE : JCS_RGB;
  cinfo->scale_num = 1;
  cinfo->scale_denom =
      ChooseJpegScaleDenominator(static_cast<int>(width), static_cast<int>(height), options);
  jpeg_start_decompress(cinfo);
  const int out_width = static_cast<int>(cinfo->output_width);
  const int out_height = static_cast<int>(cinfo->output_height);

  int x0 = 0, y0 = 0, x1 = out_width, y1 = out_height;
  {
    absl::StatusOr<Rect> rect = choose(out_width, out_height);
    if (rect.ok()) {
      x0 = std::max(0, rect->x0 - kRegionMargin);
      y0 = std::max(0, rect->y0 - kRegionMargin);
      x1 = std::min(out_width, rect->x1 + kRegionMargin);
      y1 = std::min(out_height, rect->y1 + kRegionMargin);
    } else {
      early = rect.status();
    }
  }
  if (!early.ok() || x0 >= x1 || y0 >= y1) {
    jpeg_abort_decompress(cinfo);
    if (early.ok()) early = absl::InternalError("empty JPEG region requested");
    return early;
  }
  JDIMENSION crop_x = static_cast<JDIMENSION>(x0);
  JDIMENSION crop_width = static_cast<JDIMENSION>(x1 - x0);
  if (crop_width < cinfo->output_width) jpeg_crop_scanline(cinfo, &crop_x, &crop_width);
  const size_t row_stride = static_cast<size_t>(crop_width) * channels;
  uint8_t* pixels = buffer->Get(row_stride * static_cast<size_t>(y1 - y0));
  if (y0 > 0) jpeg_skip_scanlines(cinfo, static_cast<JDIMENSION>(y0));
  while (cinfo->output_scanline < static_cast<JDIMENSION>(y1)) {
    JSAMPROW rows[4];
    const int want = std::min<int>(4, y1 - static_cast<int>(cinfo->output_scanline));
    for (int i = 0; i < want; ++i) {
      rows[i] = pixels + (cinfo->output_scanline - y0 + i) * row_stride;
    }
    if (jpeg_read_scanlines(cinfo, rows, static_cast<JDIMENSION>(want)) == 0) {
      jpeg_abort_decompress(cinfo);  // suspension: cannot happen with a memory source
      return absl::InvalidArgumentError("truncated JPEG: no more scanlines");
    }
  }
  // The rest is entropy-decoded only, so truncation and corruption are
  // still found (and the image judged as a whole, as a full decode would).
  if (cinfo->output_scanline < cinfo->output_height) {
    jpeg_skip_scanlines(cinfo, cinfo->output_height - cinfo->output_scanline);
  }
  jpeg_finish_decompress(cinfo);

  region.view.pixels = pixels;
  region.view.width = static_cast<int>(crop_width);
  region.view.height = y1 - y0;
  region.view.channels = channels;
  region.view.pixel_stride = channels;
  region.view.row_stride = row_stride;
  region.full_width = out_width;
  region.full_height = out_height;
  region.x = static_cast<int>(crop_x);
  region.y = y0;
  return region;
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

// A libspng context over `encoded` whose header was read and checked
// before anything is allocated for the pixels.
absl::StatusOr<std::unique_ptr<spng_ctx, SpngCtxDeleter>> OpenPng(absl::Span<const uint8_t> encoded,
                                                                  const DecodeOptions& options,
                                                                  spng_ihdr* ihdr_out) {
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
  *ihdr_out = ihdr;
  return ctx;
}

absl::StatusOr<ImageView> DecodePng(absl::Span<const uint8_t> encoded, const DecodeOptions& options,
                                    ScratchBuffer* buffer) {
  spng_ihdr ihdr;
  absl::StatusOr<std::unique_ptr<spng_ctx, SpngCtxDeleter>> opened =
      OpenPng(encoded, options, &ihdr);
  if (!opened.ok()) return opened.status();
  spng_ctx* const ctx = opened->get();
  // libspng converts every color type and bit depth (palette, 16-bit, alpha)
  // to RGB8; gray sources are then narrowed back to one channel.
  const bool gray_source = ihdr.color_type == kPngGray || ihdr.color_type == kPngGrayAlpha;
  const bool native_g8 = ihdr.color_type == kPngGray && ihdr.bit_depth <= 8;
  const int format = native_g8 ? SPNG_FMT_G8 : SPNG_FMT_RGB8;
  size_t size = 0;
  int error = spng_decoded_image_size(ctx, format, &size);
  if (error != 0) return PngError(error);
  const size_t width = ihdr.width;
  const size_t height = ihdr.height;
  const int decoded_channels = native_g8 ? 1 : 3;
  if (size != width * height * decoded_channels) {
    return absl::InternalError(absl::StrCat("libspng reports ", size, " bytes for a ", width, "x",
                                            height, "x", decoded_channels, " image"));
  }
  uint8_t* pixels = buffer->Get(size);
  error = spng_decode_image(ctx, pixels, size, format, 0);
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

// Neither JPEG nor PNG: which format it is, or its first bytes.
absl::Status FormatError(absl::Span<const uint8_t> encoded, ImageFormat format) {
  if (format != ImageFormat::kUnknown) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unsupported image format ", ImageFormatName(format), "; supported: JPEG, PNG"));
  }
  std::string head;
  for (size_t i = 0; i < std::min<size_t>(encoded.size(), 8); ++i) {
    absl::StrAppendFormat(&head, "%s%02x", i == 0 ? "" : " ", encoded[i]);
  }
  return absl::InvalidArgumentError(absl::StrCat("unrecognized image format (", encoded.size(),
                                                 " bytes starting ", head,
                                                 "); supported: JPEG, PNG"));
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
    case ImageFormat::kUnknown: return "unknown";
    case ImageFormat::kJpeg: return "JPEG";
    case ImageFormat::kPng: return "PNG";
    case ImageFormat::kGif: return "GIF";
    case ImageFormat::kBmp: return "BMP";
    case ImageFormat::kWebp: return "WebP";
    case ImageFormat::kTiff: return "TIFF";
    case ImageFormat::kJpeg2000: return "JPEG 2000";
    case ImageFormat::kJpegXl: return "JPEG XL";
    case ImageFormat::kHeif: return "HEIF/AVIF";
    case ImageFormat::kQoi: return "QOI";
  }
  return "unknown";
}

absl::StatusOr<DecodedRegion> DecodeImageRegion(absl::Span<const uint8_t> encoded,
                                                const DecodeOptions& options, RegionChooser choose,
                                                ScratchBuffer* buffer) {
  if (encoded.empty()) {
    return absl::InvalidArgumentError("empty image: 0 bytes");
  }
  const ImageFormat format = DetectImageFormat(encoded);
  switch (format) {
    case ImageFormat::kJpeg: return DecodeJpegRegion(encoded, options, choose, buffer);
    case ImageFormat::kPng: {
      absl::StatusOr<ImageView> image = DecodePng(encoded, options, buffer);
      if (!image.ok()) return image.status();
      absl::StatusOr<Rect> wanted = choose(image->width, image->height);
      if (!wanted.ok()) return wanted.status();
      DecodedRegion region;
      region.view = *image;
      region.full_width = image->width;
      region.full_height = image->height;
      return region;
    }
    default: return FormatError(encoded, format);
  }
}

absl::Status CheckImageHeader(absl::Span<const uint8_t> encoded, const DecodeOptions& options) {
  if (encoded.empty()) return absl::InvalidArgumentError("empty image: 0 bytes");
  const ImageFormat format = DetectImageFormat(encoded);
  switch (format) {
    case ImageFormat::kJpeg: return CheckJpegHeaderOnly(encoded, options);
    case ImageFormat::kPng: {
      spng_ihdr ihdr;
      return OpenPng(encoded, options, &ihdr).status();
    }
    default: return FormatError(encoded, format);
  }
}

absl::StatusOr<ImageView> DecodeImage(absl::Span<const uint8_t> encoded,
                                      const DecodeOptions& options, ScratchBuffer* buffer) {
  auto whole = [](int width, int height) -> absl::StatusOr<Rect> {
    return Rect{0, 0, width, height};
  };
  absl::StatusOr<DecodedRegion> region = DecodeImageRegion(encoded, options, whole, buffer);
  if (!region.ok()) return region.status();
  return region->view;
}

}  // namespace hgpipe::preprocess
