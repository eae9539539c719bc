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
#include "base/mutex.h"
#include "oneapi/dnnl/dnnl.hpp"

namespace hgpipe::accel::vit {

// The process's CPU engine.
const dnnl::engine& CpuEngine();

// y[rows][out] (int32) = x[rows][in] (int8) * W^T, W int8 [out][in] constant.
class Int8Linear {
 public:
  // Copies `weight`. `max_rows` is the row count used most (its primitive is
  // created here and decides the weights' blocked layout).
  static absl::StatusOr<std::unique_ptr<Int8Linear>> Create(
      const int8_t* weight, uint32_t in, uint32_t out, uint32_t max_rows);

  // rows in [1, max_rows]; x and y dense row-major.
  void Run(dnnl::stream& stream, const int8_t* x, uint32_t rows,
           int32_t* y) const;

 private:
  struct Plan {
    dnnl::matmul primitive;
    const dnnl::memory* weights;  // owned by the Int8Linear
    dnnl::memory::desc scratch;
  };
  Int8Linear(uint32_t in, uint32_t out) : in_(in), out_(out) {}
  std::shared_ptr<const Plan> GetPlan(uint32_t rows) const;
  std::shared_ptr<const Plan> MakePlan(uint32_t rows) const;

  // Constant after construction.
  const uint32_t in_, out_;
  dnnl::memory plain_weights_;    // [in][out] view of the [out][in] copy
  dnnl::memory blocked_weights_;  // reordered for the max_rows primitive
  std::vector<int8_t> weight_copy_;

  mutable hgpipe::Mutex mu_;
  mutable absl::flat_hash_map<uint32_t, std::shared_ptr<const Plan>> plans_
      ABSL_GUARDED_BY(mu_);
};

// A batch of products with runtime operands, both given by strides:
// dst[b][m][n] (int32, dense) = src[b][m][k] * wei[b][k][n]. The batch is
// 2-D (images x heads) so strided views of [tokens][3 * width] rows serve.
class BatchedMatmul {
 public:
  struct Shape {
    uint32_t heads = 1;
    uint32_t m = 0, k = 0, n = 0;
    dnnl::memory::data_type src_type = dnnl::memory::data_type::s8;
    // Element strides for dims {image, head, m, k} and {image, head, k, n}
    // and the dst {image, head, m, n}.
    std::array<int64_t, 4> src_strides{};
    std::array<int64_t, 4> wei_strides{};
    std::array<int64_t, 4> dst_strides{};
  };
  explicit BatchedMatmul(const Shape& shape) : shape_(shape) {}
  // Creates the primitive for `images` up front; Internal on failure.
  absl::Status Prepare(uint32_t images) const;
  void Run(dnnl::stream& stream, const void* src, const int8_t* wei,
           uint32_t images, int32_t* dst) const;

 private:
  struct Plan {
    dnnl::matmul primitive;
    dnnl::memory::desc src, wei, dst, scratch;
  };
  absl::StatusOr<std::shared_ptr<const Plan>> MakePlan(uint32_t images) const;
  std::shared_ptr<const Plan> GetPlan(uint32_t images) const;

  const Shape shape_;
  mutable hgpipe::Mutex mu_;
  mutable absl::flat_hash_map<uint32_t, std::shared_ptr<const Plan>> plans_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace hgpipe::accel::vit

#endif  // HGPIPE_ACCEL_VIT_MATMUL_H_
