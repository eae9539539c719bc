#include "server/shared_memory_api.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "rapidjson/document.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"

namespace hgpipe::server {
namespace {

absl::StatusOr<std::vector<SharedMemoryRegions::Info>> List(const SharedMemoryRegions* regions,
                                                            const std::string& name) {
  if (regions != nullptr) return regions->Status(name);
  if (name.empty()) return std::vector<SharedMemoryRegions::Info>{};
  return absl::NotFoundError("no system shared memory region is registered");
}

}  // namespace

absl::StatusOr<inference::SystemSharedMemoryStatusResponse> SystemSharedMemoryStatus(
    const SharedMemoryRegions* regions, const inference::SystemSharedMemoryStatusRequest& req) {
  absl::StatusOr<std::vector<SharedMemoryRegions::Info>> list = List(regions, req.name());
  if (!list.ok()) return list.status();
  inference::SystemSharedMemoryStatusResponse resp;
  for (const SharedMemoryRegions::Info& i : *list) {
    auto& r = (*resp.mutable_regions())[i.name];
    r.set_name(i.name);
    r.set_key(i.key);
    r.set_offset(i.offset);
    r.set_byte_size(i.byte_size);
  }
  return resp;
}

absl::Status SystemSharedMemoryRegister(SharedMemoryRegions* regions,
                                        const inference::SystemSharedMemoryRegisterRequest& req) {
  if (regions == nullptr) return absl::UnimplementedError(kClientShmDisabled);
  return regions->Register(req.name(), req.key(), req.offset(), req.byte_size());
}

absl::Status SystemSharedMemoryUnregister(
    SharedMemoryRegions* regions, const inference::SystemSharedMemoryUnregisterRequest& req) {
  if (regions == nullptr) return absl::UnimplementedError(kClientShmDisabled);
  return regions->Unregister(req.name());
}

absl::StatusOr<std::string> SystemSharedMemoryStatusJson(const SharedMemoryRegions* regions,
                                                         const std::string& name) {
  absl::StatusOr<std::vector<SharedMemoryRegions::Info>> list = List(regions, name);
  if (!list.ok()) return list.status();
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  w.StartArray();
  for (const SharedMemoryRegions::Info& i : *list) {
    w.StartObject();
    w.Key("name");
    w.String(i.name.data(), static_cast<rapidjson::SizeType>(i.name.size()));
    w.Key("key");
    w.String(i.key.data(), static_cast<rapidjson::SizeType>(i.key.size()));
    w.Key("offset");
    w.Uint64(i.offset);
    w.Key("byte_size");
    w.Uint64(i.byte_size);
    w.EndObject();
  }
  w.EndArray();
  return std::string(buf.GetString(), buf.GetSize());
}

absl::Status SystemSharedMemoryRegisterJson(SharedMemoryRegions* regions, const std::string& name,
                                            absl::string_view body) {
  if (regions == nullptr) return absl::UnimplementedError(kClientShmDisabled);
  rapidjson::Document doc;
  doc.Parse(body.data(), body.size());
  if (doc.HasParseError() || !doc.IsObject()) {
    return absl::InvalidArgumentError(
        "shared memory register: the body must be a JSON object {\"key\", \"offset\", "
        "\"byte_size\"}");
  }
  auto key = doc.FindMember("key");
  if (key == doc.MemberEnd() || !key->value.IsString()) {
    return absl::InvalidArgumentError("shared memory register: 'key' missing, or not a string");
  }
  uint64_t offset = 0;
  if (auto it = doc.FindMember("offset"); it != doc.MemberEnd()) {
    if (!it->value.IsUint64()) {
      return absl::InvalidArgumentError("shared memory register: 'offset' must be an integer >= 0");
    }
    offset = it->value.GetUint64();
  }
  auto size = doc.FindMember("byte_size");
  if (size == doc.MemberEnd() || !size->value.IsUint64()) {
    return absl::InvalidArgumentError(
        "shared memory register: 'byte_size' missing, or not an integer >= 0");
  }
  return regions->Register(name, std::string(key->value.GetString(), key->value.GetStringLength()),
                           offset, size->value.GetUint64());
}

}  // namespace hgpipe::server
