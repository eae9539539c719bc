// Running the vector kernels under each instruction set this machine has:
// Highway's dispatch is pointed at one target at a time, so a test checks
// the SSSE3, SSE4 and AVX2 code (and AVX-512 where present) on one CPU,
// plus Simd::kBaseline (plain C++).
#ifndef HGPIPE_TESTS_ACCEL_VIT_SIMD_TARGETS_H_
#define HGPIPE_TESTS_ACCEL_VIT_SIMD_TARGETS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "accel/vit/simd.h"

namespace hgpipe::accel::vit {

// One way to run a kernel: a Highway target under Simd::kBest, or kBaseline.
struct SimdCase {
  std::string name;    // "AVX2", "SSE4", ..., "baseline"
  int64_t target = 0;  // 0 for kBaseline
  Simd simd = Simd::kBest;
};

// Every compiled target this CPU supports, then the baseline.
std::vector<SimdCase> SimdCases();

// Points dynamic dispatch at `c.target` for its lifetime (no-op for the
// baseline); tests using it must not run kernels on other threads.
class ScopedSimdCase {
 public:
  explicit ScopedSimdCase(const SimdCase& c);
  ~ScopedSimdCase();
  ScopedSimdCase(const ScopedSimdCase&) = delete;
  ScopedSimdCase& operator=(const ScopedSimdCase&) = delete;
};

}  // namespace hgpipe::accel::vit

#endif  // HGPIPE_TESTS_ACCEL_VIT_SIMD_TARGETS_H_
