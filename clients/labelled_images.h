// A labelled image set for measuring what a server answers, not only how
// fast: images and their true classes in the IDX format of MNIST and
// Fashion-MNIST (Debian's dataset-fashion-mnist ships
// /usr/share/datasets/fashion-mnist/t10k-{images-idx3,labels-idx1}-ubyte.gz),
// gzip-compressed or not.
//
// IDX: a big-endian u32 magic 0x0000 08 D (unsigned bytes, D dimensions),
// D big-endian u32 sizes, then the bytes in row-major order. Images are
// D = 3 ([count, height, width], one gray channel), labels D = 1.
#ifndef HGPIPE_CLIENTS_LABELLED_IMAGES_H_
#define HGPIPE_CLIENTS_LABELLED_IMAGES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace hgpipe::clients {

struct LabelledImages {
  int64_t height = 0, width = 0;  // one gray channel
  std::vector<uint8_t> pixels;    // count x height x width, row-major
  std::vector<uint8_t> labels;    // count true classes

  size_t count() const { return labels.size(); }
  size_t image_bytes() const { return static_cast<size_t>(height) * width; }
  absl::Span<const uint8_t> image(size_t i) const {
    return absl::MakeConstSpan(pixels).subspan(i * image_bytes(), image_bytes());
  }
};

// Reads an IDX image file and an IDX label file (each plain or gzip).
// InvalidArgument naming the file and what is wrong: not IDX of unsigned
// bytes, the wrong number of dimensions, a zero or oversized dimension
// (images up to 4096 x 4096, at most 1 GiB in all), fewer bytes than the
// header states, or image and label counts that differ; NotFound if a file
// cannot be opened.
absl::StatusOr<LabelledImages> ReadLabelledImages(const std::string& images_path,
                                                  const std::string& labels_path);

// The index of the largest of `row` (the first one on ties); -1 if empty.
template <typename T>
int64_t ArgMax(absl::Span<const T> row) {
  int64_t best = -1;
  for (size_t i = 0; i < row.size(); ++i) {
    if (best < 0 || row[i] > row[best]) best = static_cast<int64_t>(i);
  }
  return best;
}

}  // namespace hgpipe::clients

#endif  // HGPIPE_CLIENTS_LABELLED_IMAGES_H_
