#include "preprocess/preprocessor.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "accel/device_layout.h"
#include "base/status_macros.h"
#include "preprocess/fused_pass.h"
#include "preprocess/image_decoder.h"
#include "preprocess/resample.h"

namespace hgpipe::preprocess {
namespace {

// Per-thread scratch: decoded image, gray copy, resized image.
struct ThreadScratch {
  ScratchBuffer decoded;
  ScratchBuffer converted;
  ScratchBuffer resized;
  ResampleScratch resample;
  FusedScratch fused;
};

ThreadScratch& Scratch() {
  thread_local ThreadScratch scratch;
  return scratch;
}

// Buffers above this are freed after each image, so one huge image does not
// pin its memory for the thread's lifetime; typical photos stay below it.
constexpr size_t kKeepScratchBytes = 8 << 20;

struct ScratchTrimmer {
  ~ScratchTrimmer() {
    ThreadScratch& s = Scratch();
    s.decoded.TrimTo(kKeepScratchBytes);
    s.converted.TrimTo(kKeepScratchBytes);
    s.resized.TrimTo(kKeepScratchBytes);
    s.resample.intermediate.TrimTo(kKeepScratchBytes);
    s.fused.TrimTo(kKeepScratchBytes);
  }
};

// How the height x width model image is cut from a source image: the window
// at (top, left) of the source resized to resized_height x resized_width.
using GeometryPlan = Window;

// Shorter-side resizing scales the longer side too; a 1 x 20,000,000 image
// would make it billions of pixels long (only a window is ever computed, but
// sizes must stay ints).
constexpr int64_t kMaxResizedSide = 1 << 24;

// Python's round() of a non-negative half-integer: half to even.
int RoundHalfEven(int twice) {
  // value = twice / 2
  if (twice % 2 == 0) return twice / 2;
  const int down = twice / 2;  // twice is positive here
  return down % 2 == 0 ? down : down + 1;
}

absl::StatusOr<GeometryPlan> PlanGeometry(const Options& o, int height, int width) {
  GeometryPlan plan;
  switch (o.resize) {
    case ResizeMode::kNone:
      if (height != o.height || width != o.width) {
        return absl::InvalidArgumentError(
            absl::StrCat("image is ", width, "x", height, " (width x height), the model takes ",
                         o.width, "x", o.height, " and resizing is off"));
      }
      return plan;
    case ResizeMode::kExact:
      plan.resize = height != o.height || width != o.width;
      plan.resized_height = o.height;
      plan.resized_width = o.width;
      return plan;
    case ResizeMode::kShorterSideThenCenterCrop: {
      // torchvision Resize(S): the shorter side becomes S, the longer
      // int(S * long / short); CenterCrop: offsets round((size - crop) / 2).
      const int64_t s = o.resize_shorter_side;
      int64_t new_height, new_width;
      if (width <= height) {
        new_width = s;
        new_height = s * height / width;
      } else {
        new_height = s;
        new_width = s * width / height;
      }
      if (std::max(new_height, new_width) > kMaxResizedSide) {
        return absl::InvalidArgumentError(absl::StrCat(
            "image is ", width, "x", height, " (width x height): aspect ratio too extreme"));
      }
      plan.resize = new_height != height || new_width != width;
      plan.resized_height = static_cast<int>(new_height);
      plan.resized_width = static_cast<int>(new_width);
      plan.top = RoundHalfEven(plan.resized_height - o.height);
      plan.left = RoundHalfEven(plan.resized_width - o.width);
      return plan;
    }
  }
  return absl::InternalError("unknown resize mode");
}

// PIL's Image.convert("L"): L = R * 299/1000 + G * 587/1000 + B * 114/1000,
// in 16-bit fixed point with rounding.
void RgbToGray(const ImageView& src, uint8_t* dst) {
  for (int y = 0; y < src.height; ++y) {
    const uint8_t* p = src.At(y, 0);
    uint8_t* q = dst + static_cast<size_t>(y) * src.width;
    for (int x = 0; x < src.width; ++x, p += src.pixel_stride) {
      q[x] = static_cast<uint8_t>((p[0] * 19595u + p[1] * 38470u + p[2] * 7471u + 0x8000u) >> 16);
    }
  }
}

ImageView PackedView(const uint8_t* pixels, int height, int width, int channels) {
  ImageView v;
  v.pixels = pixels;
  v.height = height;
  v.width = width;
  v.channels = channels;
  v.pixel_stride = channels;
  v.row_stride = static_cast<size_t>(width) * channels;
  return v;
}

// Where value v of token t goes in the output layout. Flat: out[t * TV + v].
// Packed: the device's order, as accel/device_layout.h defines it.
template <bool kPacked>
struct TokenWriter {
  int8_t* out;
  int token_values;

