// The emulated board against the HG-PIPE authors' golden data: their
// DeiT-tiny (models/deit_tiny/deit_tiny.hgvit) and one image traced through
// every stage (tests/accel_vit/testdata/deit_tiny_trace.hgvit, converted by
// tools/vit/convert_hgpipe_refs.py from hguq/HG-PIPE case/refs). Every stage
// of block 0 gets its golden input and must give every value of its golden
// output; then every block; then the whole network, device words in and out.
// Each test runs on every path the kernel can take (VitKernel::Options):
// the blocks on lookup tables or stage by stage, each with the best SIMD
// target of this machine and with the portable baseline.
#include <cstdint>
#include <map>
#include <ostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "accel/device_layout.h"
#include "accel/vit/lut_gemm.h"
#include "accel/vit/matmul.h"
#include "accel/vit/stages.h"
#include "accel/vit/vec_stages.h"
#include "accel/vit/vit_kernel.h"
#include "accel/vit/weight_file.h"
#include "gtest/gtest.h"
#include "tests/accel_vit/test_paths.h"

namespace hgpipe::accel::vit {
namespace {

using Blocks = VitKernel::Options::Blocks;

struct Path {
  const char* name;
  Blocks blocks;
  Simd simd;
};
const Path kPaths[] = {{"LutBest", Blocks::kLut, Simd::kBest},
                       {"LutBaseline", Blocks::kLut, Simd::kBaseline},
                       {"StagesBest", Blocks::kStages, Simd::kBest},
                       {"StagesBaseline", Blocks::kStages, Simd::kBaseline}};

void PrintTo(const Path& p, std::ostream* os) { *os << p.name; }

VitKernel::Options OptionsFor(const Path& p) {
  VitKernel::Options o;
  o.blocks = p.blocks;
  o.simd = p.simd;
  return o;
}

// The model's kernel on each path and the trace, loaded once for all tests.
struct Golden {
  std::map<std::string, std::shared_ptr<const VitKernel>> kernels;
  std::shared_ptr<const VitKernel> kernel;  // the default path's
  Container trace;
  Container golden;

  const VitWeights& w() const { return kernel->weights(); }
  const VitSpec& spec() const { return kernel->spec(); }

  std::vector<int32_t> Values(const Container& c, const std::string& name) const {
    const auto it = c.tensors.find(name);
    if (it == c.tensors.end()) {
      ADD_FAILURE() << "no tensor " << name;
      return {};
    }
    const std::vector<int64_t> wide = it->second.ToInt64();
    return std::vector<int32_t>(wide.begin(), wide.end());
  }
  std::vector<int32_t> Trace(const std::string& name) const { return Values(trace, name); }
};

const Golden& G() {
  static const Golden* const g = [] {
    auto* g = new Golden;
    for (const Path& p : kPaths) {
      absl::StatusOr<std::shared_ptr<const VitKernel>> k =
          LoadVitKernel(DeitTinyWeightsPath(), OptionsFor(p));
      if (!k.ok()) {
        ADD_FAILURE() << p.name << ": " << k.status();
        return g;
      }
      g->kernels[p.name] = *k;
    }
    g->kernel = g->kernels[kPaths[0].name];
    absl::StatusOr<Container> t = ReadContainer(DeitTinyTracePath());
    if (!t.ok())
      ADD_FAILURE() << t.status();
    else
      g->trace = *std::move(t);
    absl::StatusOr<Container> gd = ReadContainer(DeitTinyGoldenPath());
    if (!gd.ok())
      ADD_FAILURE() << gd.status();
    else
      g->golden = *std::move(gd);
    return g;
  }();
  return *g;
}

// Byte lanes of a stage output as values of `t`.
std::vector<int32_t> FromLanes(const std::vector<int8_t>& lanes, const IntType& t) {
  std::vector<int32_t> v(lanes.size());
  for (size_t i = 0; i < lanes.size(); ++i) {
    v[i] = t.is_signed ? lanes[i] : static_cast<uint8_t>(lanes[i]);
  }
  return v;
}
std::vector<int8_t> ToLanes(const std::vector<int32_t>& v) {
  return std::vector<int8_t>(v.begin(), v.end());  // low byte: the lane
}

// Every value equal; on failure, how many differ and the first one.
::testing::AssertionResult SameValues(const std::vector<int32_t>& got,
                                      const std::vector<int32_t>& want) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure() << got.size() << " values, want " << want.size();
  }
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] != want[i] && bad++ == 0) first = i;
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " of " << want.size() << " values differ; first at " << first << ": "
         << got[first] << " != " << want[first];
}

