// The HG-PIPE weight container (docs/datapath.md, "Weight file"): a
// versioned little-endian binary holding a text manifest and named integer
// tensors, closed by a CRC-32, optionally gzip-compressed as a whole. Written by
// tools/vit/weightfile.py; this is the only C++ reader. Golden-vector files use the same container.
#ifndef HGPIPE_ACCEL_VIT_WEIGHT_FILE_H_
#define HGPIPE_ACCEL_VIT_WEIGHT_FILE_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hgpipe::accel::vit {

inline constexpr char kContainerMagic[9] = "HGPVIT\r\n";
inline constexpr uint32_t kContainerVersion = 2;

enum class DType : uint8_t {
  kInt8 = 1,
  kUInt8 = 2,
  kInt16 = 3,
  kInt32 = 4,
  kInt64 = 5,
};
size_t DTypeSize(DType t);
const char* DTypeName(DType t);

struct Tensor {
  DType dtype = DType::kInt8;
  std::vector<uint32_t> dims;
  std::vector<uint8_t> bytes;  // little-endian element data

  size_t elements() const;
  // Elements widened to int64 (any dtype).
  std::vector<int64_t> ToInt64() const;
};

struct Container {
  // Manifest "key value" lines in file order; keys are unique.
  std::vector<std::pair<std::string, std::string>> manifest;
  std::map<std::string, Tensor> tensors;
};

// Parses a container held in memory, plain or gzip-compressed as a whole.
// `source` names it in errors (a path).
// InvalidArgument (DataLoss for a CRC mismatch) naming the source, the byte
// offset and the field when anything is malformed or truncated.
absl::StatusOr<Container> ParseContainer(absl::string_view bytes, absl::string_view source);
// Reads and parses `path`. NotFound / PermissionDenied if it cannot be read.
absl::StatusOr<Container> ReadContainer(const std::string& path);
// The file image of `c` (tensors in name order), CRC included.
std::string SerializeContainer(const Container& c);

// The zlib / IEEE 802.3 CRC-32.
uint32_t Crc32(const void* data, size_t size);

}  // namespace hgpipe::accel::vit

#endif  // HGPIPE_ACCEL_VIT_WEIGHT_FILE_H_