  int8_t* TokenBase(int t) const {
    if constexpr (kPacked) {
      return out + accel::DeviceTokenOffset(token_values, t);
    } else {
      return out + static_cast<size_t>(t) * token_values;
    }
  }
  // Offset of value v within a token, from its base.
  static size_t ValueOffset(int v) {
    if constexpr (kPacked) {
      return accel::DeviceValueOffset(v);
    } else {
      return static_cast<size_t>(v);
    }
  }
};

// The token patch k goes to, or -1 if the CLS placeholder replaces it.
int TokenOfPatch(ClsPlaceholder cls, int k, int patches) {
  switch (cls) {
    case ClsPlaceholder::kPrepend: return k + 1;
    case ClsPlaceholder::kReplaceFirstPatch: return k == 0 ? -1 : k;
    case ClsPlaceholder::kRotate: return k == patches - 1 ? 0 : k + 1;
  }
  return -1;
}

// Normalizes, quantizes and patchifies the height x width region of `src`
// starting at (top, left). `src` has 1 or `channels` channels (1 -> RGB is
// replication); lut[c][v] is the int8 value.
template <bool kPacked>
void Patchify(const Options& o, const std::array<std::array<int8_t, 256>, 3>& lut,
              const ImageView& src, int top, int left, int8_t* out) {
  const TokenWriter<kPacked> writer{out, o.token_values};
  const int ph = o.patch_height;
  const int pw = o.patch_width;
  const int c_out = o.channels;
  const int patches_x = o.width / pw;
  const int patches = o.num_patches();
  // Where value (py, px, c) of a patch goes within its token.
  const bool chw = o.value_order == ValueOrder::kChw;
  const int py_step = chw ? pw : pw * c_out;
  const int px_step = chw ? 1 : c_out;
  const int c_step = chw ? ph * pw : 1;

  // Token 0: the CLS placeholder, all zeros, unless a patch fills it.
  if (o.cls_placeholder != ClsPlaceholder::kRotate) {
    int8_t* base = writer.TokenBase(0);
    for (int v = 0; v < o.token_values; ++v) base[writer.ValueOffset(v)] = 0;
  }
  // Source channel of each output channel (gray -> RGB replicates).
  const int src_c1 = src.channels == 1 ? 0 : 1;
  const int src_c2 = src.channels == 1 ? 0 : 2;
  for (int k = 0; k < patches; ++k) {
    const int t = TokenOfPatch(o.cls_placeholder, k, patches);
    if (t < 0) continue;
    int8_t* base = writer.TokenBase(t);
    const int y0 = top + (k / patches_x) * ph;
    const int x0 = left + (k % patches_x) * pw;
    for (int py = 0; py < ph; ++py) {
      const uint8_t* pixel = src.At(y0 + py, x0);
      for (int px = 0; px < pw; ++px, pixel += src.pixel_stride) {
        const int v = py * py_step + px * px_step;
        base[writer.ValueOffset(v)] = lut[0][pixel[0]];
        if (c_out == 3) {
          base[writer.ValueOffset(v + c_step)] = lut[1][pixel[src_c1]];
          base[writer.ValueOffset(v + 2 * c_step)] = lut[2][pixel[src_c2]];
        }
      }
    }
  }
}

}  // namespace

absl::StatusOr<Preprocessor> Preprocessor::Create(const Options& options) {
  RETURN_IF_ERROR(options.Validate());
  return Preprocessor(options);
}

Preprocessor::Preprocessor(const Options& options) : options_(options) {
  // Float32 throughout, operation by operation as torchvision's ToTensor
  // (v / 255) and Normalize ((x - mean) / std), then x / scale rounded half
  // to even (the default rounding mode, as torch.round).
  for (int c = 0; c < 3; ++c) {
    const int ci = c < options_.channels ? c : 0;
    for (int v = 0; v < 256; ++v) {
      float x = static_cast<float>(v) / 255.0f;
      x = (x - options_.mean[ci]) / options_.stddev[ci];
      float q = std::nearbyint(x / options_.quant_scale);
      q = std::clamp(q, -1e6f, 1e6f);
      const int value = static_cast<int>(q) + options_.quant_zero_point;
      lut_[c][v] = static_cast<int8_t>(std::clamp(value, -128, 127));
    }
  }
}

absl::Status Preprocessor::CheckOutput(absl::Span<int8_t> out) const {
  if (out.size() != input_bytes()) {
    return absl::InvalidArgumentError(
        absl::StrCat("output buffer holds ", out.size(), " bytes, one image needs ", input_bytes(),
                     " (", options_.tokens, " tokens x ", options_.token_values, " values)"));
  }
  return absl::OkStatus();
}

DecodeOptions Preprocessor::Decoding() const {
  DecodeOptions d;
  d.max_pixels = options_.max_pixels;
  d.want_gray = options_.channels == 1;
  d.accept_jpeg_warnings = options_.accept_jpeg_warnings;
  switch (options_.resize) {
    case ResizeMode::kNone: break;
    case ResizeMode::kExact:
      d.jpeg_scaled_decode = options_.jpeg_scaled_decode;
      d.jpeg_min_width = options_.width;
      d.jpeg_min_height = options_.height;
      break;
    case ResizeMode::kShorterSideThenCenterCrop:
      d.jpeg_scaled_decode = options_.jpeg_scaled_decode;
      d.jpeg_min_shorter_side = options_.resize_shorter_side;
      break;
  }
  return d;
}

absl::Status Preprocessor::CheckEncoded(absl::Span<const uint8_t> encoded) const {
  return CheckImageHeader(encoded, Decoding());
}

absl::Status Preprocessor::EncodedToPatches(absl::Span<const uint8_t> encoded,
                                            absl::Span<int8_t> out) const {
  RETURN_IF_ERROR(CheckOutput(out));
  const DecodeOptions d = Decoding();
  ScratchTrimmer trim;
  ThreadScratch& scratch = Scratch();
  if (options_.fused_pass && FusedPassApplies(options_)) {
    // Decode only the rectangle the pass reads (JPEG), planned from the
    // header's size before any pixel is decoded.
    auto plan = [&](int width, int height) -> absl::StatusOr<Rect> {
      ASSIGN_OR_RETURN(const Window window, PlanGeometry(options_, height, width));
      return PlanFusedPass(options_, window, width, height, &scratch.fused);
    };
    ASSIGN_OR_RETURN(const DecodedRegion region,
                     DecodeImageRegion(encoded, d, plan, &scratch.decoded));
    if (options_.channels == 1 && region.view.channels == 3) {
      // An RGB PNG for a gray model: whole images only (JPEGs decode to gray).
      return ImageToPatches(region.view, out);
    }
    return RunFusedPass(options_, lut_, region, out.data(), &scratch.fused);
  }
  ASSIGN_OR_RETURN(const ImageView image, DecodeImage(encoded, d, &scratch.decoded));
  return ImageToPatches(image, out);
}

absl::Status Preprocessor::CheckPixels(int height, int width, int channels) const {
  if (height <= 0 || width <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("raw pixels: height ", height, " and width ", width, " must be positive"));
  }
  if (channels != 1 && channels != 3 && channels != 4) {
    return absl::InvalidArgumentError(absl::StrCat(
        "raw pixels: ", channels, " channels; expected 1 (gray), 3 (RGB) or 4 (RGBA)"));
  }
  const uint64_t pixels = uint64_t{static_cast<uint32_t>(height)} * static_cast<uint32_t>(width);
  if (pixels > options_.max_pixels) {
    return absl::InvalidArgumentError(absl::StrCat("image too large: ", width, "x", height, " = ",
                                                   pixels, " pixels, more than the limit of ",
                                                   options_.max_pixels));
  }
  return absl::OkStatus();
}

