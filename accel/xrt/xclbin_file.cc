#include "accel/xrt/xclbin_file.h"

#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <random>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "xclbin.h"  // XRT's container structs (/usr/include/xrt)

namespace hgpipe::accel {
namespace {

constexpr char kMagic[8] = {'x', 'c', 'l', 'b', 'i', 'n', '2', '\0'};
constexpr size_t kAlign = 8;

// Copies `s` into a fixed-size, NUL-terminated field.
absl::Status CopyName(absl::string_view s, char* field, size_t field_size, absl::string_view what) {
  if (s.size() >= field_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " \"", s, "\" is longer than ", field_size - 1, " characters"));
  }
  std::memset(field, 0, field_size);
  std::memcpy(field, s.data(), s.size());
  return absl::OkStatus();
}

std::string FixedString(const void* field, size_t field_size) {
  const char* p = static_cast<const char*>(field);
  return std::string(p, strnlen(p, field_size));
}

template <typename T>
void AppendStruct(std::string* out, const T& value) {
  out->append(reinterpret_cast<const char*>(&value), sizeof(value));
}

std::string XmlEscape(absl::string_view s) {
  return absl::StrReplaceAll(s, {{"&", "&amp;"}, {"<", "&lt;"}, {">", "&gt;"}, {"\"", "&quot;"}});
}

std::string JsonEscape(absl::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          absl::StrAppendFormat(&out, "\\u%04x", c);
        } else {
          out += c;
        }
    }
  }
  return out;
}

// EMBEDDED_METADATA: the XML XRT reads kernel arguments from
// (project/platform/device/core/kernel/arg).
std::string EmbeddedMetadataXml(const XclbinKernelSpec& k) {
  std::string xml = absl::StrCat(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<project name=\"",
      XmlEscape(k.name),
      "\">\n"
      "  <platform vendor=\"xilinx\" boardid=\"hgpipe\" name=\"hgpipe\" "
      "featureRomTime=\"0\">\n"
      "    <version major=\"1\" minor=\"0\"/>\n"
      "    <device name=\"fpga0\" fpgaDevice=\"\" addrWidth=\"0\">\n"
      "      <core name=\"OCL_REGION_0\" target=\"bitstream\" "
      "type=\"clc_region\" numComputeUnits=\"1\">\n"
      "        <kernel name=\"",
      XmlEscape(k.name), "\" language=\"c\" vlnv=\"hgpipe:hls:", XmlEscape(k.name),
      ":1.0\" preferredWorkGroupSizeMultiple=\"0\" workGroupSize=\"1\" "
      "interrupt=\"true\" hwControlProtocol=\"",
      k.control == AP_CTRL_CHAIN ? "ap_ctrl_chain" : "ap_ctrl_hs", "\">\n",
      "          <port name=\"M_AXI_GMEM\" mode=\"master\" "
      "range=\"0xFFFFFFFFFFFFFFFF\" dataWidth=\"32\" "
      "portType=\"addressable\" base=\"0x0\"/>\n"
      "          <port name=\"S_AXI_CONTROL\" mode=\"slave\" range=\"0x1000\" "
      "dataWidth=\"32\" portType=\"addressable\" base=\"0x0\"/>\n");
  for (size_t i = 0; i < k.args.size(); ++i) {
    const XclbinArg& a = k.args[i];
    absl::StrAppend(&xml, "          <arg name=\"", XmlEscape(a.name), "\" addressQualifier=\"",
                    a.global ? 1 : 0, "\" id=\"", i, "\" port=\"",
                    a.global ? "M_AXI_GMEM" : "S_AXI_CONTROL", "\" size=\"",
                    absl::StrFormat("0x%x", a.size), "\" offset=\"",
                    absl::StrFormat("0x%x", a.offset), "\" hostOffset=\"0x0\" hostSize=\"",
                    absl::StrFormat("0x%x", a.size), "\" type=\"", XmlEscape(a.type), "\"/>\n");
  }
  absl::StrAppend(&xml, "          <instance name=\"", XmlEscape(k.instance),
                  "\">\n            <addrRemap base=\"", absl::StrFormat("0x%x", k.base_address),
                  "\" port=\"S_AXI_CONTROL\"/>\n          </instance>\n",
                  "        </kernel>\n      </core>\n    </device>\n"
                  "  </platform>\n</project>\n");
  return xml;
}

std::string KeyValueJson(const std::vector<std::pair<std::string, std::string>>& kv) {
  std::string json = "{\"keyvalue_metadata\":{\"key_values\":[";
  for (size_t i = 0; i < kv.size(); ++i) {
    absl::StrAppend(&json, i ? "," : "", "{\"key\":\"", JsonEscape(kv[i].first), "\",\"value\":\"",
                    JsonEscape(kv[i].second), "\"}");
  }
  json += "]}}";
  return json;
}

