#include "server/shared_memory_regions.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "server/client_text.h"
#include "server/mapping_fault_guard.h"

namespace hgpipe::server {
namespace {

constexpr size_t kMaxNameBytes = 256;
constexpr size_t kMaxKeyBytes = 255;  // NAME_MAX of /dev/shm

absl::Status CheckName(const std::string& name) {
  if (name.empty() || name.size() > kMaxNameBytes) {
    return absl::InvalidArgumentError(absl::StrCat("shared memory region name ", Quote(name),
                                                   ": must be 1 to ", kMaxNameBytes, " bytes"));
  }
  return absl::OkStatus();
}

// shm_open's rule (glibc): leading '/'s (ignored; Python's
// multiprocessing.shared_memory, which tritonclient uses, adds one), then a
// file name in /dev/shm. Anything else could reach other files.
absl::Status CheckKey(const std::string& name, const std::string& key) {
  absl::string_view k = key;
  while (!k.empty() && k.front() == '/') k.remove_prefix(1);
  const bool bad_char =
      std::any_of(k.begin(), k.end(), [](char c) { return c == '/' || c == '\0'; });
  if (k.empty() || k.size() > kMaxKeyBytes || bad_char || k == "." || k == "..") {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot register shared memory region ", Quote(name), ": key ", Quote(key),
                     " is not a shared memory object name ('/' then 1 to 255 bytes without '/')"));
  }
  return absl::OkStatus();
}

absl::Status Errno(absl::StatusCode code, absl::string_view what, int err) {
  return absl::Status(code, absl::StrCat(what, ": ", std::strerror(err)));
}

}  // namespace

// One registered region: the object's descriptor (kept to check its size on
// use) and two mappings of the range, read-only and (if the object could be
// opened so) read-write. Unmapped when the last holder lets go.
class SharedMemoryRegions::Region {
 public:
  static absl::StatusOr<std::shared_ptr<const Region>> Map(const std::string& name,
                                                           const std::string& key, uint64_t offset,
                                                           uint64_t byte_size) {
    const std::string where = absl::StrCat("cannot register shared memory region ", Quote(name),
                                           " (key ", Quote(key), ")");
    bool writable = true;
    int fd = shm_open(key.c_str(), O_RDWR, 0);
    if (fd < 0 && errno == EACCES) {
      writable = false;
      fd = shm_open(key.c_str(), O_RDONLY, 0);
    }
    if (fd < 0) {
      const int err = errno;
      return Errno(err == ENOENT   ? absl::StatusCode::kNotFound
                   : err == EACCES ? absl::StatusCode::kPermissionDenied
                                   : absl::StatusCode::kInvalidArgument,
                   where, err);
    }
    auto region = std::shared_ptr<Region>(new Region(fd));
    region->info_ = {name, key, offset, byte_size};
    struct stat st;
    if (fstat(fd, &st) != 0) return Errno(absl::StatusCode::kInternal, where, errno);
    if (!S_ISREG(st.st_mode)) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": not a shared memory object"));
    }
    if (byte_size == 0) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": byte_size is 0"));
    }
    const uint64_t object_size = static_cast<uint64_t>(st.st_size);
    if (offset > object_size || byte_size > object_size - offset) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": offset ", offset, " + byte_size ",
                                                     byte_size, " is past the object's end (",
                                                     object_size, " bytes)"));
    }
    // mmap takes page-aligned offsets; the client's need not be.
    const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
    const uint64_t map_offset = offset / page * page;
    region->skip_ = offset - map_offset;
    region->map_bytes_ = byte_size + region->skip_;
    void* r = mmap(nullptr, region->map_bytes_, PROT_READ, MAP_SHARED, fd,
                   static_cast<off_t>(map_offset));
    if (r == MAP_FAILED) return Errno(absl::StatusCode::kInvalidArgument, where, errno);
    region->read_ = static_cast<char*>(r);
    ASSIGN_OR_RETURN(region->read_guard_, FaultGuard::Create(r, region->map_bytes_));
    if (writable) {
      void* w = mmap(nullptr, region->map_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                     static_cast<off_t>(map_offset));
      if (w == MAP_FAILED) return Errno(absl::StatusCode::kInvalidArgument, where, errno);
      region->write_ = static_cast<char*>(w);
      ASSIGN_OR_RETURN(region->write_guard_, FaultGuard::Create(w, region->map_bytes_));
    }
    return std::shared_ptr<const Region>(std::move(region));
  }

  ~Region() {
    read_guard_.reset();  // before the pages go
    write_guard_.reset();
    if (read_ != nullptr) munmap(read_, map_bytes_);
    if (write_ != nullptr) munmap(write_, map_bytes_);
    close(fd_);
  }

  const Info& info() const { return info_; }

  // Whether the object shrank under a mapping while the server used it.
  bool faulted() const {
    return (read_guard_ != nullptr && read_guard_->faulted()) ||
           (write_guard_ != nullptr && write_guard_->faulted());
  }

  // The range [offset, offset + size) of the region, read-only or writable.
  absl::StatusOr<View> Slice(std::shared_ptr<const Region> self, uint64_t offset, uint64_t size,
                             bool write) const {
    const std::string where = absl::StrCat("shared memory region ", Quote(info_.name));
    if (offset >= info_.byte_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": offset ", offset, " is past its end (", info_.byte_size, " bytes)"));
    }
    if (size > info_.byte_size - offset) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": offset ", offset, " + byte size ",
                                                     size, " is past its end (", info_.byte_size,
                                                     " bytes)"));
    }
    if (write && write_ == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": the server may only read its object ", Quote(info_.key),
                       ", so outputs cannot go there"));
    }
    if (faulted()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": its object ", Quote(info_.key),
                       " shrank while the server used it; register it again"));
    }
    // Pages past the object's end fault on access: refuse a range the
    // client has truncated away since registering. (A shrink after this
    // check faults; the FaultGuards catch it.)
    struct stat st;
    if (fstat(fd_, &st) != 0 || static_cast<uint64_t>(st.st_size) < info_.offset + offset + size) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": its object ", Quote(info_.key),
                       " has shrunk below the registered range; register it again"));
    }
    View v;
    v.data = (write ? write_ : read_) + skip_ + offset;
    v.size = static_cast<size_t>(size);
    v.region = std::move(self);
    return v;
  }

 private:
  explicit Region(int fd) : fd_(fd) {}

  const int fd_;
  Info info_;
  uint64_t skip_ = 0;  // from the page-aligned mapping to the region
  size_t map_bytes_ = 0;
  char* read_ = nullptr;
  char* write_ = nullptr;
  std::unique_ptr<FaultGuard> read_guard_;
  std::unique_ptr<FaultGuard> write_guard_;
};