class HgpipeGoldenTest : public ::testing::TestWithParam<Path> {
 protected:
  void SetUp() override { ASSERT_NE(kernel(), nullptr); }

  // The kernel on this test's path.
  const VitKernel* kernel() const {
    const auto it = G().kernels.find(GetParam().name);
    return it == G().kernels.end() ? nullptr : it->second.get();
  }
  bool own_kernels() const { return GetParam().simd == Simd::kBest; }

  size_t T() const { return G().spec().tokens; }
  size_t C() const { return G().spec().width; }

  // A linear stage on golden input lanes: the kernel's product and finish.
  std::vector<int32_t> Linear(const LinearStage& l, const IntType& in_type,
                              const std::vector<int32_t>& in, size_t rows) {
    absl::StatusOr<std::unique_ptr<Int8Linear>> mm =
        Int8Linear::Create(l.weight.data(), l.in, l.out, rows, in_type, own_kernels());
    EXPECT_TRUE(mm.ok()) << mm.status();
    if (!mm.ok()) return {};
    dnnl::stream stream(CpuEngine());
    std::vector<int32_t> acc(rows * l.out);
    const std::vector<int8_t> lanes = ToLanes(in);
    (*mm)->Run(stream, lanes.data(), rows, acc.data());
    LinearFinish(l, acc.data(), rows);
    return acc;
  }

  std::vector<int32_t> Norm(const NormStage& n, const IntType& in, const std::vector<int32_t>& x,
                            size_t rows) {
    std::vector<int8_t> out(rows * C());
    NormRows(n, in, x.data(), rows, C(), C(), out.data());
    return FromLanes(out, n.out);
  }

  std::vector<int32_t> Table(const TableStage& t, const IntType& in,
                             const std::vector<int32_t>& x) {
    std::vector<int8_t> out(x.size());
    TableLookup(t, in, x.data(), x.size(), out.data());
    return FromLanes(out, t.out);
  }
};

TEST_P(HgpipeGoldenTest, PatchEmbedding) {
  const std::vector<int32_t> x = G().Trace("patch.input");
  std::vector<int8_t> flat(x.begin(), x.end());
  std::vector<int32_t> out(T() * C());
  kernel()->PatchEmbed(flat.data(), 1, out.data());
  EXPECT_TRUE(SameValues(out, G().Trace("patch")));
}

