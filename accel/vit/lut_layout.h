// The memory layout of the lookup-table products (lut_gemm.h), shared by
// the tables, the kernel and the packers. Internal to accel/vit.
//
// Layout. A "step" is 8 values of k: two groups of 4, one per 16-byte half
// of a 32-byte unit (shuffles look up within 16-byte blocks, so the two
// halves can hold different groups' tables).
//   Tables, per row: [step][plane p][32]: half h holds group 2 step + h's
//     table scaled for bit plane p: T, 2 T + kBias, 4 T (plane 2's weight
//     is -4: its lookups are subtracted).
//   Weights: vectors of 16 outputs, packed in tiles of up to kTile vectors:
//     [tile][step][vector][plane][32]: half h, byte b holds the nibble of
//     plane p of output 16 v + Output(b) in group 2 step + h.
// One step of one vector is 3 lookups and 2 byte adds: for each of its 16
// outputs and 2 groups, sum a w + kBias, in [0, 112]; two steps' sums still
// fit a byte. Bytes are widened by 16-bit lanes: lane i holds bytes 2i
// (low) and 2i + 1 (high); `all` sums whole lanes (low + 256 high), `high`
// the high bytes, and low = all - 256 high, modulo 2^16. So the low byte of
// lane i is output i, the high byte output 8 + i.
#ifndef HGPIPE_ACCEL_VIT_LUT_LAYOUT_H_
#define HGPIPE_ACCEL_VIT_LUT_LAYOUT_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace hgpipe::accel::vit::lut {

constexpr size_t kStep = 8;         // k values per step
constexpr size_t kUnit = 32;        // bytes per (step, plane) unit
constexpr size_t kStepBytes = 96;   // 3 planes
constexpr size_t kVector = 16;      // outputs per packed vector
constexpr size_t kTile = 4;         // vectors per tile: 8 sums, 3 tables in registers
constexpr size_t kChunkSteps = 32;  // steps whose weights (12 KB) stay in L1
constexpr size_t kBuildSteps = 32;  // steps whose tables LutProduct builds at once
constexpr int kBias = 48;           // makes a group's sum nonnegative: >= -48
constexpr size_t kRowBlock = 32;    // rows whose tables stay in L2 per tile

inline size_t Steps(size_t k) { return (k + kStep - 1) / kStep; }

// Which output of a packed vector byte b of a 16-byte half stands for.
inline size_t Output(size_t b) { return b % 2 == 0 ? b / 2 : 8 + b / 2; }

// Where byte b of a packed vector's 16-byte half sits for output o < 16.
inline size_t Position(size_t o) { return o < 8 ? 2 * o : 2 * (o - 8) + 1; }

// The byte offset of the unit of step s of packed vector v (of `vectors`).
inline size_t UnitOffset(size_t v, size_t s, size_t steps, size_t vectors) {
  const size_t tile = v / kTile, c = v % kTile;
  const size_t width = std::min(kTile, vectors - tile * kTile);
  return (tile * kTile * steps + s * width + c) * kStepBytes;
}

}  // namespace hgpipe::accel::vit::lut

#endif  // HGPIPE_ACCEL_VIT_LUT_LAYOUT_H_
