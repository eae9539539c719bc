// The .xclbin container ("axlf", /usr/include/xrt/xclbin.h): writing a small
// but complete one for a kernel, and reading one's header and sections.
//
// Written containers hold what XRT needs to load them and run the kernel on
// a device (the no-op device included): MEM_TOPOLOGY (one DDR bank),
// IP_LAYOUT (one compute unit with its control protocol), CONNECTIVITY (each
// global argument to the bank), EMBEDDED_METADATA (the kernel's arguments as
// XML), and optionally KEYVALUE_METADATA and USER_METADATA (free-form; this
// project stores the bitstream manifest there, bitstream_file.h). They hold
// no BITSTREAM: on hardware a container made by Vitis (v++) is used, and this
// code only reads it, or repackages it with a manifest (Repackage).
//
// Nothing here talks to a device or needs XRT's libraries, only its header.
#ifndef HGPIPE_ACCEL_XRT_XCLBIN_FILE_H_
#define HGPIPE_ACCEL_XRT_XCLBIN_FILE_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hgpipe::accel {

using XclbinUuid = std::array<uint8_t, 16>;

// Section kinds this code names (xclbin.h, enum axlf_section_kind).
inline constexpr uint32_t kXclbinEmbeddedMetadata = 2;
inline constexpr uint32_t kXclbinMemTopology = 6;
inline constexpr uint32_t kXclbinConnectivity = 7;
inline constexpr uint32_t kXclbinIpLayout = 8;
inline constexpr uint32_t kXclbinKeyValueMetadata = 15;
inline constexpr uint32_t kXclbinUserMetadata = 16;

// The USER_METADATA section that holds a bitstream manifest.
inline constexpr char kManifestSectionName[] = "hgpipe_manifest";

// "EMBEDDED_METADATA", or "KIND_<n>" for kinds without a name here.
std::string XclbinSectionKindName(uint32_t kind);

// "0123...ef" (32 lower-case hex digits) and back. Parsing accepts dashes
// (the 8-4-4-4-12 form) and either case; InvalidArgument otherwise.
std::string UuidToHex(const XclbinUuid& uuid);
absl::StatusOr<XclbinUuid> ParseUuidHex(absl::string_view text);
// A random (version 4) uuid.
XclbinUuid RandomUuid();

// One kernel argument as EMBEDDED_METADATA describes it.
struct XclbinArg {
  std::string name;
  bool global = false;  // addressQualifier 1 (global pointer) or 0 (scalar)
  uint32_t size = 0;    // bytes in the control register map
  uint32_t offset = 0;  // offset in the control register map
  std::string type;     // the C type, e.g. "int*"
};

// A kernel with one compute unit "<name>:<instance>".
struct XclbinKernelSpec {
  std::string name = "hgpipe_top";
  std::string instance = "hgpipe_top_1";
  // IP_CONTROL: 0 ap_ctrl_hs, 1 ap_ctrl_chain.
  uint32_t control = 1;
  uint64_t base_address = 0x1800000;
  std::vector<XclbinArg> args;
};

// The hgpipe_top kernel contract (docs/kernel-contract.md):
// (0) in: global int8*, (1) out: global int32*, (2) n_images: uint32;
// ap_ctrl_chain.
XclbinKernelSpec HgpipeKernelSpec();

struct XclbinSpec {
  // Default (all zero): a random uuid.
  XclbinUuid uuid{};
  std::string platform_vbnv = "xilinx_hgpipe_noop_1_0";
  XclbinKernelSpec kernel = HgpipeKernelSpec();
  // Size of the one DDR bank in MEM_TOPOLOGY. Default: 4 GiB.
  uint64_t ddr_size_kb = 4ull << 20;
  // When set, a USER_METADATA section named kManifestSectionName holding it.
  std::optional<std::string> manifest;
  // When non-empty, a KEYVALUE_METADATA section holding these pairs in
  // xclbinutil's JSON form ({"keyvalue_metadata":{"key_values":[...]}}).
  std::vector<std::pair<std::string, std::string>> key_values;
};

// The bytes of an .xclbin for `spec`. InvalidArgument if a name does not fit
// its fixed-size field or the kernel has no arguments.
absl::StatusOr<std::string> BuildXclbin(const XclbinSpec& spec);

struct XclbinSection {
  uint32_t kind = 0;
  std::string name;  // the section header's 16-byte name
  uint64_t offset = 0;
  uint64_t size = 0;
};

// A compute unit from IP_LAYOUT.
struct XclbinIp {
  std::string name;      // "kernel:instance"
  uint32_t type = 0;     // IP_TYPE; 1 is IP_KERNEL
  uint32_t control = 0;  // IP_CONTROL, for kernels
  bool interrupt = false;
  uint64_t base_address = 0;
};

// What ParseXclbin reads. Section contents are views into the parsed bytes.
struct XclbinContents {
  XclbinUuid uuid{};
  std::string platform_vbnv;
  uint64_t length = 0;  // header's m_length
  uint16_t mode = 0;    // XCLBIN_MODE
  std::vector<XclbinSection> sections;
  std::vector<XclbinIp> ips;  // empty without IP_LAYOUT

  // The data of the first section of `kind` (and `name`, when given), or
  // nullopt.
  std::optional<absl::string_view> Section(uint32_t kind,
                                           std::optional<absl::string_view> name = {}) const;

  absl::string_view bytes;  // the whole container
};

// Reads the header, the section table and IP_LAYOUT of an .xclbin held in
// `bytes` (which must outlive the result). InvalidArgument naming `what`
// (e.g. the file) if the magic is wrong ("not an xclbin: bad magic"), the
// header is truncated or a section lies outside the container.
absl::StatusOr<XclbinContents> ParseXclbin(absl::string_view bytes, absl::string_view what);

// A copy of the container `bytes` (e.g. one built by Vitis) whose manifest
// section (USER_METADATA named kManifestSectionName) holds `manifest`,
// replacing any it had; the uuid and every other section are unchanged.
// Signed containers are refused (FailedPrecondition): rewriting would
// invalidate their signature. Errors name `what`.
absl::StatusOr<std::string> Repackage(absl::string_view bytes, absl::string_view what,
                                      absl::string_view manifest);

// (Whole-file reading and writing: base/file.h.)

}  // namespace hgpipe::accel

#endif  // HGPIPE_ACCEL_XRT_XCLBIN_FILE_H_
