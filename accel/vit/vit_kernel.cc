#include "accel/vit/vit_kernel.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "accel/device_layout.h"
#include "accel/vit/aligned.h"
#include "accel/vit/lut_blocks.h"
#include "accel/vit/matmul.h"
#include "accel/vit/stages.h"
#include "base/status_macros.h"

namespace hgpipe::accel::vit {
namespace {

constexpr uint32_t kDefaultChunkRows = 2048;

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

// Sets the calling thread's OpenMP team size for a scope (the setting is
// per thread, so concurrent Compute calls do not disturb each other).
class ScopedOmpThreads {
 public:
  explicit ScopedOmpThreads(int n) : saved_(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~ScopedOmpThreads() { omp_set_num_threads(saved_); }

 private:
  const int saved_;
};

template <typename T>
void Grow(AlignedVector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

// An option left unset takes its environment variable's value, if any.
template <typename T>
absl::Status FromEnvironment(const char* name, std::optional<T>& option,
                             std::initializer_list<std::pair<const char*, T>> values) {
  if (option.has_value()) return absl::OkStatus();
  const char* env = std::getenv(name);
  if (env == nullptr || *env == '\0') return absl::OkStatus();
  std::string known;
  for (const auto& [text, value] : values) {
    if (std::string(env) == text) {
      option = value;
      return absl::OkStatus();
    }
    absl::StrAppend(&known, known.empty() ? "" : " or ", text);
  }
  return absl::InvalidArgumentError(
      absl::StrCat(name, "=", std::string(env).substr(0, 32), ": expected ", known));
}

}  // namespace

struct VitKernel::Impl {
  int threads = 1;
  uint32_t chunk = 1;  // images per chunk
  std::unique_ptr<Int8Linear> patch, head;
  bool stages = false;  // some block runs stage by stage
  struct Block {
    // On lookup tables when set; otherwise stage by stage with the rest.
    std::unique_ptr<LutAttention> lut_attention;
    std::unique_ptr<LutMlp> lut_mlp;
    std::unique_ptr<Int8Linear> q, k, v, o, fc1, fc2;
    std::unique_ptr<BatchedMatmul> scores, context;
  };
  std::vector<Block> blocks;
};

// One chunk's buffers, per thread and reused across calls (and kernels):
// every buffer is written before it is read, so only its size matters.
struct VitKernel::Workspace {
  AlignedVector<int8_t> flat, a8, q8, k8, v8, probs;
  AlignedVector<int32_t> acc, res, scores, scratch;
  dnnl::stream stream{CpuEngine()};
};

VitKernel::VitKernel(VitWeights weights, std::unique_ptr<Impl> impl)
    : weights_(std::move(weights)), manifest_(weights_.spec.ToManifest()), impl_(std::move(impl)) {}

VitKernel::~VitKernel() = default;

uint32_t VitKernel::lut_blocks() const {
  uint32_t n = 0;
  for (const Impl::Block& b : impl_->blocks) {
    n += (b.lut_attention != nullptr) + (b.lut_mlp != nullptr);
  }
  return n;
}

absl::StatusOr<std::shared_ptr<const VitKernel>> VitKernel::Create(VitWeights w, Options options) {
  const VitSpec& s = w.spec;
  if (options.threads < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(s.name, ": kernel threads must be >= 1, got ", options.threads));
  }
  if (w.attn.size() != s.depth || w.mlp.size() != s.depth) {
    return absl::InvalidArgumentError(
        absl::StrCat(s.name, ": ", w.attn.size(), " blocks for depth ", s.depth));
  }
  RETURN_IF_ERROR(
      FromEnvironment("HGPIPE_VIT_BLOCKS", options.blocks,
                      {{"lut", Options::Blocks::kLut}, {"stages", Options::Blocks::kStages}}));
  RETURN_IF_ERROR(FromEnvironment("HGPIPE_VIT_SIMD", options.simd,
                                  {{"best", Simd::kBest}, {"baseline", Simd::kBaseline}}));
  const bool lut = options.blocks.value_or(Options::Blocks::kLut) == Options::Blocks::kLut;
  const Simd simd = options.simd.value_or(Simd::kBest);
  const bool own_kernels = simd == Simd::kBest;
  auto impl = std::make_unique<Impl>();
  impl->threads = options.threads;
  // oneDNN fixes a primitive's thread partitioning when it is created.
  ScopedOmpThreads omp_threads(options.threads);
  impl->chunk = options.chunk_images > 0 ? options.chunk_images
                                         : std::max<uint32_t>(1, kDefaultChunkRows / s.tokens);
  const uint32_t rows = impl->chunk * s.tokens;
  auto linear = [own_kernels](const LinearStage& l, uint32_t max_rows, const IntType& in,
                              std::unique_ptr<Int8Linear>* out) -> absl::Status {
    ASSIGN_OR_RETURN(*out,
                     Int8Linear::Create(l.weight.data(), l.in, l.out, max_rows, in, own_kernels));
    return absl::OkStatus();
  };
  const PatchStage& p = w.patch;
  ASSIGN_OR_RETURN(impl->patch, Int8Linear::Create(p.weight.data(), s.token_values, s.width, rows,
                                                   p.in, own_kernels));
  RETURN_IF_ERROR(linear(w.head.linear, impl->chunk, w.head.norm.out, &impl->head));
  for (uint32_t i = 0; i < s.depth; ++i) {
    const AttentionBlock& a = w.attn[i];
    const MlpBlock& m = w.mlp[i];
    Impl::Block b;
    const bool attention = a.kind != AttentionKind::kNone, mlp = m.kind != MlpKind::kNone;
    // A block that does not qualify for lookup tables (the status says
    // why: Taylor attention never does) is computed stage by stage; a
    // skipped branch is not computed at all.
    if (lut) {
      if (auto l = LutAttention::Create(s, a, w.AttentionInput(i), simd); attention && l.ok()) {
        b.lut_attention = *std::move(l);
      }
      if (auto l = LutMlp::Create(s, m, w.MlpInput(i), simd); mlp && l.ok()) {
        b.lut_mlp = *std::move(l);
      }
    }
    const bool attention_stages = attention && b.lut_attention == nullptr;
    const bool mlp_stages = mlp && b.lut_mlp == nullptr;
    if (attention_stages) {
      RETURN_IF_ERROR(linear(a.q, rows, a.norm.out, &b.q));
      RETURN_IF_ERROR(linear(a.k, rows, a.norm.out, &b.k));
      RETURN_IF_ERROR(linear(a.v, rows, a.norm.out, &b.v));
      RETURN_IF_ERROR(linear(a.o, rows, a.context_quant.out, &b.o));
    }
    if (attention_stages && a.kind == AttentionKind::kSoftmax) {
      ASSIGN_OR_RETURN(b.scores, MakeScoresProduct(s, a.q_quant.out, a.k_quant.out, own_kernels));
      ASSIGN_OR_RETURN(b.context, MakeContextProduct(s, a.softmax.out, a.v_quant.out, own_kernels));
      RETURN_IF_ERROR(b.scores->Prepare(impl->chunk));
      RETURN_IF_ERROR(b.context->Prepare(impl->chunk));
    }
    if (mlp_stages) {
      RETURN_IF_ERROR(linear(m.fc1, rows, m.norm.out, &b.fc1));
      RETURN_IF_ERROR(linear(m.fc2, rows, m.gelu.out, &b.fc2));
    }
    impl->stages |= attention_stages || mlp_stages;
    impl->blocks.push_back(std::move(b));
  }
  return std::shared_ptr<const VitKernel>(new VitKernel(std::move(w), std::move(impl)));
}

void VitKernel::AttentionChunk(uint32_t block, Workspace& ws, uint32_t b, const int32_t* x,
                               int32_t* out) const {
  const VitSpec& s = weights_.spec;
  const AttentionBlock& a = weights_.attn[block];
  const Impl::Block& im = impl_->blocks[block];
  const size_t t = s.tokens, d = s.width, h = s.heads, m = size_t{b} * t;
  if (a.kind == AttentionKind::kNone) {  // the stream passes through
    if (out != x) std::memcpy(out, x, m * d * sizeof(int32_t));
    return;
  }
  if (im.lut_attention != nullptr) {
    im.lut_attention->Run(x, b, out);
    return;
  }
  const IntType in = weights_.AttentionInput(block);
  ParallelRows(m, 3 * d, [&](size_t r0, size_t r1) {
    NormRows(a.norm, in, x + r0 * d, r1 - r0, d, d, ws.a8.data() + r0 * d);
  });
  for (auto [linear, stage, quant, lanes] : {std::tuple{im.q.get(), &a.q, &a.q_quant, &ws.q8},
                                             std::tuple{im.k.get(), &a.k, &a.k_quant, &ws.k8},
                                             std::tuple{im.v.get(), &a.v, &a.v_quant, &ws.v8}}) {
    linear->Run(ws.stream, ws.a8.data(), m, ws.acc.data());
    ParallelRows(m, d, [&, stage = stage, quant = quant, lanes = lanes](size_t r0, size_t r1) {
      LinearFinish(*stage, ws.acc.data() + r0 * d, r1 - r0);
      TableLookup(*quant, stage->acc, ws.acc.data() + r0 * d, (r1 - r0) * d,
                  lanes->data() + r0 * d);
    });
  }
  if (a.kind == AttentionKind::kTaylor) {
    // Whole images (the sums run over all their tokens), wrapped here.
    ParallelRows(b, t * d * (d / h), [&](size_t i0, size_t i1) {
      for (size_t i = i0; i < i1; ++i) {
        const size_t o = i * t * d;
        TaylorAttention(a.taylor, a.q_quant.out, a.k_quant.out, a.v_quant.out, a.context,
                        ws.q8.data() + o, ws.k8.data() + o, ws.v8.data() + o, t, d, h,
                        ws.acc.data() + o);
      }
    });
  } else {
    const size_t score_rows = size_t{b} * h * t;
    im.scores->Run(ws.stream, ws.q8.data(), ws.k8.data(), b, ws.scores.data());
    ParallelRows(score_rows, 4 * t, [&](size_t r0, size_t r1) {
      thread_local AlignedVector<int32_t> scratch;
      Grow(scratch, t);
      WrapValues(a.scores, ws.scores.data() + r0 * t, (r1 - r0) * t);
      SoftmaxRows(a.softmax, ws.scores.data() + r0 * t, r1 - r0, t, scratch.data(),
                  ws.probs.data() + r0 * t);
    });
    im.context->Run(ws.stream, ws.probs.data(), ws.v8.data(), b, ws.acc.data());
  }
  ParallelRows(m, d, [&](size_t r0, size_t r1) {
    if (a.kind != AttentionKind::kTaylor) {
      WrapValues(a.context, ws.acc.data() + r0 * d, (r1 - r0) * d);
    }
    TableLookup(a.context_quant, a.context, ws.acc.data() + r0 * d, (r1 - r0) * d,
                ws.a8.data() + r0 * d);
  });
  im.o->Run(ws.stream, ws.a8.data(), m, ws.acc.data());
  ParallelRows(m, d, [&](size_t r0, size_t r1) {
    LinearFinish(a.o, ws.acc.data() + r0 * d, r1 - r0);
    ResidualAdd(a.residual, x + r0 * d, ws.acc.data() + r0 * d, (r1 - r0) * d, out + r0 * d);
  });
}

void VitKernel::MlpChunk(uint32_t block, Workspace& ws, uint32_t b, const int32_t* x,
                         int32_t* out) const {
  const VitSpec& s = weights_.spec;
  const MlpBlock& ml = weights_.mlp[block];
  const Impl::Block& im = impl_->blocks[block];
  const size_t t = s.tokens, d = s.width, hd = s.mlp_hidden, m = size_t{b} * t;
  if (ml.kind == MlpKind::kNone) {  // the stream passes through
    if (out != x) std::memcpy(out, x, m * d * sizeof(int32_t));
    return;
  }
  if (im.lut_mlp != nullptr) {
    im.lut_mlp->Run(x, b, out);
    return;
  }
  const IntType in = weights_.MlpInput(block);
  ParallelRows(m, 3 * d, [&](size_t r0, size_t r1) {
    NormRows(ml.norm, in, x + r0 * d, r1 - r0, d, d, ws.a8.data() + r0 * d);
  });
  im.fc1->Run(ws.stream, ws.a8.data(), m, ws.acc.data());
  ParallelRows(m, hd, [&](size_t r0, size_t r1) {
    LinearFinish(ml.fc1, ws.acc.data() + r0 * hd, r1 - r0);
    TableLookup(ml.gelu, ml.fc1.acc, ws.acc.data() + r0 * hd, (r1 - r0) * hd,
                ws.a8.data() + r0 * hd);
  });
  im.fc2->Run(ws.stream, ws.a8.data(), m, ws.acc.data());
  ParallelRows(m, d, [&](size_t r0, size_t r1) {
    LinearFinish(ml.fc2, ws.acc.data() + r0 * d, r1 - r0);
    ResidualAdd(ml.residual, x + r0 * d, ws.acc.data() + r0 * d, (r1 - r0) * d, out + r0 * d);
  });
}

void VitKernel::HeadChunk(Workspace& ws, uint32_t b, const int32_t* x, int32_t* logits) const {
  const VitSpec& s = weights_.spec;
  const HeadStage& hs = weights_.head;
  // Token 0 (the CLS token) of each image.
  NormRows(hs.norm, weights_.HeadInput(), x, b, s.width, size_t{s.tokens} * s.width, ws.a8.data());
  impl_->head->Run(ws.stream, ws.a8.data(), b, logits);
  LinearFinish(hs.linear, logits, b);
}

namespace {

// The calling thread's workspace, grown to hold one chunk of `spec`.
// `stages`: whether some block runs stage by stage (the blocks on lookup
// tables keep their own, smaller scratch: lut_blocks.cc).
template <typename Workspace>
Workspace& ChunkWorkspace(const VitSpec& s, uint32_t chunk, bool stages) {
  thread_local Workspace ws;
  const size_t rows = size_t{chunk} * s.tokens;
  const size_t d = s.width, wide = std::max(d, size_t{s.mlp_hidden});
  Grow(ws.flat, rows * s.token_values);
  Grow(ws.acc, std::max(rows * d, size_t{chunk} * s.classes));
  Grow(ws.res, rows * d);
  Grow(ws.a8, size_t{chunk} * d);  // the head's layer norm
  if (stages) {
    const size_t scores = size_t{chunk} * s.heads * s.tokens * s.tokens;
    Grow(ws.a8, rows * wide);
    Grow(ws.q8, rows * d);
    Grow(ws.k8, rows * d);
    Grow(ws.v8, rows * d);
    Grow(ws.acc, rows * wide);
    Grow(ws.scores, scores);
    Grow(ws.probs, scores);
  }
  return ws;
}

}  // namespace

void VitKernel::PatchEmbed(const int8_t* flat, uint32_t n, int32_t* out) const {
  const VitSpec& s = weights_.spec;
  ScopedOmpThreads omp_threads(impl_->threads);
  Workspace& ws = ChunkWorkspace<Workspace>(s, impl_->chunk, impl_->stages);
  const size_t t = s.tokens, d = s.width;
  for (uint32_t first = 0; first < n; first += impl_->chunk) {
    const uint32_t b = std::min(impl_->chunk, n - first);
    const size_t m = size_t{b} * t, row0 = size_t{first} * t;
    impl_->patch->Run(ws.stream, flat + row0 * s.token_values, m, ws.acc.data());
    ParallelRows(m, d, [&](size_t r0, size_t r1) {
      PatchFinish(weights_.patch, ws.acc.data() + r0 * d, r0, r1 - r0, t, d, out + (row0 + r0) * d);
    });
  }
}

void VitKernel::Attention(uint32_t block, const int32_t* x, uint32_t n, int32_t* out) const {
  const VitSpec& s = weights_.spec;
  ScopedOmpThreads omp_threads(impl_->threads);
  Workspace& ws = ChunkWorkspace<Workspace>(s, impl_->chunk, impl_->stages);
  const size_t image = size_t{s.tokens} * s.width;
  for (uint32_t first = 0; first < n; first += impl_->chunk) {
    const uint32_t b = std::min(impl_->chunk, n - first);
    AttentionChunk(block, ws, b, x + first * image, out + first * image);
  }
}

void VitKernel::Mlp(uint32_t block, const int32_t* x, uint32_t n, int32_t* out) const {
  const VitSpec& s = weights_.spec;
  ScopedOmpThreads omp_threads(impl_->threads);
  Workspace& ws = ChunkWorkspace<Workspace>(s, impl_->chunk, impl_->stages);
  const size_t image = size_t{s.tokens} * s.width;
  for (uint32_t first = 0; first < n; first += impl_->chunk) {
    const uint32_t b = std::min(impl_->chunk, n - first);
    MlpChunk(block, ws, b, x + first * image, out + first * image);
  }
}

void VitKernel::Head(const int32_t* x, uint32_t n, int32_t* logits) const {
  const VitSpec& s = weights_.spec;
  ScopedOmpThreads omp_threads(impl_->threads);
  Workspace& ws = ChunkWorkspace<Workspace>(s, impl_->chunk, impl_->stages);
  const size_t image = size_t{s.tokens} * s.width;
  for (uint32_t first = 0; first < n; first += impl_->chunk) {
    const uint32_t b = std::min(impl_->chunk, n - first);
    HeadChunk(ws, b, x + first * image, logits + size_t{first} * s.classes);
  }
}

void VitKernel::Compute(const int8_t* input, uint32_t n, uint32_t* output) const {
  const VitSpec& s = weights_.spec;
  const DeviceGeometry& g = manifest_.geometry;
  ScopedOmpThreads omp_threads(impl_->threads);
  Workspace& ws = ChunkWorkspace<Workspace>(s, impl_->chunk, impl_->stages);
  const size_t t = s.tokens, d = s.width;
  for (uint32_t first = 0; first < n; first += impl_->chunk) {
    const uint32_t b = std::min(impl_->chunk, n - first);
    const size_t m = size_t{b} * t;
    for (uint32_t i = 0; i < b; ++i) {
      UnpackImage(g, input + (first + i) * g.input_bytes(), ws.flat.data() + i * g.input_bytes());
    }
    impl_->patch->Run(ws.stream, ws.flat.data(), m, ws.acc.data());
    ParallelRows(m, d, [&](size_t r0, size_t r1) {
      PatchFinish(weights_.patch, ws.acc.data() + r0 * d, r0, r1 - r0, t, d,
                  ws.res.data() + r0 * d);
    });
    // Each block updates the residual stream in place (ResidualAdd reads
    // element i of x before writing element i of out).
    for (uint32_t i = 0; i < s.depth; ++i) {
      AttentionChunk(i, ws, b, ws.res.data(), ws.res.data());
      MlpChunk(i, ws, b, ws.res.data(), ws.res.data());
    }
    HeadChunk(ws, b, ws.res.data(), ws.acc.data());
    LogitWords(ws.acc.data(), size_t{b} * s.classes, output + size_t{first} * s.classes);
  }
}

absl::StatusOr<std::shared_ptr<const VitKernel>> LoadVitKernel(const std::string& weights_path,
                                                               const VitKernel::Options& options) {
  ASSIGN_OR_RETURN(Container c, ReadContainer(weights_path));
  ASSIGN_OR_RETURN(VitWeights w, VitWeightsFromContainer(c, weights_path));
  return VitKernel::Create(std::move(w), options);
}

absl::StatusOr<std::shared_ptr<const VitKernel>> LoadVitKernel(const std::string& weights_path) {
  return LoadVitKernel(weights_path, VitKernel::Options());
}

}  // namespace hgpipe::accel::vit