TEST_P(HgpipeGoldenTest, AttentionBlock0StageByStage) {
  const AttentionBlock& a = G().w().attn[0];
  const std::string p = "blocks.0.attn.";
  const size_t t = T();
  EXPECT_TRUE(SameValues(Norm(a.norm, G().w().AttentionInput(0), G().Trace("patch"), t),
                         G().Trace(p + "norm")))
      << "norm";
  const std::vector<int32_t> norm = G().Trace(p + "norm");
  for (auto [name, lin, quant] :
       {std::tuple{"q", &a.q, &a.q_quant}, std::tuple{"k", &a.k, &a.k_quant},
        std::tuple{"v", &a.v, &a.v_quant}}) {
    EXPECT_TRUE(SameValues(Linear(*lin, a.norm.out, norm, t), G().Trace(p + name))) << name;
    EXPECT_TRUE(SameValues(Table(*quant, lin->acc, G().Trace(p + name)),
                           G().Trace(absl::StrCat(p, name, "_quant"))))
        << name << "_quant";
  }

  const VitSpec& s = G().spec();
  dnnl::stream stream(CpuEngine());
  const std::vector<int8_t> q = ToLanes(G().Trace(p + "q_quant"));
  const std::vector<int8_t> k = ToLanes(G().Trace(p + "k_quant"));
  const std::vector<int8_t> v = ToLanes(G().Trace(p + "v_quant"));
  std::vector<int32_t> scores(s.heads * t * t);
  absl::StatusOr<std::unique_ptr<BatchedMatmul>> product =
      MakeScoresProduct(s, a.q_quant.out, a.k_quant.out, own_kernels());
  ASSERT_TRUE(product.ok()) << product.status();
  (*product)->Run(stream, q.data(), k.data(), 1, scores.data());
  WrapValues(a.scores, scores.data(), scores.size());
  EXPECT_TRUE(SameValues(scores, G().Trace(p + "scores"))) << "scores";

  const std::vector<int32_t> golden_scores = G().Trace(p + "scores");
  std::vector<int8_t> probs(golden_scores.size());
  std::vector<int32_t> scratch(t);
  SoftmaxRows(a.softmax, golden_scores.data(), s.heads * t, t, scratch.data(), probs.data());
  EXPECT_TRUE(SameValues(FromLanes(probs, a.softmax.out), G().Trace(p + "softmax"))) << "softmax";

  const std::vector<int8_t> golden_probs = ToLanes(G().Trace(p + "softmax"));
  std::vector<int32_t> context(t * C());
  product = MakeContextProduct(s, a.softmax.out, a.v_quant.out, own_kernels());
  ASSERT_TRUE(product.ok()) << product.status();
  (*product)->Run(stream, golden_probs.data(), v.data(), 1, context.data());
  WrapValues(a.context, context.data(), context.size());
  EXPECT_TRUE(SameValues(context, G().Trace(p + "context"))) << "context";

  EXPECT_TRUE(SameValues(Table(a.context_quant, a.context, G().Trace(p + "context")),
                         G().Trace(p + "context_quant")))
      << "context_quant";
  const std::vector<int32_t> o =
      Linear(a.o, a.context_quant.out, G().Trace(p + "context_quant"), t);
  EXPECT_TRUE(SameValues(o, G().Trace(p + "o"))) << "o";

  const std::vector<int32_t> x = G().Trace("patch");
  const std::vector<int32_t> golden_o = G().Trace(p + "o");
  std::vector<int32_t> out(x.size());
  ResidualAdd(a.residual, x.data(), golden_o.data(), x.size(), out.data());
  EXPECT_TRUE(SameValues(out, G().Trace(p + "residual"))) << "residual";
}

TEST_P(HgpipeGoldenTest, MlpBlock0StageByStage) {
  const MlpBlock& m = G().w().mlp[0];
  const std::string p = "blocks.0.mlp.";
  const size_t t = T();
  const std::vector<int32_t> x = G().Trace("blocks.0.attn.residual");
  EXPECT_TRUE(SameValues(Norm(m.norm, G().w().MlpInput(0), x, t), G().Trace(p + "norm"))) << "norm";
  EXPECT_TRUE(SameValues(Linear(m.fc1, m.norm.out, G().Trace(p + "norm"), t), G().Trace(p + "fc1")))
      << "fc1";
  EXPECT_TRUE(SameValues(Table(m.gelu, m.fc1.acc, G().Trace(p + "fc1")), G().Trace(p + "gelu")))
      << "gelu";
  EXPECT_TRUE(SameValues(Linear(m.fc2, m.gelu.out, G().Trace(p + "gelu"), t), G().Trace(p + "fc2")))
      << "fc2";
  const std::vector<int32_t> fc2 = G().Trace(p + "fc2");
  std::vector<int32_t> out(x.size());
  ResidualAdd(m.residual, x.data(), fc2.data(), x.size(), out.data());
  EXPECT_TRUE(SameValues(out, G().Trace(p + "residual"))) << "residual";
}

