#include "accel/vit/stages.h"

#include <algorithm>
#include <vector>

#include "accel/device_layout.h"

namespace hgpipe::accel::vit {
namespace {

// The element-wise stages are plain loops; GCC compiles them once per ISA
// level and picks at load time, so they vectorize where the CPU allows
// without hand-written SIMD.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && \
    !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define HGPIPE_VIT_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define HGPIPE_VIT_CLONES
#endif

// Products in wrapping uint64 arithmetic: exact modulo 2^64, so exact once
// wrapped to a type of at most kMaxIntTypeBits bits.
inline int64_t MulWrap(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) * static_cast<uint64_t>(b));
}
inline int64_t AddWrap(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b));
}
inline int64_t Clamp(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : (v > hi ? hi : v); }
// A value of an at most 8-bit type as its byte lane.
inline int8_t Lane(int64_t v) { return static_cast<int8_t>(static_cast<uint8_t>(v)); }

// IntType::Wrap with its fields in registers: the stages' loops write
// through int8 / int32 pointers, which may alias a struct's fields, so the
// compiler would reload them (and not vectorize) if the loops read them.
struct Wrapper {
  explicit Wrapper(const IntType& t) : drop(64 - t.bits), is_signed(t.is_signed) {}
  int64_t operator()(int64_t v) const {
    const uint64_t low = static_cast<uint64_t>(v) << drop;
    const int64_t s = static_cast<int64_t>(low) >> drop;
    const int64_t u = static_cast<int64_t>(low >> drop);
    return is_signed ? s : u;
  }
  int drop;
  bool is_signed;
};

// The same for types of at most 32 bits on int32 values (vectorizes in
// 32-bit lanes).
struct Wrapper32 {
  explicit Wrapper32(const IntType& t) : drop(32 - t.bits), is_signed(t.is_signed) {}
  int32_t operator()(int32_t v) const {
    const uint32_t low = static_cast<uint32_t>(v) << drop;
    const int32_t s = static_cast<int32_t>(low) >> drop;
    const int32_t u = static_cast<int32_t>(low >> drop);
    return is_signed ? s : u;
  }
  int drop;
  bool is_signed;
};

// Direct look-up tables over every value of a narrow type replace the
// per-value index arithmetic of a table stage.
constexpr int kMaxDirectBits = 16;

// lut[v - in.min()] = table[clamp(wrap_cursor((v + offset) >> shift), 0,
// bound)] for every value v of `in`.
template <typename Out>
void BuildDirect(const IntType& in, const IntType& cursor, int64_t offset, int64_t shift,
                 int64_t bound, const int32_t* table, std::vector<Out>* lut) {
  const Wrapper wrap(cursor);
  const int64_t lo = in.min(), n = in.max() - lo + 1;
  lut->resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = Clamp(wrap((lo + i + offset) >> shift), 0, bound);
    (*lut)[static_cast<size_t>(i)] = static_cast<Out>(table != nullptr ? table[c] : c);
  }
}

}  // namespace

int64_t NormMean(const NormStage& p, int64_t sum) {
  const Wrapper wrap_sum(p.sum), wrap_divc(p.divc), wrap_mean(p.mean);
  const int64_t half = int64_t{1} << (p.mean_shift - 1);
  int64_t tmp = wrap_divc(MulWrap(wrap_sum(sum), p.mean_mult));
  tmp = wrap_divc(AddWrap(tmp, half));
  return wrap_mean(tmp >> p.mean_shift);
}

int64_t NormRsqrt(const NormStage& p, uint64_t squares) {
  const Wrapper wrap_var(p.var), wrap_cursor(p.cursor);
  const int64_t var = wrap_var(static_cast<int64_t>(squares));
  return p.rsqrt_table[Clamp(wrap_cursor((var + p.var_offset) >> p.var_shift), 0, p.var_bound)];
}

HGPIPE_VIT_CLONES
void NormRows(const NormStage& p, const IntType& in, const int32_t* x, size_t rows, size_t width,
              size_t stride, int8_t* out) {
  const Wrapper wrap_in(in), wrap_affine(p.affine), wrap_shift(p.shift);
  const int64_t out_shift = p.out_shift;
  const int64_t out_lo = p.out.min(), out_hi = p.out.max();
  const int32_t* __restrict w = p.weight.data();
  const int64_t* __restrict b = p.bias.data();
  for (size_t r = 0; r < rows; ++r) {
    const int32_t* __restrict xr = x + r * stride;
    int8_t* __restrict o = out + r * width;
    int64_t sum = 0;
    for (size_t c = 0; c < width; ++c) sum += xr[c];
    const int64_t mean = NormMean(p, sum);
    uint64_t squares = 0;
    for (size_t c = 0; c < width; ++c) {
      const int64_t d = wrap_in(xr[c] - mean);
      squares += static_cast<uint64_t>(d * d);
    }
    const int64_t rsqrt = NormRsqrt(p, squares);
    for (size_t c = 0; c < width; ++c) {
      const int64_t d = wrap_in(xr[c] - mean);
      const int64_t affine = wrap_affine(AddWrap(MulWrap(MulWrap(d, rsqrt), w[c]), b[c]));
      o[c] = Lane(Clamp(wrap_shift(affine >> out_shift), out_lo, out_hi));
    }
  }
}

