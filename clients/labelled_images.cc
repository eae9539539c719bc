#include "clients/labelled_images.h"

#include <zlib.h>

#include <algorithm>
#include <memory>
#include <type_traits>

#include "absl/strings/str_cat.h"

namespace hgpipe::clients {
namespace {

constexpr uint32_t kMaxSide = 4096;
constexpr size_t kMaxBytes = size_t{1} << 30;

struct GzCloser {
  void operator()(gzFile f) const { gzclose(f); }
};
using GzFile = std::unique_ptr<std::remove_pointer_t<gzFile>, GzCloser>;

// Reads exactly `n` bytes (gzread inflates gzip and passes plain files
// through unchanged).
absl::Status ReadExactly(gzFile f, const std::string& path, void* out, size_t n, const char* what) {
  char* p = static_cast<char*>(out);
  while (n > 0) {
    const unsigned chunk = static_cast<unsigned>(std::min<size_t>(n, size_t{1} << 30));
    const int got = gzread(f, p, chunk);
    if (got <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": ends inside the ", what, " (", n, " bytes short)"));
    }
    p += got;
    n -= static_cast<size_t>(got);
  }
  return absl::OkStatus();
}

// The sizes of an IDX file of unsigned bytes with `rank` dimensions; leaves
// `f` at the data.
absl::StatusOr<std::vector<uint32_t>> ReadHeader(gzFile f, const std::string& path, int rank) {
  unsigned char magic[4];
  if (absl::Status s = ReadExactly(f, path, magic, 4, "IDX magic"); !s.ok()) return s;
  if (magic[0] != 0 || magic[1] != 0 || magic[2] != 0x08) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not an IDX file of unsigned bytes (magic 00 00 08 xx)"));
  }
  if (magic[3] != rank) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", static_cast<int>(magic[3]), " dimensions, expected ", rank));
  }
  std::vector<uint32_t> dims(rank);
  for (int i = 0; i < rank; ++i) {
    unsigned char b[4];
    if (absl::Status s = ReadExactly(f, path, b, 4, "IDX sizes"); !s.ok()) return s;
    dims[i] = (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
    if (dims[i] == 0) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": dimension ", i, " is 0"));
    }
  }
  return dims;
}

absl::StatusOr<GzFile> Open(const std::string& path) {
  GzFile f(gzopen(path.c_str(), "rb"));
  if (f == nullptr) return absl::NotFoundError(absl::StrCat(path, ": cannot be opened"));
  return f;
}

}  // namespace

absl::StatusOr<LabelledImages> ReadLabelledImages(const std::string& images_path,
                                                  const std::string& labels_path) {
  LabelledImages set;
  {
    absl::StatusOr<GzFile> f = Open(images_path);
    if (!f.ok()) return f.status();
    absl::StatusOr<std::vector<uint32_t>> dims = ReadHeader(f->get(), images_path, 3);
    if (!dims.ok()) return dims.status();
    const auto& d = *dims;
    if (d[1] > kMaxSide || d[2] > kMaxSide ||
        static_cast<uint64_t>(d[0]) * d[1] * d[2] > kMaxBytes) {
      return absl::InvalidArgumentError(absl::StrCat(images_path, ": ", d[0], " images of ", d[1],
                                                     " x ", d[2], " are more than 1 GiB or ",
                                                     kMaxSide, " pixels a side"));
    }
    set.height = d[1];
    set.width = d[2];
    set.pixels.resize(static_cast<size_t>(d[0]) * d[1] * d[2]);
    if (absl::Status s =
            ReadExactly(f->get(), images_path, set.pixels.data(), set.pixels.size(), "pixels");
        !s.ok()) {
      return s;
    }
  }
  absl::StatusOr<GzFile> f = Open(labels_path);
  if (!f.ok()) return f.status();
  absl::StatusOr<std::vector<uint32_t>> dims = ReadHeader(f->get(), labels_path, 1);
  if (!dims.ok()) return dims.status();
  const size_t images = set.pixels.size() / set.image_bytes();
  if ((*dims)[0] != images) {
    return absl::InvalidArgumentError(absl::StrCat(labels_path, ": ", (*dims)[0], " labels for ",
                                                   images, " images in ", images_path));
  }
  set.labels.resize(images);
  if (absl::Status s =
          ReadExactly(f->get(), labels_path, set.labels.data(), set.labels.size(), "labels");
      !s.ok()) {
    return s;
  }
  return set;
}

}  // namespace hgpipe::clients
