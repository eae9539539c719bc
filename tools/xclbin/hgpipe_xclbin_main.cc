// hgpipe-xclbin: writes, repackages and prints .xclbin containers for HG-PIPE
// bitstreams (docs/hardware.md, "Bitstream manifest").
//
//   hgpipe-xclbin write OUT.xclbin --manifest FILE [--kernel hgpipe_top]
//       [--uuid HEX] [--control chain|hs] [--platform VBNV]
//     A container XRT loads and runs (on the no-op device: for tests), with
//     the kernel's metadata and the manifest embedded. It has no bitstream.
//   hgpipe-xclbin package IN.xclbin OUT.xclbin --manifest FILE
//     A copy of a real container (e.g. built by v++) with the manifest
//     embedded; everything else, the uuid included, unchanged.
//   hgpipe-xclbin info FILE
//     Header, sections, compute units, kernel arguments and the manifest.
#include <cstdio>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "accel/xrt/bitstream_file.h"
#include "accel/xrt/xclbin_file.h"
#include "base/file.h"
#include "base/flags.h"
#include "base/status_macros.h"
#include "experimental/xrt_xclbin.h"

ABSL_FLAG(std::string, manifest, "",
          "Bitstream manifest, protobuf text format "
          "(proto/bitstream_manifest.proto)");
ABSL_FLAG(std::string, kernel, "", "Kernel name (default: the manifest's kernel, hgpipe_top)");
ABSL_FLAG(std::string, uuid, "",
          "xclbin uuid, 32 hex digits (default: the manifest's xclbin_uuid, "
          "else random)");
ABSL_FLAG(std::string, control, "chain",
          "Compute unit control protocol: chain (ap_ctrl_chain, the "
          "contract) or hs (ap_ctrl_hs)");
ABSL_FLAG(std::string, platform, "xilinx_hgpipe_noop_1_0", "Platform VBNV written in the header");

