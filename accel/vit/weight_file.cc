#include "accel/vit/weight_file.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include <zlib.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/status_macros.h"

namespace hgpipe::accel::vit {
namespace {

// Largest tensor and manifest accepted: far above DeiT-tiny's biggest
// tensor (1000 x 192), small enough that a corrupt length cannot make the
// loader allocate gigabytes.
constexpr uint64_t kMaxTensorBytes = uint64_t{1} << 30;
constexpr uint32_t kMaxManifestBytes = 1 << 20;
constexpr uint32_t kMaxTensors = 1 << 16;
constexpr uint8_t kMaxRank = 8;
constexpr size_t kMaxInflatedBytes = size_t{256} << 20;

// A bounds-checked little-endian reader over the file image; every failure
// names the source, the offset and the field being read.
class Reader {
 public:
  Reader(absl::string_view bytes, absl::string_view source) : bytes_(bytes), source_(source) {}

  size_t offset() const { return pos_; }
  size_t remaining() const { return bytes_.size() - pos_; }

  absl::Status Error(absl::string_view field, absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat(source_, ": byte ", pos_, ", ", field, ": ", what));
  }

  absl::Status Take(size_t n, absl::string_view field, absl::string_view* out) {
    if (n > remaining()) {
      return Error(field, absl::StrCat("truncated (needs ", n, " bytes, ", remaining(), " left)"));
    }
    *out = bytes_.substr(pos_, n);
    pos_ += n;
    return absl::OkStatus();
  }

  template <typename T>
  absl::Status Int(absl::string_view field, T* out) {
    absl::string_view s;
    RETURN_IF_ERROR(Take(sizeof(T), field, &s));
    uint64_t v = 0;
    for (size_t i = 0; i < sizeof(T); ++i) {
      v |= uint64_t{static_cast<uint8_t>(s[i])} << (8 * i);
    }
    *out = static_cast<T>(v);
    return absl::OkStatus();
  }

 private:
  absl::string_view bytes_;
  absl::string_view source_;
  size_t pos_ = 0;
};

bool ValidDType(uint8_t code) { return code >= 1 && code <= 5; }

bool IsGzip(absl::string_view bytes) {
  return bytes.size() >= 2 && static_cast<uint8_t>(bytes[0]) == 0x1f &&
         static_cast<uint8_t>(bytes[1]) == 0x8b;
}

// A gzip stream inflated, at most kMaxInflatedBytes (a corrupt or hostile
// file cannot make the loader allocate more).
absl::StatusOr<std::string> Gunzip(absl::string_view bytes, absl::string_view source) {
  z_stream z{};
  if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) {
    return absl::InternalError(absl::StrCat(source, ": zlib inflateInit2 failed"));
  }
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  z.avail_in = static_cast<uInt>(std::min<size_t>(bytes.size(), UINT32_MAX));
  std::string out;
  size_t total = 0;
  int rc = Z_OK;
  for (;;) {
    if (total == out.size()) {
      if (out.size() >= kMaxInflatedBytes) {
        inflateEnd(&z);
        return absl::InvalidArgumentError(
            absl::StrCat(source, ": gzip data inflates beyond ", kMaxInflatedBytes, " bytes"));
      }
      out.resize(std::min(std::max<size_t>(2 * out.size(), 1 << 20), kMaxInflatedBytes));
    }
    z.next_out = reinterpret_cast<Bytef*>(out.data() + total);
    z.avail_out = static_cast<uInt>(out.size() - total);
    rc = inflate(&z, Z_NO_FLUSH);
    total = out.size() - z.avail_out;
    if (rc == Z_STREAM_END) break;
    if (rc == Z_OK || (rc == Z_BUF_ERROR && z.avail_out == 0)) continue;
    break;  // corrupt, or the input ended before the stream did
  }
  const bool trailing = z.avail_in != 0;
  const std::string message = z.msg != nullptr ? z.msg : "the data ends early";
  inflateEnd(&z);
  if (rc != Z_STREAM_END) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": gzip data is truncated or corrupt (", message, ")"));
  }
  if (trailing) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": bytes after the gzip data"));
  }
  out.resize(total);
  return out;
}