absl::Status Preprocessor::PixelsToPatches(const uint8_t* hwc, int height, int width, int channels,
                                           absl::Span<int8_t> out) const {
  RETURN_IF_ERROR(CheckOutput(out));
  if (hwc == nullptr) return absl::InvalidArgumentError("raw pixels: null buffer");
  RETURN_IF_ERROR(CheckPixels(height, width, channels));
  ImageView image;
  image.pixels = hwc;
  image.height = height;
  image.width = width;
  image.channels = channels == 4 ? 3 : channels;
  image.pixel_stride = channels;
  image.row_stride = static_cast<size_t>(width) * channels;
  ScratchTrimmer trim;
  return ImageToPatches(image, out);
}

absl::Status Preprocessor::PixelsToPatches(absl::Span<const uint8_t> hwc, int height, int width,
                                           int channels, absl::Span<int8_t> out) const {
  const int64_t expected = int64_t{height} * width * channels;
  if (height <= 0 || width <= 0 || channels <= 0 || hwc.size() != static_cast<size_t>(expected)) {
    return absl::InvalidArgumentError(absl::StrCat("raw pixels: ", hwc.size(),
                                                   " bytes for a height x width x channels of ",
                                                   height, "x", width, "x", channels));
  }
  return PixelsToPatches(hwc.data(), height, width, channels, out);
}

