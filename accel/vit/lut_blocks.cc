#include "accel/vit/lut_blocks.h"

#include <algorithm>
#include <initializer_list>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "accel/vit/aligned.h"
#include "base/status_macros.h"

namespace hgpipe::accel::vit {
namespace {

constexpr uint32_t kRows = kLutRowBlock;

absl::Status Refuse(absl::string_view what, absl::string_view why) {
  return absl::FailedPreconditionError(absl::StrCat(what, ": ", why));
}

// Activations of `t` enter the tables as a - offset, in [-4, 3].
absl::StatusOr<int8_t> ActivationOffset(const IntType& t, absl::string_view what) {
  if (t.max() - t.min() > kLutMax - kLutMin) {
    return Refuse(what, absl::StrCat("activations of ", t.ToString(), " are wider than 3 bits"));
  }
  return static_cast<int8_t>(t.min() - kLutMin);
}

// Whether every value of `t` is a lookup operand as it is (k and v).
absl::Status CheckOperand(const IntType& t, absl::string_view what) {
  if (t.min() < kLutMin || t.max() > kLutMax) {
    return Refuse(what, absl::StrCat(t.ToString(), " values outside [-4, 3]"));
  }
  return absl::OkStatus();
}

// Packs the products of `stages` (outputs concatenated in order) for
// activations of `act`, with their biases and the shift's correction.
absl::StatusOr<LutLinear> MakeLinear(std::initializer_list<const LinearStage*> stages,
                                     const IntType& act, absl::string_view what, Simd simd) {
  LutLinear l;
  ASSIGN_OR_RETURN(l.offset, ActivationOffset(act, what));
  const uint32_t in = (*stages.begin())->in;
  std::vector<int8_t> w;
  std::vector<int32_t> bias;
  for (const LinearStage* s : stages) {
    for (int8_t v : s->weight) {
      if (v < kLutMin || v > kLutMax) return Refuse(what, "weights outside [-4, 3]");
    }
    w.insert(w.end(), s->weight.begin(), s->weight.end());
    bias.insert(bias.end(), s->bias.begin(), s->bias.end());
  }
  l.weights.Pack(w.data(), bias.size(), in, in, /*transposed=*/false, simd);
  for (size_t j = 0; j < bias.size(); ++j) {
    const int64_t b = int64_t{bias[j]} + int64_t{l.offset} * l.weights.sums()[j];
    l.bias.push_back(static_cast<int16_t>(static_cast<uint16_t>(b)));
  }
  return l;
}

// The calling thread's scratch, grown as needed: every buffer is written
// before it is read (but for the scores' padding past a row, which the
// softmax reads and masks).
struct Scratch {
  AlignedVector<int8_t> a8, q8, k8, v8, ctx8, probs;
  AlignedVector<int16_t> sums, bias;
  LutWeights keys, values;

