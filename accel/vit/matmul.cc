#include "base/mutex.h"
#include "accel/vit/matmul.h"

#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace hgpipe::accel::vit {
namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

// Per-thread scratch for primitives (scratchpad_mode::user keeps concurrent
// executions of one primitive from sharing the library's scratch).
void* ScratchBuffer(size_t bytes) {
  struct Buffer {
    void* p = nullptr;
    size_t size = 0;
    ~Buffer() { std::free(p); }
  };
  thread_local Buffer buf;
  if (bytes > buf.size) {
    std::free(buf.p);
    buf.size = (bytes + 4095) / 4096 * 4096;
    buf.p = std::aligned_alloc(64, buf.size);
    if (buf.p == nullptr) {
      std::fprintf(stderr, "vit: out of memory for %zu scratch bytes\n", buf.size);
      std::abort();
    }
  }
  return buf.p;
}

dnnl::primitive_attr UserScratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

dnnl::memory::dims Dims4(uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
  return {static_cast<int64_t>(a), static_cast<int64_t>(b), static_cast<int64_t>(c),
          static_cast<int64_t>(d)};
}

// The unsigned source u = v - zero_point of n lanes of `lanes.type`.
void ToUnsigned(const SourceLanes& lanes, const int8_t* __restrict x, size_t n,
                uint8_t* __restrict out) {
  const int32_t z = static_cast<int32_t>(lanes.zero_point);
  if (lanes.type.is_signed) {
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(x[i] - z);
  } else {
    const uint8_t* __restrict u = reinterpret_cast<const uint8_t*>(x);
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(u[i] - z);
  }
}

// Where each backend puts the source's zero point (see SourceLanes).
SourceLanes LanesFor(const IntType& type, bool narrow) {
  SourceLanes s;
  s.type = type;
  s.zero_point = narrow ? type.min() : (type.is_signed ? -128 : 0);
  return s;
}

int MaxAbs(const int8_t* w, size_t n) {
  int m = 0;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::abs(int{w[i]}));
  return m;
}

int Range(const IntType& t) { return static_cast<int>(t.max() - t.min()); }

// Thread-local scratch of at least n elements.
template <typename T>
T* Scratch(size_t n) {
  thread_local std::vector<T> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

// y[r][c] += add[c] for `rows` rows of `cols`.
void AddRows(const int32_t* __restrict add, size_t rows, size_t cols, int32_t* __restrict y) {
  for (size_t r = 0; r < rows; ++r) {
    for (size_t c = 0; c < cols; ++c) y[r * cols + c] += add[c];
  }
}

// y = 16 y + low: the two parts of split weights.
void CombineSplit(const int32_t* __restrict low, size_t n, int32_t* __restrict y) {
  for (size_t i = 0; i < n; ++i) y[i] = y[i] * 16 + low[i];
}

[[noreturn]] void Die(const char* what, const dnnl::error& e) {
  // Plans for every shape the kernel uses are created when it loads, where
  // failures are Status values; this is only reached by a programming error.
  std::fprintf(stderr, "vit: oneDNN %s failed: %s\n", what, e.what());
  std::abort();
}

}  // namespace

const dnnl::engine& CpuEngine() {
  static const dnnl::engine* const kEngine = new dnnl::engine(dnnl::engine::kind::cpu, 0);
  return *kEngine;
}

// One constant-weight product on oneDNN: the weights reordered once, a
// primitive per row count.
class Int8Linear::Part {
 public:
  static absl::StatusOr<std::unique_ptr<Part>> Create(std::vector<int8_t> weight, uint32_t in,
                                                      uint32_t out, uint32_t max_rows, dt src_type);
  void Run(dnnl::stream& stream, const int8_t* x, uint32_t rows, int32_t* y) const;

 private:
  struct Plan {
    dnnl::matmul primitive;
    const dnnl::memory* weights;  // owned by the Part
    dnnl::memory::desc scratch;
  };
  Part(uint32_t in, uint32_t out, dt src_type) : in_(in), out_(out), src_type_(src_type) {}
  std::shared_ptr<const Plan> GetPlan(uint32_t rows) const;
  std::shared_ptr<const Plan> MakePlan(uint32_t rows) const;

