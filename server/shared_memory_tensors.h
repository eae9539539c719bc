// The tensors of an inference request that live in system shared memory,
// named by Triton's tensor parameters (as tritonclient's
// set_shared_memory sends them):
//   shared_memory_region     string: a registered region
//   shared_memory_byte_size  int64 (or uint64): the tensor's bytes, required
//   shared_memory_offset     int64 (or uint64): into the region, default 0
// on an input (its bytes are read from the region: no copy through the
// wire) or on a requested output (the result is written there; the
// response still lists the output, with empty raw contents, as Triton's).
//
// Pure functions over the registry (server/shared_memory_regions.h); the
// request pipeline calls them around PrepareInput and after the result.
#ifndef HGPIPE_SERVER_SHARED_MEMORY_TENSORS_H_
#define HGPIPE_SERVER_SHARED_MEMORY_TENSORS_H_

#include <cstddef>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/grpc_service.pb.h"
#include "server/shared_memory_regions.h"

namespace hgpipe::server {

// Where a request's tensors are in shared memory. Holding it keeps the
// regions mapped (unregistering them meanwhile is safe).
struct SharedMemoryTensors {
  // Input 0's bytes, when it names a region.
  std::optional<SharedMemoryRegions::View> input;
  // Where output 0 goes, when it names a region, and its name.
  std::optional<SharedMemoryRegions::View> output;
  std::string output_name;

  // Input 0's bytes as PrepareInput takes them (nullopt: not in a region).
  std::optional<absl::string_view> input_bytes() const;
};

// Whether a tensor's parameters name a shared memory region.
bool UsesSharedMemory(
    const google::protobuf::Map<std::string, inference::InferParameter>& parameters);

// Reads the shared memory parameters of `request`'s inputs and outputs and
// finds their regions in `regions` (null: none are registered).
// InvalidArgument, naming `model` and the tensor, for a region that is not
// a string, an offset or byte size that is not a non-negative integer,
// either of them without a region, a region without a byte size, a
// classification output in shared memory, or a range outside the region;
// NotFound for a region that is not registered.
absl::StatusOr<SharedMemoryTensors> FindSharedMemoryTensors(
    const inference::ModelInferRequest& request, const SharedMemoryRegions* regions,
    absl::string_view model);

// InvalidArgument, naming `model`, if an output's region is smaller than
// `output_bytes` (the result's size).
absl::Status CheckSharedMemoryOutput(const SharedMemoryTensors& tensors, size_t output_bytes,
                                     absl::string_view model);

// InvalidArgument, naming `model` and the tensor, if the object behind the
// request's input or output region shrank while the server read or wrote
// it (View::faulted): the answer would rest on zeros, or never reach the
// client's memory.
absl::Status CheckSharedMemoryIntact(const SharedMemoryTensors& tensors, absl::string_view model);

// Moves output 0 of `response` (its raw contents, already final) into its
// region, leaving its raw entry empty. Nothing if output 0 is not in
// shared memory.
void WriteSharedMemoryOutput(const SharedMemoryTensors& tensors,
                             inference::ModelInferResponse* response);

}  // namespace hgpipe::server

#endif  // HGPIPE_SERVER_SHARED_MEMORY_TENSORS_H_
