#include "accel/xrt/bitstream_file.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/message_differencer.h"
#include "proto/bitstream_manifest.pb.h"

namespace hgpipe::accel {
namespace {

class ErrorList : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    if (first_.empty()) {
      first_ = absl::StrCat(line + 1, ":", column + 1, ": ", message);
    }
  }
  const std::string& first() const { return first_; }

 private:
  std::string first_;
};

absl::Status Invalid(absl::string_view what, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(what, ": ", message));
}

absl::StatusOr<config::BitstreamManifest> ParseProto(absl::string_view text,
                                                     absl::string_view what) {
  config::BitstreamManifest proto;
  google::protobuf::TextFormat::Parser parser;
  ErrorList errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(std::string(text), &proto)) {
    return Invalid(
        what, absl::StrCat("manifest does not parse: ",
                           errors.first().empty() ? std::string("syntax error") : errors.first()));
  }
  return proto;
}

}  // namespace

absl::StatusOr<ManifestInfo> ManifestFromProto(const config::BitstreamManifest& m,
                                               absl::string_view what) {
  ManifestInfo info;
  if (m.model().empty()) {
    return Invalid(what, "model: required (the model the bitstream computes)");
  }
  info.manifest.name = m.model();
  const uint32_t contract = m.kernel_contract() == 0 ? kKernelContractVersion : m.kernel_contract();
  if (contract != kKernelContractVersion) {
    return Invalid(what, absl::StrCat("kernel_contract: ", contract,
                                      " is not supported (this server "
                                      "implements version ",
                                      kKernelContractVersion, ", docs/kernel-contract.md)"));
  }
  info.kernel = m.kernel().empty() ? std::string("hgpipe_top") : m.kernel();
  if (!m.xclbin_uuid().empty()) {
    absl::StatusOr<XclbinUuid> uuid = ParseUuidHex(m.xclbin_uuid());
    if (!uuid.ok()) {
      return Invalid(what, absl::StrCat("xclbin_uuid: ", uuid.status().message()));
    }
    info.xclbin_uuid = *uuid;
  }

  DeviceGeometry& g = info.manifest.geometry;
  if (m.geometry().tokens()) g.tokens = m.geometry().tokens();
  if (m.geometry().token_values()) g.token_values = m.geometry().token_values();
  if (m.geometry().classes()) g.classes = m.geometry().classes();
  if (absl::Status s = g.Validate(); !s.ok()) return Invalid(what, s.message());

  PipelineTiming& t = info.manifest.timing;
  const config::ManifestTiming& mt = m.timing();
  if (mt.clock_hz() != 0) t.clock_hz = mt.clock_hz();
  if (mt.interval_cycles()) t.interval_cycles = mt.interval_cycles();
  if (mt.latency_cycles()) t.latency_cycles = mt.latency_cycles();
  if (mt.run_overhead_us()) {
    t.run_overhead = absl::Microseconds(mt.run_overhead_us());
  }
  t.link_bytes_per_second = mt.link_bytes_per_second();
  if (absl::Status s = t.Validate(); !s.ok()) return Invalid(what, s.message());

  if (!m.io().input().empty() && m.io().input() != kInputLayoutHgpipe2x2) {
    return Invalid(what, absl::StrCat("io.input: unknown layout \"", m.io().input(),
                                      "\" (known: \"", kInputLayoutHgpipe2x2, "\")"));
  }
  if (!m.io().output().empty() && m.io().output() != kOutputLayoutLogit19) {
    return Invalid(what, absl::StrCat("io.output: unknown layout \"", m.io().output(),
                                      "\" (known: \"", kOutputLayoutLogit19, "\")"));
  }
  info.max_images_per_run = m.max_images_per_run();
  MeasuredAccuracy& a = info.manifest.accuracy;
  a.top1 = m.accuracy().top1();
  a.dataset = m.accuracy().dataset();
  if (absl::Status s = a.Validate(); !s.ok()) return Invalid(what, s.message());
  return info;
}

absl::StatusOr<ManifestInfo> ParseManifest(absl::string_view text, absl::string_view what) {
  ASSIGN_OR_RETURN(config::BitstreamManifest proto, ParseProto(text, what));
  return ManifestFromProto(proto, what);
}

std::string ManifestSidecarPath(absl::string_view xclbin_path) {
  return absl::StrCat(xclbin_path, ".manifest.pbtxt");
}

