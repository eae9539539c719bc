// fmnist_vit's bitstream variants (docs/datapath.md, "Variants"): block
// skipping and ViTALiTy Taylor attention, bit for bit against the golden
// vectors tools/vit/hgpipe.py computed for each (models/fmnist_vit/), on
// every path the kernel offers; and the block kinds' validation at load.
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "accel/device_layout.h"
#include "accel/vit/stages.h"
#include "accel/vit/vit_kernel.h"
#include "accel/vit/weight_file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/accel_vit/test_paths.h"

namespace hgpipe::accel::vit {
namespace {

using Blocks = VitKernel::Options::Blocks;
using ::testing::HasSubstr;

std::string VariantWeights(const std::string& v) {
  return SourceDir() + "/models/fmnist_vit/fmnist_vit-" + v + ".hgvit";
}
std::string VariantGolden(const std::string& v) {
  return SourceDir() + "/models/fmnist_vit/golden-" + v + ".hgvit";
}

struct Golden {
  uint32_t images = 0;
  std::vector<int8_t> input;     // device order
  std::vector<uint32_t> output;  // device words
};

Golden LoadGolden(const std::string& path) {
  Golden g;
  absl::StatusOr<Container> c = ReadContainer(path);
  EXPECT_TRUE(c.ok()) << c.status();
  if (!c.ok()) return g;
  const Tensor& in = c->tensors.at("input");
  g.images = in.dims.at(0);
  g.input.assign(in.bytes.begin(), in.bytes.end());
  for (int64_t v : c->tensors.at("output").ToInt64()) g.output.push_back(static_cast<uint32_t>(v));
  return g;
}

Container LoadContainer(const std::string& path) {
  absl::StatusOr<Container> c = ReadContainer(path);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *std::move(c) : Container();
}

// Mismatching words, the first few reported.
int Mismatches(const std::vector<uint32_t>& got, const std::vector<uint32_t>& want,
               uint32_t classes) {
  int bad = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (got.at(i) != want[i] && ++bad <= 3) {
      ADD_FAILURE() << "image " << i / classes << " class " << i % classes << ": got "
                    << DecodeLogitWord(got[i]) << ", golden " << DecodeLogitWord(want[i]);
    }
  }
  return bad;
}

struct Case {
  const char* variant;
  const char* path;
  Blocks blocks;
  Simd simd;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.variant << "/" << c.path; }

class VariantGoldenTest : public ::testing::TestWithParam<Case> {};

TEST_P(VariantGoldenTest, MatchesGoldenVectorsBitForBit) {
  const Case& c = GetParam();
  VitKernel::Options o;
  o.blocks = c.blocks;
  o.simd = c.simd;
  absl::StatusOr<std::shared_ptr<const VitKernel>> k = LoadVitKernel(VariantWeights(c.variant), o);
  ASSERT_TRUE(k.ok()) << k.status();
  const Golden g = LoadGolden(VariantGolden(c.variant));
  const DeviceGeometry& geo = (*k)->manifest().geometry;
  ASSERT_GT(g.images, 0u);
  ASSERT_EQ(g.input.size(), size_t{g.images} * geo.input_bytes());
  std::vector<uint32_t> out(size_t{g.images} * geo.classes, 0xDEADBEEF);
  (*k)->Compute(g.input.data(), g.images, out.data());
  EXPECT_EQ(Mismatches(out, g.output, geo.classes), 0);
}

std::vector<Case> Cases() {
  std::vector<Case> out;
  for (const char* v : {"skip1", "skip2", "skip3", "taylor"}) {
    for (const auto& [name, blocks, simd] :
         {std::tuple{"LutBest", Blocks::kLut, Simd::kBest},
          {"LutBaseline", Blocks::kLut, Simd::kBaseline},
          {"StagesBest", Blocks::kStages, Simd::kBest},
          {"StagesBaseline", Blocks::kStages, Simd::kBaseline}}) {
      out.push_back({v, name, blocks, simd});
    }
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Variants, VariantGoldenTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<Case>& i) {
                           return std::string(i.param.variant) + "_" + i.param.path;
                         });

// The stage groups one at a time, in small chunks (the block-by-block API
// the authors' tests use): a skipped branch passes the stream through and
// the result is the golden words again.
TEST(VariantStagesTest, BlockByBlockGivesTheGoldenWords) {
  for (const char* v : {"skip1", "skip2", "skip3", "taylor"}) {
    SCOPED_TRACE(v);
    absl::StatusOr<VitWeights> w =
        VitWeightsFromContainer(LoadContainer(VariantWeights(v)), VariantWeights(v));
    ASSERT_TRUE(w.ok()) << w.status();
    VitKernel::Options o;
    o.chunk_images = 3;
    absl::StatusOr<std::shared_ptr<const VitKernel>> k = VitKernel::Create(*std::move(w), o);
    ASSERT_TRUE(k.ok()) << k.status();
    const VitKernel& kernel = **k;
    const VitSpec& s = kernel.spec();
    const Golden g = LoadGolden(VariantGolden(v));
    const uint32_t n = std::min(g.images, 8u);
    const DeviceGeometry& geo = kernel.manifest().geometry;
    std::vector<int8_t> flat(size_t{n} * geo.input_bytes());
    for (uint32_t i = 0; i < n; ++i) {
      UnpackImage(geo, g.input.data() + i * geo.input_bytes(), flat.data() + i * geo.input_bytes());
    }
    std::vector<int32_t> x(size_t{n} * s.tokens * s.width), y(x.size());
    kernel.PatchEmbed(flat.data(), n, x.data());
    int skipped = 0;
    for (uint32_t b = 0; b < s.depth; ++b) {
      kernel.Attention(b, x.data(), n, y.data());
      skipped += kernel.weights().attn[b].kind == AttentionKind::kNone;
      if (kernel.weights().attn[b].kind == AttentionKind::kNone) {
        EXPECT_EQ(x, y) << "block " << b;
      }
      kernel.Mlp(b, y.data(), n, x.data());
      skipped += kernel.weights().mlp[b].kind == MlpKind::kNone;
      if (kernel.weights().mlp[b].kind == MlpKind::kNone) {
        EXPECT_EQ(x, y) << "block " << b;
      }
    }
    // skipN skips N branches (skip3: an attention too), taylor none.
    const std::string name = v;
    EXPECT_EQ(skipped, name.starts_with("skip") ? name[4] - '0' : 0);
    std::vector<int32_t> logits(size_t{n} * s.classes);
    kernel.Head(x.data(), n, logits.data());
    std::vector<uint32_t> words(logits.size());
    LogitWords(logits.data(), logits.size(), words.data());
    EXPECT_EQ(
        Mismatches(words, std::vector<uint32_t>(g.output.begin(), g.output.begin() + words.size()),
                   s.classes),
        0);
  }
}

TEST(VariantWeightsTest, KindsAreReadPerBlock) {
  absl::StatusOr<VitWeights> t =
      VitWeightsFromContainer(LoadContainer(VariantWeights("taylor")), "taylor");
  ASSERT_TRUE(t.ok()) << t.status();
  for (const AttentionBlock& a : t->attn) EXPECT_EQ(a.kind, AttentionKind::kTaylor);
  for (const MlpBlock& m : t->mlp) EXPECT_EQ(m.kind, MlpKind::kGelu);
  EXPECT_GE(t->attn[0].taylor.g_shift, 1);
  // The full model's file has no kind keys: softmax and GELU everywhere.
  absl::StatusOr<VitWeights> f = VitWeightsFromContainer(LoadContainer(FmnistWeightsPath()), "f");
  ASSERT_TRUE(f.ok()) << f.status();
  for (const AttentionBlock& a : f->attn) EXPECT_EQ(a.kind, AttentionKind::kSoftmax);
  for (const MlpBlock& m : f->mlp) EXPECT_EQ(m.kind, MlpKind::kGelu);
}

// Explicit softmax / gelu keys change nothing: the full model's golden words.
TEST(VariantWeightsTest, ExplicitDefaultKindsGiveTheFullModel) {
  Container c = LoadContainer(FmnistWeightsPath());
  c.manifest.emplace_back("blocks.0.attn.kind", "softmax");
  c.manifest.emplace_back("blocks.3.mlp.kind", "gelu");
  absl::StatusOr<VitWeights> w = VitWeightsFromContainer(c, "full");
  ASSERT_TRUE(w.ok()) << w.status();
  absl::StatusOr<std::shared_ptr<const VitKernel>> k = VitKernel::Create(*std::move(w));
  ASSERT_TRUE(k.ok()) << k.status();
  const Golden g = LoadGolden(FmnistGoldenPath());
  const uint32_t n = std::min(g.images, 8u), classes = (*k)->manifest().geometry.classes;
  std::vector<uint32_t> out(size_t{n} * classes);
  (*k)->Compute(g.input.data(), n, out.data());
  EXPECT_EQ(Mismatches(out, std::vector<uint32_t>(g.output.begin(), g.output.begin() + out.size()),
                       classes),
            0);
}

// Sets manifest `key` to `value` (adding it if absent).
void Set(Container& c, const std::string& key, const std::string& value) {
  for (auto& [k, v] : c.manifest) {
    if (k == key) {
      v = value;
      return;
    }
  }
  c.manifest.emplace_back(key, value);
}

// Removes the manifest lines and tensors of `prefix` (a branch).
void DropBranch(Container& c, const std::string& prefix) {
  std::erase_if(c.manifest, [&](const auto& kv) {
    return kv.first.rfind(prefix + ".", 0) == 0 && kv.first != prefix + ".kind";
  });
  std::erase_if(c.tensors, [&](const auto& kv) { return kv.first.rfind(prefix + ".", 0) == 0; });
}

std::string Error(const Container& c) {
  absl::StatusOr<VitWeights> w = VitWeightsFromContainer(c, "variant.hgvit");
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument) << w.status();
  return std::string(w.status().message());
}

