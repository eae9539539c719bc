#include "preprocess/options.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace hgpipe::preprocess {
namespace {

absl::Status FieldError(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("Options.", field, ": ", what));
}

const char* Name(ClsPlaceholder v) {
  switch (v) {
    case ClsPlaceholder::kPrepend: return "prepend";
    case ClsPlaceholder::kReplaceFirstPatch: return "replace_first_patch";
    case ClsPlaceholder::kRotate: return "rotate";
  }
  return "?";
}
const char* Name(ValueOrder v) {
  switch (v) {
    case ValueOrder::kHwc: return "hwc";
    case ValueOrder::kChw: return "chw";
  }
  return "?";
}
const char* Name(ResizeMode v) {
  switch (v) {
    case ResizeMode::kNone: return "none";
    case ResizeMode::kExact: return "exact";
    case ResizeMode::kShorterSideThenCenterCrop: return "shorter_side_then_center_crop";
  }
  return "?";
}
const char* Name(ResizeFilter v) {
  switch (v) {
    case ResizeFilter::kBilinear: return "bilinear";
    case ResizeFilter::kBicubic: return "bicubic";
  }
  return "?";
}
const char* Name(OutputLayout v) {
  switch (v) {
    case OutputLayout::kFlat: return "flat";
    case OutputLayout::kDevicePacked: return "device_packed";
  }
  return "?";
}

// Keeps products of image sides far from int overflow.
constexpr int kMaxSide = 1 << 15;

}  // namespace

absl::Status Options::Validate() const {
  if (height <= 0 || height > kMaxSide) {
    return FieldError("height", absl::StrCat(height, " is not in [1, ", kMaxSide, "]"));
  }
  if (width <= 0 || width > kMaxSide) {
    return FieldError("width", absl::StrCat(width, " is not in [1, ", kMaxSide, "]"));
  }
  if (channels != 1 && channels != 3) {
    return FieldError("channels", absl::StrCat(channels, " is not 1 (gray) or 3 (RGB)"));
  }
  if (patch_height <= 0 || height % patch_height != 0) {
    return FieldError("patch_height",
                      absl::StrCat(patch_height, " does not divide height ", height));
  }
  if (patch_width <= 0 || width % patch_width != 0) {
    return FieldError("patch_width", absl::StrCat(patch_width, " does not divide width ", width));
  }
  const int64_t expected_values = int64_t{patch_height} * patch_width * channels;
  if (token_values != expected_values) {
    return FieldError(
        "token_values",
        absl::StrCat(token_values, " != patch_height * patch_width * channels = ", patch_height,
                     "*", patch_width, "*", channels, " = ", expected_values));
  }
  if (token_values % 2 != 0) {
    return FieldError("token_values",
                      absl::StrCat(token_values, " is odd; the device packs 2 values per beat"));
  }
  if (cls_placeholder != ClsPlaceholder::kPrepend &&
      cls_placeholder != ClsPlaceholder::kReplaceFirstPatch &&
      cls_placeholder != ClsPlaceholder::kRotate) {
    return FieldError("cls_placeholder", "unknown mode");
  }
  if (value_order != ValueOrder::kHwc && value_order != ValueOrder::kChw) {
    return FieldError("value_order", "unknown order");
  }
  const int64_t patches = num_patches();
  const int64_t expected_tokens =
      cls_placeholder == ClsPlaceholder::kPrepend ? patches + 1 : patches;
  if (tokens != expected_tokens) {
    return FieldError(
        "tokens",
        absl::StrCat(tokens, " != ", cls_placeholder == ClsPlaceholder::kPrepend ? "1 + " : "", "(",
                     height, "/", patch_height, ")*(", width, "/", patch_width,
                     ") = ", expected_tokens, " (cls_placeholder ", Name(cls_placeholder), ")"));
  }
  if (tokens % 2 != 0) {
    return FieldError("tokens",
                      absl::StrCat(tokens, " is odd; the device packs 2 tokens per beat"));
  }
  if (tokens < 2) {
    return FieldError("tokens", absl::StrCat(tokens, " leaves no patch after the CLS token"));
  }
  switch (resize) {
    case ResizeMode::kNone:
    case ResizeMode::kExact: break;
    case ResizeMode::kShorterSideThenCenterCrop:
      if (resize_shorter_side < std::max(height, width) || resize_shorter_side > kMaxSide) {
        return FieldError("resize_shorter_side",
                          absl::StrCat(resize_shorter_side,
                                       " is not in [max(height, width) = ", std::max(height, width),
                                       ", ", kMaxSide, "]; the center crop must fit"));
      }
      break;
    default: return FieldError("resize", "unknown mode");
  }
  if (filter != ResizeFilter::kBilinear && filter != ResizeFilter::kBicubic) {
    return FieldError("filter", "unknown filter");
  }
  for (int c = 0; c < channels; ++c) {
    if (!std::isfinite(mean[c])) {
      return FieldError(absl::StrCat("mean[", c, "]"), "is not finite");
    }
    if (!std::isfinite(stddev[c]) || !(stddev[c] > 0)) {
      return FieldError(absl::StrCat("stddev[", c, "]"),
                        absl::StrCat(stddev[c], " is not a finite positive number"));
    }
  }
  if (!std::isfinite(quant_scale) || !(quant_scale > 0)) {
    return FieldError("quant_scale", absl::StrCat(quant_scale, " is not a finite positive number"));
  }
  if (quant_zero_point < -128 || quant_zero_point > 127) {
    return FieldError("quant_zero_point", absl::StrCat(quant_zero_point, " is not in [-128, 127]"));
  }
  if (output_layout != OutputLayout::kFlat && output_layout != OutputLayout::kDevicePacked) {
    return FieldError("output_layout", "unknown layout");
  }
  if (max_pixels == 0) {
    return FieldError("max_pixels", "is 0");
  }
  return absl::OkStatus();
}

