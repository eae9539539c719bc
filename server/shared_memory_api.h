// Triton's system shared memory calls (status, register, unregister) over
// the registry, for both wires: the gRPC messages, and the REST bodies of
//   GET  v2/systemsharedmemory[/region/NAME]/status     [{name, key, offset, byte_size}]
//   POST v2/systemsharedmemory/region/NAME/register     {"key", "offset", "byte_size"}
//   POST v2/systemsharedmemory[/region/NAME]/unregister (empty body)
// Errors as SharedMemoryRegions returns them (server/shared_memory_regions.h).
#ifndef HGPIPE_SERVER_SHARED_MEMORY_API_H_
#define HGPIPE_SERVER_SHARED_MEMORY_API_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/grpc_service.pb.h"
#include "server/shared_memory_regions.h"

namespace hgpipe::server {

// gRPC. `regions` may be null (no registry: status is empty, register and
// unregister are Unimplemented).
absl::StatusOr<inference::SystemSharedMemoryStatusResponse> SystemSharedMemoryStatus(
    const SharedMemoryRegions* regions, const inference::SystemSharedMemoryStatusRequest& req);
absl::Status SystemSharedMemoryRegister(SharedMemoryRegions* regions,
                                        const inference::SystemSharedMemoryRegisterRequest& req);
absl::Status SystemSharedMemoryUnregister(
    SharedMemoryRegions* regions, const inference::SystemSharedMemoryUnregisterRequest& req);

// REST: the JSON array of regions ("" name: all).
absl::StatusOr<std::string> SystemSharedMemoryStatusJson(const SharedMemoryRegions* regions,
                                                         const std::string& name);
// REST: registers `name` from the JSON `body`; InvalidArgument for a body
// that is not an object with a string key and integer byte_size (offset
// optional, 0).
absl::Status SystemSharedMemoryRegisterJson(SharedMemoryRegions* regions, const std::string& name,
                                            absl::string_view body);

}  // namespace hgpipe::server

#endif  // HGPIPE_SERVER_SHARED_MEMORY_API_H_