struct NewSection {
  uint32_t kind;
  std::string name;
  std::string data;
};

// Lays out a container: the axlf header (whose fixed part is copied from
// `header`, e.g. from a parsed container), then the section headers, then
// each section's data 8-byte aligned.
absl::StatusOr<std::string> Assemble(const axlf& header, const std::vector<NewSection>& sections,
                                     absl::string_view what) {
  if (sections.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": no sections"));
  }
  const size_t table_end =
      offsetof(axlf, m_sections) + sections.size() * sizeof(axlf_section_header);
  std::vector<axlf_section_header> table(sections.size());
  size_t pos = (table_end + kAlign - 1) / kAlign * kAlign;
  for (size_t i = 0; i < sections.size(); ++i) {
    std::memset(&table[i], 0, sizeof(table[i]));
    table[i].m_sectionKind = sections[i].kind;
    if (absl::Status s = CopyName(sections[i].name, table[i].m_sectionName,
                                  sizeof(table[i].m_sectionName), "section name");
        !s.ok()) {
      return s;
    }
    table[i].m_sectionOffset = pos;
    table[i].m_sectionSize = sections[i].data.size();
    pos = (pos + sections[i].data.size() + kAlign - 1) / kAlign * kAlign;
  }
  axlf top = header;
  top.m_header.m_length = pos;
  top.m_header.m_numSections = static_cast<uint32_t>(sections.size());

  std::string out;
  out.reserve(pos);
  out.append(reinterpret_cast<const char*>(&top), offsetof(axlf, m_sections));
  for (const axlf_section_header& h : table) AppendStruct(&out, h);
  for (const NewSection& s : sections) {
    out.resize((out.size() + kAlign - 1) / kAlign * kAlign, '\0');
    out += s.data;
  }
  out.resize(pos, '\0');
  return out;
}

}  // namespace

std::string XclbinSectionKindName(uint32_t kind) {
  switch (kind) {
    case BITSTREAM: return "BITSTREAM";
    case CLEARING_BITSTREAM: return "CLEARING_BITSTREAM";
    case EMBEDDED_METADATA: return "EMBEDDED_METADATA";
    case FIRMWARE: return "FIRMWARE";
    case DEBUG_DATA: return "DEBUG_DATA";
    case SCHED_FIRMWARE: return "SCHED_FIRMWARE";
    case MEM_TOPOLOGY: return "MEM_TOPOLOGY";
    case CONNECTIVITY: return "CONNECTIVITY";
    case IP_LAYOUT: return "IP_LAYOUT";
    case DEBUG_IP_LAYOUT: return "DEBUG_IP_LAYOUT";
    case CLOCK_FREQ_TOPOLOGY: return "CLOCK_FREQ_TOPOLOGY";
    case BUILD_METADATA: return "BUILD_METADATA";
    case KEYVALUE_METADATA: return "KEYVALUE_METADATA";
    case USER_METADATA: return "USER_METADATA";
    case PDI: return "PDI";
    case BITSTREAM_PARTIAL_PDI: return "BITSTREAM_PARTIAL_PDI";
    case PARTITION_METADATA: return "PARTITION_METADATA";
    case SYSTEM_METADATA: return "SYSTEM_METADATA";
    case AIE_METADATA: return "AIE_METADATA";
    case ASK_GROUP_TOPOLOGY: return "ASK_GROUP_TOPOLOGY";
    case ASK_GROUP_CONNECTIVITY: return "ASK_GROUP_CONNECTIVITY";
    default: return absl::StrCat("KIND_", kind);
  }
}

std::string UuidToHex(const XclbinUuid& uuid) {
  std::string out;
  for (uint8_t b : uuid) absl::StrAppendFormat(&out, "%02x", b);
  return out;
}

absl::StatusOr<XclbinUuid> ParseUuidHex(absl::string_view text) {
  std::string hex;
  for (char c : text) {
    if (c != '-') hex += c;
  }
  XclbinUuid out{};
  auto bad = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat("uuid \"", text, "\" is not 32 hex digits (dashes allowed)"));
  };
  if (hex.size() != 32) return bad();
  for (size_t i = 0; i < 16; ++i) {
    int v = 0;
    for (int j = 0; j < 2; ++j) {
      const char c = absl::ascii_tolower(hex[2 * i + j]);
      int d;
      if (c >= '0' && c <= '9') {
        d = c - '0';
      } else if (c >= 'a' && c <= 'f') {
        d = c - 'a' + 10;
      } else {
        return bad();
      }
      v = v * 16 + d;
    }
    out[i] = static_cast<uint8_t>(v);
  }
  return out;
}

