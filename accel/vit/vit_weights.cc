#include "accel/vit/vit_weights.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/status_macros.h"

namespace hgpipe::accel::vit {
namespace {

constexpr uint32_t kMaxDim = 4096;

// ---- manifest ---------------------------------------------------------

class ManifestReader {
 public:
  ManifestReader(const Container& c, absl::string_view source)
      : source_(source) {
    for (const auto& [k, v] : c.manifest) values_[k] = v;
  }

  absl::Status Error(absl::string_view key, absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat(source_, ": manifest '", key, "': ", what));
  }

  absl::StatusOr<std::string> String(const std::string& key) {
    used_.insert(key);
    auto it = values_.find(key);
    if (it == values_.end()) return Error(key, "missing");
    return it->second;
  }

  template <typename T>
  absl::Status Uint(const std::string& key, uint64_t lo, uint64_t hi, T* out) {
    ASSIGN_OR_RETURN(std::string s, String(key));
    uint64_t v = 0;
    if (!absl::SimpleAtoi(s, &v)) return Error(key, "not an unsigned integer");
    if (v < lo || v > hi) {
      return Error(key, absl::StrCat(v, " is outside [", lo, ", ", hi, "]"));
    }
    *out = static_cast<T>(v);
    return absl::OkStatus();
  }

  absl::Status Double(const std::string& key, double* out) {
    ASSIGN_OR_RETURN(std::string s, String(key));
    if (!absl::SimpleAtod(s, out) || !std::isfinite(*out) || !(*out > 0)) {
      return Error(key, absl::StrCat("'", s, "' is not a positive number"));
    }
    return absl::OkStatus();
  }

  absl::Status CheckAllUsed() const {
    for (const auto& [k, v] : values_) {
      if (!used_.count(k)) return Error(k, "unknown key");
    }
    return absl::OkStatus();
  }

 private:
  std::string source_;
  std::map<std::string, std::string> values_;
  std::set<std::string> used_;
};

absl::StatusOr<VitSpec> ReadSpec(const Container& c, absl::string_view source) {
  ManifestReader m(c, source);
  VitSpec s;
  ASSIGN_OR_RETURN(s.name, m.String("name"));
  RETURN_IF_ERROR(m.Uint("tokens", 2, kMaxDim, &s.tokens));
  RETURN_IF_ERROR(m.Uint("token_values", 2, kMaxDim, &s.token_values));
  RETURN_IF_ERROR(m.Uint("width", 1, kMaxDim, &s.width));
  RETURN_IF_ERROR(m.Uint("heads", 1, kMaxDim, &s.heads));
  RETURN_IF_ERROR(m.Uint("depth", 0, 256, &s.depth));
  RETURN_IF_ERROR(m.Uint("mlp_hidden", 1, kMaxDim, &s.mlp_hidden));
  RETURN_IF_ERROR(m.Uint("classes", 1, 1u << 20, &s.classes));
  RETURN_IF_ERROR(m.Uint("residual_bits", 0, 64, &s.residual_bits));
  RETURN_IF_ERROR(m.Uint("patch_weight_bits", 0, 64, &s.patch_weight_bits));
  RETURN_IF_ERROR(m.Uint("block_weight_bits", 0, 64, &s.block_weight_bits));
  RETURN_IF_ERROR(m.Uint("head_weight_bits", 0, 64, &s.head_weight_bits));
  RETURN_IF_ERROR(m.Uint("act_bits", 0, 64, &s.act_bits));
  RETURN_IF_ERROR(m.Uint("head_act_bits", 0, 64, &s.head_act_bits));
  RETURN_IF_ERROR(m.Uint("prob_bits", 0, 64, &s.prob_bits));
  RETURN_IF_ERROR(m.Uint("gelu_in_bits", 0, 64, &s.gelu_in_bits));
  RETURN_IF_ERROR(m.Uint("rsqrt_index_bits", 0, 64, &s.rsqrt_index_bits));
  RETURN_IF_ERROR(m.Uint("rsqrt_frac_bits", 0, 64, &s.rsqrt_frac_bits));
  RETURN_IF_ERROR(m.Double("input_scale", &s.input_scale));
  RETURN_IF_ERROR(m.Double("logit_scale", &s.logit_scale));
  RETURN_IF_ERROR(m.Double("clock_hz", &s.timing.clock_hz));
  RETURN_IF_ERROR(m.Uint("interval_cycles", 1,
                         std::numeric_limits<uint32_t>::max(),
                         &s.timing.interval_cycles));
  RETURN_IF_ERROR(m.Uint("latency_cycles", 1,
                         std::numeric_limits<uint32_t>::max(),
                         &s.timing.latency_cycles));
  RETURN_IF_ERROR(m.CheckAllUsed());
  return s;
}

// ---- tensors ----------------------------------------------------------

class TensorReader {
 public:
  TensorReader(const Container& c, absl::string_view source)
      : c_(c), source_(source) {}

