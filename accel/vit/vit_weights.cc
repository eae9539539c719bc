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
#include "accel/device_layout.h"
#include "base/status_macros.h"

namespace hgpipe::accel::vit {
namespace {

constexpr uint32_t kMaxDim = 4096;
constexpr int64_t kMaxShift = 62;
// Offsets and the LayerNorm bias stay far enough inside int64 that adding
// them to a value of at most kMaxIntTypeBits bits cannot overflow.
constexpr int64_t kMaxOffset = int64_t{1} << 55;
constexpr int64_t kMaxTableEntries = int64_t{1} << 20;

// One manifest stage line, "name=s13 other=42 ...": its types and integers
// by name. Every name must be read exactly once (Done reports the rest).
class StageLine {
 public:
  StageLine(std::string where, absl::string_view text) : where_(std::move(where)) {
    for (absl::string_view item : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
      const size_t eq = item.find('=');
      if (eq == absl::string_view::npos || eq == 0 || eq + 1 == item.size()) {
        bad_ = std::string(item);
        continue;
      }
      if (!values_.emplace(std::string(item.substr(0, eq)), std::string(item.substr(eq + 1)))
               .second) {
        duplicate_ = std::string(item.substr(0, eq));
      }
    }
  }

  absl::Status Error(absl::string_view name, absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(where_, " '", name, "': ", what));
  }

  absl::Status Type(const std::string& name, IntType* out) {
    ASSIGN_OR_RETURN(std::string v, Take(name));
    absl::StatusOr<IntType> t = ParseIntType(v);
    if (!t.ok()) return Error(name, t.status().message());
    *out = *t;
    return absl::OkStatus();
  }

  absl::Status Int(const std::string& name, int64_t lo, int64_t hi, int64_t* out) {
    ASSIGN_OR_RETURN(std::string v, Take(name));
    if (!absl::SimpleAtoi(v, out)) {
      return Error(name, absl::StrCat("'", v, "' is not an integer"));
    }
    if (*out < lo || *out > hi) {
      return Error(name, absl::StrCat(*out, " is outside [", lo, ", ", hi, "]"));
    }
    return absl::OkStatus();
  }

  absl::Status Done() const {
    if (!bad_.empty()) return Error(bad_, "not name=value");
    if (!duplicate_.empty()) return Error(duplicate_, "given twice");
    for (const auto& [k, v] : values_) {
      if (!taken_.count(k)) return Error(k, "unknown parameter");
    }
    return absl::OkStatus();
  }

 private:
  absl::StatusOr<std::string> Take(const std::string& name) {
    taken_.insert(name);
    auto it = values_.find(name);
    if (it == values_.end()) return Error(name, "missing");
    return it->second;
  }