TEST(VariantWeightsTest, BadKindsAreRefusedNamingKeyAndBlock) {
  const Container full = LoadContainer(FmnistWeightsPath());
  const Container taylor = LoadContainer(VariantWeights("taylor"));
  ASSERT_FALSE(full.manifest.empty());
  ASSERT_FALSE(taylor.manifest.empty());

  Container c = full;
  Set(c, "blocks.2.attn.kind", "linear");
  EXPECT_THAT(Error(c), HasSubstr("'blocks.2.attn.kind': block 2's attn kind 'linear' is not "
                                  "softmax, taylor, none"));
  c = full;
  Set(c, "blocks.1.mlp.kind", "relu");
  EXPECT_THAT(Error(c), HasSubstr("'blocks.1.mlp.kind': block 1's mlp kind 'relu'"));
  c = full;
  Set(c, "blocks.1.mlp.kind", std::string(5000, 'x'));  // bounded message
  EXPECT_LT(Error(c).size(), 300u);

  // A skipped branch that still has its stage lines.
  c = full;
  Set(c, "blocks.3.mlp.kind", "none");
  EXPECT_THAT(Error(c), HasSubstr("'blocks.3.mlp.norm': block 3's mlp is skipped (kind none)"));
  // Skipped properly: loads, and the head reads the stream after block 3's
  // attention.
  DropBranch(c, "blocks.3.mlp");
  absl::StatusOr<VitWeights> w = VitWeightsFromContainer(c, "skip");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->HeadInput(), w->attn[3].residual.out);
  EXPECT_EQ(w->MlpInput(2), w->attn[2].residual.out);
  DropBranch(c, "blocks.3.attn");
  Set(c, "blocks.3.attn.kind", "none");
  w = VitWeightsFromContainer(c, "skip");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->HeadInput(), w->mlp[2].residual.out);
  EXPECT_EQ(w->AttentionInput(3), w->mlp[2].residual.out);

  // Softmax attention declared on a Taylor block: its softmax line is missing.
  c = taylor;
  Set(c, "blocks.0.attn.kind", "softmax");
  EXPECT_THAT(Error(c), HasSubstr("manifest 'blocks.0.attn.scores': missing"));
  // Taylor declared on a softmax block: no Taylor line.
  c = full;
  Set(c, "blocks.1.attn.kind", "taylor");
  EXPECT_THAT(Error(c), HasSubstr("manifest 'blocks.1.attn.taylor': missing"));
  // A Taylor line's parameters are checked like every stage line's.
  for (const auto& [from, to, want] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"g_shift=", "g_shift=0 x=", "'g_shift': 0 is outside [1, 62]"},
           {"gout=s", "gout=s40 y=s", "'gout': s40 is wider than int32"},
           {"ksum=s", "ksum=q", "'ksum'"},
           {"mean_shift=", "extra=1 mean_shift=", "'extra': unknown parameter"},
       }) {
    c = taylor;
    for (auto& [k, v] : c.manifest) {
      if (k == "blocks.2.attn.taylor") v.replace(v.find(from), from.size(), to);
    }
    const std::string e = Error(c);
    EXPECT_THAT(e, HasSubstr("manifest 'blocks.2.attn.taylor' parameter")) << to;
    EXPECT_THAT(e, HasSubstr(want)) << to;
  }
}