  absl::Status Error(absl::string_view name, absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat(source_, ": tensor '", name, "': ", what));
  }

  // The tensor `name` with exactly `dtype` and `dims`, as T.
  template <typename T>
  absl::StatusOr<std::vector<T>> Get(const std::string& name, DType dtype,
                                     std::vector<uint32_t> dims) {
    used_.insert(name);
    auto it = c_.tensors.find(name);
    if (it == c_.tensors.end()) return Error(name, "missing");
    const Tensor& t = it->second;
    if (t.dtype != dtype) {
      return Error(name, absl::StrCat("dtype ", DTypeName(t.dtype),
                                      ", expected ", DTypeName(dtype)));
    }
    if (t.dims != dims) {
      return Error(name, absl::StrCat("shape [", absl::StrJoin(t.dims, ", "),
                                      "], expected [",
                                      absl::StrJoin(dims, ", "), "]"));
    }
    static_assert(sizeof(T) <= 8);
    if (DTypeSize(dtype) != sizeof(T)) return Error(name, "internal size");
    std::vector<T> out(t.elements());
    // Little-endian host (x86-64, aarch64): the bytes are the values.
    std::memcpy(out.data(), t.bytes.data(), t.bytes.size());
    return out;
  }

  // A 1-D tensor `name` of any length.
  template <typename T>
  absl::StatusOr<std::vector<T>> Get1D(const std::string& name, DType dtype) {
    auto it = c_.tensors.find(name);
    if (it == c_.tensors.end()) {
      used_.insert(name);
      return Error(name, "missing");
    }
    if (it->second.dims.size() != 1) {
      used_.insert(name);
      return Error(name, absl::StrCat("rank ", it->second.dims.size(),
                                      ", expected 1"));
    }
    return Get<T>(name, dtype, it->second.dims);
  }

  bool Has(const std::string& name) const { return c_.tensors.count(name); }

  absl::Status CheckAllUsed() const {
    for (const auto& [name, t] : c_.tensors) {
      if (!used_.count(name)) return Error(name, "unknown tensor");
    }
    return absl::OkStatus();
  }

  absl::Status ReadLinear(const std::string& prefix, uint32_t in, uint32_t out,
                          bool bias, Linear* l) {
    l->in = in;
    l->out = out;
    ASSIGN_OR_RETURN(l->weight, Get<int8_t>(prefix + ".weight", DType::kInt8,
                                            {out, in}));
    if (bias) {
      ASSIGN_OR_RETURN(l->bias,
                       Get<int32_t>(prefix + ".bias", DType::kInt32, {out}));
    }
    return ReadRequant(prefix + ".requant", out, &l->requant);
  }

  absl::Status ReadRequant(const std::string& name, uint32_t channels,
                           Requant* r) {
    ASSIGN_OR_RETURN(std::vector<int32_t> v,
                     Get<int32_t>(name, DType::kInt32, {channels, 2}));
    r->mult.resize(channels);
    r->shift.resize(channels);
    for (uint32_t i = 0; i < channels; ++i) {
      r->mult[i] = v[2 * i];
      r->shift[i] = v[2 * i + 1];
    }
    return absl::OkStatus();
  }

  absl::Status ReadNorm(const std::string& prefix, uint32_t table_size,
                        LayerNormTable* n) {
    ASSIGN_OR_RETURN(n->rsqrt, Get<int32_t>(prefix + ".rsqrt", DType::kInt32,
                                            {table_size}));
    ASSIGN_OR_RETURN(std::vector<int32_t> eps,
                     Get<int32_t>(prefix + ".eps", DType::kInt32, {1}));
    n->eps = eps[0];
    return absl::OkStatus();
  }

 private:
  const Container& c_;
  std::string source_;
  std::set<std::string> used_;
};

// ---- validation -------------------------------------------------------

