// The datapath's integer matrix products on oneDNN (Debian libdnnl 2.6):
// int8 inputs, int32 accumulators, exact. Primitives are created once per
// shape and cached; weights of constant layers are reordered once.
//
// Thread safety: Run may be called concurrently from several threads; each
// call needs its own dnnl::stream (one per thread or per call). Scratch
// memory is per thread.
#ifndef HGPIPE_ACCEL_VIT_MATMUL_H_
#define HGPIPE_ACCEL_VIT_MATMUL_H_

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "accel/vit/int_type.h"
#include "accel/vit/narrow_gemm.h"
#include "accel/vit/pair_gemm.h"
#include "base/mutex.h"
#include "oneapi/dnnl/dnnl.hpp"

namespace hgpipe::accel::vit {

// The process's CPU engine.
const dnnl::engine& CpuEngine();

// How a product reads its source: byte lanes holding values of `type`
// (signed types as int8, unsigned ones as uint8). Both backends take
// unsigned sources, u = v - zero_point, and add zero_point * sum_k w[n][k]
// back to every output: the narrow kernel (narrow_gemm.h) with zero_point =
// type.min(), so u is small; oneDNN with -128 or 0, because its s8 x s8
// products (which it shifts to u8 itself, on every call) run several times
// slower than u8 x s8 ones.
struct SourceLanes {
  IntType type;
  int64_t zero_point = 0;
};

// y[rows][out] (int32) = x[rows][in] * W^T, x byte lanes of `src`, W int8
// [out][in] constant; exact on every ISA. The narrow kernel runs it when
// the CPU has AVX2 and every partial sum fits 16 bits; else the pair
// kernel (pair_gemm.h) on x86; oneDNN otherwise.
//
// Without VNNI, oneDNN's int8 kernels add pairs of u8 x s8 products in
// saturating 16-bit lanes, exact only while |w| <= 64; wider weights are
// split, W = 16 Wh + Wl with Wh in [-8, 7] and Wl in [0, 15], and the two
// products combined.
class Int8Linear {
 public:
  // Copies `weight`. `max_rows` is the row count used most (oneDNN's
  // primitive for it is created here and decides the weights' layout).
  // Without `own_kernels`, oneDNN computes it even where the narrow or pair
  // kernels could (tests run both on one machine).
  static absl::StatusOr<std::unique_ptr<Int8Linear>> Create(const int8_t* weight, uint32_t in,
                                                            uint32_t out, uint32_t max_rows,
                                                            const IntType& src,
                                                            bool own_kernels = true);
  ~Int8Linear();

  // rows in [1, max_rows]; x and y dense row-major.
  void Run(dnnl::stream& stream, const int8_t* x, uint32_t rows, int32_t* y) const;

  // Whether the narrow or the pair kernel computes it (else oneDNN).
  bool narrow() const { return narrow_; }
  bool pairs() const { return pairs_; }

 private:
  class Part;
  Int8Linear() = default;

  // Constant after construction.
  uint32_t in_ = 0, out_ = 0;
  SourceLanes src_;
  bool narrow_ = false, pairs_ = false;
  NarrowWeights packed_;                      // the narrow kernel's weights
  PairWeights pair_weights_;                  // the pair kernel's
  std::vector<std::unique_ptr<Part>> parts_;  // oneDNN: high part first
  std::vector<int32_t> correction_;           // [out]: zero_point * sum_k W
};

// A batch of products with runtime operands, both given by strides:
// dst[b][m][n] (int32) = src[b][m][k] * wei[b][k][n]. The batch is 2-D
// (images x heads) so strided views of [tokens][width] rows serve. The
// source is byte lanes of `src`, the weights int8 values of `wei` (at most
// 7 bits: |w| <= 64); exact as Int8Linear.
class BatchedMatmul {
 public:
  struct Shape {
    uint32_t heads = 1;
    uint32_t m = 0, k = 0, n = 0;
    IntType src{8, true};
    IntType wei{8, true};
    // Element strides for dims {image, head, m, k} and {image, head, k, n}
    // and the dst {image, head, m, n}. The narrow kernel needs unit strides
    // along src's k, dst's n and one of wei's k or n.
    std::array<int64_t, 4> src_strides{};
    std::array<int64_t, 4> wei_strides{};
    std::array<int64_t, 4> dst_strides{};
  };
  // InvalidArgument if `wei` is wider than 7 bits. Without `own_kernels`,
  // oneDNN computes it even where the narrow kernel could.
  static absl::StatusOr<std::unique_ptr<BatchedMatmul>> Create(const Shape& shape,
                                                               bool own_kernels = true);
  // Creates oneDNN's primitive for `images` up front; Internal on failure.
  absl::Status Prepare(uint32_t images) const;
  void Run(dnnl::stream& stream, const int8_t* src, const int8_t* wei, uint32_t images,
           int32_t* dst) const;

  bool narrow() const { return narrow_; }

 private:
  struct Plan {
    dnnl::matmul primitive;
    dnnl::memory::desc src, wei, dst, scratch;
  };
  explicit BatchedMatmul(const Shape& shape) : shape_(shape) {}
  absl::StatusOr<std::shared_ptr<const Plan>> MakePlan(uint32_t images) const;
  std::shared_ptr<const Plan> GetPlan(uint32_t images) const;
  void RunNarrow(const int8_t* src, const int8_t* wei, uint32_t images, int32_t* dst) const;

  const Shape shape_;
  SourceLanes src_;
  bool narrow_ = false;
  mutable hgpipe::Mutex mu_;
  mutable absl::flat_hash_map<uint32_t, std::shared_ptr<const Plan>> plans_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hgpipe::accel::vit

#endif  // HGPIPE_ACCEL_VIT_MATMUL_H_
