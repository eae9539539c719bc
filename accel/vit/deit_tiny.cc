#include "accel/vit/deit_tiny.h"

#include <cmath>
#include <utility>

#include "accel/device_layout.h"

namespace hgpipe::accel::vit {
namespace {

// SplitMix64: a fixed integer sequence, unlike std:: distributions whose
// output is implementation-defined.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [lo, hi].
  int64_t Uniform(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(Next() % static_cast<uint64_t>(hi - lo + 1));
  }

 private:
  uint64_t state_;
};

int64_t RoundHalfUp(double x) { return static_cast<int64_t>(std::floor(x + 0.5)); }

// The (multiplier, shift) pair for a positive ratio, as
// tools/vit/quantize.py's mult_shift: multiplier in [2^22, 2^23).
std::pair<int32_t, int32_t> MultShift(double ratio) {
  const int e = static_cast<int>(std::floor(std::log2(ratio)));
  const int s = std::min(std::max(22 - e, 0), 62);
  return {static_cast<int32_t>(RoundHalfUp(std::ldexp(ratio, s))), s};
}

Requant UniformRequant(size_t channels, double ratio) {
  Requant r;
  const auto [m, s] = MultShift(ratio);
  r.mult.assign(channels, m);
  r.shift.assign(channels, s);
  return r;
}

// Standard deviation of an integer uniform on [-q, q].
double UniformStd(int64_t q) { return std::sqrt(q * (q + 1) / 3.0); }

struct Gen {
  Rng rng;
  VitSpec spec;

  int64_t QMax(int bits) const { return (int64_t{1} << (bits - 1)) - 1; }

  // Random weights and bias; requant maps the accumulator (std
  // `acc_std`) to an output std of `out_std` units.
  Linear MakeLinear(uint32_t in, uint32_t out, int wbits, double in_std,
                    double out_std) {
    Linear l;
    l.in = in;
    l.out = out;
    const int64_t q = QMax(wbits);
    l.weight.resize(size_t{in} * out);
    for (int8_t& w : l.weight) w = static_cast<int8_t>(rng.Uniform(-q, q));
    const double acc_std = std::sqrt(double(in)) * in_std * UniformStd(q);
    const int64_t b = std::max<int64_t>(1, RoundHalfUp(acc_std / 4));
    l.bias.resize(out);
    for (int32_t& v : l.bias) v = static_cast<int32_t>(rng.Uniform(-b, b));
    l.requant = UniformRequant(out, out_std / acc_std);
    return l;
  }

  // Normalized values of std 1 become `out_std` units of the output.
  LayerNormTable MakeNorm(double out_std) const {
    LayerNormTable n;
    const size_t size = size_t{1} << spec.rsqrt_index_bits;
    n.rsqrt.assign(size, 0);
    for (size_t m = 1; m < size; ++m) {
      n.rsqrt[m] = static_cast<int32_t>(
          RoundHalfUp(std::ldexp(1.0, spec.rsqrt_frac_bits) *
                      std::sqrt(double(spec.width)) * out_std /
                      std::sqrt(double(m))));
    }
    n.eps = spec.width;  // one unit of variance per channel
    return n;
  }
};

}  // namespace