XclbinUuid RandomUuid() {
  std::random_device rd;
  XclbinUuid out;
  for (uint8_t& b : out) b = static_cast<uint8_t>(rd());
  out[6] = (out[6] & 0x0f) | 0x40;  // version 4
  out[8] = (out[8] & 0x3f) | 0x80;  // variant 1
  return out;
}

XclbinKernelSpec HgpipeKernelSpec() {
  XclbinKernelSpec k;
  // Register offsets follow Vitis HLS's ap_ctrl_chain map: control at 0x00,
  // interrupt registers 0x04-0x0c, arguments from 0x10 (64-bit pointers
  // take 0x0c bytes each including the reserved word).
  k.args = {
      {"in", true, 8, 0x10, "signed char*"},
      {"out", true, 8, 0x1c, "int*"},
      {"n_images", false, 4, 0x28, "unsigned int"},
  };
  return k;
}

absl::StatusOr<std::string> BuildXclbin(const XclbinSpec& spec) {
  const XclbinKernelSpec& k = spec.kernel;
  if (k.args.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("kernel ", k.name, " has no arguments"));
  }
  axlf top;
  std::memset(&top, 0, sizeof(top));
  std::memcpy(top.m_magic, kMagic, sizeof(kMagic));
  top.m_signature_length = -1;
  std::memset(top.reserved, 0xff, sizeof(top.reserved));
  std::memset(top.m_keyBlock, 0xff, sizeof(top.m_keyBlock));
  top.m_uniqueId = 0;
  top.m_header.m_timeStamp = static_cast<uint64_t>(std::time(nullptr));
  top.m_header.m_versionMajor = 2;
  top.m_header.m_versionMinor = 13;
  top.m_header.m_mode = XCLBIN_FLAT;
  {
    char vbnv[sizeof(top.m_header.m_platformVBNV)];
    if (absl::Status s = CopyName(spec.platform_vbnv, vbnv, sizeof(vbnv), "platform VBNV");
        !s.ok()) {
      return s;
    }
    std::memcpy(top.m_header.m_platformVBNV, vbnv, sizeof(vbnv));
  }
  XclbinUuid uuid = spec.uuid;
  if (uuid == XclbinUuid{}) uuid = RandomUuid();
  std::memcpy(top.m_header.uuid, uuid.data(), uuid.size());

  std::vector<NewSection> sections;

  // MEM_TOPOLOGY: one DDR bank.
  {
    mem_topology mt;
    std::memset(&mt, 0, sizeof(mt));
    mt.m_count = 1;
    mt.m_mem_data[0].m_type = MEM_DDR4;
    mt.m_mem_data[0].m_used = 1;
    mt.m_mem_data[0].m_size = spec.ddr_size_kb;
    mt.m_mem_data[0].m_base_address = 0x4000000000ull;
    std::memcpy(mt.m_mem_data[0].m_tag, "bank0", 6);
    std::string data;
    AppendStruct(&data, mt);
    sections.push_back({MEM_TOPOLOGY, "mem_topology", std::move(data)});
  }
  // IP_LAYOUT: one compute unit.
  {
    ip_layout il;
    std::memset(&il, 0, sizeof(il));
    il.m_count = 1;
    il.m_ip_data[0].m_type = IP_KERNEL;
    il.m_ip_data[0].properties =
        ((k.control << IP_CONTROL_SHIFT) & IP_CONTROL_MASK) | IP_INT_ENABLE_MASK;
    il.m_ip_data[0].m_base_address = k.base_address;
    char name[sizeof(il.m_ip_data[0].m_name)];
    if (absl::Status s = CopyName(absl::StrCat(k.name, ":", k.instance), name, sizeof(name),
                                  "compute unit name");
        !s.ok()) {
      return s;
    }
    std::memcpy(il.m_ip_data[0].m_name, name, sizeof(name));
    std::string data;
    AppendStruct(&data, il);
    sections.push_back({IP_LAYOUT, "ip_layout", std::move(data)});
  }
  // CONNECTIVITY: every global argument to bank 0.
  {
    std::vector<connection> conns;
    for (size_t i = 0; i < k.args.size(); ++i) {
      if (!k.args[i].global) continue;
      conns.push_back({static_cast<int32_t>(i), 0, 0});
    }
    std::string data;
    const int32_t count = static_cast<int32_t>(conns.size());
    AppendStruct(&data, count);
    for (const connection& c : conns) AppendStruct(&data, c);
    // The struct declares one element: never shorter than sizeof.
    if (data.size() < sizeof(connectivity)) {
      data.resize(sizeof(connectivity), '\0');
    }
    sections.push_back({CONNECTIVITY, "connectivity", std::move(data)});
  }
  sections.push_back({EMBEDDED_METADATA, "embedded_meta", EmbeddedMetadataXml(k)});
  if (!spec.key_values.empty()) {
    sections.push_back({KEYVALUE_METADATA, "keyvalue_meta", KeyValueJson(spec.key_values)});
  }
  if (spec.manifest) {
    sections.push_back({USER_METADATA, kManifestSectionName, *spec.manifest});
  }
  return Assemble(top, sections, absl::StrCat("xclbin for ", k.name));
}