template <typename T>
void PutInt(std::string* out, T v) {
  for (size_t i = 0; i < sizeof(T); ++i) {
    out->push_back(static_cast<char>((static_cast<uint64_t>(v) >> (8 * i)) & 0xFF));
  }
}

}  // namespace

size_t DTypeSize(DType t) {
  switch (t) {
    case DType::kInt8:
    case DType::kUInt8: return 1;
    case DType::kInt16: return 2;
    case DType::kInt32: return 4;
    case DType::kInt64: return 8;
  }
  return 0;
}

const char* DTypeName(DType t) {
  switch (t) {
    case DType::kInt8: return "int8";
    case DType::kUInt8: return "uint8";
    case DType::kInt16: return "int16";
    case DType::kInt32: return "int32";
    case DType::kInt64: return "int64";
  }
  return "?";
}

size_t Tensor::elements() const {
  size_t n = 1;
  for (uint32_t d : dims) n *= d;
  return n;
}

std::vector<int64_t> Tensor::ToInt64() const {
  const size_t n = elements();
  const size_t size = DTypeSize(dtype);
  std::vector<int64_t> out(n);
  for (size_t i = 0; i < n && (i + 1) * size <= bytes.size(); ++i) {
    uint64_t v = 0;
    for (size_t b = 0; b < size; ++b) {
      v |= uint64_t{bytes[i * size + b]} << (8 * b);
    }
    switch (dtype) {
      case DType::kInt8: out[i] = static_cast<int8_t>(v); break;
      case DType::kUInt8: out[i] = static_cast<uint8_t>(v); break;
      case DType::kInt16: out[i] = static_cast<int16_t>(v); break;
      case DType::kInt32: out[i] = static_cast<int32_t>(v); break;
      case DType::kInt64: out[i] = static_cast<int64_t>(v); break;
    }
  }
  return out;
}

uint32_t Crc32(const void* data, size_t size) {
  uLong crc = crc32(0L, Z_NULL, 0);
  const auto* p = static_cast<const Bytef*>(data);
  while (size > 0) {  // zlib takes uInt lengths
    const uInt chunk = static_cast<uInt>(std::min<size_t>(size, 1u << 30));
    crc = crc32(crc, p, chunk);
    p += chunk;
    size -= chunk;
  }
  return static_cast<uint32_t>(crc);
}