HGPIPE_VIT_CLONES
void LinearFinish(const LinearStage& p, int32_t* acc, size_t rows) {
  const size_t cols = p.out;
  const int32_t* __restrict bias = p.bias.data();
  const Wrapper32 wrap(p.acc);
  for (size_t r = 0; r < rows; ++r) {
    int32_t* __restrict a = acc + r * cols;
    for (size_t c = 0; c < cols; ++c) {
      // Both fit int32; the sum's low bits are right in wrapping uint32.
      a[c] =
          wrap(static_cast<int32_t>(static_cast<uint32_t>(a[c]) + static_cast<uint32_t>(bias[c])));
    }
  }
}

HGPIPE_VIT_CLONES
void WrapValues(const IntType& t, int32_t* v, size_t n) {
  const Wrapper32 wrap(t);
  for (size_t i = 0; i < n; ++i) v[i] = wrap(v[i]);
}

HGPIPE_VIT_CLONES
void TableLookup(const TableStage& p, const IntType& in, const int32_t* x, size_t n, int8_t* out) {
  if (in.bits <= kMaxDirectBits) {
    thread_local std::vector<int8_t> lut;
    BuildDirect(in, p.cursor, p.offset, p.shift, p.bound, p.table.data(), &lut);
    const int8_t* __restrict l = lut.data();
    const int32_t lo = static_cast<int32_t>(in.min());
    for (size_t i = 0; i < n; ++i) out[i] = Lane(l[x[i] - lo]);
    return;
  }
  const Wrapper wrap(p.cursor);
  const int64_t offset = p.offset, shift = p.shift, bound = p.bound;
  const int32_t* __restrict table = p.table.data();
  for (size_t i = 0; i < n; ++i) {
    out[i] = Lane(table[Clamp(wrap((x[i] + offset) >> shift), 0, bound)]);
  }
}

void TaylorAttention(const TaylorStage& p, const IntType& q_type, const IntType& k_type,
                     const IntType& v_type, const IntType& context_type, const int8_t* q,
                     const int8_t* k, const int8_t* v, size_t tokens, size_t width, size_t heads,
                     int32_t* context) {
  // A byte lane as the value of its (at most 8-bit) type.
  auto value = [](const IntType& t, int8_t lane) -> int64_t {
    return t.is_signed ? int64_t{lane} : int64_t{static_cast<uint8_t>(lane)};
  };
  const size_t dh = width / heads;
  thread_local std::vector<int64_t> ksum, vsum, kv, gq, m;
  for (auto* v : {&ksum, &vsum, &m}) v->assign(dh, 0);
  kv.assign(dh * dh, 0);
  gq.resize(dh * dh);
  const int64_t t64 = static_cast<int64_t>(tokens);
  const int64_t g_half = int64_t{1} << (p.g_shift - 1);
  const int64_t m_half = int64_t{1} << (p.mean_shift - 1);
  for (size_t h = 0; h < heads; ++h) {
    const size_t c0 = h * dh;
    std::fill(ksum.begin(), ksum.end(), 0);
    std::fill(vsum.begin(), vsum.end(), 0);
    std::fill(kv.begin(), kv.end(), 0);
    // Sums of at most 2^12 products of 8-bit values: exact in int64.
    for (size_t t = 0; t < tokens; ++t) {
      const int8_t* kt = k + t * width + c0;
      const int8_t* vt = v + t * width + c0;
      for (size_t a = 0; a < dh; ++a) {
        const int64_t ka = value(k_type, kt[a]);
        ksum[a] += ka;
        for (size_t c = 0; c < dh; ++c) kv[a * dh + c] += ka * value(v_type, vt[c]);
      }
      for (size_t c = 0; c < dh; ++c) vsum[c] += value(v_type, vt[c]);
    }
    for (size_t a = 0; a < dh; ++a) ksum[a] = p.ksum.Wrap(ksum[a]);
    for (size_t c = 0; c < dh; ++c) {
      vsum[c] = p.vsum.Wrap(vsum[c]);
      m[c] = p.mterm.Wrap(AddWrap(MulWrap(vsum[c], p.mean_mult), m_half) >> p.mean_shift);
    }
    for (size_t a = 0; a < dh; ++a) {
      for (size_t c = 0; c < dh; ++c) {
        const int64_t kva = p.kv.Wrap(kv[a * dh + c]);
        const uint64_t g_all = static_cast<uint64_t>(MulWrap(t64, kva)) -
                               static_cast<uint64_t>(MulWrap(ksum[a], vsum[c]));
        const int64_t g = p.g.Wrap(static_cast<int64_t>(g_all));
        // |g| < 2^55 and g_half <= 2^61: the sum does not overflow.
        gq[a * dh + c] = p.gout.Clamp(p.gshift.Wrap((g + g_half) >> p.g_shift));
      }
    }
    // m (at most 56 bits) plus dh products of 8 and 32 bits: exact.
    for (size_t t = 0; t < tokens; ++t) {
      const int8_t* qt = q + t * width + c0;
      int32_t* out = context + t * width + c0;
      for (size_t c = 0; c < dh; ++c) {
        int64_t acc = m[c];
        for (size_t a = 0; a < dh; ++a) acc += value(q_type, qt[a]) * gq[a * dh + c];
        out[c] = static_cast<int32_t>(context_type.Wrap(acc));
      }
    }
  }
}

