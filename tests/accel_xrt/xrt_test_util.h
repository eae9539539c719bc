// Helpers for the XRT tests: XRT's no-op device and test bitstreams.
//
// Under XCL_EMULATION_MODE=noop the real XRT libraries run (devices open,
// xclbins load, buffers are allocated, mapped and synced, runs start and
// complete) but the kernel computes nothing: output buffers keep whatever
// the host left in them. These tests therefore check the driver's path
// (buffers, syncs, ordering, errors), never logits.
#ifndef HGPIPE_TESTS_ACCEL_XRT_XRT_TEST_UTIL_H_
#define HGPIPE_TESTS_ACCEL_XRT_XRT_TEST_UTIL_H_

#include <string>

#include "accel/xrt/xclbin_file.h"

namespace hgpipe::accel::testing {

// Points XRT at its no-op device for this process: makes a folder D whose
// lib/ links to Debian's XRT library folder (XRT looks for its shims under
// $XILINX_XRT/lib) and sets XILINX_XRT=D and XCL_EMULATION_MODE=noop. Must
// run before the first XRT device is opened; idempotent.
void UseXrtNoopDevice();

// A fresh, empty folder under the test's temporary directory.
std::string NewTestDir();

// Manifest text (proto/bitstream_manifest.proto) for a small test bitstream:
// 4 tokens x 8 values in (32 bytes), 10 classes out; `extra` is appended.
std::string SmallManifest(const std::string& extra = "");

// Writes BuildXclbin(spec) to `path`; fails the test on error.
void WriteXclbin(const std::string& path, const XclbinSpec& spec);
// A spec with the hgpipe_top kernel and `manifest` embedded.
XclbinSpec SpecWithManifest(const std::string& manifest);

}  // namespace hgpipe::accel::testing

#endif  // HGPIPE_TESTS_ACCEL_XRT_XRT_TEST_UTIL_H_