bool SharedMemoryRegions::View::faulted() const { return region != nullptr && region->faulted(); }

SharedMemoryRegions::SharedMemoryRegions(Options options) : options_(options) {}

SharedMemoryRegions::~SharedMemoryRegions() = default;

absl::Status SharedMemoryRegions::Register(const std::string& name, const std::string& key,
                                           uint64_t offset, uint64_t byte_size) {
  if (!options_.allow_client_shm) return absl::UnimplementedError(kClientShmDisabled);
  if (absl::Status s = CheckName(name); !s.ok()) return s;
  if (absl::Status s = CheckKey(name, key); !s.ok()) return s;
  auto taken = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
    if (regions_.contains(name)) {
      return absl::AlreadyExistsError(
          absl::StrCat("shared memory region ", Quote(name), " is already registered"));
    }
    if (regions_.size() >= options_.max_regions) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "cannot register shared memory region ", Quote(name), ": ", options_.max_regions,
          " regions are registered, the most the server holds; unregister some"));
    }
    return absl::OkStatus();
  };
  {
    hgpipe::MutexLock l(&mu_);
    if (absl::Status s = taken(); !s.ok()) return s;
  }
  // Opening and mapping outside the lock: requests keep finding regions.
  absl::StatusOr<std::shared_ptr<const Region>> region = Region::Map(name, key, offset, byte_size);
  if (!region.ok()) return region.status();
  hgpipe::MutexLock l(&mu_);
  if (absl::Status s = taken(); !s.ok()) return s;  // a concurrent Register won
  regions_.emplace(name, *std::move(region));
  return absl::OkStatus();
}

absl::Status SharedMemoryRegions::Unregister(const std::string& name) {
  if (!options_.allow_client_shm) return absl::UnimplementedError(kClientShmDisabled);
  // Mappings are released (munmap) outside the lock, when no request holds them.
  absl::flat_hash_map<std::string, std::shared_ptr<const Region>> dropped;
  {
    hgpipe::MutexLock l(&mu_);
    if (name.empty()) {
      dropped.swap(regions_);
    } else if (auto it = regions_.find(name); it != regions_.end()) {
      dropped.emplace(it->first, std::move(it->second));
      regions_.erase(it);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<SharedMemoryRegions::Info>> SharedMemoryRegions::Status(
    const std::string& name) const {
  std::vector<Info> out;
  hgpipe::MutexLock l(&mu_);
  if (name.empty()) {
    for (const auto& [n, r] : regions_) out.push_back(r->info());
    std::sort(out.begin(), out.end(), [](const Info& a, const Info& b) { return a.name < b.name; });
    return out;
  }
  auto it = regions_.find(name);
  if (it == regions_.end()) {
    return absl::NotFoundError(
        absl::StrCat("no system shared memory region ", Quote(name), " is registered"));
  }
  out.push_back(it->second->info());
  return out;
}

absl::StatusOr<SharedMemoryRegions::View> SharedMemoryRegions::Find(const std::string& name,
                                                                    uint64_t offset, uint64_t size,
                                                                    bool write) const {
  std::shared_ptr<const Region> region;
  {
    hgpipe::MutexLock l(&mu_);
    auto it = regions_.find(name);
    if (it == regions_.end()) {
      return absl::NotFoundError(absl::StrCat("no shared memory region ", Quote(name),
                                              " is registered (SystemSharedMemoryRegister first)"));
    }
    region = it->second;
  }
  const Region* r = region.get();
  return r->Slice(std::move(region), offset, size, write);
}

absl::StatusOr<SharedMemoryRegions::View> SharedMemoryRegions::Readable(const std::string& name,
                                                                        uint64_t offset,
                                                                        uint64_t size) const {
  return Find(name, offset, size, false);
}

absl::StatusOr<SharedMemoryRegions::View> SharedMemoryRegions::Writable(const std::string& name,
                                                                        uint64_t offset,
                                                                        uint64_t size) const {
  return Find(name, offset, size, true);
}

size_t SharedMemoryRegions::size() const {
  hgpipe::MutexLock l(&mu_);
  return regions_.size();
}

}  // namespace hgpipe::server
