// Exact products of 8-bit operands in 16-bit pairs: each multiply-add
// (x86 vpmaddwd) takes two int16 products and adds them into an int32, so
// no sum saturates, whatever the weights. Without VNNI, oneDNN's u8 x s8
// kernels saturate at 16 bits and need weights split in two (matmul.h);
// this does the patch embedding's 768-term products in one pass, about
// twice as fast on AMD Zen 2.
//
// y[m][n] = sum_k x[m][k] * w[n][k], int8 operands, int32 sums (exact for
// k < 2^16).
//
// Highway's ReorderWidenMulAccumulate is vpmaddwd on x86 but may pair other
// lanes elsewhere, so the kernel is x86-only: PairGemmSupported() is false
// on other architectures, where oneDNN computes these products (matmul.h).
//
// Thread safety: PairWeights is immutable once packed; PairGemm is pure.
#ifndef HGPIPE_ACCEL_VIT_PAIR_GEMM_H_
#define HGPIPE_ACCEL_VIT_PAIR_GEMM_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace hgpipe::accel::vit {

// Whether the vector kernel runs here (an x86 target with 16-byte vectors).
bool PairGemmSupported();

class PairWeights {
 public:
  // w[j][i], rows `ldw` apart, j < n, i < k.
  void Pack(const int8_t* w, size_t n, size_t k, size_t ldw);
  size_t n() const { return n_; }
  size_t k() const { return k_; }
  const int16_t* data() const { return data_.data() + offset_; }

 private:
  size_t n_ = 0, k_ = 0;
  size_t offset_ = 0;  // to 64-byte alignment inside data_
  std::vector<int16_t> data_;
};

// y[r][j] (rows `ldy` int32 apart) for r < rows, j < w.n(), from rows of
// x (`ldx` apart): bytes read as int8, or with `x_unsigned` as uint8.
// Requires PairGemmSupported().
void PairGemm(const uint8_t* x, bool x_unsigned, size_t ldx, size_t rows, const PairWeights& w,
              int32_t* y, size_t ldy);

}  // namespace hgpipe::accel::vit

#endif  // HGPIPE_ACCEL_VIT_PAIR_GEMM_H_