VitWeights MakeDeitTinyWeights(uint64_t seed,
                               DeitTinyOptions::Precision precision) {
  const bool w3a3 = precision == DeitTinyOptions::Precision::kW3A3;
  VitSpec s;
  s.name = w3a3 ? "deit_tiny" : "deit_tiny_w8a8";
  s.tokens = 196;
  s.token_values = 768;
  s.width = 192;
  s.heads = 3;
  s.depth = 12;
  s.mlp_hidden = 768;
  s.classes = 1000;
  s.residual_bits = 16;
  s.patch_weight_bits = 8;
  s.block_weight_bits = w3a3 ? 3 : 8;
  s.head_weight_bits = 8;
  s.act_bits = w3a3 ? 3 : 8;
  s.head_act_bits = 8;
  s.prob_bits = 8;
  s.gelu_in_bits = 8;
  s.rsqrt_index_bits = 10;
  s.rsqrt_frac_bits = 16;
  s.input_scale = 1.0 / 32;  // docs/datapath.md, "deit_tiny input"
  s.timing = PipelineTiming();  // HG-PIPE's DeiT-tiny on VCK190

  Gen g{Rng(seed), s};
  VitWeights w;
  w.spec = s;
  const double act_std = g.QMax(s.act_bits) / 3.0;
  const double head_act_std = g.QMax(s.head_act_bits) / 3.0;
  // Each residual branch adds about 1/16 of the range, so 25 of them stay
  // inside it.
  const double res_std = std::ldexp(1.0, s.residual_bits - 1) / 16;
  const double input_std = 32.0;  // int8 patches of normalized pixels
  const uint32_t d = s.width, t = s.tokens;

  w.patch = g.MakeLinear(s.token_values, d, s.patch_weight_bits, input_std,
                         res_std);
  const int64_t e = RoundHalfUp(res_std);
  w.cls.resize(d);
  for (int32_t& v : w.cls) v = static_cast<int32_t>(g.rng.Uniform(-e, e));
  w.pos.resize(size_t{t} * d);
  for (int32_t& v : w.pos) v = static_cast<int32_t>(g.rng.Uniform(-e, e));

  // Softmax: q.k of std sqrt(dh) act_std^2 spread over about 3 units of
  // the exponent; the table holds exp(-i / 32) for i < 512 in 2^-15 units.
  std::vector<int32_t> exp_table(512);
  for (size_t i = 0; i < exp_table.size(); ++i) {
    exp_table[i] = static_cast<int32_t>(
        RoundHalfUp(std::ldexp(std::exp(-double(i) / 32), 15)));
  }
  // GELU: index units of 1/16 (8-bit index covers [-8, 8)), output units so
  // that 8 maps to the largest activation.
  const double gelu_in_scale = 1.0 / 16;
  const double gelu_out_scale = 8.0 / g.QMax(s.act_bits);
  std::vector<int8_t> gelu(size_t{1} << s.gelu_in_bits);
  const int64_t goff = int64_t{1} << (s.gelu_in_bits - 1);
  for (size_t i = 0; i < gelu.size(); ++i) {
    const double x = (int64_t(i) - goff) * gelu_in_scale;
    const double y = 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
    gelu[i] = static_cast<int8_t>(std::max<int64_t>(
        -g.QMax(s.act_bits) - 1,
        std::min<int64_t>(g.QMax(s.act_bits), RoundHalfUp(y / gelu_out_scale))));
  }

  const uint32_t dh = s.head_dim();
  for (uint32_t i = 0; i < s.depth; ++i) {
    VitBlock b;
    b.norm1 = g.MakeNorm(act_std);
    b.qkv = g.MakeLinear(d, 3 * d, s.block_weight_bits, act_std, act_std);
    const double score_std = std::sqrt(double(dh)) * act_std * act_std;
    const auto [em, es] = MultShift(3.0 * 32 / score_std);
    b.exp_mult = em;
    b.exp_shift = es;
    b.exp = exp_table;
    // p (sum 2^prob_bits) times v: about 2^prob_bits act_std / 4.
    b.context = UniformRequant(
        d, act_std / (std::ldexp(1.0, s.prob_bits) * act_std / 4));
    b.proj = g.MakeLinear(d, d, s.block_weight_bits, act_std, res_std);
    b.norm2 = g.MakeNorm(act_std);
    b.fc1 = g.MakeLinear(d, s.mlp_hidden, s.block_weight_bits, act_std,
                         1.0 / gelu_in_scale);
    b.gelu = gelu;
    b.fc2 = g.MakeLinear(s.mlp_hidden, d, s.block_weight_bits, act_std,
                         res_std);
    w.blocks.push_back(std::move(b));
  }
  w.norm = g.MakeNorm(head_act_std);
  w.head = g.MakeLinear(d, s.classes, s.head_weight_bits, head_act_std,
                        std::ldexp(1.0, kLogitBits - 1) / 16);
  w.spec.logit_scale = 1.0 / std::ldexp(1.0, 14);
  return w;
}

absl::StatusOr<std::shared_ptr<const VitKernel>> MakeDeitTinyKernel(
    uint64_t seed, const DeitTinyOptions& options) {
  return VitKernel::Create(MakeDeitTinyWeights(seed, options.precision),
                           options.kernel);
}

}  // namespace hgpipe::accel::vit
