#include "tests/accel_vit/simd_targets.h"

#include "hwy/highway.h"
#include "hwy/targets.h"

namespace hgpipe::accel::vit {

std::vector<SimdCase> SimdCases() {
  std::vector<SimdCase> cases;
  for (int64_t t : hwy::SupportedAndGeneratedTargets()) {
    cases.push_back({hwy::TargetName(t), t, Simd::kBest});
  }
  cases.push_back({"baseline", 0, Simd::kBaseline});
  return cases;
}

ScopedSimdCase::ScopedSimdCase(const SimdCase& c) {
  if (c.target != 0) hwy::SetSupportedTargetsForTest(c.target);
}

ScopedSimdCase::~ScopedSimdCase() { hwy::SetSupportedTargetsForTest(0); }

}  // namespace hgpipe::accel::vit
