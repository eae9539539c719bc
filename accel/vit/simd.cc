#include "accel/vit/simd.h"

#include "hwy/highway.h"
#include "hwy/targets.h"

namespace hgpipe::accel::vit {

const char* BestSimdTarget() {
  // The best target both compiled and supported (the lowest bit), as
  // dynamic dispatch picks.
  const int64_t targets = hwy::SupportedTargets() & HWY_TARGETS;
  return hwy::TargetName(targets & -targets);
}

}  // namespace hgpipe::accel::vit