  // Constant after construction.
  const uint32_t in_, out_;
  const dt src_type_;
  std::vector<int8_t> weight_copy_;
  dnnl::memory plain_weights_;    // [in][out] view of the [out][in] copy
  dnnl::memory blocked_weights_;  // reordered for the max_rows primitive

  mutable hgpipe::Mutex mu_;
  mutable absl::flat_hash_map<uint32_t, std::shared_ptr<const Plan>> plans_ ABSL_GUARDED_BY(mu_);
};

absl::StatusOr<std::unique_ptr<Int8Linear::Part>> Int8Linear::Part::Create(
    std::vector<int8_t> weight, uint32_t in, uint32_t out, uint32_t max_rows, dt src_type) {
  std::unique_ptr<Part> l(new Part(in, out, src_type));
  try {
    const dnnl::engine& eng = CpuEngine();
    l->weight_copy_ = std::move(weight);
    // W is stored [out][in]; as the matmul's [in][out] weights that is "ba".
    dnnl::memory::desc plain({in, out}, dt::s8, tag::ba);
    l->plain_weights_ = dnnl::memory(plain, eng, l->weight_copy_.data());
    dnnl::matmul::desc d(dnnl::memory::desc({max_rows, in}, src_type, tag::ab),
                         dnnl::memory::desc({in, out}, dt::s8, tag::any),
                         dnnl::memory::desc({max_rows, out}, dt::s32, tag::ab));
    dnnl::matmul::primitive_desc pd(d, UserScratchpad(), eng);
    if (pd.weights_desc() == plain) {
      l->blocked_weights_ = l->plain_weights_;
    } else {
      l->blocked_weights_ = dnnl::memory(pd.weights_desc(), eng);
      dnnl::stream s(eng);
      dnnl::reorder(l->plain_weights_, l->blocked_weights_)
          .execute(s, l->plain_weights_, l->blocked_weights_);
      s.wait();
    }
    auto plan = std::make_shared<Plan>();
    plan->primitive = dnnl::matmul(pd);
    plan->weights = &l->blocked_weights_;
    plan->scratch = pd.scratchpad_desc();
    hgpipe::MutexLock lock(&l->mu_);
    l->plans_[max_rows] = std::move(plan);
  } catch (const dnnl::error& e) {
    return absl::InternalError(
        absl::StrCat("oneDNN int8 matmul ", max_rows, "x", in, "x", out, ": ", e.what()));
  }
  return l;
}

std::shared_ptr<const Int8Linear::Part::Plan> Int8Linear::Part::MakePlan(uint32_t rows) const {
  const dnnl::engine& eng = CpuEngine();
  dnnl::memory::desc src({rows, in_}, src_type_, tag::ab);
  dnnl::memory::desc dst({rows, out_}, dt::s32, tag::ab);
  auto plan = std::make_shared<Plan>();
  // Prefer the weights already reordered; an implementation that wants
  // another layout for this row count gets the plain ones.
  try {
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, blocked_weights_.get_desc(), dst),
                                    UserScratchpad(), eng);
    plan->primitive = dnnl::matmul(pd);
    plan->weights = &blocked_weights_;
    plan->scratch = pd.scratchpad_desc();
    return plan;
  } catch (const dnnl::error&) {
  }
  try {
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, plain_weights_.get_desc(), dst),
                                    UserScratchpad(), eng);
    plan->primitive = dnnl::matmul(pd);
    plan->weights = &plain_weights_;
    plan->scratch = pd.scratchpad_desc();
    return plan;
  } catch (const dnnl::error& e) {
    Die("int8 matmul creation", e);
  }
}