struct Checker {
  std::string source;
  absl::Status Error(absl::string_view field, absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": ", field, ": ", what));
  }
  absl::Status Bits(absl::string_view field, int v, int lo, int hi) const {
    if (v < lo || v > hi) {
      return Error(field, absl::StrCat(v, " bits is outside [", lo, ", ", hi,
                                       "]"));
    }
    return absl::OkStatus();
  }
  template <typename T>
  absl::Status Range(absl::string_view field, const std::vector<T>& v,
                     int64_t lo, int64_t hi) const {
    for (size_t i = 0; i < v.size(); ++i) {
      if (static_cast<int64_t>(v[i]) < lo || static_cast<int64_t>(v[i]) > hi) {
        return Error(field, absl::StrCat("element ", i, " = ",
                                         static_cast<int64_t>(v[i]),
                                         " is outside [", lo, ", ", hi, "]"));
      }
    }
    return absl::OkStatus();
  }
  absl::Status CheckRequant(absl::string_view field, const Requant& r,
                            size_t channels) const {
    if (r.mult.size() != channels || r.shift.size() != channels) {
      return Error(field, "wrong number of channels");
    }
    RETURN_IF_ERROR(Range(absl::StrCat(field, " multiplier"), r.mult, 0,
                          std::numeric_limits<int32_t>::max()));
    return Range(absl::StrCat(field, " shift"), r.shift, 0, 62);
  }
  absl::Status CheckLinear(absl::string_view field, const Linear& l, int bits,
                           bool bias) const {
    if (l.weight.size() != size_t{l.in} * l.out) {
      return Error(field, "weight size does not match in x out");
    }
    const int64_t q = int64_t{1} << (bits - 1);
    RETURN_IF_ERROR(Range(absl::StrCat(field, ".weight (", bits, "-bit)"),
                          l.weight, -q, q - 1));
    if (bias) {
      if (l.bias.size() != l.out) return Error(field, "bias size != out");
      RETURN_IF_ERROR(Range(absl::StrCat(field, ".bias"), l.bias,
                            -(int64_t{1} << 30), int64_t{1} << 30));
    }
    return CheckRequant(absl::StrCat(field, ".requant"), l.requant, l.out);
  }
};

int CeilLog2(uint64_t v) {
  int b = 0;
  while ((uint64_t{1} << b) < v) ++b;
  return b;
}

}  // namespace

uint64_t VitSpec::macs() const {
  const uint64_t t = tokens, d = width;
  const uint64_t block = 4 * t * d * d + 2 * t * t * d + 2 * t * d * mlp_hidden;
  return t * token_values * d + depth * block + d * classes;
}

BitstreamManifest VitSpec::ToManifest() const {
  BitstreamManifest m;
  m.name = name;
  m.geometry.tokens = tokens;
  m.geometry.token_values = token_values;
  m.geometry.classes = classes;
  m.timing = timing;
  return m;
}

absl::Status VitSpec::Validate(absl::string_view source) const {
  const VitSpec& s = *this;
  Checker ck{std::string(source)};
  for (const absl::Status& st :
       {s.ToManifest().geometry.Validate(), s.timing.Validate()}) {
    if (!st.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": ", st.message()));
    }
  }
  if (s.width % s.heads != 0) {
    return ck.Error("width", absl::StrCat(s.width, " is not a multiple of heads (",
                                          s.heads, ")"));
  }
  RETURN_IF_ERROR(ck.Bits("residual_bits", s.residual_bits, 16, 24));
  RETURN_IF_ERROR(ck.Bits("patch_weight_bits", s.patch_weight_bits, 2, 8));
  RETURN_IF_ERROR(ck.Bits("block_weight_bits", s.block_weight_bits, 2, 8));
  RETURN_IF_ERROR(ck.Bits("head_weight_bits", s.head_weight_bits, 2, 8));
  RETURN_IF_ERROR(ck.Bits("act_bits", s.act_bits, 2, 8));
  RETURN_IF_ERROR(ck.Bits("head_act_bits", s.head_act_bits, 2, 8));
  RETURN_IF_ERROR(ck.Bits("prob_bits", s.prob_bits, 1, 8));
  RETURN_IF_ERROR(ck.Bits("gelu_in_bits", s.gelu_in_bits, 2, 12));
  RETURN_IF_ERROR(ck.Bits("rsqrt_index_bits", s.rsqrt_index_bits, 2, 16));
  // LayerNorm: c * rsqrt >> (frac + j) must stay inside int64 and the shift
  // inside 62, for the largest variance the residual width allows.
  const int var_bits = 2 * s.residual_bits + CeilLog2(s.width) + 2;
  const int max_j = std::max(0, (var_bits - s.rsqrt_index_bits + 1) / 2);
  if (s.rsqrt_frac_bits < 0 || s.rsqrt_frac_bits + max_j > 62) {
    return ck.Error("rsqrt_frac_bits",
                    absl::StrCat(s.rsqrt_frac_bits, " + ", max_j,
                                 " (largest variance shift) exceeds 62"));
  }

  return absl::OkStatus();
}

