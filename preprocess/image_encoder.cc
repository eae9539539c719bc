#include "preprocess/image_encoder.h"

#include <spng.h>
#include <turbojpeg.h>

#include <cstdlib>
#include <memory>

#include "absl/strings/str_cat.h"

namespace hgpipe::preprocess {
namespace {

struct TjDeleter {
  void operator()(void* handle) const { tjDestroy(handle); }
};
struct SpngCtxDeleter {
  void operator()(spng_ctx* ctx) const { spng_ctx_free(ctx); }
};

}  // namespace

absl::StatusOr<std::vector<uint8_t>> EncodeJpeg(absl::Span<const uint8_t> pixels,
                                                const JpegSpec& spec) {
  int format;
  switch (spec.channels) {
    case 1: format = TJPF_GRAY; break;
    case 3: format = TJPF_RGB; break;
    case 4: format = TJPF_CMYK; break;
    default:
      return absl::InvalidArgumentError(absl::StrCat("EncodeJpeg: channels ", spec.channels));
  }
  int subsampling;
  switch (spec.subsampling) {
    case 444: subsampling = TJSAMP_444; break;
    case 422: subsampling = TJSAMP_422; break;
    case 420: subsampling = TJSAMP_420; break;
    default:
      return absl::InvalidArgumentError(absl::StrCat("EncodeJpeg: subsampling ", spec.subsampling));
  }
  if (spec.channels == 1) subsampling = TJSAMP_GRAY;
  if (spec.width <= 0 || spec.height <= 0 ||
      pixels.size() != static_cast<size_t>(spec.width) * spec.height * spec.channels) {
    return absl::InvalidArgumentError(absl::StrCat("EncodeJpeg: ", pixels.size(), " bytes for ",
                                                   spec.width, "x", spec.height, "x",
                                                   spec.channels));
  }
  std::unique_ptr<void, TjDeleter> tj(tjInitCompress());
  if (tj == nullptr) return absl::InternalError("EncodeJpeg: tjInitCompress failed");
  unsigned char* jpeg = nullptr;
  unsigned long size = 0;
  const int flags = spec.progressive ? TJFLAG_PROGRESSIVE : 0;
  if (tjCompress2(tj.get(), pixels.data(), spec.width, 0, spec.height, format, &jpeg, &size,
                  subsampling, spec.quality, flags) != 0) {
    const std::string message = tjGetErrorStr2(tj.get());
    tjFree(jpeg);
    return absl::InternalError(absl::StrCat("EncodeJpeg: ", message));
  }
  std::vector<uint8_t> out(jpeg, jpeg + size);
  tjFree(jpeg);
  return out;
}

absl::StatusOr<std::vector<uint8_t>> EncodePng(absl::Span<const uint8_t> samples,
                                               const PngSpec& spec) {
  std::unique_ptr<spng_ctx, SpngCtxDeleter> ctx(spng_ctx_new(SPNG_CTX_ENCODER));
  if (ctx == nullptr) return absl::InternalError("EncodePng: spng_ctx_new failed");
  spng_set_option(ctx.get(), SPNG_ENCODE_TO_BUFFER, 1);
  spng_ihdr ihdr = {};
  ihdr.width = static_cast<uint32_t>(spec.width);
  ihdr.height = static_cast<uint32_t>(spec.height);
  ihdr.bit_depth = static_cast<uint8_t>(spec.bit_depth);
  ihdr.color_type = static_cast<uint8_t>(spec.color_type);
  ihdr.interlace_method = spec.interlaced ? SPNG_INTERLACE_ADAM7 : SPNG_INTERLACE_NONE;
  int error = spng_set_ihdr(ctx.get(), &ihdr);
  if (error == 0 && spec.color_type == 3) {
    spng_plte plte = {};
    plte.n_entries = static_cast<uint32_t>(spec.palette.size());
    for (size_t i = 0; i < spec.palette.size() && i < 256; ++i) {
      plte.entries[i].red = spec.palette[i][0];
      plte.entries[i].green = spec.palette[i][1];
      plte.entries[i].blue = spec.palette[i][2];
    }
    error = spng_set_plte(ctx.get(), &plte);
  }
  if (error == 0) {
    error = spng_encode_image(ctx.get(), samples.data(), samples.size(), SPNG_FMT_PNG,
                              SPNG_ENCODE_FINALIZE);
  }
  if (error != 0) {
    return absl::InvalidArgumentError(absl::StrCat("EncodePng: ", spng_strerror(error)));
  }
  size_t size = 0;
  void* png = spng_get_png_buffer(ctx.get(), &size, &error);
  if (png == nullptr || error != 0) {
    return absl::InternalError(absl::StrCat("EncodePng: ", spng_strerror(error)));
  }
  const uint8_t* bytes = static_cast<const uint8_t*>(png);
  std::vector<uint8_t> out(bytes, bytes + size);
  std::free(png);
  return out;
}

}  // namespace hgpipe::preprocess