std::shared_ptr<const Int8Linear::Part::Plan> Int8Linear::Part::GetPlan(uint32_t rows) const {
  {
    hgpipe::MutexLock lock(&mu_);
    auto it = plans_.find(rows);
    if (it != plans_.end()) return it->second;
  }
  // Created outside the lock (primitive creation JIT-compiles); a racing
  // thread may build the same plan, and the first one stored wins.
  std::shared_ptr<const Plan> plan = MakePlan(rows);
  hgpipe::MutexLock lock(&mu_);
  return plans_.emplace(rows, std::move(plan)).first->second;
}

void Int8Linear::Part::Run(dnnl::stream& stream, const int8_t* x, uint32_t rows, int32_t* y) const {
  std::shared_ptr<const Plan> plan = GetPlan(rows);
  const dnnl::engine& eng = CpuEngine();
  try {
    dnnl::memory src(dnnl::memory::desc({rows, in_}, src_type_, tag::ab), eng,
                     const_cast<int8_t*>(x));
    dnnl::memory dst(dnnl::memory::desc({rows, out_}, dt::s32, tag::ab), eng, y);
    dnnl::memory scratch(plan->scratch, eng, ScratchBuffer(plan->scratch.get_size()));
    plan->primitive.execute(stream, {{DNNL_ARG_SRC, src},
                                     {DNNL_ARG_WEIGHTS, *plan->weights},
                                     {DNNL_ARG_DST, dst},
                                     {DNNL_ARG_SCRATCHPAD, scratch}});
    stream.wait();
  } catch (const dnnl::error& e) {
    Die("int8 matmul", e);
  }
}

Int8Linear::~Int8Linear() = default;

absl::StatusOr<std::unique_ptr<Int8Linear>> Int8Linear::Create(const int8_t* weight, uint32_t in,
                                                               uint32_t out, uint32_t max_rows,
                                                               const IntType& src,
                                                               bool own_kernels) {
  if (src.bits > 8) {
    return absl::InvalidArgumentError(
        absl::StrCat("int8 product source ", src.ToString(), " is wider than a byte"));
  }
  const size_t n = size_t{in} * out;
  std::unique_ptr<Int8Linear> l(new Int8Linear());
  l->in_ = in;
  l->out_ = out;
  const int w_max = MaxAbs(weight, n);
  l->narrow_ = own_kernels && NarrowGemmSupported() && NarrowGemmFits(in, Range(src), w_max);
  l->pairs_ = !l->narrow_ && own_kernels && PairGemmSupported() && in < (1u << 16);
  l->src_ = LanesFor(src, l->narrow_);
  if (l->pairs_) {  // exact on the lanes' values as they are
    l->src_.zero_point = 0;
    l->pair_weights_.Pack(weight, out, in, in);
    return l;
  }
  l->correction_.resize(out);
  for (uint32_t o = 0; o < out; ++o) {
    int64_t sum = 0;
    for (uint32_t i = 0; i < in; ++i) sum += weight[size_t{o} * in + i];
    l->correction_[o] = static_cast<int32_t>(l->src_.zero_point * sum);
  }
  if (l->narrow_) {
    l->packed_.Pack(weight, out, in, in);
    return l;
  }
  if (w_max <= 64) {
    ASSIGN_OR_RETURN(auto part, Part::Create(std::vector<int8_t>(weight, weight + n), in, out,
                                             max_rows, dt::u8));
    l->parts_.push_back(std::move(part));
    return l;
  }
  std::vector<int8_t> high(n), low(n);
  for (size_t i = 0; i < n; ++i) {
    high[i] = static_cast<int8_t>(weight[i] >> 4);  // arithmetic: floor(w / 16)
    low[i] = static_cast<int8_t>(weight[i] & 15);
  }
  for (std::vector<int8_t>* w : {&high, &low}) {
    ASSIGN_OR_RETURN(auto part, Part::Create(std::move(*w), in, out, max_rows, dt::u8));
    l->parts_.push_back(std::move(part));
  }
  return l;
}