  template <typename T>
  static T* Get(AlignedVector<T>& v, size_t n) {
    if (v.size() < n) v.resize(n);
    return v.data();
  }
};

Scratch& ThreadScratch() {
  thread_local Scratch s;
  return s;
}

size_t RoundUp(size_t n, size_t m) { return (n + m - 1) / m * m; }

// Byte buffers that products read may be read up to LutReadableBytes past
// a row's start: slack after the last row.
constexpr size_t kSlack = 64;

}  // namespace

absl::StatusOr<std::unique_ptr<LutAttention>> LutAttention::Create(const VitSpec& spec,
                                                                   const AttentionBlock& a,
                                                                   const IntType& in, Simd simd) {
  if (a.kind != AttentionKind::kSoftmax) {
    return Refuse("attention", "only softmax attention runs on lookup tables");
  }
  std::unique_ptr<LutAttention> b(new LutAttention());
  b->tokens_ = spec.tokens;
  b->width_ = spec.width;
  b->heads_ = spec.heads;
  b->simd_ = simd;
  ASSIGN_OR_RETURN(b->norm_, PrepareNorm(a.norm, in, spec.width));
  ASSIGN_OR_RETURN(b->qkv_, MakeLinear({&a.q, &a.k, &a.v}, a.norm.out, "qkv", simd));
  ASSIGN_OR_RETURN(b->q_quant_, PrepareRequant(a.q.acc, a.q_quant));
  ASSIGN_OR_RETURN(b->k_quant_, PrepareRequant(a.k.acc, a.k_quant));
  ASSIGN_OR_RETURN(b->v_quant_, PrepareRequant(a.v.acc, a.v_quant));
  ASSIGN_OR_RETURN(b->q_offset_, ActivationOffset(a.q_quant.out, "scores"));
  // A shifted q would add offset * sum of k's row to each score; the
  // softmax takes no bias, so q must be a lookup operand as it is.
  if (b->q_offset_ != 0) return Refuse("scores", "q is not signed 3-bit");
  RETURN_IF_ERROR(CheckOperand(a.k_quant.out, "scores"));
  RETURN_IF_ERROR(CheckOperand(a.v_quant.out, "context"));
  if (a.scores.bits > 16 || a.context.bits > 16) {
    return Refuse("attention", "accumulators wider than 16 bits");
  }
  ASSIGN_OR_RETURN(b->softmax_, PrepareSoftmax(a.scores, a.softmax));
  ASSIGN_OR_RETURN(b->p_offset_, ActivationOffset(a.softmax.out, "context"));
  ASSIGN_OR_RETURN(b->context_quant_, PrepareRequant(a.context, a.context_quant));
  ASSIGN_OR_RETURN(b->o_, MakeLinear({&a.o}, a.context_quant.out, "o", simd));
  ASSIGN_OR_RETURN(b->residual_, PrepareResidual(a.o.acc, in, a.residual));
  return b;
}

void LutAttention::Run(const int32_t* x, uint32_t images, int32_t* out) const {
  Scratch& s = ThreadScratch();
  const size_t t = tokens_, d = width_, dh = d / heads_, rows = size_t{images} * t;
  const size_t ldq = 3 * d;           // q | k | v sums per row
  const size_t lds = RoundUp(t, 32);  // scores and probabilities
  int8_t* a8 = Scratch::Get(s.a8, kRows * d + kSlack);
  int16_t* sums = Scratch::Get(s.sums, kRows * std::max(ldq, lds));
  int8_t* q8 = Scratch::Get(s.q8, rows * d + kSlack);
  int8_t* k8 = Scratch::Get(s.k8, rows * d);
  int8_t* v8 = Scratch::Get(s.v8, rows * d);
  int8_t* ctx8 = Scratch::Get(s.ctx8, rows * d + kSlack);
  int8_t* probs = Scratch::Get(s.probs, kRows * lds + kSlack);
  int16_t* bias = Scratch::Get(s.bias, dh);
  // Norm, q, k and v, a group of rows at a time.
  for (size_t r0 = 0; r0 < rows; r0 += kRows) {
    const size_t n = std::min<size_t>(kRows, rows - r0);
    Norm(norm_, x + r0 * d, n, a8, simd_);
    LutProduct(a8, d, qkv_.offset, n, qkv_.weights, sums, ldq, simd_);
    const int16_t* qb = qkv_.bias.data();
    Requant(q_quant_, sums, ldq, qb, n, d, q8 + r0 * d, d, simd_);
    Requant(k_quant_, sums + d, ldq, qb + d, n, d, k8 + r0 * d, d, simd_);
    Requant(v_quant_, sums + 2 * d, ldq, qb + 2 * d, n, d, v8 + r0 * d, d, simd_);
  }
  // Per image and head: scores, softmax and context, a group of query rows
  // at a time, with k and v packed as the products' weights.
  for (size_t img = 0; img < images; ++img) {
    const size_t base = img * t * d;
    for (size_t h = 0; h < heads_; ++h) {
      s.keys.Pack(k8 + base + h * dh, t, dh, d, /*transposed=*/false, simd_);
      s.values.Pack(v8 + base + h * dh, dh, t, d, /*transposed=*/true, simd_);
      // Probabilities enter shifted by p_offset_; its correction per output.
      for (size_t c = 0; c < dh; ++c) {
        bias[c] = static_cast<int16_t>(static_cast<uint16_t>(p_offset_ * s.values.sums()[c]));
      }
      for (size_t i0 = 0; i0 < t; i0 += kRows) {
        const size_t n = std::min<size_t>(kRows, t - i0);
        LutProduct(q8 + base + i0 * d + h * dh, d, q_offset_, n, s.keys, sums, lds, simd_);
        Softmax(softmax_, sums, lds, n, t, probs, lds, simd_);
        LutProduct(probs, lds, p_offset_, n, s.values, sums, dh, simd_);
        Requant(context_quant_, sums, dh, bias, n, dh, ctx8 + base + i0 * d + h * dh, d, simd_);
      }
    }
  }
  // The output projection into the residual stream.
  for (size_t r0 = 0; r0 < rows; r0 += kRows) {
    const size_t n = std::min<size_t>(kRows, rows - r0);
    LutProduct(ctx8 + r0 * d, d, o_.offset, n, o_.weights, sums, d, simd_);
    ResidualFinish(residual_, sums, d, o_.bias.data(), x + r0 * d, n, d, out + r0 * d, simd_);
  }
}

absl::StatusOr<std::unique_ptr<LutMlp>> LutMlp::Create(const VitSpec& spec, const MlpBlock& m,
                                                       const IntType& in, Simd simd) {
  if (m.kind != MlpKind::kGelu) return Refuse("MLP", "a skipped MLP computes nothing");
  std::unique_ptr<LutMlp> b(new LutMlp());
  b->tokens_ = spec.tokens;
  b->width_ = spec.width;
  b->hidden_ = spec.mlp_hidden;
  b->simd_ = simd;
  ASSIGN_OR_RETURN(b->norm_, PrepareNorm(m.norm, in, spec.width));
  ASSIGN_OR_RETURN(b->fc1_, MakeLinear({&m.fc1}, m.norm.out, "fc1", simd));
  ASSIGN_OR_RETURN(b->gelu_, PrepareRequant(m.fc1.acc, m.gelu));
  ASSIGN_OR_RETURN(b->fc2_, MakeLinear({&m.fc2}, m.gelu.out, "fc2", simd));
  ASSIGN_OR_RETURN(b->residual_, PrepareResidual(m.fc2.acc, in, m.residual));
  return b;
}

void LutMlp::Run(const int32_t* x, uint32_t images, int32_t* out) const {
  Scratch& s = ThreadScratch();
  const size_t d = width_, hd = hidden_, rows = size_t{images} * tokens_;
  int8_t* a8 = Scratch::Get(s.a8, kRows * std::max(d, hd) + kSlack);
  int16_t* sums = Scratch::Get(s.sums, kRows * std::max(d, hd));
  for (size_t r0 = 0; r0 < rows; r0 += kRows) {
    const size_t n = std::min<size_t>(kRows, rows - r0);
    Norm(norm_, x + r0 * d, n, a8, simd_);
    LutProduct(a8, d, fc1_.offset, n, fc1_.weights, sums, hd, simd_);
    Requant(gelu_, sums, hd, fc1_.bias.data(), n, hd, a8, hd, simd_);
    LutProduct(a8, hd, fc2_.offset, n, fc2_.weights, sums, d, simd_);
    ResidualFinish(residual_, sums, d, fc2_.bias.data(), x + r0 * d, n, d, out + r0 * d, simd_);
  }
}

}  // namespace hgpipe::accel::vit