TEST_P(HgpipeGoldenTest, EveryBlockFromItsGoldenInput) {
  const uint32_t depth = G().spec().depth;
  ASSERT_EQ(depth, 12u);
  std::vector<int32_t> out(T() * C());
  for (uint32_t i = 0; i < depth; ++i) {
    const std::string attn_in = i == 0 ? "patch" : absl::StrCat("blocks.", i - 1, ".mlp.residual");
    const std::vector<int32_t> x = G().Trace(attn_in);
    kernel()->Attention(i, x.data(), 1, out.data());
    EXPECT_TRUE(SameValues(out, G().Trace(absl::StrCat("blocks.", i, ".attn.residual"))))
        << "attention block " << i;
    const std::vector<int32_t> y = G().Trace(absl::StrCat("blocks.", i, ".attn.residual"));
    kernel()->Mlp(i, y.data(), 1, out.data());
    EXPECT_TRUE(SameValues(out, G().Trace(absl::StrCat("blocks.", i, ".mlp.residual"))))
        << "MLP block " << i;
  }
}

TEST_P(HgpipeGoldenTest, Head) {
  const HeadStage& h = G().w().head;
  const std::vector<int32_t> x = G().Trace("blocks.11.mlp.residual");
  const std::vector<int32_t> cls(x.begin(), x.begin() + C());
  EXPECT_TRUE(SameValues(Norm(h.norm, G().w().HeadInput(), cls, 1), G().Trace("head.norm")));
  std::vector<int32_t> logits(G().spec().classes);
  kernel()->Head(x.data(), 1, logits.data());
  EXPECT_TRUE(SameValues(logits, G().Trace("head")));
}

// The whole network as a board runs it: device-order patches in, device
// words out (the 19-bit logits the authors' notebook checks), for one image
// and for a run of several in chunks of two.
TEST_P(HgpipeGoldenTest, NetworkDeviceWordsBitForBit) {
  const std::vector<int32_t> input = G().Values(G().golden, "input");
  const std::vector<int32_t> words = G().Values(G().golden, "output");
  ASSERT_EQ(input.size(), kernel()->manifest().geometry.input_bytes());
  ASSERT_EQ(words.size(), 1000u);
  const std::vector<int8_t> device(input.begin(), input.end());
  std::vector<uint32_t> out(1000);
  kernel()->Compute(device.data(), 1, out.data());
  EXPECT_TRUE(SameValues(std::vector<int32_t>(out.begin(), out.end()), words));
  // The logits the authors list: argmax is class 0 (tench).
  std::vector<int32_t> logits(1000);
  for (size_t c = 0; c < 1000; ++c) logits[c] = DecodeLogitWord(out[c]);
  EXPECT_TRUE(SameValues(logits, G().Trace("head")));
  EXPECT_EQ(std::max_element(logits.begin(), logits.end()) - logits.begin(), 0);

  VitKernel::Options small = OptionsFor(GetParam());
  small.chunk_images = 2;
  absl::StatusOr<std::shared_ptr<const VitKernel>> chunked =
      LoadVitKernel(DeitTinyWeightsPath(), small);
  ASSERT_TRUE(chunked.ok()) << chunked.status();
  constexpr uint32_t kImages = 3;
  std::vector<int8_t> batch;
  for (uint32_t i = 0; i < kImages; ++i) batch.insert(batch.end(), device.begin(), device.end());
  std::vector<uint32_t> many(kImages * 1000);
  (*chunked)->Compute(batch.data(), kImages, many.data());
  for (uint32_t i = 0; i < kImages; ++i) {
    EXPECT_TRUE(SameValues(
        std::vector<int32_t>(many.begin() + i * 1000, many.begin() + (i + 1) * 1000), words))
        << "image " << i << " of a chunked run";
  }
}