absl::Status Preprocessor::ImageToPatches(const ImageView& source, absl::Span<int8_t> out) const {
  const Options& o = options_;
  ThreadScratch& scratch = Scratch();
  ASSIGN_OR_RETURN(const GeometryPlan plan, PlanGeometry(o, source.height, source.width));

  // Channels first (as PIL's convert() before a resize); gray -> RGB is left
  // to Patchify, which replicates (resampling is per channel, so the order
  // does not matter).
  ImageView image = source;
  if (o.channels == 1 && image.channels == 3) {
    uint8_t* gray = scratch.converted.Get(static_cast<size_t>(source.height) * source.width);
    RgbToGray(image, gray);
    image = PackedView(gray, source.height, source.width, 1);
  }

  if (o.fused_pass && FusedPassApplies(o)) {
    return FusedPass(o, lut_, image, plan, out.data(), &scratch.fused);
  }

  int top = plan.top;
  int left = plan.left;
  if (plan.resize) {
    uint8_t* resized =
        scratch.resized.Get(static_cast<size_t>(o.height) * o.width * image.channels);
    ResampleCrop(image, plan.resized_width, plan.resized_height, plan.left, plan.top, o.width,
                 o.height, o.filter, resized, &scratch.resample);
    image = PackedView(resized, o.height, o.width, image.channels);
    top = 0;
    left = 0;
  }

  if (o.output_layout == OutputLayout::kDevicePacked) {
    Patchify<true>(o, lut_, image, top, left, out.data());
  } else {
    Patchify<false>(o, lut_, image, top, left, out.data());
  }
  return absl::OkStatus();
}

}  // namespace hgpipe::preprocess
