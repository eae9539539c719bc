// What a model's preprocessing is: how an image becomes the accelerator's
// int8 input (docs/datapath.md, "Input" and "Output"). The server maps a model's
// config onto these fields; Preprocessor (preprocessor.h) carries them out.
//
// The pipeline, in order:
//   decode (JPEG, PNG) or take raw UINT8 HWC pixels
//   -> channels: RGB -> gray (PIL's "L" formula) or gray -> RGB (replicate)
//   -> geometry: as is, resize to height x width, or resize the shorter side
//      to `resize_shorter_side` then center crop height x width (torchvision's
//      Resize(S) + CenterCrop((H, W)))
//   -> per value v (uint8): x = ((v / 255) - mean[c]) / stddev[c], all float32
//      (torchvision's ToTensor + Normalize), then
//      q = clamp(round_half_even(x / quant_scale) + quant_zero_point,
//                -128, 127)
//   -> patchify: patch (i, j) of the height x width image, in row-major patch
//      order, flattened into one token of token_values = patch_height *
//      patch_width * channels int8 values, as (py, px, channel) or (channel,
//      py, px) row-major (ValueOrder); which token holds which patch and
//      what token 0 holds: ClsPlaceholder.
#ifndef HGPIPE_PREPROCESS_OPTIONS_H_
#define HGPIPE_PREPROCESS_OPTIONS_H_

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace hgpipe::preprocess {

// How an image of n patches fills the device's `tokens`.
enum class ClsPlaceholder {
  // [zero CLS, patch 0, ..., patch n-1]: tokens == 1 + n. Standard ViT.
  kPrepend,
  // [zero CLS, patch 1, ..., patch n-1]: tokens == n; patch 0 (top-left) is
  // replaced by the placeholder. For boards like HG-PIPE's, whose
  // patch-embedding stage computes n tokens and overwrites token 0 with the
  // CLS embedding (authors' src/patch_embed.h), so the host's token 0 is
  // never used. fmnist_vit (28 tokens of 4x7).
  kReplaceFirstPatch,
  // [patch n-1, patch 0, ..., patch n-2]: tokens == n; token t holds patch
  // t-1 and token 0 the last patch (np.roll(patches, 1, axis=0)). What the
  // HG-PIPE authors' host sends for DeiT-tiny (their refs/patch_embed_input):
  // the board overwrites token 0 with the CLS embedding, so the
  // bottom-right patch never reaches the network: 196 tokens, not 197.
  kRotate,
};

// The order of a patch's values within its token.
enum class ValueOrder {
  // value (py * patch_width + px) * channels + c: the pixels' own
  // interleaved order.
  kHwc,
  // value (c * patch_height + py) * patch_width + px: channel-major, as
  // PyTorch's Conv2d patch embedding flattens its weights. HG-PIPE's
  // DeiT-tiny (the authors' refs/patch_embed_input).
  kChw,
};

enum class ResizeMode {
  // The image must already be height x width (InvalidArgument otherwise).
  kNone,
  // Resize to height x width, ignoring aspect ratio. No-op when the image is
  // already that size.
  kExact,
  // Resize so the shorter side is resize_shorter_side (the longer side
  // scaled by the same ratio, truncated to an integer, as torchvision), then
  // crop height x width from the center (offsets rounded half to even, as
  // torchvision's CenterCrop). Resizing and cropping are done in one step.
  kShorterSideThenCenterCrop,
};

// Both antialiased (the kernel widens by the scale factor when shrinking)
// and value for value the same as Pillow's Image.resize with that filter
// (resample.h), i.e. torchvision's Resize on PIL images.
enum class ResizeFilter {
  // Pillow's BILINEAR (triangle kernel).
  kBilinear,
  // Pillow's BICUBIC (Keys' cubic, a = -0.5). DeiT's evaluation transform
  // uses bicubic.
  kBicubic,
};

// Where Preprocessor writes an image's int8 values.
enum class OutputLayout {
  // [tokens][token_values], row-major.
  kFlat,
  // The device's AXI-stream order (accel/device_layout.h, PackImage):
  // flat.reshape(tokens/2, 2, token_values/2, 2).transpose(0, 2, 1, 3).
  // Lets the server write straight into a board's input buffer.
  kDevicePacked,
};

struct Options {
  // ---- The device's input geometry (the bitstream's DeviceGeometry).
  // Both even (2 tokens x 2 values per 32-bit beat).
  // Default: HG-PIPE DeiT-tiny, 196 tokens x 768 values.
  int tokens = 196;
  int token_values = 768;
  // Default: kReplaceFirstPatch.
  ClsPlaceholder cls_placeholder = ClsPlaceholder::kReplaceFirstPatch;
  // Default: kHwc. The same for one channel.
  ValueOrder value_order = ValueOrder::kHwc;

  // ---- The model's input image.
  // Default: 224 x 224 RGB, 16 x 16 patches.
  int height = 224;
  int width = 224;
  int channels = 3;       // 1 (gray) or 3 (RGB)
  int patch_height = 16;  // must divide height
  int patch_width = 16;   // must divide width

  // ---- Geometry.
  // Default: shorter side to 256, center crop 224 x 224 (ImageNet eval).
  ResizeMode resize = ResizeMode::kShorterSideThenCenterCrop;
  // Only for kShorterSideThenCenterCrop; must be >= max(height, width).
  int resize_shorter_side = 256;
  // Default: kBilinear.
  ResizeFilter filter = ResizeFilter::kBilinear;
  // JPEG only: decode at a DCT scale of 1/2, 1/4 or 1/8 (libjpeg-turbo),
  // the smallest whose result still needs no upscaling for the resize (its
  // shorter side at least resize_shorter_side, or at least height x width
  // for kExact), as Pillow's Image.draft(). Not the other M/8 scales: they
  // decode slower than the full image. A 1920x1080 photo decodes at 1/4
  // for DeiT-tiny; 500x375 needs the full size. Pixels differ slightly from
  // a full decode followed by the resize (measured effect on top-1:
  // docs/BENCHMARKS.md). Never used with ResizeMode::kNone. Config:
  // preprocess.jpeg_scaled_decode. Default: true.
  bool jpeg_scaled_decode = true;

  // ---- Normalization (per channel; only the first `channels` entries are
  // used). x = ((v / 255) - mean) / stddev. Default: ImageNet's.
  std::array<float, 3> mean = {0.485f, 0.456f, 0.406f};
  std::array<float, 3> stddev = {0.229f, 0.224f, 0.225f};

  // ---- Quantization: q = clamp(round_half_even(x / scale) + zero_point,
  // -128, 127). Default: scale 1/32 (normalized ImageNet values lie in about
  // [-2.2, 2.7]), zero point 0.
  float quant_scale = 1.0f / 32.0f;
  int quant_zero_point = 0;

  // ---- Output.
  // Default: kFlat.
  OutputLayout output_layout = OutputLayout::kFlat;

  // ---- Implementation.
  // The fused, vectorized pass after decode (fused_pass.h) where it applies
  // (values channel-major, or one channel); false: the scalar reference
  // path (resample, then patchify through a lookup table), equal bit for
  // bit and slower, kept for tests and benchmarks. Default: true.
  bool fused_pass = true;

  // ---- Limits for untrusted input.
  // Largest image accepted, in pixels (width x height as the file declares
  // them, checked before any pixel is decoded). Default: 25 million (a
  // 24-megapixel camera photo fits).
  uint64_t max_pixels = 25'000'000;
  // JPEG: accept data libjpeg-turbo only warns about (e.g. extraneous bytes
  // before a marker) instead of rejecting it. A truncated JPEG is an error
  // either way. Default: false (every warning is an error).
  bool accept_jpeg_warnings = false;

  // tokens * token_values: one image's int8 input.
  size_t input_bytes() const {
    return static_cast<size_t>(tokens) * static_cast<size_t>(token_values);
  }
  // Number of patches of the height x width image.
  int num_patches() const {
    return patch_height > 0 && patch_width > 0 ? (height / patch_height) * (width / patch_width)
                                               : 0;
  }

  // OK, or InvalidArgument naming the first bad field ("Options.tokens: ...").
  absl::Status Validate() const;
  // One line, for logs.
  std::string DebugString() const;
};

// HG-PIPE's DeiT-tiny as its authors' host feeds it (their
// refs/patch_embed_input, reproduced bit for bit by
// tests/preprocess/hgpipe_golden_test.cc): 224x224 RGB, shorter side 256
// (bicubic, as DeiT's evaluation transform) + center crop 224, ImageNet
// mean/std, 16x16 patches with values channel-major (kChw), 196 tokens with
// token 0 the last patch (kRotate), quantization scale 2.64 / 127: the
// authors' max-abs int8 calibration of the normalized range [-2.1179,
// 2.6400] (their behavior_range_dict), 2.64 = (1 - 0.406) / 0.225 mapping to
// 127. Bilinear is about a quarter faster.
Options DeitTinyOptions();
// Its quantization scale, 2.64 / 127 = 0.0207874 (rounded once to float).
inline constexpr float kDeitTinyQuantScale = static_cast<float>(2.64 / 127.0);

}  // namespace hgpipe::preprocess

#endif  // HGPIPE_PREPROCESS_OPTIONS_H_