  std::string where_;
  std::map<std::string, std::string> values_;
  std::set<std::string> taken_;
  std::string bad_, duplicate_;
};

// Reads a container: manifest keys (plain or stage lines) and tensors, each
// at most once, every error naming the source and the key or tensor.
class Reader {
 public:
  Reader(const Container& c, absl::string_view source) : c_(c), source_(source) {
    for (const auto& [k, v] : c.manifest) manifest_[k] = v;
  }

  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": ", what));
  }

  absl::StatusOr<std::string> Value(const std::string& key) {
    used_keys_.insert(key);
    auto it = manifest_.find(key);
    if (it == manifest_.end()) {
      return Error(absl::StrCat("manifest '", key, "': missing"));
    }
    return it->second;
  }

  template <typename T>
  absl::Status Uint(const std::string& key, uint64_t lo, uint64_t hi, T* out) {
    ASSIGN_OR_RETURN(std::string s, Value(key));
    uint64_t v = 0;
    if (!absl::SimpleAtoi(s, &v) || v < lo || v > hi) {
      return Error(absl::StrCat("manifest '", key, "': '", s, "' is not an integer in [", lo, ", ",
                                hi, "]"));
    }
    *out = static_cast<T>(v);
    return absl::OkStatus();
  }

  absl::Status Positive(const std::string& key, double* out) {
    ASSIGN_OR_RETURN(std::string s, Value(key));
    if (!absl::SimpleAtod(s, out) || !std::isfinite(*out) || !(*out > 0)) {
      return Error(absl::StrCat("manifest '", key, "': '", s, "' is not a positive number"));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<StageLine> Stage(const std::string& key) {
    ASSIGN_OR_RETURN(std::string text, Value(key));
    return StageLine(absl::StrCat(source_, ": manifest '", key, "' parameter"), text);
  }

  // The tensor `name` with exactly `dtype` and `dims`, its values as T.
  template <typename T>
  absl::StatusOr<std::vector<T>> Tensor(const std::string& name, DType dtype,
                                        const std::vector<uint32_t>& dims) {
    used_tensors_.insert(name);
    auto it = c_.tensors.find(name);
    if (it == c_.tensors.end()) return TensorError(name, "missing");
    const vit::Tensor& t = it->second;
    if (t.dtype != dtype) {
      return TensorError(
          name, absl::StrCat("dtype ", DTypeName(t.dtype), ", expected ", DTypeName(dtype)));
    }
    if (t.dims != dims) {
      return TensorError(name, absl::StrCat("shape [", absl::StrJoin(t.dims, ", "), "], expected [",
                                            absl::StrJoin(dims, ", "), "]"));
    }
    static_assert(sizeof(T) <= 8);
    if (DTypeSize(dtype) != sizeof(T)) return TensorError(name, "internal size");
    std::vector<T> out(t.elements());
    // Little-endian host (x86-64, aarch64): the bytes are the values.
    std::memcpy(out.data(), t.bytes.data(), t.bytes.size());
    return out;
  }

  absl::Status TensorError(absl::string_view name, absl::string_view what) const {
    return Error(absl::StrCat("tensor '", name, "': ", what));
  }

  // Every element of tensor `name` within `t`.
  template <typename T>
  absl::Status WithinType(const std::string& name, const std::vector<T>& v,
                          const IntType& t) const {
    for (size_t i = 0; i < v.size(); ++i) {
      if (!t.Holds(static_cast<int64_t>(v[i]))) {
        return TensorError(name, absl::StrCat("element ", i, " = ", static_cast<int64_t>(v[i]),
                                              " does not fit ", t.ToString()));
      }
    }
    return absl::OkStatus();
  }

  bool HasTensor(const std::string& name) const { return c_.tensors.count(name); }
  bool HasKey(const std::string& key) const { return manifest_.count(key) > 0; }

  absl::Status CheckAllUsed() const {
    for (const auto& [k, v] : manifest_) {
      if (!used_keys_.count(k)) {
        return Error(absl::StrCat("manifest '", k, "': unknown key"));
      }
    }
    for (const auto& [name, t] : c_.tensors) {
      if (!used_tensors_.count(name)) return TensorError(name, "unknown tensor");
    }
    return absl::OkStatus();
  }

  const std::string& source() const { return source_; }

 private:
  const Container& c_;
  std::string source_;
  std::map<std::string, std::string> manifest_;
  std::set<std::string> used_keys_, used_tensors_;
};

// A type that feeds a matrix product: the emulation's int8 / uint8 lanes.
absl::Status OperandType(StageLine& line, const std::string& name, IntType* t,
                         bool allow_unsigned = true) {
  RETURN_IF_ERROR(line.Type(name, t));
  if (t->bits > 8 || (!t->is_signed && !allow_unsigned)) {
    return line.Error(name, absl::StrCat(t->ToString(), ": matrix-product operands are ",
                                         allow_unsigned ? "s1..s8 or u1..u8" : "s1..s8"));
  }
  return absl::OkStatus();
}

// A type held in int32 (accumulators, the residual stream).
absl::Status Int32Type(StageLine& line, const std::string& name, IntType* t) {
  RETURN_IF_ERROR(line.Type(name, t));
  if (t->bits > 32 || (!t->is_signed && t->bits > 31)) {
    return line.Error(name, absl::StrCat(t->ToString(), " is wider than int32"));
  }
  return absl::OkStatus();
}

// A table of `bound` + 1 entries, each within `type`.
absl::Status ReadTable(Reader& r, const std::string& name, int64_t bound, const IntType& type,
                       std::vector<int32_t>* out) {
  ASSIGN_OR_RETURN(*out,
                   r.Tensor<int32_t>(name, DType::kInt32, {static_cast<uint32_t>(bound + 1)}));
  return r.WithinType(name, *out, type);
}

absl::Status ReadNorm(Reader& r, const std::string& key, uint32_t width, NormStage* n) {
  ASSIGN_OR_RETURN(StageLine line, r.Stage(key));
  for (auto [name, t] :
       std::initializer_list<std::pair<const char*, IntType*>>{{"sum", &n->sum},
                                                               {"divc", &n->divc},
                                                               {"mean", &n->mean},
                                                               {"var", &n->var},
                                                               {"cursor", &n->cursor},
                                                               {"rsqrt", &n->rsqrt},
                                                               {"affine", &n->affine},
                                                               {"shift", &n->shift}}) {
    RETURN_IF_ERROR(line.Type(name, t));
  }
  RETURN_IF_ERROR(OperandType(line, "out", &n->out));
  constexpr int64_t kMult = std::numeric_limits<int32_t>::max();
  RETURN_IF_ERROR(line.Int("mean_mult", -kMult, kMult, &n->mean_mult));
  RETURN_IF_ERROR(line.Int("mean_shift", 1, kMaxShift, &n->mean_shift));
  RETURN_IF_ERROR(line.Int("var_offset", -kMaxOffset, kMaxOffset, &n->var_offset));
  RETURN_IF_ERROR(line.Int("var_shift", 0, kMaxShift, &n->var_shift));
  RETURN_IF_ERROR(line.Int("var_bound", 0, kMaxTableEntries - 1, &n->var_bound));
  RETURN_IF_ERROR(line.Int("out_shift", 0, kMaxShift, &n->out_shift));
  RETURN_IF_ERROR(line.Done());
  ASSIGN_OR_RETURN(n->weight, r.Tensor<int32_t>(key + ".weight", DType::kInt32, {width}));
  ASSIGN_OR_RETURN(n->bias, r.Tensor<int64_t>(key + ".bias", DType::kInt64, {width}));
  RETURN_IF_ERROR(r.WithinType(key + ".bias", n->bias, IntType{56, true}));
  return ReadTable(r, key + ".rsqrt", n->var_bound, n->rsqrt, &n->rsqrt_table);
}

absl::Status ReadLinear(Reader& r, const std::string& key, uint32_t in, uint32_t out,
                        LinearStage* l) {
  ASSIGN_OR_RETURN(StageLine line, r.Stage(key));
  RETURN_IF_ERROR(OperandType(line, "weight", &l->weight_type, /*allow_unsigned=*/false));
  RETURN_IF_ERROR(Int32Type(line, "bias", &l->bias_type));
  RETURN_IF_ERROR(Int32Type(line, "acc", &l->acc));
  RETURN_IF_ERROR(line.Done());
  l->in = in;
  l->out = out;
  ASSIGN_OR_RETURN(l->weight, r.Tensor<int8_t>(key + ".weight", DType::kInt8, {out, in}));
  RETURN_IF_ERROR(r.WithinType(key + ".weight", l->weight, l->weight_type));
  ASSIGN_OR_RETURN(l->bias, r.Tensor<int32_t>(key + ".bias", DType::kInt32, {out}));
  return r.WithinType(key + ".bias", l->bias, l->bias_type);
}

// `weights_operand`: the output is the weights side of the attention's
// products (k and v), which the emulation takes signed and at most 7 bits
// wide (matmul.h, BatchedMatmul: no 8-bit split for runtime operands).
absl::Status ReadTableStage(Reader& r, const std::string& key, TableStage* t,
                            bool weights_operand = false) {
  ASSIGN_OR_RETURN(StageLine line, r.Stage(key));
  RETURN_IF_ERROR(line.Type("cursor", &t->cursor));
  RETURN_IF_ERROR(OperandType(line, "out", &t->out, /*allow_unsigned=*/!weights_operand));
  if (weights_operand && t->out.bits > 7) {
    return line.Error("out", absl::StrCat(t->out.ToString(), ": attention's k and v are s1..s7"));
  }
  RETURN_IF_ERROR(line.Int("offset", -kMaxOffset, kMaxOffset, &t->offset));
  RETURN_IF_ERROR(line.Int("shift", 0, kMaxShift, &t->shift));
  RETURN_IF_ERROR(line.Int("bound", 0, kMaxTableEntries - 1, &t->bound));
  RETURN_IF_ERROR(line.Done());
  return ReadTable(r, key + ".table", t->bound, t->out, &t->table);
}

absl::Status ReadAccumulator(Reader& r, const std::string& key, IntType* t) {
  ASSIGN_OR_RETURN(StageLine line, r.Stage(key));
  RETURN_IF_ERROR(Int32Type(line, "acc", t));
  return line.Done();
}

absl::Status ReadSoftmax(Reader& r, const std::string& key, SoftmaxStage* s) {
  ASSIGN_OR_RETURN(StageLine line, r.Stage(key));
  for (auto [name, t] :
       std::initializer_list<std::pair<const char*, IntType*>>{{"minus", &s->minus},
                                                               {"cursor1", &s->cursor1},
                                                               {"exp", &s->exp},
                                                               {"sum", &s->sum},
                                                               {"recip", &s->recip},
                                                               {"cursor2_one", &s->cursor2_one},
                                                               {"cursor2_two", &s->cursor2_two},
                                                               {"affine", &s->affine},
                                                               {"cursor3", &s->cursor3}}) {
    RETURN_IF_ERROR(line.Type(name, t));
  }
  RETURN_IF_ERROR(OperandType(line, "out", &s->out));
  constexpr int64_t kB = kMaxTableEntries - 1;
  for (auto [name, v, lo, hi] :
       std::initializer_list<std::tuple<const char*, int64_t*, int64_t, int64_t>>{
           {"exp_offset", &s->exp_offset, -kMaxOffset, kMaxOffset},
           {"exp_shift", &s->exp_shift, 0, kMaxShift},
           {"exp_bound", &s->exp_bound, 0, kB},
           {"one_offset", &s->one_offset, -kMaxOffset, kMaxOffset},
           {"one_shift", &s->one_shift, 0, kMaxShift},
           {"one_bound", &s->one_bound, 0, kB},
           {"one_out_offset", &s->one_out_offset, -kMaxOffset, kMaxOffset},
           {"one_out_shift", &s->one_out_shift, 0, kMaxShift},
           {"two_offset", &s->two_offset, -kMaxOffset, kMaxOffset},
           {"two_shift", &s->two_shift, 0, kMaxShift},
           {"two_bound", &s->two_bound, 0, kB},
           {"two_out_offset", &s->two_out_offset, -kMaxOffset, kMaxOffset},
           {"two_out_shift", &s->two_out_shift, 0, kMaxShift}}) {
    RETURN_IF_ERROR(line.Int(name, lo, hi, v));
  }
  RETURN_IF_ERROR(line.Done());
  RETURN_IF_ERROR(ReadTable(r, key + ".exp", s->exp_bound, s->exp, &s->exp_table));
  RETURN_IF_ERROR(ReadTable(r, key + ".recip_one", s->one_bound, s->recip, &s->recip_one_table));
  return ReadTable(r, key + ".recip_two", s->two_bound, s->recip, &s->recip_two_table);
}

absl::Status ReadTaylor(Reader& r, const std::string& key, TaylorStage* t) {
  ASSIGN_OR_RETURN(StageLine line, r.Stage(key));
  for (auto [name, type] :
       std::initializer_list<std::pair<const char*, IntType*>>{{"ksum", &t->ksum},
                                                               {"vsum", &t->vsum},
                                                               {"kv", &t->kv},
                                                               {"g", &t->g},
                                                               {"gshift", &t->gshift},
                                                               {"mterm", &t->mterm}}) {
    RETURN_IF_ERROR(line.Type(name, type));
  }
  // q gq summed over a head stays far inside int64 (8 + 32 + 12 bits).
  RETURN_IF_ERROR(Int32Type(line, "gout", &t->gout));
  constexpr int64_t kMult = std::numeric_limits<int32_t>::max();
  RETURN_IF_ERROR(line.Int("g_shift", 1, kMaxShift, &t->g_shift));
  RETURN_IF_ERROR(line.Int("mean_mult", -kMult, kMult, &t->mean_mult));
  RETURN_IF_ERROR(line.Int("mean_shift", 1, kMaxShift, &t->mean_shift));
  return line.Done();
}

// The optional key `blocks.I.PART.kind`: one of `names` (index = the enum's
// value), names[0] when absent.
absl::StatusOr<int> ReadKind(Reader& r, uint32_t block, absl::string_view part,
                             std::initializer_list<const char*> names) {
  const std::string key = absl::StrCat("blocks.", block, ".", part, ".kind");
  if (!r.HasKey(key)) return 0;
  ASSIGN_OR_RETURN(std::string v, r.Value(key));
  int i = 0;
  for (const char* n : names) {
    if (v == n) return i;
    ++i;
  }
  return r.Error(absl::StrCat("manifest '", key, "': block ", block, "'s ", part, " kind '",
                              v.substr(0, 32), "' is not ", absl::StrJoin(names, ", ")));
}

absl::StatusOr<AttentionKind> ReadAttentionKind(Reader& r, uint32_t block) {
  ASSIGN_OR_RETURN(int k, ReadKind(r, block, "attn", {"softmax", "taylor", "none"}));
  return static_cast<AttentionKind>(k);
}

absl::StatusOr<MlpKind> ReadMlpKind(Reader& r, uint32_t block) {
  ASSIGN_OR_RETURN(int k, ReadKind(r, block, "mlp", {"gelu", "none"}));
  return static_cast<MlpKind>(k);
}

// A skipped branch computes nothing, so a stage line of it is a mistake (a
// file quantized for another variant) that would otherwise be ignored.
absl::Status NoStageLines(const Reader& r, const std::string& prefix, uint32_t block) {
  for (const char* stage : {".norm", ".q", ".fc1", ".residual"}) {
    const std::string key = prefix + stage;
    if (r.HasKey(key)) {
      return r.Error(absl::StrCat("manifest '", key, "': block ", block, "'s ",
                                  prefix.substr(prefix.rfind('.') + 1),
                                  " is skipped (kind none) but has stage lines"));
    }
  }
  return absl::OkStatus();
}

absl::Status ReadResidual(Reader& r, const std::string& key, ResidualStage* s) {
  ASSIGN_OR_RETURN(StageLine line, r.Stage(key));
  RETURN_IF_ERROR(Int32Type(line, "out", &s->out));
  constexpr int64_t kMult = std::numeric_limits<int32_t>::max();
  RETURN_IF_ERROR(line.Int("mult", -kMult, kMult, &s->mult));
  RETURN_IF_ERROR(line.Int("shift", 1, kMaxShift, &s->shift));
  return line.Done();
}

absl::Status ReadPatch(Reader& r, const VitSpec& s, PatchStage* p) {
  ASSIGN_OR_RETURN(StageLine line, r.Stage("patch"));
  RETURN_IF_ERROR(OperandType(line, "in", &p->in, /*allow_unsigned=*/false));
  RETURN_IF_ERROR(OperandType(line, "weight", &p->weight_type, /*allow_unsigned=*/false));
  RETURN_IF_ERROR(Int32Type(line, "bias", &p->bias_type));
  RETURN_IF_ERROR(Int32Type(line, "acc", &p->acc));
  RETURN_IF_ERROR(Int32Type(line, "out", &p->out));
  RETURN_IF_ERROR(line.Int("shift", 1, kMaxShift, &p->shift));
  RETURN_IF_ERROR(line.Done());
  ASSIGN_OR_RETURN(p->weight,
                   r.Tensor<int8_t>("patch.weight", DType::kInt8, {s.width, s.token_values}));
  RETURN_IF_ERROR(r.WithinType("patch.weight", p->weight, p->weight_type));
  ASSIGN_OR_RETURN(p->bias, r.Tensor<int32_t>("patch.bias", DType::kInt32, {s.tokens, s.width}));
  RETURN_IF_ERROR(r.WithinType("patch.bias", p->bias, p->bias_type));
  ASSIGN_OR_RETURN(p->cls, r.Tensor<int32_t>("patch.cls", DType::kInt32, {s.width}));
  return r.WithinType("patch.cls", p->cls, p->bias_type);
}

absl::StatusOr<VitSpec> ReadSpec(Reader& r) {
  VitSpec s;
  ASSIGN_OR_RETURN(s.name, r.Value("name"));
  RETURN_IF_ERROR(r.Uint("tokens", 2, kMaxDim, &s.tokens));
  RETURN_IF_ERROR(r.Uint("token_values", 2, kMaxDim, &s.token_values));
  RETURN_IF_ERROR(r.Uint("width", 1, kMaxDim, &s.width));
  RETURN_IF_ERROR(r.Uint("heads", 1, kMaxDim, &s.heads));
  RETURN_IF_ERROR(r.Uint("depth", 0, 256, &s.depth));
  RETURN_IF_ERROR(r.Uint("mlp_hidden", 1, kMaxDim, &s.mlp_hidden));
  RETURN_IF_ERROR(r.Uint("classes", 1, 1u << 20, &s.classes));
  RETURN_IF_ERROR(r.Positive("input_scale", &s.input_scale));
  RETURN_IF_ERROR(r.Positive("logit_scale", &s.logit_scale));
  RETURN_IF_ERROR(r.Positive("clock_hz", &s.timing.clock_hz));
  RETURN_IF_ERROR(r.Uint("interval_cycles", 1, std::numeric_limits<uint32_t>::max(),
                         &s.timing.interval_cycles));
  RETURN_IF_ERROR(
      r.Uint("latency_cycles", 1, std::numeric_limits<uint32_t>::max(), &s.timing.latency_cycles));
  if (r.HasKey("top1_accuracy")) {
    ASSIGN_OR_RETURN(std::string v, r.Value("top1_accuracy"));
    if (!absl::SimpleAtod(v, &s.accuracy.top1)) s.accuracy.top1 = -1;
  }
  if (r.HasKey("accuracy_dataset")) {
    ASSIGN_OR_RETURN(s.accuracy.dataset, r.Value("accuracy_dataset"));
  }
  if (absl::Status st = s.accuracy.Validate(); !st.ok()) {
    return r.Error(absl::StrCat("manifest ", st.message()));
  }
  for (const absl::Status& st : {s.ToManifest().geometry.Validate(), s.timing.Validate()}) {
    if (!st.ok()) return r.Error(st.message());
  }
  if (s.width % s.heads != 0) {
    return r.Error(
        absl::StrCat("manifest 'width': ", s.width, " is not a multiple of heads (", s.heads, ")"));
  }
  return s;
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
  m.accuracy = accuracy;
  return m;
}

IntType VitWeights::StreamAfter(int64_t branch) const {
  for (int64_t j = branch; j >= 0; --j) {
    const size_t i = static_cast<size_t>(j / 2);
    if (j % 2 == 0 && attn[i].kind != AttentionKind::kNone) return attn[i].residual.out;
    if (j % 2 == 1 && mlp[i].kind != MlpKind::kNone) return mlp[i].residual.out;
  }
  return patch.out;
}
IntType VitWeights::AttentionInput(uint32_t i) const { return StreamAfter(int64_t{2} * i - 1); }
IntType VitWeights::MlpInput(uint32_t i) const { return StreamAfter(int64_t{2} * i); }
IntType VitWeights::HeadInput() const { return StreamAfter(int64_t{2} * spec.depth - 1); }

absl::StatusOr<VitWeights> VitWeightsFromContainer(const Container& c, absl::string_view source) {
  Reader r(c, source);
  VitWeights w;
  ASSIGN_OR_RETURN(w.spec, ReadSpec(r));
  const VitSpec& s = w.spec;
  const uint32_t d = s.width, hd = s.mlp_hidden;
  RETURN_IF_ERROR(ReadPatch(r, s, &w.patch));
  w.attn.resize(s.depth);
  w.mlp.resize(s.depth);
  for (uint32_t i = 0; i < s.depth; ++i) {
    AttentionBlock& a = w.attn[i];
    const std::string p = absl::StrCat("blocks.", i, ".attn");
    ASSIGN_OR_RETURN(a.kind, ReadAttentionKind(r, i));
    if (a.kind == AttentionKind::kNone) {
      RETURN_IF_ERROR(NoStageLines(r, p, i));
    } else {
      RETURN_IF_ERROR(ReadNorm(r, p + ".norm", d, &a.norm));
      RETURN_IF_ERROR(ReadLinear(r, p + ".q", d, d, &a.q));
      RETURN_IF_ERROR(ReadLinear(r, p + ".k", d, d, &a.k));
      RETURN_IF_ERROR(ReadLinear(r, p + ".v", d, d, &a.v));
      RETURN_IF_ERROR(ReadTableStage(r, p + ".q_quant", &a.q_quant));
      RETURN_IF_ERROR(ReadTableStage(r, p + ".k_quant", &a.k_quant, true));
      RETURN_IF_ERROR(ReadTableStage(r, p + ".v_quant", &a.v_quant, true));
      if (a.kind == AttentionKind::kTaylor) {
        RETURN_IF_ERROR(ReadTaylor(r, p + ".taylor", &a.taylor));
      } else {
        RETURN_IF_ERROR(ReadAccumulator(r, p + ".scores", &a.scores));
        RETURN_IF_ERROR(ReadSoftmax(r, p + ".softmax", &a.softmax));
      }
      RETURN_IF_ERROR(ReadAccumulator(r, p + ".context", &a.context));
      RETURN_IF_ERROR(ReadTableStage(r, p + ".context_quant", &a.context_quant));
      RETURN_IF_ERROR(ReadLinear(r, p + ".o", d, d, &a.o));
      RETURN_IF_ERROR(ReadResidual(r, p + ".residual", &a.residual));
    }

    MlpBlock& m = w.mlp[i];
    const std::string q = absl::StrCat("blocks.", i, ".mlp");
    ASSIGN_OR_RETURN(m.kind, ReadMlpKind(r, i));
    if (m.kind == MlpKind::kNone) {
      RETURN_IF_ERROR(NoStageLines(r, q, i));
      continue;
    }
    RETURN_IF_ERROR(ReadNorm(r, q + ".norm", d, &m.norm));
    RETURN_IF_ERROR(ReadLinear(r, q + ".fc1", d, hd, &m.fc1));
    RETURN_IF_ERROR(ReadTableStage(r, q + ".gelu", &m.gelu));
    RETURN_IF_ERROR(ReadLinear(r, q + ".fc2", hd, d, &m.fc2));
    RETURN_IF_ERROR(ReadResidual(r, q + ".residual", &m.residual));
  }
  RETURN_IF_ERROR(ReadNorm(r, "head.norm", d, &w.head.norm));
  RETURN_IF_ERROR(ReadLinear(r, "head", d, s.classes, &w.head.linear));
  if (w.head.linear.acc.bits > kLogitBits) {
    return r.Error(absl::StrCat("manifest 'head' parameter 'acc': ", w.head.linear.acc.ToString(),
                                " is wider than the ", kLogitBits, "-bit logit word"));
  }
  if (r.HasTensor("labels")) {
    ASSIGN_OR_RETURN(const Tensor* t, [&]() -> absl::StatusOr<const Tensor*> {
      const Tensor& t = c.tensors.at("labels");
      if (t.dims.size() != 1) return r.TensorError("labels", "rank is not 1");
      return &t;
    }());
    ASSIGN_OR_RETURN(std::vector<uint8_t> text,
                     r.Tensor<uint8_t>("labels", DType::kUInt8, t->dims));
    const std::string joined(text.begin(), text.end());
    for (absl::string_view l : absl::StrSplit(joined, '\n')) w.labels.emplace_back(l);
    if (w.labels.size() != s.classes) {
      return r.TensorError("labels",
                           absl::StrCat(w.labels.size(), " labels for ", s.classes, " classes"));
    }
  }
  RETURN_IF_ERROR(r.CheckAllUsed());
  return w;
}

}  // namespace hgpipe::accel::vit
