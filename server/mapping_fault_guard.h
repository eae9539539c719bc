// A client's shared memory can shrink under the server: the client may
// ftruncate its object while the server reads an input from it or writes
// an output to it, and an access past the object's new end raises SIGBUS,
// which would end the server. A FaultGuard covers one mapping: a SIGBUS in
// it replaces the mapping's pages from the fault on with zero pages (the
// access then completes) and marks the guard faulted, so the request that
// used it can be refused afterwards. Other SIGBUSes keep their default
// action (or the handler installed before, e.g. a sanitizer's).
//
// The mapping stays the caller's: it must outlive its guard, and unmapping
// it (munmap) also removes the zero pages.
//
// Thread safety: Create and the destructor are thread-safe; faulted() may
// be read from any thread.
#ifndef HGPIPE_SERVER_MAPPING_FAULT_GUARD_H_
#define HGPIPE_SERVER_MAPPING_FAULT_GUARD_H_

#include <cstddef>
#include <memory>

#include "absl/status/statusor.h"

namespace hgpipe::server {

class FaultGuard {
 public:
  // At most this many guards exist at once.
  static constexpr size_t kCapacity = 4096;

  // Guards [addr, addr + bytes) (addr page-aligned, as mmap returns it).
  // Installs the process's SIGBUS handler on first use. ResourceExhausted
  // beyond kCapacity guards; Internal if the handler cannot be installed.
  static absl::StatusOr<std::unique_ptr<FaultGuard>> Create(void* addr, size_t bytes);
  ~FaultGuard();
  FaultGuard(const FaultGuard&) = delete;
  FaultGuard& operator=(const FaultGuard&) = delete;

  // Whether an access faulted since Create: what was read since may be
  // zeros, what was written is lost.
  bool faulted() const;

 private:
  explicit FaultGuard(size_t slot) : slot_(slot) {}
  const size_t slot_;
};

}  // namespace hgpipe::server

#endif  // HGPIPE_SERVER_MAPPING_FAULT_GUARD_H_