namespace hgpipe::tools {
namespace {

using accel::XclbinUuid;

absl::Status Write(const std::string& out) {
  const std::string manifest_path = absl::GetFlag(FLAGS_manifest);
  if (manifest_path.empty()) {
    return absl::InvalidArgumentError("write: --manifest is required");
  }
  ASSIGN_OR_RETURN(std::string text, hgpipe::ReadWholeFile(manifest_path));
  ASSIGN_OR_RETURN(accel::ManifestInfo m, accel::ParseManifest(text, manifest_path));

  accel::XclbinSpec spec;
  spec.platform_vbnv = absl::GetFlag(FLAGS_platform);
  const std::string kernel =
      absl::GetFlag(FLAGS_kernel).empty() ? m.kernel : absl::GetFlag(FLAGS_kernel);
  if (kernel != m.kernel) {
    std::cerr << "warning: kernel " << kernel << " is not the manifest's (" << m.kernel
              << "): servers will refuse this xclbin\n";
  }
  spec.kernel.name = kernel;
  spec.kernel.instance = absl::StrCat(kernel, "_1");
  const std::string control = absl::GetFlag(FLAGS_control);
  if (control == "chain") {
    spec.kernel.control = 1;
  } else if (control == "hs") {
    spec.kernel.control = 0;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("--control: want chain or hs, got ", control));
  }
  if (!absl::GetFlag(FLAGS_uuid).empty()) {
    ASSIGN_OR_RETURN(spec.uuid, accel::ParseUuidHex(absl::GetFlag(FLAGS_uuid)));
    if (m.xclbin_uuid && *m.xclbin_uuid != spec.uuid) {
      return absl::InvalidArgumentError(absl::StrCat("--uuid ", accel::UuidToHex(spec.uuid),
                                                     " is not the manifest's "
                                                     "xclbin_uuid ",
                                                     accel::UuidToHex(*m.xclbin_uuid)));
    }
  } else if (m.xclbin_uuid) {
    spec.uuid = *m.xclbin_uuid;
  } else {
    spec.uuid = accel::RandomUuid();
  }
  spec.manifest = text;
  spec.key_values = {
      {"hgpipe.model", m.manifest.name},
      {"hgpipe.kernel_contract", absl::StrCat(accel::kKernelContractVersion)},
      {"hgpipe.manifest", absl::StrCat("USER_METADATA/", accel::kManifestSectionName)},
  };
  ASSIGN_OR_RETURN(std::string bytes, accel::BuildXclbin(spec));
  RETURN_IF_ERROR(hgpipe::WriteWholeFile(out, bytes));
  std::cout << "wrote " << out << ": kernel " << kernel << ", uuid " << accel::UuidToHex(spec.uuid)
            << ", model " << m.manifest.name << ", " << bytes.size() << " bytes\n";
  return absl::OkStatus();
}

absl::Status Package(const std::string& in, const std::string& out) {
  const std::string manifest_path = absl::GetFlag(FLAGS_manifest);
  if (manifest_path.empty()) {
    return absl::InvalidArgumentError("package: --manifest is required");
  }
  ASSIGN_OR_RETURN(std::string text, hgpipe::ReadWholeFile(manifest_path));
  ASSIGN_OR_RETURN(accel::ManifestInfo m, accel::ParseManifest(text, manifest_path));
  (void)m;
  ASSIGN_OR_RETURN(std::string bytes, hgpipe::ReadWholeFile(in));
  ASSIGN_OR_RETURN(std::string packaged, accel::Repackage(bytes, in, text));
  RETURN_IF_ERROR(hgpipe::WriteWholeFile(out, packaged));
  // The result must be a bitstream the server accepts.
  absl::StatusOr<accel::BitstreamFile> check = accel::ReadBitstreamFile(out);
  if (!check.ok()) {
    std::remove(out.c_str());
    return check.status();
  }
  std::cout << "wrote " << out << ": " << in << " with manifest " << manifest_path << " (model "
            << m.manifest.name << ")\n";
  return absl::OkStatus();
}

std::string ControlName(uint32_t control) {
  switch (control) {
    case 0: return "ap_ctrl_hs";
    case 1: return "ap_ctrl_chain";
    case 2: return "ap_ctrl_none";
    default: return absl::StrCat("control ", control);
  }
}

absl::Status Info(const std::string& path) {
  ASSIGN_OR_RETURN(std::string bytes, hgpipe::ReadWholeFile(path));
  ASSIGN_OR_RETURN(accel::XclbinContents c, accel::ParseXclbin(bytes, path));
  std::cout << "file:     " << path << " (" << bytes.size() << " bytes)\n"
            << "uuid:     " << accel::UuidToHex(c.uuid) << "\n"
            << "platform: " << c.platform_vbnv << "\n"
            << "mode:     " << c.mode << "\n"
            << "sections: " << c.sections.size() << "\n";
  for (const accel::XclbinSection& s : c.sections) {
    std::cout << absl::StrFormat("  %-20s %-16s offset %8d size %8d\n",
                                 accel::XclbinSectionKindName(s.kind), s.name, s.offset, s.size);
  }
  std::cout << "compute units:\n";
  for (const accel::XclbinIp& ip : c.ips) {
    if (ip.type != 1) continue;
    std::cout << absl::StrFormat("  %s  %s%s  base 0x%x\n", ip.name, ControlName(ip.control),
                                 ip.interrupt ? " interrupt" : "", ip.base_address);
  }
  // Kernel arguments as XRT itself reads them.
  try {
    const xrt::xclbin x(std::vector<char>(bytes.begin(), bytes.end()));
    for (const xrt::xclbin::kernel& k : x.get_kernels()) {
      std::cout << "kernel " << k.get_name() << ":\n";
      for (const xrt::xclbin::arg& a : k.get_args()) {
        std::cout << absl::StrFormat("  (%d) %-10s %-14s %s, %d bytes at 0x%x\n", a.get_index(),
                                     a.get_name(), a.get_host_type(),
                                     a.get_mems().empty() ? "scalar" : "global", a.get_size(),
                                     a.get_offset());
      }
    }
  } catch (const std::exception& e) {
    std::cout << "kernels: XRT cannot read them: " << e.what() << "\n";
  }
  if (auto kv = c.Section(accel::kXclbinKeyValueMetadata)) {
    std::cout << "key values: " << *kv << "\n";
  }
  absl::StatusOr<accel::BitstreamFile> f = accel::ReadBitstreamFile(path);
  if (!f.ok()) {
    std::cout << "manifest: unusable: " << f.status().message() << "\n";
    return absl::OkStatus();
  }
  const accel::BitstreamManifest& m = f->manifest.manifest;
  std::cout << "manifest: " << f->manifest_source << "\n"
            << "  model:     " << m.name << "\n"
            << "  kernel:    " << f->manifest.kernel << "\n"
            << "  geometry:  " << m.geometry.tokens << " tokens x " << m.geometry.token_values
            << " values in (" << m.geometry.input_bytes() << " bytes), " << m.geometry.classes
            << " classes out (" << m.geometry.output_bytes() << " bytes)\n"
            << absl::StrFormat(
                   "  timing:    %.0f Hz, interval %d cycles, latency %d "
                   "cycles, run overhead %s: %.0f images/s at best, "
                   "%.2f ms first result\n",
                   m.timing.clock_hz, m.timing.interval_cycles, m.timing.latency_cycles,
                   absl::FormatDuration(m.timing.run_overhead), m.timing.max_images_per_second(),
                   absl::ToDoubleMilliseconds(m.timing.latency()))
            << "  accuracy:  "
            << (m.accuracy.measured() ? absl::StrFormat("top-1 %.2f %% on %s",
                                                        m.accuracy.top1 * 100, m.accuracy.dataset)
                                      : std::string("not stated"))
            << "\n"
            << "  io:        " << accel::kInputLayoutHgpipe2x2 << " in, "
            << accel::kOutputLayoutLogit19 << " out\n"
            << "  max images per run: "
            << (f->manifest.max_images_per_run ? absl::StrCat(f->manifest.max_images_per_run)
                                               : std::string("no limit"))
            << "\n";
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "writes and prints HG-PIPE .xclbin containers\n"
      "  hgpipe-xclbin write OUT.xclbin --manifest FILE [--kernel NAME] "
      "[--uuid HEX] [--control chain|hs]\n"
      "  hgpipe-xclbin package IN.xclbin OUT.xclbin --manifest FILE\n"
      "  hgpipe-xclbin info FILE");
  hgpipe::HandleHelpFlag(argc, argv, __FILE__);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  const std::string cmd = args.size() > 1 ? args[1] : "";
  absl::Status s;
  if (cmd == "write" && args.size() == 3) {
    s = Write(args[2]);
  } else if (cmd == "package" && args.size() == 4) {
    s = Package(args[2], args[3]);
  } else if (cmd == "info" && args.size() == 3) {
    s = Info(args[2]);
  } else {
    std::cerr << absl::ProgramUsageMessage() << "\n";
    return 2;
  }
  if (!s.ok()) {
    std::cerr << "hgpipe-xclbin: " << s.message() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace hgpipe::tools

int main(int argc, char** argv) { return hgpipe::tools::Main(argc, argv); }
