#include "clients/shared_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace hgpipe::clients {

absl::StatusOr<std::unique_ptr<SharedMemoryObject>> SharedMemoryObject::Create(
    const std::string& key, size_t byte_size) {
  const int fd = shm_open(key.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd < 0) {
    const int err = errno;
    const std::string what = absl::StrCat("shm_open(", key, "): ", std::strerror(err));
    return err == EEXIST ? absl::AlreadyExistsError(what) : absl::UnavailableError(what);
  }
  void* data = MAP_FAILED;
  std::string failed;
  if (ftruncate(fd, static_cast<off_t>(byte_size)) != 0) {
    failed = absl::StrCat("ftruncate(", key, ", ", byte_size, "): ", std::strerror(errno));
  } else {
    data = mmap(nullptr, byte_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (data == MAP_FAILED) failed = absl::StrCat("mmap(", key, "): ", std::strerror(errno));
  }
  close(fd);  // the mapping keeps the object
  if (data == MAP_FAILED) {
    shm_unlink(key.c_str());
    return absl::UnavailableError(failed);
  }
  return std::unique_ptr<SharedMemoryObject>(
      new SharedMemoryObject(key, byte_size, static_cast<char*>(data)));
}

SharedMemoryObject::~SharedMemoryObject() {
  munmap(data_, size_);
  shm_unlink(key_.c_str());
}

void SetSharedMemory(google::protobuf::Map<std::string, inference::InferParameter>* parameters,
                     absl::string_view region, uint64_t byte_size, uint64_t offset) {
  (*parameters)["shared_memory_region"].set_string_param(std::string(region));
  (*parameters)["shared_memory_byte_size"].set_int64_param(static_cast<int64_t>(byte_size));
  if (offset != 0) {
    (*parameters)["shared_memory_offset"].set_int64_param(static_cast<int64_t>(offset));
  }
}

}  // namespace hgpipe::clients