std::string Options::DebugString() const {
  std::string s = absl::StrFormat(
      "tokens=%d token_values=%d cls=%s order=%s "
      "image=%dx%dx%d patch=%dx%d resize=%s",
      tokens, token_values, Name(cls_placeholder), Name(value_order), height, width, channels,
      patch_height, patch_width, Name(resize));
  if (resize == ResizeMode::kShorterSideThenCenterCrop) {
    absl::StrAppend(&s, " shorter_side=", resize_shorter_side);
  }
  absl::StrAppend(&s, " filter=", Name(filter), " jpeg_scaled_decode=", jpeg_scaled_decode);
  for (int c = 0; c < channels && c < 3; ++c) {
    absl::StrAppendFormat(&s, " mean[%d]=%g stddev[%d]=%g", c, mean[c], c, stddev[c]);
  }
  absl::StrAppendFormat(&s, " quant_scale=%g zero_point=%d layout=%s max_pixels=%d", quant_scale,
                        quant_zero_point, Name(output_layout), max_pixels);
  return s;
}

Options DeitTinyOptions() {
  Options o;
  o.tokens = 196;
  o.token_values = 768;
  o.cls_placeholder = ClsPlaceholder::kRotate;
  o.value_order = ValueOrder::kChw;
  o.height = 224;
  o.width = 224;
  o.channels = 3;
  o.patch_height = 16;
  o.patch_width = 16;
  o.resize = ResizeMode::kShorterSideThenCenterCrop;
  o.resize_shorter_side = 256;
  o.filter = ResizeFilter::kBicubic;  // DeiT's (timm's) evaluation transform
  o.mean = {0.485f, 0.456f, 0.406f};
  o.stddev = {0.229f, 0.224f, 0.225f};
  o.quant_scale = kDeitTinyQuantScale;
  o.quant_zero_point = 0;
  return o;
}

}  // namespace hgpipe::preprocess
