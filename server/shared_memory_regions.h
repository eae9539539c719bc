// The registry of Triton's system shared memory regions: a client on the
// same host creates a POSIX shared memory object (shm_open), registers a
// byte range of it under a name, and then names that region, an offset and
// a size in an input or output tensor's parameters instead of sending the
// bytes (server/shared_memory_tensors.h). The server maps each region
// once, read-only for inputs and read-write for outputs.
//
// Lifetime: a View (what a request reads or writes) holds its region's
// mapping. Unregister removes the name at once (it can be registered
// again); the mapping goes when the last request using it lets go, so a
// request never touches unmapped memory.
//
// A client that shrinks its object (ftruncate) under a registered region
// would make the server fault on the pages past the new end: every View is
// checked against the object's current size when it is taken (fstat), and
// a shrink after that check is caught by the mappings' FaultGuards
// (server/mapping_fault_guard.h): the access reads zeros, View::faulted()
// turns true (the request using it is refused) and the region refuses
// every later View. (Triton checks only at registration.)
//
// Thread safety: all methods are thread-safe.
#ifndef HGPIPE_SERVER_SHARED_MEMORY_REGIONS_H_
#define HGPIPE_SERVER_SHARED_MEMORY_REGIONS_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/mutex.h"

namespace hgpipe::server {

// Triton's message when client shared memory is off (its flag's name too).
inline constexpr char kClientShmDisabled[] =
    "client shared memory is disabled; start hgpipe-server with "
    "--allow-client-shm=true to enable it";

class SharedMemoryRegions {
 public:
  struct Options {
    // Register and Unregister are refused (Unimplemented, kClientShmDisabled)
    // unless set: a client able to register regions can make the server
    // read and write any shared memory object its user can open. Triton's
    // --allow-client-shm. Default: false.
    bool allow_client_shm = false;
    // Regions registered at most (each holds a file descriptor and an
    // address range). Default: 256.
    size_t max_regions = 256;
  };

  // What Status reports of a region, as the client registered it.
  struct Info {
    std::string name;
    std::string key;
    uint64_t offset = 0;
    uint64_t byte_size = 0;
  };

  class Region;  // one mapped region (shared_memory_regions.cc)

  // Bytes of a region a request reads or writes; the mapping stays valid
  // while the View (or a copy) lives.
  struct View {
    std::shared_ptr<const Region> region;
    char* data = nullptr;  // writable only for a View from Writable()
    size_t size = 0;
    // Whether the region's object shrank while in use: what was read from
    // it since may be zeros, what was written to it is lost.
    bool faulted() const;
  };

  explicit SharedMemoryRegions(Options options);
  ~SharedMemoryRegions();
  SharedMemoryRegions(const SharedMemoryRegions&) = delete;
  SharedMemoryRegions& operator=(const SharedMemoryRegions&) = delete;

  // Maps [offset, offset + byte_size) of the shared memory object `key`
  // (shm_open's name: leading '/'s, then 1..255 bytes without '/') under `name` (1..256 bytes). The
  // object is opened read-write, or read-only if the server may not write it (then outputs cannot
  // go there). AlreadyExists if `name` is registered; InvalidArgument for a bad name or key,
  // byte_size 0, a range past the object's end or overflowing; NotFound if there is no such object;
  // PermissionDenied if the server may not open it; ResourceExhausted beyond max_regions;
  // Unimplemented if client shared memory is off.
  absl::Status Register(const std::string& name, const std::string& key, uint64_t offset,
                        uint64_t byte_size);
  // Forgets `name` ("" : every region). A name that is not registered is
  // OK, as in Triton. Requests already using a region finish with it.
  // Unimplemented if client shared memory is off.
  absl::Status Unregister(const std::string& name);
  // Every region ("" ) or the one named, sorted by name; NotFound for a
  // name that is not registered.
  absl::StatusOr<std::vector<Info>> Status(const std::string& name) const;

  // `size` bytes at `offset` in region `name`, to read (Readable) or to
  // write (Writable). NotFound if `name` is not registered;
  // InvalidArgument if offset or offset + size is past the region's end,
  // if the object has shrunk below the region since registration, or (to
  // write) if the region is read-only.
  absl::StatusOr<View> Readable(const std::string& name, uint64_t offset, uint64_t size) const;
  absl::StatusOr<View> Writable(const std::string& name, uint64_t offset, uint64_t size) const;

  size_t size() const;

 private:
  absl::StatusOr<View> Find(const std::string& name, uint64_t offset, uint64_t size,
                            bool write) const;

  const Options options_;
  mutable hgpipe::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<const Region>> regions_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hgpipe::server

#endif  // HGPIPE_SERVER_SHARED_MEMORY_REGIONS_H_