void Int8Linear::Run(dnnl::stream& stream, const int8_t* x, uint32_t rows, int32_t* y) const {
  if (pairs_) {
    PairGemm(reinterpret_cast<const uint8_t*>(x), !src_.type.is_signed, in_, rows, pair_weights_, y,
             out_);
    return;
  }
  const size_t n = size_t{rows} * out_, m = size_t{rows} * in_;
  uint8_t* u = Scratch<uint8_t>(m);
  ToUnsigned(src_, x, m, u);
  if (narrow_) {
    NarrowGemm(u, in_, rows, packed_, y, out_);
  } else {
    const int8_t* lanes = reinterpret_cast<const int8_t*>(u);
    parts_[0]->Run(stream, lanes, rows, y);
    if (parts_.size() == 2) {
      int32_t* low = Scratch<int32_t>(n);
      parts_[1]->Run(stream, lanes, rows, low);
      CombineSplit(low, n, y);
    }
  }
  AddRows(correction_.data(), rows, out_, y);
}

absl::StatusOr<std::unique_ptr<BatchedMatmul>> BatchedMatmul::Create(const Shape& shape,
                                                                     bool own_kernels) {
  if (shape.wei.bits > 7 || shape.src.bits > 8) {
    return absl::InvalidArgumentError(
        absl::StrCat("batched product of ", shape.src.ToString(), " by ", shape.wei.ToString(),
                     ": weights of at most 7 bits and sources of at most 8"));
  }
  std::unique_ptr<BatchedMatmul> b(new BatchedMatmul(shape));
  const int w_max = static_cast<int>(std::max(-shape.wei.min(), shape.wei.max()));
  b->narrow_ = own_kernels && NarrowGemmSupported() &&
               NarrowGemmFits(shape.k, Range(shape.src), w_max) && shape.src_strides[3] == 1 &&
               shape.dst_strides[3] == 1 &&
               (shape.wei_strides[2] == 1 || shape.wei_strides[3] == 1);
  b->src_ = LanesFor(shape.src, b->narrow_);
  return b;
}

absl::StatusOr<std::shared_ptr<const BatchedMatmul::Plan>> BatchedMatmul::MakePlan(
    uint32_t images) const {
  const Shape& s = shape_;
  auto strides = [](const std::array<int64_t, 4>& a) {
    return dnnl::memory::dims(a.begin(), a.end());
  };
  auto plan = std::make_shared<Plan>();
  try {
    plan->src =
        dnnl::memory::desc(Dims4(images, s.heads, s.m, s.k), dt::u8, strides(s.src_strides));
    plan->wei =
        dnnl::memory::desc(Dims4(images, s.heads, s.k, s.n), dt::s8, strides(s.wei_strides));
    plan->dst =
        dnnl::memory::desc(Dims4(images, s.heads, s.m, s.n), dt::s32, strides(s.dst_strides));
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(plan->src, plan->wei, plan->dst),
                                    UserScratchpad(), CpuEngine());
    plan->primitive = dnnl::matmul(pd);
    plan->scratch = pd.scratchpad_desc();
  } catch (const dnnl::error& e) {
    return absl::InternalError(absl::StrCat("oneDNN batched matmul ", images, "x", s.heads, "x",
                                            s.m, "x", s.k, "x", s.n, ": ", e.what()));
  }
  return plan;
}

std::shared_ptr<const BatchedMatmul::Plan> BatchedMatmul::GetPlan(uint32_t images) const {
  {
    hgpipe::MutexLock lock(&mu_);
    auto it = plans_.find(images);
    if (it != plans_.end()) return it->second;
  }
  absl::StatusOr<std::shared_ptr<const Plan>> plan = MakePlan(images);
  if (!plan.ok()) {
    std::fprintf(stderr, "vit: %s\n", plan.status().ToString().c_str());
    std::abort();
  }
  hgpipe::MutexLock lock(&mu_);
  return plans_.emplace(images, *std::move(plan)).first->second;
}

absl::Status BatchedMatmul::Prepare(uint32_t images) const {
  if (narrow_) return absl::OkStatus();
  absl::StatusOr<std::shared_ptr<const Plan>> plan = MakePlan(images);
  if (!plan.ok()) return plan.status();
  hgpipe::MutexLock lock(&mu_);
  plans_.emplace(images, *std::move(plan));
  return absl::OkStatus();
}

