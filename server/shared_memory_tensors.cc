#include "server/shared_memory_tensors.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/client_text.h"

namespace hgpipe::server {
namespace {

constexpr char kRegion[] = "shared_memory_region";
constexpr char kOffset[] = "shared_memory_offset";
constexpr char kByteSize[] = "shared_memory_byte_size";

using Parameters = google::protobuf::Map<std::string, inference::InferParameter>;

struct Reference {
  std::string region;
  uint64_t offset = 0;
  uint64_t byte_size = 0;
};

// A non-negative integer parameter (Triton's clients send int64; uint64 is
// taken too, as the REST front end reads large JSON numbers so).
absl::StatusOr<uint64_t> Unsigned(const inference::InferParameter& p, const char* name) {
  if (p.has_int64_param() && p.int64_param() >= 0) return p.int64_param();
  if (p.has_uint64_param()) return p.uint64_param();
  return absl::InvalidArgumentError(absl::StrCat("parameter '", name, "' must be an integer >= 0"));
}

// The tensor's shared memory reference, nullopt if it names none. Errors
// say what is wrong; the caller adds which tensor (TensorContext).
absl::StatusOr<std::optional<Reference>> ReadReference(const Parameters& params) {
  auto region = params.find(kRegion);
  auto offset = params.find(kOffset);
  auto size = params.find(kByteSize);
  if (region == params.end()) {
    if (offset != params.end() || size != params.end()) {
      return absl::InvalidArgumentError(absl::StrCat("'",
                                                     offset != params.end() ? kOffset : kByteSize,
                                                     "' without a '", kRegion, "' parameter"));
    }
    return std::nullopt;
  }
  if (!region->second.has_string_param()) {
    return absl::InvalidArgumentError(absl::StrCat("parameter '", kRegion, "' must be a string"));
  }
  if (size == params.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("a '", kRegion, "' parameter needs a '", kByteSize, "' parameter too"));
  }
  Reference r;
  r.region = region->second.string_param();
  absl::StatusOr<uint64_t> bytes = Unsigned(size->second, kByteSize);
  if (!bytes.ok()) return bytes.status();
  r.byte_size = *bytes;
  if (offset != params.end()) {
    absl::StatusOr<uint64_t> off = Unsigned(offset->second, kOffset);
    if (!off.ok()) return off.status();
    r.offset = *off;
  }
  return r;
}

// Which tensor an error is about. Built only for an error: every request
// looks its tensors up here.
std::string TensorContext(absl::string_view model, absl::string_view kind, absl::string_view name) {
  return absl::StrCat("model ", Quote(model), ": ", kind, " ", Quote(name));
}

absl::Status InContext(const absl::Status& s, absl::string_view where) {
  return absl::Status(s.code(), absl::StrCat(where, ": ", s.message()));
}

}  // namespace

std::optional<absl::string_view> SharedMemoryTensors::input_bytes() const {
  if (!input.has_value()) return std::nullopt;
  return absl::string_view(input->data, input->size);
}

bool UsesSharedMemory(const Parameters& parameters) { return parameters.contains(kRegion); }

absl::StatusOr<SharedMemoryTensors> FindSharedMemoryTensors(const inference::ModelInferRequest& req,
                                                            const SharedMemoryRegions* regions,
                                                            absl::string_view model) {
  SharedMemoryTensors out;
  for (int i = 0; i < req.inputs_size(); ++i) {
    const auto& in = req.inputs(i);
    auto where = [&] { return TensorContext(model, "input", in.name()); };
    absl::StatusOr<std::optional<Reference>> ref = ReadReference(in.parameters());
    if (!ref.ok()) return InContext(ref.status(), where());
    // Only the first input is read (PrepareInput refuses more).
    if (!ref->has_value() || i > 0) continue;
    if (regions == nullptr) {
      return absl::NotFoundError(absl::StrCat(where(), ": no shared memory region ",
                                              Quote((*ref)->region), " is registered"));
    }
    absl::StatusOr<SharedMemoryRegions::View> v =
        regions->Readable((*ref)->region, (*ref)->offset, (*ref)->byte_size);
    if (!v.ok()) return InContext(v.status(), where());
    out.input = *std::move(v);
  }
  for (int i = 0; i < req.outputs_size(); ++i) {
    const auto& o = req.outputs(i);
    auto where = [&] { return TensorContext(model, "output", o.name()); };
    absl::StatusOr<std::optional<Reference>> ref = ReadReference(o.parameters());
    if (!ref.ok()) return InContext(ref.status(), where());
    if (!ref->has_value()) continue;
    if (o.parameters().contains("classification")) {
      return absl::InvalidArgumentError(
          absl::StrCat(where(), ": cannot be both a classification and in shared memory"));
    }
    if (out.output.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where(), ": requested twice in shared memory"));
    }
    if (regions == nullptr) {
      return absl::NotFoundError(absl::StrCat(where(), ": no shared memory region ",
                                              Quote((*ref)->region), " is registered"));
    }
    absl::StatusOr<SharedMemoryRegions::View> v =
        regions->Writable((*ref)->region, (*ref)->offset, (*ref)->byte_size);
    if (!v.ok()) return InContext(v.status(), where());
    out.output = *std::move(v);
    out.output_name = o.name();
  }
  return out;
}

absl::Status CheckSharedMemoryOutput(const SharedMemoryTensors& t, size_t output_bytes,
                                     absl::string_view model) {
  if (!t.output.has_value() || t.output->size >= output_bytes) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "model ", Quote(model), ": output ", Quote(t.output_name), ": its shared memory (",
      t.output->size, " bytes) cannot hold the result (", output_bytes, " bytes)"));
}

void WriteSharedMemoryOutput(const SharedMemoryTensors& t, inference::ModelInferResponse* resp) {
  if (!t.output.has_value() || resp->raw_output_contents_size() == 0) return;
  std::string* raw = resp->mutable_raw_output_contents(0);
  // CheckSharedMemoryOutput made sure it fits; the bound is a safety net.
  std::memcpy(t.output->data, raw->data(), std::min(raw->size(), t.output->size));
  raw->clear();
}

absl::Status CheckSharedMemoryIntact(const SharedMemoryTensors& t, absl::string_view model) {
  const char* which = t.input.has_value() && t.input->faulted()     ? "input"
                      : t.output.has_value() && t.output->faulted() ? "output"
                                                                    : nullptr;
  if (which == nullptr) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("model ", Quote(model), ": the shared memory object of its ", which,
                   " shrank (ftruncate) while the server used it; register the region again"));
}

}  // namespace hgpipe::server
