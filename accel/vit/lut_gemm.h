// Exact matrix products of 3-bit operands by table lookups (the T-MAC
// method, Wei et al., EuroSys 2025), the datapath's fast path for HG-PIPE's
// W3A3 blocks.
//
// Why lookups: a CPU's byte multiplier (x86 vpmaddubsw) does 32 products per
// cycle on one port, while byte shuffles (vpshufb) run on two. With
// operands of three bits, the sum of 4 activations times 4 weights can be
// read from a 16-entry table instead of multiplied: for each group of 4
// activations a (a row), the table T[i] = sum of a_j over the bits j of i
// holds every partial sum a 1-bit weight pattern can select. A 3-bit weight
// w = b0 + 2 b1 - 4 b2 (two's complement) is three such patterns, so
// sum_j a_j w_j = T[i0] + 2 T[i1] - 4 T[i2], with i_p the nibble of bit p of
// the 4 weights. One shuffle looks up 32 outputs' nibbles at once; the
// tables come from the activations (built once per row, reused by every
// output), the nibbles from the weights (packed once).
//
// Operands: activations and weights in [kLutMin, kLutMax] (int8). Callers
// shift other 3-bit ranges (an unsigned u3 value x is x - 4) and add the
// shift back (sum_k w[j][k] times it, LutWeights::sums). Results are exact
// modulo 2^16: enough for any accumulator of at most 16 bits, which HLS
// wraps to anyway.
//
// Thread safety: LutWeights is immutable after Pack; the functions are pure.
#ifndef HGPIPE_ACCEL_VIT_LUT_GEMM_H_
#define HGPIPE_ACCEL_VIT_LUT_GEMM_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "accel/vit/simd.h"

namespace hgpipe::accel::vit {

inline constexpr int kLutMin = -4, kLutMax = 3;

// Bytes of one activation row's tables for rows of k values.
size_t LutTableBytes(size_t k);

// Builds the tables of `rows` rows of k activations (row r at a + r * lda,
// values a - offset in [kLutMin, kLutMax]) into tables + r * LutTableBytes(k).
// Each row must be readable for LutReadableBytes(k) bytes; those past k are
// read and ignored (their weights are zero).
size_t LutReadableBytes(size_t k);
void BuildLutTables(const int8_t* a, size_t lda, size_t rows, size_t k, int8_t offset,
                    uint8_t* tables, Simd simd = Simd::kBest);

// Weights packed as the kernel's nibble indices: 3 bytes per 4 weights.
class LutWeights {
 public:
  LutWeights() = default;
  // w[j][i] for j < n, i < k, rows `ldw` apart; with `transposed`, w is
  // given as [k][n] (rows `ldw` apart), which packs the attention's v
  // directly. Values must be in [kLutMin, kLutMax].
  // Packing again with the same shape reuses the buffer.
  void Pack(const int8_t* w, size_t n, size_t k, size_t ldw, bool transposed = false,
            Simd simd = Simd::kBest);

  size_t n() const { return n_; }
  size_t k() const { return k_; }
  // sum_i w[j][i] for each j: the correction for shifted activations.
  const std::vector<int32_t>& sums() const { return sums_; }
  const uint8_t* data() const { return data_.data() + offset_; }

 private:
  size_t n_ = 0, k_ = 0;
  std::vector<int32_t> sums_;
  size_t offset_ = 0;  // to 64-byte alignment inside data_
  std::vector<uint8_t> data_;
};

// y[r][j] (rows `ldy` int16 apart) = sum_i a[r][i] * w[j][i] modulo 2^16,
// for r < rows and j < w.n(), from `tables` built by BuildLutTables with
// w.k() (offset 0; otherwise add offset * w.sums()[j]).
void LutGemm(const uint8_t* tables, size_t rows, const LutWeights& w, int16_t* y, size_t ldy,
             Simd simd = Simd::kBest);

// The same from the activations themselves (as BuildLutTables reads them:
// values a - offset, rows readable for LutReadableBytes(w.k())), building
// the tables a chunk of steps at a time so that they stay in cache: what
// the blocks use.
void LutProduct(const int8_t* a, size_t lda, int8_t offset, size_t rows, const LutWeights& w,
                int16_t* y, size_t ldy, Simd simd = Simd::kBest);

}  // namespace hgpipe::accel::vit

#endif  // HGPIPE_ACCEL_VIT_LUT_GEMM_H_
