// The integer parameters of HG-PIPE's ViT datapath (docs/datapath.md): the
// geometry and bit widths (VitSpec) and every integer tensor (VitWeights),
// decoded from a weight container and validated so the datapath can run
// without further checks.
#ifndef HGPIPE_ACCEL_VIT_VIT_WEIGHTS_H_
#define HGPIPE_ACCEL_VIT_VIT_WEIGHTS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "accel/bitstream.h"
#include "accel/vit/weight_file.h"

namespace hgpipe::accel::vit {

// Geometry, bit widths and scales: the weight file's manifest.
struct VitSpec {
  std::string name;
  uint32_t tokens = 0;        // device tokens; token 0 is the CLS placeholder
  uint32_t token_values = 0;  // int8 values per token
  uint32_t width = 0;         // embedding dimension D
  uint32_t heads = 0;
  uint32_t depth = 0;         // transformer blocks
  uint32_t mlp_hidden = 0;
  uint32_t classes = 0;
  int residual_bits = 16;     // residual stream, signed, 16..24
  int patch_weight_bits = 8;  // all weights signed, 2..8
  int block_weight_bits = 8;
  int head_weight_bits = 8;
  int act_bits = 8;           // matmul inputs inside blocks, signed, 2..8
  int head_act_bits = 8;      // final LayerNorm output, signed, 2..8
  int prob_bits = 8;          // softmax output, unsigned, scale 2^-prob_bits
  int gelu_in_bits = 8;       // GELU table index, signed, 2..12
  int rsqrt_index_bits = 10;  // LayerNorm table has 2^bits entries, 2..16
  int rsqrt_frac_bits = 16;   // LayerNorm table fraction bits, 0..40
  double input_scale = 1.0;   // real value of input int8 1
  double logit_scale = 1.0;   // real value of logit 1
  PipelineTiming timing;      // clock and cycles; overheads keep defaults

  uint32_t head_dim() const { return width / heads; }
  // Multiply-accumulates per image (the op count timing is scaled by).
  uint64_t macs() const;
  BitstreamManifest ToManifest() const;
  // OK, or InvalidArgument naming the field: geometry, bit widths, timing.
  absl::Status Validate(absl::string_view source) const;
};

// Per-output-channel requantization: out = RoundShift((acc + bias) * mult,
// shift), RoundShift(v, s) = (v + 2^(s-1)) >> s (arithmetic, s = 0: v).
struct Requant {
  std::vector<int32_t> mult;   // [0, 2^31)
  std::vector<int32_t> shift;  // [0, 62]
};

// y = x W^T + bias, W int8 [out][in] (row n is output channel n).
struct Linear {
  uint32_t in = 0;
  uint32_t out = 0;
  std::vector<int8_t> weight;
  std::vector<int32_t> bias;  // |bias| <= 2^30
  Requant requant;
};

struct LayerNormTable {
  std::vector<int32_t> rsqrt;  // 2^rsqrt_index_bits entries, >= 0
  int64_t eps = 1;             // added to the sum of squares, >= 1
};

struct VitBlock {
  LayerNormTable norm1;
  Linear qkv;                  // out = 3 * width: q, k, v; head-major inside
  int32_t exp_mult = 0;        // softmax table index requant
  int32_t exp_shift = 0;
  std::vector<int32_t> exp;    // exp table, values in [0, 2^15], exp[0] > 0
  Requant context;             // per channel, no bias
  Linear proj;                 // -> residual scale
  LayerNormTable norm2;
  Linear fc1;                  // -> GELU index (gelu_in_bits)
  std::vector<int8_t> gelu;    // 2^gelu_in_bits entries, index g + 2^(b-1)
  Linear fc2;                  // -> residual scale
};

struct VitWeights {
  VitSpec spec;
  Linear patch;                 // -> residual scale
  std::vector<int32_t> cls;     // [width], residual scale
  std::vector<int32_t> pos;     // [tokens][width], residual scale
  std::vector<VitBlock> blocks;
  LayerNormTable norm;
  Linear head;                  // -> logits (19-bit)
  std::vector<std::string> labels;  // empty, or one per class

  // OK, or InvalidArgument naming the field that breaks the datapath's
  // contract (sizes, value ranges, bit widths). `source` prefixes errors.
  absl::Status Validate(absl::string_view source) const;
};

// Decodes and validates a container. Errors name `source`, the manifest key
// or the tensor.
absl::StatusOr<VitWeights> VitWeightsFromContainer(const Container& c,
                                                   absl::string_view source);
// The container a weight file holds for `w` (tests, generated models).
Container VitWeightsToContainer(const VitWeights& w);

}  // namespace hgpipe::accel::vit

#endif  // HGPIPE_ACCEL_VIT_VIT_WEIGHTS_H_