absl::StatusOr<Container> ParseContainer(absl::string_view bytes, absl::string_view source) {
  std::string inflated;
  if (IsGzip(bytes)) {
    ASSIGN_OR_RETURN(inflated, Gunzip(bytes, source));
    bytes = inflated;
  }
  Reader r(bytes, source);
  absl::string_view magic;
  if (bytes.size() < 8 || bytes.substr(0, 8) != absl::string_view(kContainerMagic, 8)) {
    return r.Error("magic",
                   "not an HG-PIPE ViT weight file (expected "
                   "\"HGPVIT\\r\\n\")");
  }
  RETURN_IF_ERROR(r.Take(8, "magic", &magic));
  uint32_t version = 0;
  RETURN_IF_ERROR(r.Int("version", &version));
  if (version != kContainerVersion) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": version ", version,
                                                   " is not supported (this "
                                                   "build reads version ",
                                                   kContainerVersion, ")"));
  }
  // Lengths are bounds-checked as they are read, so a truncated file reports
  // the field it ends in; the closing CRC then catches flipped bits.
  Container c;
  uint32_t manifest_bytes = 0;
  RETURN_IF_ERROR(r.Int("manifest length", &manifest_bytes));
  if (manifest_bytes > kMaxManifestBytes) {
    return r.Error("manifest length", absl::StrCat(manifest_bytes, " exceeds ", kMaxManifestBytes));
  }
  absl::string_view text;
  RETURN_IF_ERROR(r.Take(manifest_bytes, "manifest", &text));
  std::set<std::string> keys;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    if (line.empty()) continue;
    const size_t space = line.find(' ');
    if (space == absl::string_view::npos || space == 0) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": manifest line ", line_no,
                                                     " is not \"key value\": \"",
                                                     line.substr(0, 80), "\""));
    }
    std::string key(line.substr(0, space));
    if (!keys.insert(key).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": manifest key '", key, "' appears twice"));
    }
    c.manifest.emplace_back(std::move(key), std::string(line.substr(space + 1)));
  }

  uint32_t count = 0;
  RETURN_IF_ERROR(r.Int("tensor count", &count));
  if (count > kMaxTensors) {
    return r.Error("tensor count", absl::StrCat(count, " exceeds ", kMaxTensors));
  }
  for (uint32_t i = 0; i < count; ++i) {
    const std::string field = absl::StrCat("tensor #", i);
    uint16_t name_len = 0;
    RETURN_IF_ERROR(r.Int(field + " name length", &name_len));
    absl::string_view name;
    RETURN_IF_ERROR(r.Take(name_len, field + " name", &name));
    const std::string where = absl::StrCat("tensor '", name, "'");
    uint8_t code = 0, rank = 0;
    RETURN_IF_ERROR(r.Int(where + " dtype", &code));
    if (!ValidDType(code)) {
      return r.Error(where + " dtype", absl::StrCat("unknown code ", code));
    }
    RETURN_IF_ERROR(r.Int(where + " rank", &rank));
    if (rank > kMaxRank) {
      return r.Error(where + " rank", absl::StrCat(rank, " exceeds ", kMaxRank));
    }
    Tensor t;
    t.dtype = static_cast<DType>(code);
    uint64_t elements = 1;
    for (uint8_t d = 0; d < rank; ++d) {
      uint32_t dim = 0;
      RETURN_IF_ERROR(r.Int(where + " dims", &dim));
      t.dims.push_back(dim);
      elements *= dim;
      if (elements > kMaxTensorBytes) {
        return r.Error(where + " dims", "tensor too large");
      }
    }
    uint64_t nbytes = 0;
    RETURN_IF_ERROR(r.Int(where + " byte length", &nbytes));
    if (nbytes != elements * DTypeSize(t.dtype)) {
      return r.Error(where + " byte length", absl::StrCat(nbytes, " does not match ", elements, " ",
                                                          DTypeName(t.dtype), " elements"));
    }
    absl::string_view data;
    RETURN_IF_ERROR(r.Take(nbytes, where + " data", &data));
    t.bytes.assign(data.begin(), data.end());
    if (!c.tensors.emplace(std::string(name), std::move(t)).second) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": ", where, " appears twice"));
    }
  }
  uint32_t crc = 0;
  const size_t crc_offset = r.offset();
  RETURN_IF_ERROR(r.Int("crc32", &crc));
  if (r.remaining() != 0) {
    return r.Error("end", absl::StrCat(r.remaining(), " unexpected bytes after the CRC"));
  }
  const uint32_t actual = Crc32(bytes.data(), crc_offset);
  if (crc != actual) {
    return absl::DataLossError(absl::StrCat(source, ": CRC-32 mismatch (file says ", crc,
                                            ", contents give ", actual, "): the file is corrupt"));
  }
  return c;
}

absl::StatusOr<Container> ReadContainer(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) {
    return absl::DataLossError(absl::StrCat(path, ": read error"));
  }
  const std::string bytes = ss.str();
  return ParseContainer(bytes, path);
}

std::string SerializeContainer(const Container& c) {
  std::string out(kContainerMagic, 8);
  PutInt<uint32_t>(&out, kContainerVersion);
  std::string text;
  for (const auto& [k, v] : c.manifest) absl::StrAppend(&text, k, " ", v, "\n");
  PutInt<uint32_t>(&out, static_cast<uint32_t>(text.size()));
  out += text;
  PutInt<uint32_t>(&out, static_cast<uint32_t>(c.tensors.size()));
  for (const auto& [name, t] : c.tensors) {
    PutInt<uint16_t>(&out, static_cast<uint16_t>(name.size()));
    out += name;
    PutInt<uint8_t>(&out, static_cast<uint8_t>(t.dtype));
    PutInt<uint8_t>(&out, static_cast<uint8_t>(t.dims.size()));
    for (uint32_t d : t.dims) PutInt<uint32_t>(&out, d);
    PutInt<uint64_t>(&out, t.bytes.size());
    out.append(reinterpret_cast<const char*>(t.bytes.data()), t.bytes.size());
  }
  PutInt<uint32_t>(&out, Crc32(out.data(), out.size()));
  return out;
}

}  // namespace hgpipe::accel::vit
