#include "base/mutex.h"
#include "accel/vit/matmul.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

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
      std::fprintf(stderr, "vit: out of memory for %zu scratch bytes\n",
                   buf.size);
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
  return {static_cast<int64_t>(a), static_cast<int64_t>(b),
          static_cast<int64_t>(c), static_cast<int64_t>(d)};
}

[[noreturn]] void Die(const char* what, const dnnl::error& e) {
  // Plans for every shape the kernel uses are created when it loads, where
  // failures are Status values; this is only reached by a programming error.
  std::fprintf(stderr, "vit: oneDNN %s failed: %s\n", what, e.what());
  std::abort();
}

}  // namespace

const dnnl::engine& CpuEngine() {
  static const dnnl::engine* const kEngine =
      new dnnl::engine(dnnl::engine::kind::cpu, 0);
  return *kEngine;
}

absl::StatusOr<std::unique_ptr<Int8Linear>> Int8Linear::Create(
    const int8_t* weight, uint32_t in, uint32_t out, uint32_t max_rows) {
  std::unique_ptr<Int8Linear> l(new Int8Linear(in, out));
  try {
    const dnnl::engine& eng = CpuEngine();
    l->weight_copy_.assign(weight, weight + size_t{in} * out);
    // W is stored [out][in]; as the matmul's [in][out] weights that is "ba".
    dnnl::memory::desc plain({in, out}, dt::s8, tag::ba);
    l->plain_weights_ = dnnl::memory(plain, eng, l->weight_copy_.data());
    dnnl::matmul::desc d(
        dnnl::memory::desc({max_rows, in}, dt::s8, tag::ab),
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
    return absl::InternalError(absl::StrCat("oneDNN int8 matmul ", max_rows,
                                            "x", in, "x", out, ": ", e.what()));
  }
  return l;
}

std::shared_ptr<const Int8Linear::Plan> Int8Linear::MakePlan(
    uint32_t rows) const {
  const dnnl::engine& eng = CpuEngine();
  dnnl::memory::desc src({rows, in_}, dt::s8, tag::ab);
  dnnl::memory::desc dst({rows, out_}, dt::s32, tag::ab);
  auto plan = std::make_shared<Plan>();
  // Prefer the weights already reordered; an implementation that wants
  // another layout for this row count gets the plain ones.
  try {
    dnnl::matmul::primitive_desc pd(
        dnnl::matmul::desc(src, blocked_weights_.get_desc(), dst),
        UserScratchpad(), eng);
    plan->primitive = dnnl::matmul(pd);
    plan->weights = &blocked_weights_;
    plan->scratch = pd.scratchpad_desc();
    return plan;
  } catch (const dnnl::error&) {
  }
  try {
    dnnl::matmul::primitive_desc pd(
        dnnl::matmul::desc(src, plain_weights_.get_desc(), dst),
        UserScratchpad(), eng);
    plan->primitive = dnnl::matmul(pd);
    plan->weights = &plain_weights_;
    plan->scratch = pd.scratchpad_desc();
    return plan;
  } catch (const dnnl::error& e) {
    Die("int8 matmul creation", e);
  }
}

std::shared_ptr<const Int8Linear::Plan> Int8Linear::GetPlan(
    uint32_t rows) const {
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

void Int8Linear::Run(dnnl::stream& stream, const int8_t* x, uint32_t rows,
                     int32_t* y) const {
  std::shared_ptr<const Plan> plan = GetPlan(rows);
  const dnnl::engine& eng = CpuEngine();
  try {
    dnnl::memory src(dnnl::memory::desc({rows, in_}, dt::s8, tag::ab), eng,
                     const_cast<int8_t*>(x));
    dnnl::memory dst(dnnl::memory::desc({rows, out_}, dt::s32, tag::ab), eng,
                     y);
    dnnl::memory scratch(plan->scratch, eng,
                         ScratchBuffer(plan->scratch.get_size()));
    plan->primitive.execute(stream, {{DNNL_ARG_SRC, src},
                                     {DNNL_ARG_WEIGHTS, *plan->weights},
                                     {DNNL_ARG_DST, dst},
                                     {DNNL_ARG_SCRATCHPAD, scratch}});
    stream.wait();
  } catch (const dnnl::error& e) {
    Die("int8 matmul", e);
  }
}

absl::StatusOr<std::shared_ptr<const BatchedMatmul::Plan>>
BatchedMatmul::MakePlan(uint32_t images) const {
  const Shape& s = shape_;
  auto strides = [](const std::array<int64_t, 4>& a) {
    return dnnl::memory::dims(a.begin(), a.end());
  };
  auto plan = std::make_shared<Plan>();
  try {
    plan->src = dnnl::memory::desc(Dims4(images, s.heads, s.m, s.k),
                                   s.src_type, strides(s.src_strides));
    plan->wei = dnnl::memory::desc(Dims4(images, s.heads, s.k, s.n), dt::s8,
                                   strides(s.wei_strides));
    plan->dst = dnnl::memory::desc(Dims4(images, s.heads, s.m, s.n), dt::s32,
                                   strides(s.dst_strides));
    dnnl::matmul::primitive_desc pd(
        dnnl::matmul::desc(plan->src, plan->wei, plan->dst), UserScratchpad(),
        CpuEngine());
    plan->primitive = dnnl::matmul(pd);
    plan->scratch = pd.scratchpad_desc();
  } catch (const dnnl::error& e) {
    return absl::InternalError(
        absl::StrCat("oneDNN batched matmul ", images, "x", s.heads, "x", s.m,
                     "x", s.k, "x", s.n, ": ", e.what()));
  }
  return plan;
}

std::shared_ptr<const BatchedMatmul::Plan> BatchedMatmul::GetPlan(
    uint32_t images) const {
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
  absl::StatusOr<std::shared_ptr<const Plan>> plan = MakePlan(images);
  if (!plan.ok()) return plan.status();
  hgpipe::MutexLock lock(&mu_);
  plans_.emplace(images, *std::move(plan));
  return absl::OkStatus();
}

void BatchedMatmul::Run(dnnl::stream& stream, const void* src,
                        const int8_t* wei, uint32_t images,
                        int32_t* dst) const {
  std::shared_ptr<const Plan> plan = GetPlan(images);
  const dnnl::engine& eng = CpuEngine();
  try {
    dnnl::memory src_m(plan->src, eng, const_cast<void*>(src));
    dnnl::memory wei_m(plan->wei, eng, const_cast<int8_t*>(wei));
    dnnl::memory dst_m(plan->dst, eng, dst);
    dnnl::memory scratch(plan->scratch, eng,
                         ScratchBuffer(plan->scratch.get_size()));
    plan->primitive.execute(stream, {{DNNL_ARG_SRC, src_m},
                                     {DNNL_ARG_WEIGHTS, wei_m},
                                     {DNNL_ARG_DST, dst_m},
                                     {DNNL_ARG_SCRATCHPAD, scratch}});
    stream.wait();
  } catch (const dnnl::error& e) {
    Die("batched matmul", e);
  }
}

}  // namespace hgpipe::accel::vit
