// The client's side of Triton's system shared memory (as tritonclient's
// utils.shared_memory): a POSIX shared memory object this process creates
// and maps, to write input tensors into and read outputs from, after
// registering it with the server (InferenceClient::RegisterSystemSharedMemory)
// and naming it in tensors (SetSharedMemory).
//
// Thread safety: the object is immutable; its bytes are the caller's to
// synchronize (the server reads inputs and writes outputs during a request).
#ifndef HGPIPE_CLIENTS_SHARED_MEMORY_H_
#define HGPIPE_CLIENTS_SHARED_MEMORY_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/grpc_service.pb.h"

namespace hgpipe::clients {

class SharedMemoryObject {
 public:
  // Creates the object `key` ("/name") of `byte_size` bytes (zeros) and
  // maps it read-write. AlreadyExists if `key` exists; the OS's error
  // otherwise. The object is unlinked and unmapped when this is destroyed.
  static absl::StatusOr<std::unique_ptr<SharedMemoryObject>> Create(const std::string& key,
                                                                    size_t byte_size);
  ~SharedMemoryObject();
  SharedMemoryObject(const SharedMemoryObject&) = delete;
  SharedMemoryObject& operator=(const SharedMemoryObject&) = delete;

  const std::string& key() const { return key_; }
  size_t size() const { return size_; }
  char* data() const { return data_; }

 private:
  SharedMemoryObject(std::string key, size_t size, char* data)
      : key_(std::move(key)), size_(size), data_(data) {}
  const std::string key_;
  const size_t size_;
  char* const data_;
};

// Sets Triton's shared memory parameters on a tensor's `parameters`: the
// tensor's `byte_size` bytes are at `offset` in registered region `region`.
void SetSharedMemory(google::protobuf::Map<std::string, inference::InferParameter>* parameters,
                     absl::string_view region, uint64_t byte_size, uint64_t offset = 0);

}  // namespace hgpipe::clients

#endif  // HGPIPE_CLIENTS_SHARED_MEMORY_H_
