// Synthetic test images for the preprocess tests and benchmarks.
#ifndef HGPIPE_TESTS_PREPROCESS_TEST_IMAGES_H_
#define HGPIPE_TESTS_PREPROCESS_TEST_IMAGES_H_

#include <cmath>
#include <cstdint>
#include <vector>

namespace hgpipe::preprocess::testing {

// A smooth, photo-like RGB image (row-major HWC): low-frequency waves per
// channel, so lossy JPEG round trips stay close to it.
inline std::vector<uint8_t> SmoothRgb(int width, int height) {
  std::vector<uint8_t> pixels(static_cast<size_t>(width) * height * 3);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      const double u = static_cast<double>(x) / width;
      const double v = static_cast<double>(y) / height;
      uint8_t* p = &pixels[(static_cast<size_t>(y) * width + x) * 3];
      p[0] = static_cast<uint8_t>(128 + 100 * std::sin(3.0 * u + 1.0 * v));
      p[1] = static_cast<uint8_t>(128 + 100 * std::cos(2.0 * u - 2.5 * v));
      p[2] = static_cast<uint8_t>(40 + 170 * u * v);
    }
  }
  return pixels;
}

// Gray, smooth.
inline std::vector<uint8_t> SmoothGray(int width, int height) {
  std::vector<uint8_t> pixels(static_cast<size_t>(width) * height);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      pixels[static_cast<size_t>(y) * width + x] =
          static_cast<uint8_t>(128 + 110 * std::sin(4.0 * x / width + 3.0 * y / height));
    }
  }
  return pixels;
}

}  // namespace hgpipe::preprocess::testing

#endif  // HGPIPE_TESTS_PREPROCESS_TEST_IMAGES_H_
