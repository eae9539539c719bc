#include "preprocess/fused_pass.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "accel/device_layout.h"

namespace hgpipe::preprocess {
namespace {

// The patch token t holds, or -1 for a zero CLS placeholder.
int PatchOfToken(ClsPlaceholder cls, int t, int patches) {
  switch (cls) {
    case ClsPlaceholder::kPrepend: return t - 1;
    case ClsPlaceholder::kReplaceFirstPatch: return t == 0 ? -1 : t;
    case ClsPlaceholder::kRotate: return t == 0 ? patches - 1 : t - 1;
  }
  return -1;
}

// The widest patch row PackPairs takes; a zero row that long stands in for
// a placeholder token's rows.
constexpr int kMaxPairRow = 256;
constexpr int8_t kZeroRow[kMaxPairRow] = {};

// Device order a token pair at a time: each patch row of tokens t and t + 1
// becomes 2 * pw consecutive bytes of their 16-bit pairs interleaved
// (value v of a token sits at DeviceValueOffset(v), its partner's 2 bytes
// on), so a vector zip writes it. Needs an even patch width (every row then
// starts on a whole pair) and an even token count.
bool PackPairs(const Options& o, const int8_t* q, int8_t* out) {
  const int ph = o.patch_height, pw = o.patch_width, tv = o.token_values;
  if (pw % 2 != 0 || pw > kMaxPairRow || o.tokens % 2 != 0) return false;
  const int patches_x = o.width / pw;
  const int patches = o.num_patches();
  const size_t plane = static_cast<size_t>(o.height) * o.width;
  for (int t = 0; t < o.tokens; t += 2) {
    int8_t* base = out + accel::DeviceTokenOffset(tv, t);
    for (int c = 0; c < o.channels; ++c) {
      const int8_t* src[2];
      ptrdiff_t stride[2];
      for (int j = 0; j < 2; ++j) {
        const int k = PatchOfToken(o.cls_placeholder, t + j, patches);
        if (k < 0) {
          src[j] = kZeroRow;
          stride[j] = 0;
        } else {
          src[j] = q + c * plane + static_cast<size_t>((k / patches_x) * ph) * o.width +
                   (k % patches_x) * pw;
          stride[j] = o.width;
        }
      }
      simd::InterleavePairRows(src[0], stride[0], src[1], stride[1], ph, pw,
                               base + static_cast<size_t>(c) * ph * pw * 2);
    }
  }
  return true;
}

// Patchify + pack from the planar int8 model image q[c][y][x]; values
// channel-major: v = (c * ph + iy) * pw + ix.
void Pack(const Options& o, const int8_t* q, int8_t* out) {
  const int ph = o.patch_height, pw = o.patch_width, tv = o.token_values;
  const int patches_x = o.width / pw;
  const int patches = o.num_patches();
  const size_t plane = static_cast<size_t>(o.height) * o.width;
  const bool packed = o.output_layout == OutputLayout::kDevicePacked;
  if (packed && PackPairs(o, q, out)) return;
  for (int t = 0; t < o.tokens; ++t) {
    const int k = PatchOfToken(o.cls_placeholder, t, patches);
    const int y0 = k < 0 ? 0 : (k / patches_x) * ph;
    const int x0 = k < 0 ? 0 : (k % patches_x) * pw;
    if (!packed) {
      int8_t* dst = out + static_cast<size_t>(t) * tv;
      if (k < 0) {
        std::memset(dst, 0, tv);
        continue;
      }
      for (int c = 0; c < o.channels; ++c) {
        for (int iy = 0; iy < ph; ++iy) {
          std::memcpy(dst + (c * ph + iy) * pw,
                      q + c * plane + static_cast<size_t>(y0 + iy) * o.width + x0, pw);
        }
      }
      continue;
    }
    // Device order (accel/device_layout.h): pairs of values 4 bytes apart.
    int8_t* base = out + accel::DeviceTokenOffset(tv, t);
    if (k < 0) {
      for (int v = 0; v < tv; ++v) base[accel::DeviceValueOffset(v)] = 0;
      continue;
    }
    for (int c = 0; c < o.channels; ++c) {
      for (int iy = 0; iy < ph; ++iy) {
        const int8_t* src = q + c * plane + static_cast<size_t>(y0 + iy) * o.width + x0;
        const int v0 = (c * ph + iy) * pw;
        int ix = 0;
        if (v0 % 2 == 0) {  // whole pairs: value v0 + ix + 1 follows v0 + ix
          for (; ix + 1 < pw; ix += 2) {
            int8_t* dst = base + accel::DeviceValueOffset(v0 + ix);
            dst[0] = src[ix];
            dst[1] = src[ix + 1];
          }
        }
        for (; ix < pw; ++ix) base[accel::DeviceValueOffset(v0 + ix)] = src[ix];
      }
    }
  }
}

}  // namespace

bool FusedPassApplies(const Options& o) {
  return o.channels == 1 || o.value_order == ValueOrder::kChw;
}

Rect PlanFusedPass(const Options& o, const Window& w, int source_width, int source_height,
                   FusedScratch* s) {
  const int width = o.width, height = o.height;
  s->need_x = w.resize && w.resized_width != source_width;
  s->need_y = w.resize && w.resized_height != source_height;
  Rect r{w.left, w.top, w.left + width, w.top + height};
  // Taps are kept from the thread's previous image of the same geometry:
  // computing them (coefficients for every output) costs about 1 % of a
  // photo.
  if (s->need_x) {
    const TapsKey key{source_width, w.resized_width, w.left, width, o.filter};
    if (!(key == s->taps_x_key)) {
      ComputeTaps(source_width, w.resized_width, w.left, width, o.filter, &s->taps_x);
      s->taps_x_x0 = s->taps_x.first[0];
      s->taps_x_x1 = s->taps_x.first[width - 1] + s->taps_x.taps[width - 1];
      // The horizontal taps index the copied columns, which start at x0.
      for (int& f : s->taps_x.first) f -= s->taps_x_x0;
      s->taps_x_key = key;
    }
    r.x0 = s->taps_x_x0;
    r.x1 = s->taps_x_x1;
  }
  if (s->need_y) {
    const TapsKey key{source_height, w.resized_height, w.top, height, o.filter};
    if (!(key == s->taps_y_key)) {
      ComputeTaps(source_height, w.resized_height, w.top, height, o.filter, &s->taps_y);
      s->taps_y_key = key;
    }
    r.y0 = s->taps_y.first[0];
    r.y1 = s->taps_y.first[height - 1] + s->taps_y.taps[height - 1];
  }
  s->source_rect = r;
  return r;
}

absl::Status FusedPass(const Options& o, const std::array<std::array<int8_t, 256>, 3>& lut,
                       const ImageView& src, const Window& window, int8_t* out,
                       FusedScratch* scratch) {
  PlanFusedPass(o, window, src.width, src.height, scratch);
  DecodedRegion whole;
  whole.view = src;
  whole.full_width = src.width;
  whole.full_height = src.height;
  return RunFusedPass(o, lut, whole, out, scratch);
}

absl::Status RunFusedPass(const Options& o, const std::array<std::array<int8_t, 256>, 3>& lut,
                          const DecodedRegion& region, int8_t* out, FusedScratch* s) {
  const int width = o.width, height = o.height, channels = o.channels;
  const ImageView& src = region.view;
  const int src_channels = src.channels;  // 1 or 3
  const bool need_x = s->need_x, need_y = s->need_y;
  const int x0 = s->source_rect.x0, x1 = s->source_rect.x1;
  const int y0 = s->source_rect.y0, y1 = s->source_rect.y1;
  const int columns = x1 - x0;
  const int rows = y1 - y0;
  if (x0 < region.x || y0 < region.y || x1 > region.x + src.width || y1 > region.y + src.height ||
      (src_channels != 1 && src_channels != 3)) {
    return absl::InternalError(absl::StrCat("decoded region [", region.x, ", ",
                                            region.x + src.width, ") x [", region.y, ", ",
                                            region.y + src.height, ") does not cover the planned [",
                                            x0, ", ", x1, ") x [", y0, ", ", y1, ")"));
  }

  // One source row split into channels, each padded for the tap loads, and
  // its horizontally resampled copy.
  const size_t plane_stride =
      static_cast<size_t>(columns) + 2 * simd::kTapPadding + (need_x ? s->taps_x.stride : 0);
  uint8_t* planes = s->source_planes.Get((plane_stride + width) * src_channels);
  uint8_t* row_out = planes + plane_stride * src_channels;
  // With a vertical resize: rows after the horizontal pass, per source
  // channel, [c][row][width].
  const size_t resized_plane = static_cast<size_t>(rows) * width;
  uint8_t* resized = need_y ? s->resized_rows.Get(resized_plane * src_channels) : nullptr;
  const size_t model_plane = static_cast<size_t>(height) * width;
  int8_t* q = reinterpret_cast<int8_t*>(s->quantized.Get(model_plane * channels));
  // The model channel c reads source channel c, or 0 for gray -> RGB.
  auto source_channel = [&](int c) { return src_channels == 1 ? 0 : c; };

  for (int r = 0; r < rows; ++r) {
    const uint8_t* row = src.At(y0 + r - region.y, x0 - region.x);
    if (src_channels == 3) {
      simd::DeinterleaveRgb(row, src.pixel_stride, columns, planes, planes + plane_stride,
                            planes + 2 * plane_stride);
    } else {
      std::memcpy(planes, row, columns);  // gray: pixel_stride 1
    }
    const uint8_t* horizontal[3];
    for (int sc = 0; sc < src_channels; ++sc) {
      uint8_t* plane = planes + sc * plane_stride;
      horizontal[sc] = plane;
      if (need_x) {
        std::memset(plane + columns, 0, plane_stride - columns);  // what padded loads read
        uint8_t* dst = need_y ? resized + sc * resized_plane + static_cast<size_t>(r) * width
                              : row_out + sc * width;
        simd::HorizontalRowMadd(plane, s->taps_x.first.data(), s->taps_x.taps.data(),
                                s->taps_x.coefficients.data(), s->taps_x.stride, s->taps_x.madd,
                                width, dst);
        horizontal[sc] = dst;
      } else if (need_y) {
        std::memcpy(resized + sc * resized_plane + static_cast<size_t>(r) * width, plane, width);
      }
    }
    if (!need_y) {  // rows == height: this is model row r
      for (int c = 0; c < channels; ++c) {
        simd::LookupRow(horizontal[source_channel(c)], width, lut[c].data(),
                        q + c * model_plane + static_cast<size_t>(r) * width);
      }
    }
  }

  if (need_y) {
    uint8_t* clipped = row_out;  // one model row of one channel
    for (int y = 0; y < height; ++y) {
      const int first = s->taps_y.first[y] - y0;
      const int taps = s->taps_y.taps[y];
      const int32_t* k = &s->taps_y.coefficients[static_cast<size_t>(y) * s->taps_y.stride];
      s->row_pointers.resize(taps);
      for (int sc = 0; sc < src_channels; ++sc) {
        const uint8_t* plane = resized + sc * resized_plane;
        for (int t = 0; t < taps; ++t) {
          s->row_pointers[t] = plane + static_cast<size_t>(first + t) * width;
        }
        simd::VerticalRow(s->row_pointers.data(), k, taps, width, clipped);
        for (int c = 0; c < channels; ++c) {
          if (source_channel(c) != sc) continue;
          simd::LookupRow(clipped, width, lut[c].data(),
                          q + c * model_plane + static_cast<size_t>(y) * width);
        }
      }
    }
  }
  Pack(o, q, out);
  return absl::OkStatus();
}

}  // namespace hgpipe::preprocess
