// Small value types shared by the decoder and the preprocessor.
#ifndef HGPIPE_PREPROCESS_IMAGE_H_
#define HGPIPE_PREPROCESS_IMAGE_H_

#include <cstddef>
#include <cstdint>
#include <memory>

namespace hgpipe::preprocess {

// 8-bit pixels, row-major HWC, not owned. `pixel_stride` bytes from one pixel
// to the next (== channels, or 4 for RGBA read as RGB); `row_stride` bytes
// from one row to the next.
struct ImageView {
  const uint8_t* pixels = nullptr;
  int height = 0;
  int width = 0;
  int channels = 0;  // 1 (gray) or 3 (RGB)
  int pixel_stride = 0;
  size_t row_stride = 0;

  const uint8_t* At(int y, int x) const {
    return pixels + static_cast<size_t>(y) * row_stride + static_cast<size_t>(x) * pixel_stride;
  }
};

// A growable byte buffer whose contents are not initialized: scratch space
// reused from call to call (one per thread), so steady-state preprocessing
// allocates nothing. Not thread-safe.
class ScratchBuffer {
 public:
  // At least n bytes, contents unspecified; invalidates earlier pointers when
  // it grows.
  uint8_t* Get(size_t n) {
    if (n > capacity_) {
      data_.reset(new uint8_t[n]);
      capacity_ = n;
    }
    return data_.get();
  }
  // Frees the memory if more than `keep` bytes are held, so one huge image
  // does not pin its buffers for the thread's lifetime.
  void TrimTo(size_t keep) {
    if (capacity_ > keep) {
      data_.reset();
      capacity_ = 0;
    }
  }
  size_t capacity() const { return capacity_; }

 private:
  std::unique_ptr<uint8_t[]> data_;
  size_t capacity_ = 0;
};

}  // namespace hgpipe::preprocess

#endif  // HGPIPE_PREPROCESS_IMAGE_H_
