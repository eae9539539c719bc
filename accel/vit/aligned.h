// Vector storage aligned to a cache line (64 bytes), for the datapath's
// buffers: 32-byte loads from them then never straddle two lines. With
// malloc's 16-byte alignment the kernels' speed depended on what else the
// heap held (one command-line flag more or less moved it by 8%).
#ifndef HGPIPE_ACCEL_VIT_ALIGNED_H_
#define HGPIPE_ACCEL_VIT_ALIGNED_H_

#include <cstddef>
#include <new>
#include <vector>

namespace hgpipe::accel::vit {

inline constexpr std::size_t kCacheLine = 64;

template <typename T>
struct CacheAligned {
  using value_type = T;
  CacheAligned() = default;
  template <typename U>
  CacheAligned(const CacheAligned<U>&) {}  // NOLINT: allocator rebinding
  T* allocate(std::size_t n) {
    return static_cast<T*>(::operator new (n * sizeof(T), std::align_val_t{kCacheLine}));
  }
  void deallocate(T* p, std::size_t) { ::operator delete (p, std::align_val_t{kCacheLine}); }
  template <typename U>
  bool operator==(const CacheAligned<U>&) const {
    return true;
  }
  template <typename U>
  bool operator!=(const CacheAligned<U>&) const {
    return false;
  }
};

template <typename T>
using AlignedVector = std::vector<T, CacheAligned<T>>;

}  // namespace hgpipe::accel::vit

#endif  // HGPIPE_ACCEL_VIT_ALIGNED_H_
