// Exact integer products for HG-PIPE's narrow operands: the transformer
// blocks multiply 3-bit activations by 3-bit weights, so every partial sum
// of a row fits 16 bits and the products need no 32-bit accumulation. On
// AVX2 one vpmaddubsw (32 u8 x s8 products, added in pairs) and one vpaddw
// do 32 multiply-accumulates; oneDNN's int8 kernels need a third
// instruction to widen to 32 bits. (Google Highway 1.0, Debian's, has no
// u8 x s8 pairwise product, hence intrinsics here.)
//
// y[m][n] = sum_k a[m][k] * w[n][k], a unsigned bytes, w signed bytes,
// exact when k_max * a_max * |w|_max <= 32767 (Fits).
//
// Thread safety: a NarrowWeights is immutable once packed; Run may be
// called concurrently.
#ifndef HGPIPE_ACCEL_VIT_NARROW_GEMM_H_
#define HGPIPE_ACCEL_VIT_NARROW_GEMM_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace hgpipe::accel::vit {

// Weights packed for the kernel: [n / 32 tiles][k / 2][32 outputs][2],
// n and k padded with zeros.
class NarrowWeights {
 public:
  NarrowWeights() = default;
  // w[n][k] with rows `ldw` bytes apart; or, with `transposed`, w given as
  // [k][n] (rows `ldw` apart), which packs the attention's v directly.
  void Pack(const int8_t* w, size_t n, size_t k, size_t ldw, bool transposed = false);

  size_t n() const { return n_; }
  size_t k() const { return k_; }
  const int8_t* data() const { return data_.data() + offset_; }

 private:
  size_t n_ = 0, k_ = 0;
  size_t offset_ = 0;  // to 32-byte alignment inside data_
  std::vector<int8_t> data_;
};

// Whether this CPU runs the kernel (x86-64 with AVX2).
bool NarrowGemmSupported();

// Whether products of `k` terms of a in [0, a_max] and |w| <= w_max stay
// within 16 bits.
bool NarrowGemmFits(size_t k, int a_max, int w_max);

// y[i][j] (rows `ldy` int32 apart) = sum_k a[i][k] (rows `lda` bytes apart)
// * w[j][k], for i < m and j < w.n(). Requires NarrowGemmSupported() and
// NarrowGemmFits for the caller's ranges.
void NarrowGemm(const uint8_t* a, size_t lda, size_t m, const NarrowWeights& w, int32_t* y,
                size_t ldy);

}  // namespace hgpipe::accel::vit

#endif  // HGPIPE_ACCEL_VIT_NARROW_GEMM_H_
