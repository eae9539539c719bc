// The emulated board against the HG-PIPE authors' golden data: their
// DeiT-tiny (models/deit_tiny/deit_tiny.hgvit) and one image traced through
// every stage (tests/accel_vit/testdata/deit_tiny_trace.hgvit, converted by
// tools/vit/convert_hgpipe_refs.py from hguq/HG-PIPE case/refs). Every stage
// of block 0 gets its golden input and must give every value of its golden
// output; then every block; then the whole network, device words in and out.
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "accel/device_layout.h"
#include "accel/vit/matmul.h"
#include "accel/vit/stages.h"
#include "accel/vit/vit_kernel.h"
#include "accel/vit/weight_file.h"
#include "gtest/gtest.h"
#include "tests/accel_vit/test_paths.h"

namespace hgpipe::accel::vit {
namespace {

// The model, its kernel and the trace, loaded once for all tests.
struct Golden {
  std::shared_ptr<const VitKernel> kernel;
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
    absl::StatusOr<std::shared_ptr<const VitKernel>> k = LoadVitKernel(DeitTinyWeightsPath());
    if (!k.ok()) {
      ADD_FAILURE() << k.status();
      return g;
    }
    g->kernel = *k;
    absl::StatusOr<Container> t = ReadContainer(DeitTinyTracePath());
    if (!t.ok()) ADD_FAILURE() << t.status();
    else g->trace = *std::move(t);
    absl::StatusOr<Container> gd = ReadContainer(DeitTinyGoldenPath());
    if (!gd.ok()) ADD_FAILURE() << gd.status();
    else g->golden = *std::move(gd);
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
  return ::testing::AssertionFailure() << bad << " of " << want.size() << " values differ; first at "
                                       << first << ": " << got[first] << " != " << want[first];
}

class HgpipeGoldenTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NE(G().kernel, nullptr); }

  size_t T() const { return G().spec().tokens; }
  size_t C() const { return G().spec().width; }

  // A linear stage on golden input lanes: the kernel's product and finish.
  std::vector<int32_t> Linear(const LinearStage& l, const IntType& in_type,
                              const std::vector<int32_t>& in, size_t rows) {
    absl::StatusOr<std::unique_ptr<Int8Linear>> mm =
        Int8Linear::Create(l.weight.data(), l.in, l.out, rows, in_type);
    EXPECT_TRUE(mm.ok()) << mm.status();
    if (!mm.ok()) return {};
    dnnl::stream stream(CpuEngine());
    std::vector<int32_t> acc(rows * l.out);
    const std::vector<int8_t> lanes = ToLanes(in);
    (*mm)->Run(stream, lanes.data(), rows, acc.data());
    LinearFinish(l, acc.data(), rows);
    return acc;
  }

