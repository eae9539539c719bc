// Which instruction set the datapath's vector kernels (Google Highway) run
// on. Each kernel file is compiled once per Highway target (SSSE3, SSE4,
// AVX2, AVX-512, ... on x86; NEON, SVE on Arm) plus the portable baseline,
// and dispatches at run time.
#ifndef HGPIPE_ACCEL_VIT_SIMD_H_
#define HGPIPE_ACCEL_VIT_SIMD_H_

namespace hgpipe::accel::vit {

enum class Simd {
  // The best target this CPU supports (Highway's dynamic dispatch).
  kBest,
  // The target the file was compiled for without dispatch: on x86-64's
  // default flags, Highway's EMU128 (plain C++ loops over 16-byte arrays).
  // Results are identical; tests use it to check the portable code on a
  // machine whose best target is something else.
  kBaseline,
};

// The name of the target kBest selects on this CPU ("AVX2", "SSE4", ...),
// for benchmarks and logs.
const char* BestSimdTarget();

}  // namespace hgpipe::accel::vit

#endif  // HGPIPE_ACCEL_VIT_SIMD_H_