TEST_P(HgpipeGoldenTest, ConcurrentComputeGivesTheGoldenWords) {
  const std::vector<int32_t> input = G().Values(G().golden, "input");
  const std::vector<int32_t> words = G().Values(G().golden, "output");
  const std::vector<int8_t> device(input.begin(), input.end());
  std::vector<std::vector<uint32_t>> outs(2, std::vector<uint32_t>(1000));
  std::vector<std::thread> threads;
  for (auto& out : outs) {
    threads.emplace_back([&] { kernel()->Compute(device.data(), 1, out.data()); });
  }
  for (auto& th : threads) th.join();
  for (const auto& out : outs) {
    EXPECT_TRUE(SameValues(std::vector<int32_t>(out.begin(), out.end()), words));
  }
}

TEST(HgpipeGoldenModelTest, ManifestCarriesGeometryTimingScalesAndLabels) {
  ASSERT_NE(G().kernel, nullptr);
  const BitstreamManifest& m = G().kernel->manifest();
  EXPECT_EQ(m.name, "deit_tiny");
  EXPECT_EQ(m.geometry.tokens, 196u);
  EXPECT_EQ(m.geometry.token_values, 768u);
  EXPECT_EQ(m.geometry.classes, 1000u);
  EXPECT_EQ(m.timing.interval_cycles, 57'624u);
  EXPECT_EQ(m.timing.latency_cycles, 816'584u);
  EXPECT_DOUBLE_EQ(m.timing.clock_hz, 425e6);
  EXPECT_NEAR(G().kernel->input_scale(), 2.64 / 127, 1e-6);
  ASSERT_EQ(G().kernel->labels().size(), 1000u);
  EXPECT_EQ(G().kernel->labels()[0], "tench");
  EXPECT_EQ(G().kernel->labels()[285], "Egyptian cat");
}

// The lookup-table path's pieces (lut_gemm.h, vec_stages.h) stage by stage
// on block 0, each from its golden input: where a block's result differs,
// this says which stage.
class LutStages {
 public:
  explicit LutStages(Simd simd) : simd_(simd) {}

  // sum_i a[r][col0 + i] * w[j][i] (+ bias[j]) for the rows of a (values of
  // `act`, rows `lda` apart), wrapped to `acc`; w packed with k = w.k().
  std::vector<int32_t> Product(const std::vector<int32_t>& a, size_t rows, size_t lda, size_t col0,
                               const IntType& act, const LutWeights& w,
                               const std::vector<int32_t>& bias, const IntType& acc) const {
    const size_t k = w.k(), n = w.n(), ldl = std::max(k, LutReadableBytes(k));
    const int offset = static_cast<int>(act.min()) + 4;  // into [-4, 3]
    std::vector<int8_t> lanes(rows * ldl + 64, 0);
    for (size_t r = 0; r < rows; ++r) {
      for (size_t i = 0; i < k; ++i)
        lanes[r * ldl + i] = static_cast<int8_t>(a[r * lda + col0 + i]);
    }
    std::vector<uint8_t> tables(rows * LutTableBytes(k));
    BuildLutTables(lanes.data(), ldl, rows, k, static_cast<int8_t>(offset), tables.data(), simd_);
    const size_t ldy = (n + 15) / 16 * 16;
    std::vector<int16_t> y(rows * ldy);
    LutGemm(tables.data(), rows, w, y.data(), ldy, simd_);
    std::vector<int32_t> out(rows * n);
    for (size_t r = 0; r < rows; ++r) {
      for (size_t j = 0; j < n; ++j) {
        const int64_t v =
            y[r * ldy + j] + int64_t{offset} * w.sums()[j] + (bias.empty() ? 0 : bias[j]);
        out[r * n + j] = static_cast<int32_t>(acc.Wrap(v));
      }
    }
    return out;
  }

  std::vector<int32_t> Linear(const LinearStage& l, const IntType& act,
                              const std::vector<int32_t>& a, size_t rows) const {
    LutWeights w;
    w.Pack(l.weight.data(), l.out, l.in, l.in, /*transposed=*/false, simd_);
    return Product(a, rows, l.in, 0, act, w, l.bias, l.acc);
  }

  std::vector<int32_t> Norm(const NormStage& n, const IntType& in, const std::vector<int32_t>& x,
                            size_t width) const {
    absl::StatusOr<NormParams> p = PrepareNorm(n, in, width);
    EXPECT_TRUE(p.ok()) << p.status();
    if (!p.ok()) return {};
    std::vector<int8_t> out(x.size());
    vit::Norm(*p, x.data(), x.size() / width, out.data(), simd_);
    return FromLanes(out, n.out);
  }

  // A table stage on accumulators already wrapped (bias 0).
  std::vector<int32_t> Table(const IntType& acc, const TableStage& t,
                             const std::vector<int32_t>& v) const {
    absl::StatusOr<RequantParams> p = PrepareRequant(acc, t);
    EXPECT_TRUE(p.ok()) << p.status();
    if (!p.ok()) return {};
    const std::vector<int16_t> y(v.begin(), v.end()), bias(v.size(), 0);
    std::vector<int8_t> out(v.size());
    Requant(*p, y.data(), v.size(), bias.data(), 1, v.size(), out.data(), v.size(), simd_);
    return FromLanes(out, t.out);
  }

  Simd simd() const { return simd_; }

 private:
  Simd simd_;
};

TEST_P(HgpipeGoldenTest, LutStagesOfBlock0) {
  if (GetParam().blocks != Blocks::kLut) GTEST_SKIP() << "the stage-by-stage path";
  const LutStages lut(GetParam().simd);
  const VitSpec& s = G().spec();
  const AttentionBlock& a = G().w().attn[0];
  const MlpBlock& m = G().w().mlp[0];
  const size_t t = T(), c = C(), h = s.heads, dh = s.head_dim();
  const std::string p = "blocks.0.attn.", q = "blocks.0.mlp.";
  auto trace = [](const std::string& name) { return G().Trace(name); };

  EXPECT_TRUE(
      SameValues(lut.Norm(a.norm, G().w().AttentionInput(0), trace("patch"), c), trace(p + "norm")))
      << "norm";
  for (auto [name, lin, quant] :
       {std::tuple{"q", &a.q, &a.q_quant}, std::tuple{"k", &a.k, &a.k_quant},
        std::tuple{"v", &a.v, &a.v_quant}}) {
    EXPECT_TRUE(SameValues(lut.Linear(*lin, a.norm.out, trace(p + "norm"), t), trace(p + name)))
        << name;
    EXPECT_TRUE(SameValues(lut.Table(lin->acc, *quant, trace(p + name)),
                           trace(absl::StrCat(p, name, "_quant"))))
        << name << "_quant";
  }
  // Scores, softmax and context per head: k packed as rows of weights, v as
  // columns, the probabilities shifted into [-4, 3].
  const std::vector<int32_t> qq = trace(p + "q_quant"), kq = trace(p + "k_quant"),
                             vq = trace(p + "v_quant"), probs = trace(p + "softmax");
  const std::vector<int8_t> k8(kq.begin(), kq.end()), v8(vq.begin(), vq.end());
  std::vector<int32_t> scores, context(t * c);
  for (size_t head = 0; head < h; ++head) {
    LutWeights kw, vw;
    kw.Pack(k8.data() + head * dh, t, dh, c, /*transposed=*/false, lut.simd());
    vw.Pack(v8.data() + head * dh, dh, t, c, /*transposed=*/true, lut.simd());
    const std::vector<int32_t> sh =
        lut.Product(qq, t, c, head * dh, a.q_quant.out, kw, {}, a.scores);
    scores.insert(scores.end(), sh.begin(), sh.end());
    const std::vector<int32_t> ch =
        lut.Product(probs, t, t, head * t * t, a.softmax.out, vw, {}, a.context);
    for (size_t i = 0; i < t; ++i) {
      for (size_t j = 0; j < dh; ++j) context[i * c + head * dh + j] = ch[i * dh + j];
    }
  }
  EXPECT_TRUE(SameValues(scores, trace(p + "scores"))) << "scores";
  {
    absl::StatusOr<SoftmaxParams> sp = PrepareSoftmax(a.scores, a.softmax);
    ASSERT_TRUE(sp.ok()) << sp.status();
    const std::vector<int32_t> golden = trace(p + "scores");
    const size_t ld = (t + 31) / 32 * 32;
    std::vector<int16_t> y(h * t * ld + 32);
    for (size_t r = 0; r < h * t; ++r) {
      for (size_t j = 0; j < t; ++j) y[r * ld + j] = static_cast<int16_t>(golden[r * t + j]);
    }
    std::vector<int8_t> out(h * t * t);
    Softmax(*sp, y.data(), ld, h * t, t, out.data(), t, lut.simd());
    EXPECT_TRUE(SameValues(FromLanes(out, a.softmax.out), probs)) << "softmax";
  }
  EXPECT_TRUE(SameValues(context, trace(p + "context"))) << "context";
  EXPECT_TRUE(SameValues(lut.Table(a.context, a.context_quant, trace(p + "context")),
                         trace(p + "context_quant")))
      << "context_quant";
  EXPECT_TRUE(SameValues(lut.Linear(a.o, a.context_quant.out, trace(p + "context_quant"), t),
                         trace(p + "o")))
      << "o";
  // The residual: o's accumulators (bias already in) into the stream.
  auto residual = [&](const IntType& acc, const IntType& in, const ResidualStage& r,
                      const std::vector<int32_t>& x, const std::vector<int32_t>& sums) {
    absl::StatusOr<ResidualParams> rp = PrepareResidual(acc, in, r);
    EXPECT_TRUE(rp.ok()) << rp.status();
    const std::vector<int16_t> y(sums.begin(), sums.end()), bias(c, 0);
    std::vector<int32_t> out(x.size());
    ResidualFinish(*rp, y.data(), c, bias.data(), x.data(), x.size() / c, c, out.data(),
                   lut.simd());
    return out;
  };
  EXPECT_TRUE(SameValues(
      residual(a.o.acc, G().w().AttentionInput(0), a.residual, trace("patch"), trace(p + "o")),
      trace(p + "residual")))
      << "residual";

  const std::vector<int32_t> x = trace(p + "residual");
  EXPECT_TRUE(SameValues(lut.Norm(m.norm, G().w().MlpInput(0), x, c), trace(q + "norm")))
      << "mlp norm";
  EXPECT_TRUE(SameValues(lut.Linear(m.fc1, m.norm.out, trace(q + "norm"), t), trace(q + "fc1")))
      << "fc1";
  EXPECT_TRUE(SameValues(lut.Table(m.fc1.acc, m.gelu, trace(q + "fc1")), trace(q + "gelu")))
      << "gelu";
  EXPECT_TRUE(SameValues(lut.Linear(m.fc2, m.gelu.out, trace(q + "gelu"), t), trace(q + "fc2")))
      << "fc2";
  EXPECT_TRUE(SameValues(residual(m.fc2.acc, G().w().MlpInput(0), m.residual, x, trace(q + "fc2")),
                         trace(q + "residual")))
      << "mlp residual";
}

TEST_P(HgpipeGoldenTest, BlocksRunOnThePathAsked) {
  // Every block of the model qualifies for lookup tables.
  EXPECT_EQ(kernel()->lut_blocks(), GetParam().blocks == Blocks::kLut ? 24u : 0u);
}

INSTANTIATE_TEST_SUITE_P(Paths, HgpipeGoldenTest, ::testing::ValuesIn(kPaths),
                         [](const ::testing::TestParamInfo<Path>& p) { return p.param.name; });

}  // namespace
}  // namespace hgpipe::accel::vit
