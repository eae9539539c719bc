#include "accel/kernels/kernel_registry.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "accel/canary.h"
#include "accel/vit/vit_kernel.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/accel_vit/test_paths.h"

namespace hgpipe::accel {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(KernelRegistryTest, BuiltinNamesEveryEmulatedKernel) {
  EXPECT_THAT(KernelRegistry::Builtin().Names(), ElementsAre("deit_tiny", "verify", "vit"));
}

TEST(KernelRegistryTest, VerifyNeedsNoWeightsAndIsTheSharedKernel) {
  absl::StatusOr<LoadedKernel> k = KernelRegistry::Builtin().Load("verify", "");
  ASSERT_TRUE(k.ok()) << k.status();
  EXPECT_EQ(k->kernel, VerifyKernel());
  EXPECT_EQ(k->kernel->manifest().name, "verify");
  EXPECT_TRUE(k->labels.empty());
}

TEST(KernelRegistryTest, UnknownBitstreamIsNotFoundNamingTheKnownOnes) {
  absl::StatusOr<LoadedKernel> k = KernelRegistry::Builtin().Load("nope", "");
  EXPECT_EQ(k.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(k.status().message(),
              HasSubstr("no emulated kernel for bitstream 'nope' (known: deit_tiny, "
                        "verify, vit)"));
  // A hostile name does not make the message grow with it.
  const std::string long_name(10000, 'x');
  EXPECT_LT(KernelRegistry::Builtin().Load(long_name, "").status().message().size(), 200u);
}

TEST(KernelRegistryTest, VitNeedsWeights) {
  for (const char* name : {"vit", "deit_tiny"}) {
    absl::StatusOr<LoadedKernel> k = KernelRegistry::Builtin().Load(name, "");
    EXPECT_EQ(k.status().code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_THAT(k.status().message(), HasSubstr("needs a weight file")) << name;
  }
  EXPECT_EQ(KernelRegistry::Builtin().Load("vit", "/nonexistent/m.hgvit").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(KernelRegistryTest, VitCarriesTheWeightFilesScalesAndLabels) {
  absl::StatusOr<LoadedKernel> k = KernelRegistry::Builtin().Load("vit", vit::FmnistWeightsPath());
  ASSERT_TRUE(k.ok()) << k.status();
  absl::StatusOr<std::shared_ptr<const vit::VitKernel>> direct =
      vit::LoadVitKernel(vit::FmnistWeightsPath());
  ASSERT_TRUE(direct.ok()) << direct.status();
  EXPECT_EQ(k->kernel->manifest().geometry.input_bytes(),
            (*direct)->manifest().geometry.input_bytes());
  EXPECT_EQ(k->kernel->manifest().geometry.classes, (*direct)->manifest().geometry.classes);
  EXPECT_EQ(k->logit_scale, (*direct)->logit_scale());
  EXPECT_EQ(k->input_scale, (*direct)->input_scale());
  EXPECT_EQ(k->labels, (*direct)->labels());
  EXPECT_EQ(k->labels.size(), 10u);
}

TEST(KernelRegistryTest, OnlyVerifyHasABuiltinCanary) {
  const DeviceGeometry g = VerifyKernel()->manifest().geometry;
  std::optional<Canary> c = KernelRegistry::Builtin().BuiltinCanary("verify", g);
  ASSERT_TRUE(c.has_value());
  const Canary want = MakeVerifyCanary(g);
  EXPECT_EQ(c->input, want.input);
  EXPECT_EQ(c->output, want.output);
  EXPECT_FALSE(KernelRegistry::Builtin().BuiltinCanary("vit", g).has_value());
  EXPECT_FALSE(KernelRegistry::Builtin().BuiltinCanary("nope", g).has_value());
}

TEST(KernelRegistryTest, RegisterRefusesBadEntriesAndPassesWeightsThrough) {
  KernelRegistry r;
  std::string seen;
  KernelEntry e;
  e.load = [&seen](const std::string& weights) -> absl::StatusOr<LoadedKernel> {
    seen = weights;
    LoadedKernel k;
    k.kernel = VerifyKernel();
    return k;
  };
  EXPECT_EQ(r.Register("", e).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.Register("noloader", KernelEntry{}).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(r.Register("mine", e).ok());
  EXPECT_EQ(r.Register("mine", e).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.Names(), ElementsAre("mine"));
  ASSERT_TRUE(r.Load("mine", "/w/file").ok());
  EXPECT_EQ(seen, "/w/file");
  EXPECT_FALSE(r.BuiltinCanary("mine", VerifyKernel()->manifest().geometry).has_value());
}

}  // namespace
}  // namespace hgpipe::accel