SoftmaxScale SoftmaxRecip(const SoftmaxStage& p, uint64_t sum) {
  const Wrapper wrap_sum(p.sum), wrap_one(p.cursor2_one), wrap_two(p.cursor2_two);
  const int64_t z = wrap_sum(static_cast<int64_t>(sum));
  const int64_t one = wrap_one((z + p.one_offset) >> p.one_shift);
  if (one > p.one_bound) {
    const int64_t two = Clamp(wrap_two((z + p.two_offset) >> p.two_shift), 0, p.two_bound);
    return {p.recip_two_table[two], p.two_out_offset, p.two_out_shift};
  }
  return {p.recip_one_table[std::max<int64_t>(one, 0)], p.one_out_offset, p.one_out_shift};
}

HGPIPE_VIT_CLONES
void SoftmaxRows(const SoftmaxStage& p, const int32_t* scores, size_t rows, size_t cols,
                 int32_t* scratch, int8_t* out) {
  const Wrapper wrap_minus(p.minus), wrap_cursor1(p.cursor1), wrap_affine(p.affine),
      wrap_cursor3(p.cursor3);
  const int64_t exp_offset = p.exp_offset, exp_shift = p.exp_shift, exp_bound = p.exp_bound;
  const int64_t out_lo = p.out.min(), out_hi = p.out.max();
  const int32_t* __restrict exp_table = p.exp_table.data();
  // The exponential's index of every value of the `minus` type, when narrow.
  const bool direct = p.minus.bits <= kMaxDirectBits;
  thread_local std::vector<int32_t> cursor_of;
  if (direct) {
    BuildDirect(p.minus, p.cursor1, exp_offset, exp_shift, exp_bound, nullptr, &cursor_of);
  }
  const int32_t* __restrict cursor_lut = cursor_of.data();
  const int32_t minus_lo = static_cast<int32_t>(p.minus.min());
  // Each row's probabilities as a table over the exponential's index, when
  // it has fewer entries than a row.
  const bool small_exp = static_cast<size_t>(exp_bound) < cols;
  thread_local std::vector<int8_t> by_cursor;
  if (small_exp) by_cursor.resize(static_cast<size_t>(exp_bound + 1));
  int8_t* __restrict prob = by_cursor.data();
  int32_t* __restrict c1 = scratch;
  for (size_t r = 0; r < rows; ++r) {
    const int32_t* __restrict s = scores + r * cols;
    int8_t* __restrict o = out + r * cols;
    int32_t m = s[0];
    for (size_t j = 1; j < cols; ++j) m = std::max(m, s[j]);
    int64_t sum = 0;
    if (direct) {
      for (size_t j = 0; j < cols; ++j) {
        c1[j] = cursor_lut[wrap_minus(int64_t{m} - s[j]) - minus_lo];
        sum += exp_table[c1[j]];
      }
    } else {
      for (size_t j = 0; j < cols; ++j) {
        const int64_t minus = wrap_minus(int64_t{m} - s[j]);
        c1[j] = static_cast<int32_t>(
            Clamp(wrap_cursor1((minus + exp_offset) >> exp_shift), 0, exp_bound));
        sum += exp_table[c1[j]];
      }
    }
    const SoftmaxScale scale = SoftmaxRecip(p, static_cast<uint64_t>(sum));
    const int64_t recip = scale.recip, offset = scale.offset, shift = scale.shift;
    auto probability = [&](int64_t c) {
      const int64_t affine = wrap_affine(MulWrap(exp_table[c], recip));
      return Lane(Clamp(wrap_cursor3((affine + offset) >> shift), out_lo, out_hi));
    };
    if (small_exp) {
      for (int64_t c = 0; c <= exp_bound; ++c) prob[c] = probability(c);
      for (size_t j = 0; j < cols; ++j) o[j] = prob[c1[j]];
    } else {
      for (size_t j = 0; j < cols; ++j) o[j] = probability(c1[j]);
    }
  }
}