absl::Status VitWeights::Validate(absl::string_view source) const {
  const VitSpec& s = spec;
  Checker ck{std::string(source)};
  RETURN_IF_ERROR(s.Validate(source));
  const int64_t rmax = (int64_t{1} << (s.residual_bits - 1)) - 1;
  const uint32_t d = s.width;
  auto check_norm = [&](const std::string& name,
                        const LayerNormTable& n) -> absl::Status {
    if (n.rsqrt.size() != (size_t{1} << s.rsqrt_index_bits)) {
      return ck.Error(name + ".rsqrt", "size is not 2^rsqrt_index_bits");
    }
    RETURN_IF_ERROR(ck.Range(name + ".rsqrt", n.rsqrt, 0,
                             std::numeric_limits<int32_t>::max()));
    if (n.eps < 1 || n.eps > std::numeric_limits<int32_t>::max()) {
      return ck.Error(name + ".eps", absl::StrCat(n.eps, " must be >= 1"));
    }
    return absl::OkStatus();
  };

  if (patch.in != s.token_values || patch.out != d) {
    return ck.Error("patch", "shape does not match token_values x width");
  }
  RETURN_IF_ERROR(ck.CheckLinear("patch", patch, s.patch_weight_bits, true));
  if (cls.size() != d) return ck.Error("cls", "size != width");
  if (pos.size() != size_t{s.tokens} * d) {
    return ck.Error("pos", "size != tokens x width");
  }
  RETURN_IF_ERROR(ck.Range("cls", cls, -rmax - 1, rmax));
  RETURN_IF_ERROR(ck.Range("pos", pos, -rmax - 1, rmax));
  if (blocks.size() != s.depth) return ck.Error("blocks", "count != depth");
  const int64_t amax = (int64_t{1} << (s.act_bits - 1)) - 1;
  for (uint32_t i = 0; i < s.depth; ++i) {
    const VitBlock& b = blocks[i];
    const std::string p = absl::StrCat("blocks.", i, ".");
    RETURN_IF_ERROR(check_norm(p + "norm1", b.norm1));
    if (b.qkv.in != d || b.qkv.out != 3 * d) {
      return ck.Error(p + "attn.qkv", "shape is not width x 3 width");
    }
    RETURN_IF_ERROR(ck.CheckLinear(p + "attn.qkv", b.qkv, s.block_weight_bits,
                                   true));
    if (b.exp_mult < 0 || b.exp_shift < 0 || b.exp_shift > 62) {
      return ck.Error(p + "attn.exp_index",
                      "multiplier must be >= 0 and shift in [0, 62]");
    }
    if (b.exp.size() < 2 || b.exp.size() > (1u << 16)) {
      return ck.Error(p + "attn.exp", "size must be in [2, 65536]");
    }
    RETURN_IF_ERROR(ck.Range(p + "attn.exp", b.exp, 0, 1 << 15));
    if (b.exp[0] < 1) return ck.Error(p + "attn.exp", "exp[0] must be > 0");
    RETURN_IF_ERROR(
        ck.CheckRequant(p + "attn.context.requant", b.context, d));
    if (b.proj.in != d || b.proj.out != d) {
      return ck.Error(p + "attn.proj", "shape is not width x width");
    }
    RETURN_IF_ERROR(ck.CheckLinear(p + "attn.proj", b.proj,
                                   s.block_weight_bits, true));
    RETURN_IF_ERROR(check_norm(p + "norm2", b.norm2));
    if (b.fc1.in != d || b.fc1.out != s.mlp_hidden) {
      return ck.Error(p + "mlp.fc1", "shape is not width x mlp_hidden");
    }
    RETURN_IF_ERROR(ck.CheckLinear(p + "mlp.fc1", b.fc1, s.block_weight_bits,
                                   true));
    if (b.gelu.size() != (size_t{1} << s.gelu_in_bits)) {
      return ck.Error(p + "mlp.gelu", "size is not 2^gelu_in_bits");
    }
    RETURN_IF_ERROR(ck.Range(p + "mlp.gelu", b.gelu, -amax - 1, amax));
    if (b.fc2.in != s.mlp_hidden || b.fc2.out != d) {
      return ck.Error(p + "mlp.fc2", "shape is not mlp_hidden x width");
    }
    RETURN_IF_ERROR(ck.CheckLinear(p + "mlp.fc2", b.fc2, s.block_weight_bits,
                                   true));
  }
  RETURN_IF_ERROR(check_norm("norm", norm));
  if (head.in != d || head.out != s.classes) {
    return ck.Error("head", "shape is not width x classes");
  }
  RETURN_IF_ERROR(ck.CheckLinear("head", head, s.head_weight_bits, true));
  if (!labels.empty() && labels.size() != s.classes) {
    return ck.Error("labels", absl::StrCat(labels.size(), " labels for ",
                                           s.classes, " classes"));
  }
  return absl::OkStatus();
}