void BatchedMatmul::RunNarrow(const int8_t* src, const int8_t* wei, uint32_t images,
                              int32_t* dst) const {
  const Shape& s = shape_;
  const auto &ss = s.src_strides, &ws = s.wei_strides, &ds = s.dst_strides;
  thread_local NarrowWeights packed;
  for (uint32_t b = 0; b < images; ++b) {
    for (uint32_t h = 0; h < s.heads; ++h) {
      // W[n][k] = wei[b][h][k][n]: rows along n (unit stride along k) or,
      // transposed, along k.
      const int8_t* w = wei + b * ws[0] + h * ws[1];
      if (ws[2] == 1) {
        packed.Pack(w, s.n, s.k, static_cast<size_t>(ws[3]));
      } else {
        packed.Pack(w, s.n, s.k, static_cast<size_t>(ws[2]), /*transposed=*/true);
      }
      const uint8_t* a = reinterpret_cast<const uint8_t*>(src) + b * ss[0] + h * ss[1];
      NarrowGemm(a, static_cast<size_t>(ss[2]), s.m, packed, dst + b * ds[0] + h * ds[1],
                 static_cast<size_t>(ds[2]));
    }
  }
}

void BatchedMatmul::Run(dnnl::stream& stream, const int8_t* src, const int8_t* wei, uint32_t images,
                        int32_t* dst) const {
  const Shape& s = shape_;
  // The bytes the strided source spans, made unsigned in the same layout.
  const std::array<int64_t, 4> dims = {images, s.heads, s.m, s.k};
  size_t extent = 1;
  for (int i = 0; i < 4; ++i) extent += static_cast<size_t>((dims[i] - 1) * s.src_strides[i]);
  uint8_t* u = Scratch<uint8_t>(extent);
  ToUnsigned(src_, src, extent, u);
  if (narrow_) {
    RunNarrow(reinterpret_cast<const int8_t*>(u), wei, images, dst);
  } else {
    std::shared_ptr<const Plan> plan = GetPlan(images);
    const dnnl::engine& eng = CpuEngine();
    try {
      dnnl::memory src_m(plan->src, eng, u);
      dnnl::memory wei_m(plan->wei, eng, const_cast<int8_t*>(wei));
      dnnl::memory dst_m(plan->dst, eng, dst);
      dnnl::memory scratch(plan->scratch, eng, ScratchBuffer(plan->scratch.get_size()));
      plan->primitive.execute(stream, {{DNNL_ARG_SRC, src_m},
                                       {DNNL_ARG_WEIGHTS, wei_m},
                                       {DNNL_ARG_DST, dst_m},
                                       {DNNL_ARG_SCRATCHPAD, scratch}});
      stream.wait();
    } catch (const dnnl::error& e) {
      Die("batched matmul", e);
    }
  }
  if (src_.zero_point == 0) return;
  // dst += zero_point * sum_k wei[b][h][k][n], for every m.
  const std::array<int64_t, 4> w = s.wei_strides, d = s.dst_strides;
  const uint32_t heads = s.heads, ms = s.m, ns = s.n, ks = s.k;
  const int32_t z = static_cast<int32_t>(src_.zero_point);
  int32_t* __restrict c = Scratch<int32_t>(ns);
  for (uint32_t b = 0; b < images; ++b) {
    for (uint32_t h = 0; h < heads; ++h) {
      const int8_t* __restrict wb = wei + b * w[0] + h * w[1];
      int32_t* __restrict db = dst + b * d[0] + h * d[1];
      for (uint32_t n = 0; n < ns; ++n) c[n] = 0;
      for (uint32_t k = 0; k < ks; ++k) {
        for (uint32_t n = 0; n < ns; ++n) c[n] += wb[k * w[2] + n * w[3]];
      }
      for (uint32_t n = 0; n < ns; ++n) c[n] *= z;
      for (uint32_t m = 0; m < ms; ++m) {
        for (uint32_t n = 0; n < ns; ++n) db[m * d[2] + n * d[3]] += c[n];
      }
    }
  }
}

}  // namespace hgpipe::accel::vit