absl::StatusOr<BitstreamFile> ReadBitstreamFile(const std::string& xclbin_path) {
  BitstreamFile f;
  f.xclbin_path = xclbin_path;
  {
    absl::StatusOr<std::string> bytes = ReadWholeFile(xclbin_path);
    if (!bytes.ok()) {
      return absl::Status(bytes.status().code(), absl::StrCat("xclbin ", bytes.status().message()));
    }
    f.bytes = *std::move(bytes);
  }
  ASSIGN_OR_RETURN(XclbinContents c, ParseXclbin(f.bytes, xclbin_path));
  f.uuid = c.uuid;

  // The manifest: embedded, beside, or both if they agree.
  const std::string embedded_what =
      absl::StrCat(xclbin_path, " (section USER_METADATA ", kManifestSectionName, ")");
  const std::string sidecar = ManifestSidecarPath(xclbin_path);
  std::optional<config::BitstreamManifest> embedded_proto, sidecar_proto;
  if (std::optional<absl::string_view> text =
          c.Section(kXclbinUserMetadata, kManifestSectionName)) {
    ASSIGN_OR_RETURN(embedded_proto, ParseProto(*text, embedded_what));
  }
  if (absl::StatusOr<std::string> text = ReadWholeFile(sidecar); text.ok()) {
    ASSIGN_OR_RETURN(sidecar_proto, ParseProto(*text, sidecar));
  } else if (!absl::IsNotFound(text.status())) {
    return text.status();
  }
  if (!embedded_proto && !sidecar_proto) {
    return absl::NotFoundError(absl::StrCat(xclbin_path,
                                            ": no bitstream manifest: neither a USER_METADATA "
                                            "section \"",
                                            kManifestSectionName, "\" in it nor a file ", sidecar,
                                            " (docs/hardware.md, \"Bitstream manifest\")"));
  }
  if (embedded_proto && sidecar_proto &&
      !google::protobuf::util::MessageDifferencer::Equivalent(*embedded_proto, *sidecar_proto)) {
    return Invalid(sidecar, absl::StrCat("disagrees with the manifest embedded in ", xclbin_path,
                                         "; remove one of them"));
  }
  f.manifest_source = embedded_proto ? embedded_what : sidecar;
  ASSIGN_OR_RETURN(f.manifest, ManifestFromProto(embedded_proto ? *embedded_proto : *sidecar_proto,
                                                 f.manifest_source));

  if (f.manifest.xclbin_uuid && *f.manifest.xclbin_uuid != f.uuid) {
    return absl::FailedPreconditionError(absl::StrCat(
        "xclbin id mismatch: manifest ", f.manifest_source, " is for xclbin ",
        UuidToHex(*f.manifest.xclbin_uuid), " but ", xclbin_path, " is ", UuidToHex(f.uuid)));
  }

  // The kernel must have a compute unit, controlled as the contract says.
  std::vector<std::string> kernels;
  const XclbinIp* cu = nullptr;
  for (const XclbinIp& ip : c.ips) {
    if (ip.type != 1) continue;  // IP_KERNEL
    kernels.push_back(ip.name);
    const size_t colon = ip.name.find(':');
    if (ip.name.substr(0, colon) == f.manifest.kernel && cu == nullptr) {
      cu = &ip;
    }
  }
  if (cu == nullptr) {
    return Invalid(xclbin_path,
                   absl::StrCat("unknown kernel: no compute unit of kernel \"", f.manifest.kernel,
                                "\" in IP_LAYOUT (compute units: ",
                                kernels.empty() ? "none" : absl::StrJoin(kernels, ", "), ")"));
  }
  if (cu->control != 1) {  // AP_CTRL_CHAIN
    return Invalid(xclbin_path, absl::StrCat("compute unit ", cu->name,
                                             " is not ap_ctrl_chain (IP_CONTROL ", cu->control,
                                             "); the kernel contract requires it so runs "
                                             "overlap (docs/kernel-contract.md)"));
  }
  return f;
}

absl::StatusOr<BitstreamManifest> ReadBitstreamManifest(const std::string& xclbin_path) {
  ASSIGN_OR_RETURN(BitstreamFile f, ReadBitstreamFile(xclbin_path));
  return f.manifest.manifest;
}

}  // namespace hgpipe::accel
