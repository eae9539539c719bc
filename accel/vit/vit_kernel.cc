#include "accel/vit/vit_kernel.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "accel/device_layout.h"
#include "accel/vit/matmul.h"
#include "base/status_macros.h"

namespace hgpipe::accel::vit {
namespace {

// The element-wise stages (requantization, tables, LayerNorm) are plain
// loops; GCC compiles them once per ISA level and picks at load time, so
// they vectorize where the CPU allows without hand-written SIMD.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && \
    !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define HGPIPE_VIT_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define HGPIPE_VIT_CLONES
#endif

constexpr uint32_t kDefaultChunkRows = 2048;

// Requantization of one layer with the bias folded in:
// (acc + bias) * mult + 2^(shift-1) == acc * mult + addend.
struct RequantPlan {
  std::vector<int64_t> mult, addend, shift;
};

RequantPlan MakeRequant(const Requant& r, const std::vector<int32_t>& bias) {
  RequantPlan p;
  const size_t n = r.mult.size();
  p.mult.resize(n);
  p.addend.resize(n);
  p.shift.resize(n);
  for (size_t c = 0; c < n; ++c) {
    p.mult[c] = r.mult[c];
    p.shift[c] = r.shift[c];
    const int64_t half = r.shift[c] > 0 ? int64_t{1} << (r.shift[c] - 1) : 0;
    p.addend[c] = (bias.empty() ? 0 : int64_t{bias[c]}) * r.mult[c] + half;
  }
  return p;
}

inline int64_t Clamp(int64_t v, int64_t lo, int64_t hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

inline int64_t FloorDiv(int64_t a, int64_t b) {  // b > 0
  int64_t q = a / b;
  if (a % b != 0 && a < 0) --q;
  return q;
}

inline int BitLength(uint64_t v) { return v == 0 ? 0 : 64 - __builtin_clzll(v); }

#ifndef _OPENMP
inline int omp_get_max_threads() { return 1; }
inline void omp_set_num_threads(int) {}
#endif

// Splits [0, rows) over the OpenMP team when the work is large enough.
template <typename F>
void ParallelRows(size_t rows, size_t row_cost, F&& f) {
  const int threads = omp_get_max_threads();
  if (threads <= 1 || rows < 2 || rows * row_cost < (1u << 15)) {
    f(size_t{0}, rows);
    return;
  }
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
  {
    const size_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    const size_t r0 = rows * t / nt, r1 = rows * (t + 1) / nt;
    if (r0 < r1) f(r0, r1);
  }
#endif
}

HGPIPE_VIT_CLONES
void RequantToInt8(const int32_t* acc, size_t rows, size_t cols,
                   const int64_t* mult, const int64_t* addend,
                   const int64_t* shift, int64_t lo, int64_t hi, int8_t* out) {
  for (size_t r = 0; r < rows; ++r) {
    const int32_t* a = acc + r * cols;
    int8_t* o = out + r * cols;
    for (size_t c = 0; c < cols; ++c) {
      const int64_t v = (int64_t{a[c]} * mult[c] + addend[c]) >> shift[c];
      o[c] = static_cast<int8_t>(Clamp(v, lo, hi));
    }
  }
}

HGPIPE_VIT_CLONES
void RequantAddResidual(const int32_t* acc, size_t rows, size_t cols,
                        const int64_t* mult, const int64_t* addend,
                        const int64_t* shift, int64_t lo, int64_t hi,
                        int32_t* res) {
  for (size_t r = 0; r < rows; ++r) {
    const int32_t* a = acc + r * cols;
    int32_t* x = res + r * cols;
    for (size_t c = 0; c < cols; ++c) {
      const int64_t v = (int64_t{a[c]} * mult[c] + addend[c]) >> shift[c];
      x[c] = static_cast<int32_t>(Clamp(int64_t{x[c]} + v, lo, hi));
    }
  }
}

// Token rows of the patch embedding: residual = clamp(requant + pos[t]);
// token 0 of every image is the CLS embedding instead.
HGPIPE_VIT_CLONES
void EmbedRows(const int32_t* acc, size_t row0, size_t rows, size_t tokens,
               size_t cols, const int64_t* mult, const int64_t* addend,
               const int64_t* shift, const int32_t* pos, const int32_t* cls,
               int64_t lo, int64_t hi, int32_t* res) {
  for (size_t r = row0; r < row0 + rows; ++r) {
    const size_t t = r % tokens;
    const int32_t* a = acc + r * cols;
    const int32_t* p = pos + t * cols;
    int32_t* x = res + r * cols;
    if (t == 0) {
      for (size_t c = 0; c < cols; ++c) {
        x[c] = static_cast<int32_t>(Clamp(int64_t{cls[c]} + p[c], lo, hi));
      }
      continue;
    }
    for (size_t c = 0; c < cols; ++c) {
      const int64_t v = (int64_t{a[c]} * mult[c] + addend[c]) >> shift[c];
      x[c] = static_cast<int32_t>(Clamp(v + p[c], lo, hi));
    }
  }
}

HGPIPE_VIT_CLONES
void RequantGelu(const int32_t* acc, size_t rows, size_t cols,
                 const int64_t* mult, const int64_t* addend,
                 const int64_t* shift, int64_t lo, int64_t hi,
                 const int32_t* __restrict table, int8_t* __restrict out) {
  for (size_t r = 0; r < rows; ++r) {
    const int32_t* __restrict a = acc + r * cols;
    int8_t* __restrict o = out + r * cols;
    for (size_t c = 0; c < cols; ++c) {
      const int64_t v = (int64_t{a[c]} * mult[c] + addend[c]) >> shift[c];
      // int32 index and table: a gather the vectorizer can use.
      const int32_t idx = static_cast<int32_t>(Clamp(v, lo, hi) - lo);
      o[c] = static_cast<int8_t>(table[idx]);
    }
  }
}

struct NormParams {
  const int32_t* table;
  int index_bits;
  int frac_bits;
  int64_t eps;
  int64_t lo, hi;
};

// LayerNorm of `rows` rows of `d` residual values (rows `stride` apart)
// into int8 rows of `d` (dense).
HGPIPE_VIT_CLONES
void LayerNormRows(const int32_t* x, size_t rows, size_t d, size_t stride,
                   const NormParams& p, int8_t* out) {
  for (size_t r = 0; r < rows; ++r) {
    const int32_t* xr = x + r * stride;
    int8_t* o = out + r * d;
    int64_t sum = 0;
    for (size_t c = 0; c < d; ++c) sum += xr[c];
    const int64_t dd = static_cast<int64_t>(d);
    const int64_t mean = FloorDiv(2 * sum + dd, 2 * dd);
    int64_t var = p.eps;
    for (size_t c = 0; c < d; ++c) {
      const int64_t cc = xr[c] - mean;
      var += cc * cc;
    }
    const int j = std::max(0, (BitLength(static_cast<uint64_t>(var)) -
                               p.index_bits + 1) / 2);
    const int64_t t = p.table[var >> (2 * j)];
    const int s = p.frac_bits + j;
    const int64_t half = s > 0 ? int64_t{1} << (s - 1) : 0;
    for (size_t c = 0; c < d; ++c) {
      const int64_t v = ((xr[c] - mean) * t + half) >> s;
      o[c] = static_cast<int8_t>(Clamp(v, p.lo, p.hi));
    }
  }
}

struct SoftmaxParams {
  int64_t mult, shift, half;
  const int32_t* table;
  int64_t last;  // table size - 1
  int prob_bits;
};

// Rows of `t` scores -> unsigned probabilities (scale 2^-prob_bits).
// `e` is scratch for one row.
HGPIPE_VIT_CLONES
void SoftmaxRows(const int32_t* s, size_t rows, size_t t,
                 const SoftmaxParams& p, int32_t* __restrict e,
                 uint8_t* __restrict out) {
  const int64_t pmax = (int64_t{1} << p.prob_bits) - 1;
  const int rshift = 31 - p.prob_bits;
  const uint32_t urhalf = uint32_t{1} << (rshift - 1);
  const uint32_t upmax = static_cast<uint32_t>(pmax);
  for (size_t r = 0; r < rows; ++r) {
    const int32_t* sr = s + r * t;
    uint8_t* o = out + r * t;
    int32_t mx = sr[0];
    for (size_t j = 1; j < t; ++j) mx = std::max(mx, sr[j]);
    int64_t z = 0;
    const int32_t* __restrict table = p.table;
    for (size_t j = 0; j < t; ++j) {
      const int64_t d = int64_t{mx} - sr[j];
      const int32_t idx = static_cast<int32_t>(
          std::min((d * p.mult + p.half) >> p.shift, p.last));
      e[j] = table[idx];
    }
    for (size_t j = 0; j < t; ++j) z += e[j];
    // e <= Z, so e * recip <= 2^31 and the sum stays below 2^32: 32-bit
    // unsigned lanes compute the same values as int64.
    const uint32_t recip = static_cast<uint32_t>((int64_t{1} << 31) / z);
    for (size_t j = 0; j < t; ++j) {
      o[j] = static_cast<uint8_t>(std::min<uint32_t>(
          (static_cast<uint32_t>(e[j]) * recip + urhalf) >> rshift, upmax));
    }
  }
}

HGPIPE_VIT_CLONES
void RequantLogits(const int32_t* acc, size_t rows, size_t cols,
                   const int64_t* mult, const int64_t* addend,
                   const int64_t* shift, uint32_t* out) {
  constexpr int64_t lo = -(int64_t{1} << (kLogitBits - 1));
  constexpr int64_t hi = (int64_t{1} << (kLogitBits - 1)) - 1;
  for (size_t r = 0; r < rows; ++r) {
    for (size_t c = 0; c < cols; ++c) {
      const int64_t v =
          (int64_t{acc[r * cols + c]} * mult[c] + addend[c]) >> shift[c];
      out[r * cols + c] =
          EncodeLogitWord(static_cast<int32_t>(Clamp(v, lo, hi)));
    }
  }
}

struct LayerPlan {
  std::unique_ptr<Int8Linear> mm;
  RequantPlan rq;
};

struct BlockPlan {
  LayerPlan qkv, proj, fc1, fc2;
  RequantPlan context;
  SoftmaxParams softmax;
  std::vector<int32_t> gelu;  // the int8 table widened
};

// Sets the calling thread's OpenMP team size for a scope (the setting is
// per thread, so concurrent Compute calls do not disturb each other).
class ScopedOmpThreads {
 public:
  explicit ScopedOmpThreads(int n) : saved_(omp_get_max_threads()) {
    omp_set_num_threads(n);
  }
  ~ScopedOmpThreads() { omp_set_num_threads(saved_); }

 private:
  const int saved_;
};

}  // namespace

struct VitKernel::Impl {
  int threads = 1;
  uint32_t chunk = 1;  // images per chunk
  LayerPlan patch, head;
  std::vector<BlockPlan> blocks;
  std::unique_ptr<BatchedMatmul> scores, context;

