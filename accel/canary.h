// A canary: an input with its known output, run on a board to prove that the
// board computes what its bitstream should (a board can return wrong
// results without failing: a bad bitstream, a flipped bit). The scheduler
// runs it after every (re)programming and every canary interval, and
// compares the output bit for bit (docs/scheduling.md, "Canaries").
#ifndef HGPIPE_ACCEL_CANARY_H_
#define HGPIPE_ACCEL_CANARY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "accel/bitstream.h"

namespace hgpipe::accel {

struct Canary {
  // Where it came from, for messages ("models/fmnist_vit/golden.hgvit", or
  // "verify digest").
  std::string source;
  uint32_t images = 0;
  // images x geometry.input_bytes(), device order (what goes in a slot).
  std::vector<int8_t> input;
  // images x geometry.output_words(): the device words expected back.
  std::vector<uint32_t> output;
};

// Checks sizes against `g`. InvalidArgument naming `c.source` otherwise.
absl::Status ValidateCanary(const Canary& c, const DeviceGeometry& g);

// The `verify` bitstream's canary: one fixed pseudo-random image and its
// digest (accel/verify_digest.h), computed on the host.
Canary MakeVerifyCanary(const DeviceGeometry& g);

// Compares a board's output words with the canary's. Empty when equal bit
// for bit, else what differed, e.g. "image 0 word 0: got 0x00012, want
// 0x00013 (3 of 1000 words differ)".
std::string CompareCanaryOutput(const Canary& c, const DeviceGeometry& g,
                                absl::Span<const uint32_t> got);

}  // namespace hgpipe::accel

#endif  // HGPIPE_ACCEL_CANARY_H_
