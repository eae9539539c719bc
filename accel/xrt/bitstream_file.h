// A bitstream on disk: an .xclbin and its manifest
// (proto/bitstream_manifest.proto), read and validated without touching a
// device, so a server can check the bitstreams its models name before it opens
// any board.
//
// Where the manifest is (docs/hardware.md, "Bitstream manifest"):
//   1. inside the xclbin, a USER_METADATA section named "hgpipe_manifest"
//      (hgpipe-xclbin write / hgpipe-xclbin package put it there), or
//   2. in a file beside it, <xclbin path>.manifest.pbtxt (for containers
//      that cannot be rewritten, e.g. signed ones).
// Both may exist only if they say the same thing. Both are protobuf text
// format of hgpipe.config.BitstreamManifest.
#ifndef HGPIPE_ACCEL_XRT_BITSTREAM_FILE_H_
#define HGPIPE_ACCEL_XRT_BITSTREAM_FILE_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "accel/bitstream.h"
#include "accel/xrt/xclbin_file.h"

namespace hgpipe::config {
class BitstreamManifest;
}  // namespace hgpipe::config

namespace hgpipe::accel {

// The kernel contract version this code implements (docs/kernel-contract.md).
inline constexpr uint32_t kKernelContractVersion = 1;
inline constexpr char kInputLayoutHgpipe2x2[] = "hgpipe_2x2";
inline constexpr char kOutputLayoutLogit19[] = "logit19";

// A validated manifest with its defaults filled in.
struct ManifestInfo {
  BitstreamManifest manifest;  // name = the manifest's model
  std::string kernel;          // Default: "hgpipe_top"
  // Set when the manifest names the xclbin it describes.
  std::optional<XclbinUuid> xclbin_uuid;
  // 0: no limit.
  uint32_t max_images_per_run = 0;
};

// Parses manifest text (protobuf text format). InvalidArgument naming `what`
// (e.g. the file) and the line or field at fault: syntax errors, an empty
// model, an unknown kernel_contract or I/O layout, or a geometry or timing
// that fails DeviceGeometry::Validate / PipelineTiming::Validate.
absl::StatusOr<ManifestInfo> ParseManifest(absl::string_view text, absl::string_view what);
// The same from a parsed message.
absl::StatusOr<ManifestInfo> ManifestFromProto(const config::BitstreamManifest& proto,
                                               absl::string_view what);

// "<xclbin_path>.manifest.pbtxt".
std::string ManifestSidecarPath(absl::string_view xclbin_path);

struct BitstreamFile {
  std::string xclbin_path;
  std::string bytes;  // the whole container, for loading it on a device
  XclbinUuid uuid{};
  ManifestInfo manifest;
  // Where the manifest came from: "<path> (section USER_METADATA
  // hgpipe_manifest)" or the sidecar's path.
  std::string manifest_source;
};

// Reads and checks an .xclbin and its manifest. Errors name the file:
//   NotFound           the xclbin is missing; it has no manifest;
//   InvalidArgument    not an xclbin (bad magic, truncated); a bad manifest;
//                      the embedded and sidecar manifests disagree; no
//                      compute unit of the manifest's kernel in IP_LAYOUT
//                      ("unknown kernel"); the kernel is not ap_ctrl_chain;
//   FailedPrecondition the manifest names another xclbin uuid
//                      ("xclbin id mismatch").
absl::StatusOr<BitstreamFile> ReadBitstreamFile(const std::string& xclbin_path);

// ReadBitstreamFile(path)->manifest.manifest: what a server needs to plan
// for a bitstream's boards (geometry, timing).
absl::StatusOr<BitstreamManifest> ReadBitstreamManifest(const std::string& xclbin_path);

}  // namespace hgpipe::accel

#endif  // HGPIPE_ACCEL_XRT_BITSTREAM_FILE_H_