HGPIPE_VIT_CLONES
void ResidualAdd(const ResidualStage& p, const int32_t* x, const int32_t* main, size_t n,
                 int32_t* out) {
  const int64_t half = int64_t{1} << (p.shift - 1), mult = p.mult, shift = p.shift;
  const Wrapper wrap(p.out);
  for (size_t i = 0; i < n; ++i) {
    const int64_t scaled = (int64_t{x[i]} * mult + half) >> shift;
    out[i] = static_cast<int32_t>(wrap(main[i] + scaled));
  }
}

HGPIPE_VIT_CLONES
void PatchFinish(const PatchStage& p, const int32_t* acc, size_t row0, size_t rows, size_t tokens,
                 size_t width, int32_t* out) {
  const int64_t half = int64_t{1} << (p.shift - 1), shift = p.shift;
  const Wrapper wrap_acc(p.acc), wrap_out(p.out);
  const int32_t* __restrict cls = p.cls.data();
  for (size_t r = 0; r < rows; ++r) {
    const size_t t = (row0 + r) % tokens;
    const int32_t* __restrict a = acc + r * width;
    int32_t* __restrict o = out + r * width;
    if (t == 0) {  // the CLS embedding replaces the product
      for (size_t c = 0; c < width; ++c) {
        o[c] = static_cast<int32_t>(wrap_out((wrap_acc(cls[c]) + half) >> shift));
      }
      continue;
    }
    const int32_t* __restrict bias = p.bias.data() + t * width;
    for (size_t c = 0; c < width; ++c) {
      const int64_t v = wrap_acc(int64_t{a[c]} + bias[c]);
      o[c] = static_cast<int32_t>(wrap_out((v + half) >> shift));
    }
  }
}

void LogitWords(const int32_t* logits, size_t n, uint32_t* words) {
  for (size_t i = 0; i < n; ++i) words[i] = EncodeLogitWord(logits[i]);
}

absl::StatusOr<std::unique_ptr<BatchedMatmul>> MakeScoresProduct(const VitSpec& s,
                                                                 const IntType& q_type,
                                                                 const IntType& k_type,
                                                                 bool own_kernels) {
  const int64_t t = s.tokens, d = s.width, dh = s.head_dim(), h = s.heads;
  BatchedMatmul::Shape sc;
  sc.heads = s.heads;
  sc.m = s.tokens;
  sc.k = s.head_dim();
  sc.n = s.tokens;
  sc.src = q_type;
  sc.wei = k_type;
  sc.src_strides = {t * d, dh, d, 1};  // q[b][h][i][c]
  sc.wei_strides = {t * d, dh, 1, d};  // k^T[b][h][c][j]
  sc.dst_strides = {h * t * t, t * t, t, 1};
  return BatchedMatmul::Create(sc, own_kernels);
}

absl::StatusOr<std::unique_ptr<BatchedMatmul>> MakeContextProduct(const VitSpec& s,
                                                                  const IntType& p_type,
                                                                  const IntType& v_type,
                                                                  bool own_kernels) {
  const int64_t t = s.tokens, d = s.width, dh = s.head_dim(), h = s.heads;
  BatchedMatmul::Shape cx;
  cx.heads = s.heads;
  cx.m = s.tokens;
  cx.k = s.tokens;
  cx.n = s.head_dim();
  cx.src = p_type;
  cx.wei = v_type;
  cx.src_strides = {h * t * t, t * t, t, 1};  // p[b][h][i][j]
  cx.wei_strides = {t * d, dh, d, 1};         // v[b][h][j][c]
  cx.dst_strides = {t * d, dh, d, 1};         // [b][i][h * dh + c]
  return BatchedMatmul::Create(cx, own_kernels);
}

}  // namespace hgpipe::accel::vit