absl::StatusOr<VitWeights> VitWeightsFromContainer(const Container& c,
                                                   absl::string_view source) {
  VitWeights w;
  ASSIGN_OR_RETURN(w.spec, ReadSpec(c, source));
  const VitSpec& s = w.spec;
  // The spec first: tensor shapes and table sizes below depend on it.
  RETURN_IF_ERROR(s.Validate(source));
  const uint32_t d = s.width, rs = 1u << s.rsqrt_index_bits;
  TensorReader r(c, source);
  RETURN_IF_ERROR(r.ReadLinear("patch", s.token_values, d, true, &w.patch));
  ASSIGN_OR_RETURN(w.cls, r.Get<int32_t>("cls", DType::kInt32, {d}));
  ASSIGN_OR_RETURN(w.pos, r.Get<int32_t>("pos", DType::kInt32, {s.tokens, d}));
  w.blocks.resize(s.depth);
  for (uint32_t i = 0; i < s.depth; ++i) {
    VitBlock& b = w.blocks[i];
    const std::string p = absl::StrCat("blocks.", i, ".");
    RETURN_IF_ERROR(r.ReadNorm(p + "norm1", rs, &b.norm1));
    RETURN_IF_ERROR(r.ReadLinear(p + "attn.qkv", d, 3 * d, true, &b.qkv));
    ASSIGN_OR_RETURN(std::vector<int32_t> ei,
                     r.Get<int32_t>(p + "attn.exp_index", DType::kInt32, {2}));
    b.exp_mult = ei[0];
    b.exp_shift = ei[1];
    ASSIGN_OR_RETURN(b.exp, r.Get1D<int32_t>(p + "attn.exp", DType::kInt32));
    RETURN_IF_ERROR(r.ReadRequant(p + "attn.context.requant", d, &b.context));
    RETURN_IF_ERROR(r.ReadLinear(p + "attn.proj", d, d, true, &b.proj));
    RETURN_IF_ERROR(r.ReadNorm(p + "norm2", rs, &b.norm2));
    RETURN_IF_ERROR(r.ReadLinear(p + "mlp.fc1", d, s.mlp_hidden, true, &b.fc1));
    ASSIGN_OR_RETURN(b.gelu, r.Get<int8_t>(p + "mlp.gelu", DType::kInt8,
                                           {1u << s.gelu_in_bits}));
    RETURN_IF_ERROR(r.ReadLinear(p + "mlp.fc2", s.mlp_hidden, d, true, &b.fc2));
  }
  RETURN_IF_ERROR(r.ReadNorm("norm", rs, &w.norm));
  RETURN_IF_ERROR(r.ReadLinear("head", d, s.classes, true, &w.head));
  if (r.Has("labels")) {
    ASSIGN_OR_RETURN(std::vector<uint8_t> text,
                     r.Get1D<uint8_t>("labels", DType::kUInt8));
    std::string joined(text.begin(), text.end());
    for (absl::string_view l : absl::StrSplit(joined, '\n')) {
      w.labels.emplace_back(l);
    }
  }
  RETURN_IF_ERROR(r.CheckAllUsed());
  RETURN_IF_ERROR(w.Validate(source));
  return w;
}