  std::vector<int32_t> Norm(const NormStage& n, const IntType& in,
                            const std::vector<int32_t>& x, size_t rows) {
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

TEST_F(HgpipeGoldenTest, PatchEmbedding) {
  const std::vector<int32_t> x = G().Trace("patch.input");
  std::vector<int8_t> flat(x.begin(), x.end());
  std::vector<int32_t> out(T() * C());
  G().kernel->PatchEmbed(flat.data(), 1, out.data());
  EXPECT_TRUE(SameValues(out, G().Trace("patch")));
}

TEST_F(HgpipeGoldenTest, AttentionBlock0StageByStage) {
  const AttentionBlock& a = G().w().attn[0];
  const std::string p = "blocks.0.attn.";
  const size_t t = T();
  EXPECT_TRUE(SameValues(Norm(a.norm, G().w().AttentionInput(0), G().Trace("patch"), t),
                         G().Trace(p + "norm")))
      << "norm";
  const std::vector<int32_t> norm = G().Trace(p + "norm");
  for (auto [name, lin, quant] : {std::tuple{"q", &a.q, &a.q_quant},
                                  std::tuple{"k", &a.k, &a.k_quant},
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
      MakeScoresProduct(s, a.q_quant.out, a.k_quant.out);
  ASSERT_TRUE(product.ok()) << product.status();
  (*product)->Run(stream, q.data(), k.data(), 1, scores.data());
  WrapValues(a.scores, scores.data(), scores.size());
  EXPECT_TRUE(SameValues(scores, G().Trace(p + "scores"))) << "scores";

  const std::vector<int32_t> golden_scores = G().Trace(p + "scores");
  std::vector<int8_t> probs(golden_scores.size());
  std::vector<int32_t> scratch(t);
  SoftmaxRows(a.softmax, golden_scores.data(), s.heads * t, t, scratch.data(), probs.data());
  EXPECT_TRUE(SameValues(FromLanes(probs, a.softmax.out), G().Trace(p + "softmax")))
      << "softmax";

  const std::vector<int8_t> golden_probs = ToLanes(G().Trace(p + "softmax"));
  std::vector<int32_t> context(t * C());
  product = MakeContextProduct(s, a.softmax.out, a.v_quant.out);
  ASSERT_TRUE(product.ok()) << product.status();
  (*product)->Run(stream, golden_probs.data(), v.data(), 1, context.data());
  WrapValues(a.context, context.data(), context.size());
  EXPECT_TRUE(SameValues(context, G().Trace(p + "context"))) << "context";

  EXPECT_TRUE(SameValues(Table(a.context_quant, a.context, G().Trace(p + "context")),
                         G().Trace(p + "context_quant")))
      << "context_quant";
  const std::vector<int32_t> o = Linear(a.o, a.context_quant.out, G().Trace(p + "context_quant"), t);
  EXPECT_TRUE(SameValues(o, G().Trace(p + "o"))) << "o";

  const std::vector<int32_t> x = G().Trace("patch");
  const std::vector<int32_t> golden_o = G().Trace(p + "o");
  std::vector<int32_t> out(x.size());
  ResidualAdd(a.residual, x.data(), golden_o.data(), x.size(), out.data());
  EXPECT_TRUE(SameValues(out, G().Trace(p + "residual"))) << "residual";
}

TEST_F(HgpipeGoldenTest, MlpBlock0StageByStage) {
  const MlpBlock& m = G().w().mlp[0];
  const std::string p = "blocks.0.mlp.";
  const size_t t = T();
  const std::vector<int32_t> x = G().Trace("blocks.0.attn.residual");
  EXPECT_TRUE(SameValues(Norm(m.norm, G().w().MlpInput(0), x, t), G().Trace(p + "norm")))
      << "norm";
  EXPECT_TRUE(SameValues(Linear(m.fc1, m.norm.out, G().Trace(p + "norm"), t),
                         G().Trace(p + "fc1")))
      << "fc1";
  EXPECT_TRUE(SameValues(Table(m.gelu, m.fc1.acc, G().Trace(p + "fc1")), G().Trace(p + "gelu")))
      << "gelu";
  EXPECT_TRUE(SameValues(Linear(m.fc2, m.gelu.out, G().Trace(p + "gelu"), t),
                         G().Trace(p + "fc2")))
      << "fc2";
  const std::vector<int32_t> fc2 = G().Trace(p + "fc2");
  std::vector<int32_t> out(x.size());
  ResidualAdd(m.residual, x.data(), fc2.data(), x.size(), out.data());
  EXPECT_TRUE(SameValues(out, G().Trace(p + "residual"))) << "residual";
}

TEST_F(HgpipeGoldenTest, EveryBlockFromItsGoldenInput) {
  const uint32_t depth = G().spec().depth;
  ASSERT_EQ(depth, 12u);
  std::vector<int32_t> out(T() * C());
  for (uint32_t i = 0; i < depth; ++i) {
    const std::string attn_in = i == 0 ? "patch" : absl::StrCat("blocks.", i - 1, ".mlp.residual");
    const std::vector<int32_t> x = G().Trace(attn_in);
    G().kernel->Attention(i, x.data(), 1, out.data());
    EXPECT_TRUE(SameValues(out, G().Trace(absl::StrCat("blocks.", i, ".attn.residual"))))
        << "attention block " << i;
    const std::vector<int32_t> y = G().Trace(absl::StrCat("blocks.", i, ".attn.residual"));
    G().kernel->Mlp(i, y.data(), 1, out.data());
    EXPECT_TRUE(SameValues(out, G().Trace(absl::StrCat("blocks.", i, ".mlp.residual"))))
        << "MLP block " << i;
  }
}

TEST_F(HgpipeGoldenTest, Head) {
  const HeadStage& h = G().w().head;
  const std::vector<int32_t> x = G().Trace("blocks.11.mlp.residual");
  const std::vector<int32_t> cls(x.begin(), x.begin() + C());
  EXPECT_TRUE(SameValues(Norm(h.norm, G().w().HeadInput(), cls, 1), G().Trace("head.norm")));
  std::vector<int32_t> logits(G().spec().classes);
  G().kernel->Head(x.data(), 1, logits.data());
  EXPECT_TRUE(SameValues(logits, G().Trace("head")));
}

// The whole network as a board runs it: device-order patches in, device
// words out (the 19-bit logits the authors' notebook checks), for one image
// and for a run of several in chunks of two.
TEST_F(HgpipeGoldenTest, NetworkDeviceWordsBitForBit) {
  const std::vector<int32_t> input = G().Values(G().golden, "input");
  const std::vector<int32_t> words = G().Values(G().golden, "output");
  ASSERT_EQ(input.size(), G().kernel->manifest().geometry.input_bytes());
  ASSERT_EQ(words.size(), 1000u);
  const std::vector<int8_t> device(input.begin(), input.end());
  std::vector<uint32_t> out(1000);
  G().kernel->Compute(device.data(), 1, out.data());
  EXPECT_TRUE(SameValues(std::vector<int32_t>(out.begin(), out.end()), words));
  // The logits the authors list: argmax is class 0 (tench).
  std::vector<int32_t> logits(1000);
  for (size_t c = 0; c < 1000; ++c) logits[c] = DecodeLogitWord(out[c]);
  EXPECT_TRUE(SameValues(logits, G().Trace("head")));
  EXPECT_EQ(std::max_element(logits.begin(), logits.end()) - logits.begin(), 0);

  VitKernel::Options small;
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
    EXPECT_TRUE(SameValues(std::vector<int32_t>(many.begin() + i * 1000, many.begin() + (i + 1) * 1000),
                           words))
        << "image " << i << " of a chunked run";
  }
}

TEST_F(HgpipeGoldenTest, ConcurrentComputeGivesTheGoldenWords) {
  const std::vector<int32_t> input = G().Values(G().golden, "input");
  const std::vector<int32_t> words = G().Values(G().golden, "output");
  const std::vector<int8_t> device(input.begin(), input.end());
  std::vector<std::vector<uint32_t>> outs(2, std::vector<uint32_t>(1000));
  std::vector<std::thread> threads;
  for (auto& out : outs) {
    threads.emplace_back([&] { G().kernel->Compute(device.data(), 1, out.data()); });
  }
  for (auto& th : threads) th.join();
  for (const auto& out : outs) {
    EXPECT_TRUE(SameValues(std::vector<int32_t>(out.begin(), out.end()), words));
  }
}

TEST_F(HgpipeGoldenTest, ManifestCarriesGeometryTimingScalesAndLabels) {
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

}  // namespace
}  // namespace hgpipe::accel::vit