  // Buffers of one chunk.
  struct Workspace {
    std::vector<int8_t> flat, a8, qkv8;
    std::vector<int32_t> acc, res, scores;
    std::vector<uint8_t> probs;
  };
};

VitKernel::VitKernel(VitWeights weights, std::unique_ptr<Impl> impl)
    : weights_(std::move(weights)),
      manifest_(weights_.spec.ToManifest()),
      impl_(std::move(impl)) {}

VitKernel::~VitKernel() = default;

absl::StatusOr<std::shared_ptr<const VitKernel>> VitKernel::Create(
    VitWeights w, Options options) {
  RETURN_IF_ERROR(w.Validate(w.spec.name));
  const VitSpec& s = w.spec;
  if (options.threads < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        s.name, ": kernel threads must be >= 1, got ", options.threads));
  }
  auto impl = std::make_unique<Impl>();
  impl->threads = options.threads;
  // oneDNN fixes a primitive's thread partitioning when it is created.
  ScopedOmpThreads omp_threads(options.threads);
  impl->chunk = options.chunk_images > 0
                    ? options.chunk_images
                    : std::max<uint32_t>(1, kDefaultChunkRows / s.tokens);
  const uint32_t rows = impl->chunk * s.tokens;
  auto layer = [&](const Linear& l, uint32_t max_rows,
                   LayerPlan* p) -> absl::Status {
    ASSIGN_OR_RETURN(p->mm, Int8Linear::Create(l.weight.data(), l.in, l.out,
                                               max_rows));
    p->rq = MakeRequant(l.requant, l.bias);
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(layer(w.patch, rows, &impl->patch));
  RETURN_IF_ERROR(layer(w.head, impl->chunk, &impl->head));
  const uint32_t t = s.tokens, d = s.width, dh = s.head_dim(), h = s.heads;
  for (const VitBlock& b : w.blocks) {
    BlockPlan bp;
    RETURN_IF_ERROR(layer(b.qkv, rows, &bp.qkv));
    RETURN_IF_ERROR(layer(b.proj, rows, &bp.proj));
    RETURN_IF_ERROR(layer(b.fc1, rows, &bp.fc1));
    RETURN_IF_ERROR(layer(b.fc2, rows, &bp.fc2));
    bp.context = MakeRequant(b.context, {});
    bp.softmax.mult = b.exp_mult;
    bp.softmax.shift = b.exp_shift;
    bp.softmax.half = b.exp_shift > 0 ? int64_t{1} << (b.exp_shift - 1) : 0;
    bp.softmax.table = nullptr;  // set per call from weights_
    bp.softmax.last = static_cast<int64_t>(b.exp.size()) - 1;
    bp.softmax.prob_bits = s.prob_bits;
    bp.gelu.assign(b.gelu.begin(), b.gelu.end());
    impl->blocks.push_back(std::move(bp));
  }
  // Attention products read q, k and v in place from the [tokens][3 width]
  // qkv rows: the batch is (image, head).
  const int64_t row = 3 * int64_t{d}, img = int64_t{t} * row;
  BatchedMatmul::Shape sc;
  sc.heads = h;
  sc.m = t;
  sc.k = dh;
  sc.n = t;
  sc.src_strides = {img, dh, row, 1};             // q[b][h][t][j]
  sc.wei_strides = {img, dh, 1, row};             // k^T[b][h][j][t]
  sc.dst_strides = {int64_t{h} * t * t, int64_t{t} * t, t, 1};
  impl->scores = std::make_unique<BatchedMatmul>(sc);
  BatchedMatmul::Shape cx;
  cx.heads = h;
  cx.m = t;
  cx.k = t;
  cx.n = dh;
  cx.src_type = dnnl::memory::data_type::u8;
  cx.src_strides = {int64_t{h} * t * t, int64_t{t} * t, t, 1};  // p
  cx.wei_strides = {img, dh, row, 1};                            // v
  cx.dst_strides = {int64_t{t} * d, dh, d, 1};  // [b][t][h * dh + j]
  impl->context = std::make_unique<BatchedMatmul>(cx);
  if (s.depth > 0) {
    RETURN_IF_ERROR(impl->scores->Prepare(impl->chunk));
    RETURN_IF_ERROR(impl->context->Prepare(impl->chunk));
  }
  return std::shared_ptr<const VitKernel>(
      new VitKernel(std::move(w), std::move(impl)));
}

void VitKernel::Compute(const int8_t* input, uint32_t n,
                        uint32_t* output) const {
  const VitSpec& s = weights_.spec;
  const Impl& im = *impl_;
  const DeviceGeometry& g = manifest_.geometry;
  const size_t t = s.tokens, v = s.token_values, d = s.width, hd = s.mlp_hidden;
  const size_t h = s.heads, c = s.classes;
  const uint32_t chunk = std::min(n, im.chunk);
  const size_t max_rows = size_t{chunk} * t;

  // Per thread and reused across calls (and kernels): every buffer is
  // written before it is read, so only its size matters.
  thread_local Impl::Workspace ws;
  auto grow = [](auto& vec, size_t n) {
    if (vec.size() < n) vec.resize(n);
  };
  grow(ws.flat, max_rows * v);
  grow(ws.a8, max_rows * std::max(d, hd));
  grow(ws.qkv8, max_rows * 3 * d);
  grow(ws.acc, std::max(max_rows * std::max(3 * d, hd), size_t{chunk} * c));
  grow(ws.res, max_rows * d);
  grow(ws.scores, size_t{chunk} * h * t * t);
  grow(ws.probs, size_t{chunk} * h * t * t);

  const int64_t rlo = -(int64_t{1} << (s.residual_bits - 1));
  const int64_t rhi = (int64_t{1} << (s.residual_bits - 1)) - 1;
  const int64_t alo = -(int64_t{1} << (s.act_bits - 1));
  const int64_t ahi = (int64_t{1} << (s.act_bits - 1)) - 1;
  const int64_t glo = -(int64_t{1} << (s.gelu_in_bits - 1));
  const int64_t ghi = (int64_t{1} << (s.gelu_in_bits - 1)) - 1;
  auto norm_params = [&](const LayerNormTable& ln, int out_bits) {
    return NormParams{ln.rsqrt.data(), s.rsqrt_index_bits, s.rsqrt_frac_bits,
                      ln.eps, -(int64_t{1} << (out_bits - 1)),
                      (int64_t{1} << (out_bits - 1)) - 1};
  };

  ScopedOmpThreads omp_threads(im.threads);
  dnnl::stream stream(CpuEngine());
  for (uint32_t first = 0; first < n; first += chunk) {
    const uint32_t b = std::min(chunk, n - first);
    const size_t m = size_t{b} * t;
    for (uint32_t i = 0; i < b; ++i) {
      UnpackImage(g, input + (first + i) * g.input_bytes(),
                  ws.flat.data() + i * g.input_bytes());
    }
    im.patch.mm->Run(stream, ws.flat.data(), m, ws.acc.data());
    {
      const RequantPlan& rq = im.patch.rq;
      ParallelRows(m, d, [&](size_t r0, size_t r1) {
        EmbedRows(ws.acc.data(), r0, r1 - r0, t, d, rq.mult.data(),
                  rq.addend.data(), rq.shift.data(), weights_.pos.data(),
                  weights_.cls.data(), rlo, rhi, ws.res.data());
      });
    }
    for (size_t bi = 0; bi < im.blocks.size(); ++bi) {
      const BlockPlan& bp = im.blocks[bi];
      const VitBlock& bw = weights_.blocks[bi];
      // Attention.
      const NormParams n1 = norm_params(bw.norm1, s.act_bits);
      ParallelRows(m, 3 * d, [&](size_t r0, size_t r1) {
        LayerNormRows(ws.res.data() + r0 * d, r1 - r0, d, d, n1,
                      ws.a8.data() + r0 * d);
      });
      bp.qkv.mm->Run(stream, ws.a8.data(), m, ws.acc.data());
      ParallelRows(m, 3 * d, [&](size_t r0, size_t r1) {
        const RequantPlan& rq = bp.qkv.rq;
        RequantToInt8(ws.acc.data() + r0 * 3 * d, r1 - r0, 3 * d,
                      rq.mult.data(), rq.addend.data(), rq.shift.data(), alo,
                      ahi, ws.qkv8.data() + r0 * 3 * d);
      });
      im.scores->Run(stream, ws.qkv8.data(), ws.qkv8.data() + d, b,
                     ws.scores.data());
      const size_t srows = size_t{b} * h * t;
      SoftmaxParams sp = bp.softmax;
      sp.table = bw.exp.data();
      ParallelRows(srows, 4 * t, [&](size_t r0, size_t r1) {
        std::vector<int32_t> e(t);
        SoftmaxRows(ws.scores.data() + r0 * t, r1 - r0, t, sp, e.data(),
                    ws.probs.data() + r0 * t);
      });
      im.context->Run(stream, ws.probs.data(), ws.qkv8.data() + 2 * d, b,
                      ws.acc.data());
      ParallelRows(m, d, [&](size_t r0, size_t r1) {
        const RequantPlan& rq = bp.context;
        RequantToInt8(ws.acc.data() + r0 * d, r1 - r0, d, rq.mult.data(),
                      rq.addend.data(), rq.shift.data(), alo, ahi,
                      ws.a8.data() + r0 * d);
      });
      bp.proj.mm->Run(stream, ws.a8.data(), m, ws.acc.data());
      ParallelRows(m, d, [&](size_t r0, size_t r1) {
        const RequantPlan& rq = bp.proj.rq;
        RequantAddResidual(ws.acc.data() + r0 * d, r1 - r0, d, rq.mult.data(),
                           rq.addend.data(), rq.shift.data(), rlo, rhi,
                           ws.res.data() + r0 * d);
      });
      // MLP.
      const NormParams n2 = norm_params(bw.norm2, s.act_bits);
      ParallelRows(m, 3 * d, [&](size_t r0, size_t r1) {
        LayerNormRows(ws.res.data() + r0 * d, r1 - r0, d, d, n2,
                      ws.a8.data() + r0 * d);
      });
      bp.fc1.mm->Run(stream, ws.a8.data(), m, ws.acc.data());
      ParallelRows(m, hd, [&](size_t r0, size_t r1) {
        const RequantPlan& rq = bp.fc1.rq;
        RequantGelu(ws.acc.data() + r0 * hd, r1 - r0, hd, rq.mult.data(),
                    rq.addend.data(), rq.shift.data(), glo, ghi,
                    bp.gelu.data(), ws.a8.data() + r0 * hd);
      });
      bp.fc2.mm->Run(stream, ws.a8.data(), m, ws.acc.data());
      ParallelRows(m, d, [&](size_t r0, size_t r1) {
        const RequantPlan& rq = bp.fc2.rq;
        RequantAddResidual(ws.acc.data() + r0 * d, r1 - r0, d, rq.mult.data(),
                           rq.addend.data(), rq.shift.data(), rlo, rhi,
                           ws.res.data() + r0 * d);
      });
    }
    // Head on the CLS token (token 0) of each image.
    LayerNormRows(ws.res.data(), b, d, t * d,
                  norm_params(weights_.norm, s.head_act_bits), ws.a8.data());
    im.head.mm->Run(stream, ws.a8.data(), b, ws.acc.data());
    const RequantPlan& rq = im.head.rq;
    RequantLogits(ws.acc.data(), b, c, rq.mult.data(), rq.addend.data(),
                  rq.shift.data(), output + size_t{first} * c);
  }
}

absl::StatusOr<std::shared_ptr<const VitKernel>> LoadVitKernel(
    const std::string& weights_path, const VitKernel::Options& options) {
  ASSIGN_OR_RETURN(Container c, ReadContainer(weights_path));
  ASSIGN_OR_RETURN(VitWeights w, VitWeightsFromContainer(c, weights_path));
  return VitKernel::Create(std::move(w), options);
}

absl::StatusOr<std::shared_ptr<const VitKernel>> LoadVitKernel(
    const std::string& weights_path) {
  return LoadVitKernel(weights_path, VitKernel::Options());
}

}  // namespace hgpipe::accel::vit