Container VitWeightsToContainer(const VitWeights& w) {
  const VitSpec& s = w.spec;
  Container c;
  auto put = [&](const char* k, auto v) {
    c.manifest.emplace_back(k, absl::StrCat(v));
  };
  put("name", s.name);
  put("tokens", s.tokens);
  put("token_values", s.token_values);
  put("width", s.width);
  put("heads", s.heads);
  put("depth", s.depth);
  put("mlp_hidden", s.mlp_hidden);
  put("classes", s.classes);
  put("residual_bits", s.residual_bits);
  put("patch_weight_bits", s.patch_weight_bits);
  put("block_weight_bits", s.block_weight_bits);
  put("head_weight_bits", s.head_weight_bits);
  put("act_bits", s.act_bits);
  put("head_act_bits", s.head_act_bits);
  put("prob_bits", s.prob_bits);
  put("gelu_in_bits", s.gelu_in_bits);
  put("rsqrt_index_bits", s.rsqrt_index_bits);
  put("rsqrt_frac_bits", s.rsqrt_frac_bits);
  // %.17g: the doubles round-trip exactly.
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17g", s.input_scale);
  put("input_scale", std::string(buf));
  std::snprintf(buf, sizeof(buf), "%.17g", s.logit_scale);
  put("logit_scale", std::string(buf));
  std::snprintf(buf, sizeof(buf), "%.17g", s.timing.clock_hz);
  put("clock_hz", std::string(buf));
  put("interval_cycles", s.timing.interval_cycles);
  put("latency_cycles", s.timing.latency_cycles);

  auto tensor = [&](const std::string& name, DType dt,
                    std::vector<uint32_t> dims, const void* data) {
    Tensor t;
    t.dtype = dt;
    t.dims = std::move(dims);
    t.bytes.resize(t.elements() * DTypeSize(dt));
    std::memcpy(t.bytes.data(), data, t.bytes.size());
    c.tensors[name] = std::move(t);
  };
  auto requant = [&](const std::string& name, const Requant& r) {
    std::vector<int32_t> v;
    for (size_t i = 0; i < r.mult.size(); ++i) {
      v.push_back(r.mult[i]);
      v.push_back(r.shift[i]);
    }
    tensor(name, DType::kInt32, {static_cast<uint32_t>(r.mult.size()), 2},
           v.data());
  };
  auto linear = [&](const std::string& p, const Linear& l) {
    tensor(p + ".weight", DType::kInt8, {l.out, l.in}, l.weight.data());
    tensor(p + ".bias", DType::kInt32, {l.out}, l.bias.data());
    requant(p + ".requant", l.requant);
  };
  auto norm = [&](const std::string& p, const LayerNormTable& n) {
    tensor(p + ".rsqrt", DType::kInt32,
           {static_cast<uint32_t>(n.rsqrt.size())}, n.rsqrt.data());
    const int32_t eps = static_cast<int32_t>(n.eps);
    tensor(p + ".eps", DType::kInt32, {1}, &eps);
  };
  linear("patch", w.patch);
  tensor("cls", DType::kInt32, {s.width}, w.cls.data());
  tensor("pos", DType::kInt32, {s.tokens, s.width}, w.pos.data());
  for (size_t i = 0; i < w.blocks.size(); ++i) {
    const VitBlock& b = w.blocks[i];
    const std::string p = absl::StrCat("blocks.", i, ".");
    norm(p + "norm1", b.norm1);
    linear(p + "attn.qkv", b.qkv);
    const int32_t ei[2] = {b.exp_mult, b.exp_shift};
    tensor(p + "attn.exp_index", DType::kInt32, {2}, ei);
    tensor(p + "attn.exp", DType::kInt32,
           {static_cast<uint32_t>(b.exp.size())}, b.exp.data());
    requant(p + "attn.context.requant", b.context);
    linear(p + "attn.proj", b.proj);
    norm(p + "norm2", b.norm2);
    linear(p + "mlp.fc1", b.fc1);
    tensor(p + "mlp.gelu", DType::kInt8,
           {static_cast<uint32_t>(b.gelu.size())}, b.gelu.data());
    linear(p + "mlp.fc2", b.fc2);
  }
  norm("norm", w.norm);
  linear("head", w.head);
  if (!w.labels.empty()) {
    const std::string text = absl::StrJoin(w.labels, "\n");
    tensor("labels", DType::kUInt8, {static_cast<uint32_t>(text.size())},
           text.data());
  }
  return c;
}

}  // namespace hgpipe::accel::vit