std::optional<absl::string_view> XclbinContents::Section(
    uint32_t kind, std::optional<absl::string_view> name) const {
  for (const XclbinSection& s : sections) {
    if (s.kind != kind) continue;
    if (name && s.name != *name) continue;
    return bytes.substr(s.offset, s.size);
  }
  return std::nullopt;
}

absl::StatusOr<XclbinContents> ParseXclbin(absl::string_view bytes, absl::string_view what) {
  if (bytes.size() < sizeof(kMagic) || std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": not an xclbin: bad magic (want \"xclbin2\")"));
  }
  const size_t fixed = offsetof(axlf, m_sections);
  if (bytes.size() < fixed) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": xclbin header truncated (", bytes.size(), " bytes, header needs ", fixed, ")"));
  }
  axlf top;
  std::memcpy(&top, bytes.data(), fixed);
  XclbinContents c;
  c.bytes = bytes;
  std::memcpy(c.uuid.data(), top.m_header.uuid, c.uuid.size());
  c.platform_vbnv = FixedString(top.m_header.m_platformVBNV, sizeof(top.m_header.m_platformVBNV));
  c.length = top.m_header.m_length;
  c.mode = top.m_header.m_mode;
  const uint64_t n = top.m_header.m_numSections;
  if (n > XCLBIN_MAX_NUM_SECTION || fixed + n * sizeof(axlf_section_header) > bytes.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": xclbin section table (", n, " sections) is truncated"));
  }
  if (c.length > bytes.size()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": xclbin truncated: header says ",
                                                   c.length, " bytes, file has ", bytes.size()));
  }
  for (uint64_t i = 0; i < n; ++i) {
    axlf_section_header h;
    std::memcpy(&h, bytes.data() + fixed + i * sizeof(h), sizeof(h));
    if (h.m_sectionOffset > bytes.size() || h.m_sectionSize > bytes.size() - h.m_sectionOffset) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": xclbin section ", i, " (",
                                                     XclbinSectionKindName(h.m_sectionKind),
                                                     ") lies outside the file"));
    }
    c.sections.push_back({h.m_sectionKind, FixedString(h.m_sectionName, sizeof(h.m_sectionName)),
                          h.m_sectionOffset, h.m_sectionSize});
  }
  if (std::optional<absl::string_view> ipl = c.Section(IP_LAYOUT)) {
    int32_t count = 0;
    if (ipl->size() >= sizeof(count)) {
      std::memcpy(&count, ipl->data(), sizeof(count));
    }
    const size_t first = offsetof(ip_layout, m_ip_data);
    if (count < 0 || first + size_t(count) * sizeof(ip_data) > ipl->size()) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": xclbin IP_LAYOUT is truncated"));
    }
    for (int32_t i = 0; i < count; ++i) {
      ip_data d;
      std::memcpy(&d, ipl->data() + first + i * sizeof(ip_data), sizeof(d));
      XclbinIp ip;
      ip.name = FixedString(d.m_name, sizeof(d.m_name));
      ip.type = d.m_type;
      if (d.m_type == IP_KERNEL) {
        ip.control = (d.properties & IP_CONTROL_MASK) >> IP_CONTROL_SHIFT;
        ip.interrupt = (d.properties & IP_INT_ENABLE_MASK) != 0;
      }
      ip.base_address = d.m_base_address;
      c.ips.push_back(std::move(ip));
    }
  }
  return c;
}

absl::StatusOr<std::string> Repackage(absl::string_view bytes, absl::string_view what,
                                      absl::string_view manifest) {
  absl::StatusOr<XclbinContents> c = ParseXclbin(bytes, what);
  if (!c.ok()) return c.status();
  axlf top;
  std::memcpy(&top, bytes.data(), offsetof(axlf, m_sections));
  if (top.m_signature_length != -1) {
    return absl::FailedPreconditionError(
        absl::StrCat(what,
                     ": the xclbin is signed; adding a manifest would "
                     "invalidate its signature (use a manifest file "
                     "beside it instead)"));
  }
  std::vector<NewSection> sections;
  for (const XclbinSection& s : c->sections) {
    if (s.kind == USER_METADATA && s.name == kManifestSectionName) continue;
    sections.push_back({s.kind, s.name, std::string(bytes.substr(s.offset, s.size))});
  }
  sections.push_back({USER_METADATA, kManifestSectionName, std::string(manifest)});
  return Assemble(top, sections, what);
}

}  // namespace hgpipe::accel