// The Taylor stage on a hand-sized case, including the wraps and the
// clamp: tokens 3, one head of width 2.
TEST(TaylorAttentionTest, WrapsAndClampsAsSpecified) {
  TaylorStage p;
  p.ksum = p.vsum = IntType{6, true};
  p.kv = IntType{5, true};  // 3 * 7 * 7 = 147 wraps
  p.g = IntType{12, true};
  p.gshift = IntType{8, true};
  p.gout = IntType{4, true};  // clamps to [-8, 7]
  p.mterm = IntType{5, true};
  p.g_shift = 2;
  p.mean_mult = 3;
  p.mean_shift = 1;
  const IntType s8{8, true}, u8{8, false}, ctx{10, true};
  const int8_t q[] = {1, -2, static_cast<int8_t>(200), 3, 0, 5};  // u8: 1, 254, 200, 3, 0, 5
  const int8_t k[] = {7, 7, 7, -3, 7, 1};
  const int8_t v[] = {7, -1, 7, 2, 7, 0};
  int32_t out[6];
  TaylorAttention(p, u8, s8, s8, ctx, q, k, v, 3, 2, 1, out);
  // Recomputed here from the definitions (vit_weights.h, TaylorStage).
  int64_t want[6];
  const int64_t ksum[2] = {21, 5}, vsum[2] = {21, 1};
  int64_t gq[2][2], m[2];
  for (int a = 0; a < 2; ++a) {
    for (int c = 0; c < 2; ++c) {
      int64_t kv = 0;
      for (int t = 0; t < 3; ++t) kv += int64_t{k[t * 2 + a]} * v[t * 2 + c];
      const int64_t g = p.g.Wrap(3 * p.kv.Wrap(kv) - p.ksum.Wrap(ksum[a]) * p.vsum.Wrap(vsum[c]));
      gq[a][c] = p.gout.Clamp(p.gshift.Wrap((g + 2) >> 2));
    }
  }
  for (int c = 0; c < 2; ++c) m[c] = p.mterm.Wrap((p.vsum.Wrap(vsum[c]) * 3 + 1) >> 1);
  const int64_t qv[6] = {1, 254, 200, 3, 0, 5};
  for (int t = 0; t < 3; ++t) {
    for (int c = 0; c < 2; ++c) {
      want[t * 2 + c] = ctx.Wrap(m[c] + qv[t * 2] * gq[0][c] + qv[t * 2 + 1] * gq[1][c]);
    }
  }
  for (int i = 0; i < 6; ++i) EXPECT_EQ(out[i], want[i]) << i;
  EXPECT_EQ(p.kv.Wrap(147), -13);  // the case does wrap
}

}  // namespace
}  // namespace hgpipe::accel::vit
