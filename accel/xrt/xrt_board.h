// A real board: an FPGA card driven through Xilinx XRT's native C++ API,
// programmed with an HG-PIPE bitstream whose kernel follows the hgpipe_top
// contract (docs/kernel-contract.md). See docs/hardware.md for hosts, cards
// and permissions.
//
// OpenXrtBoard opens the device, loads the xclbin, finds the kernel and
// allocates the slot pool once: per slot an input and an output buffer
// object, mapped once (slot() returns spans over the mappings), and one
// xrt::run with the buffers bound. Submit syncs the slot's input to the
// device, sets n_images and starts the run without waiting for it, so
// several runs are queued on the compute unit at once (ap_ctrl_chain: the
// images of consecutive runs overlap in the pipeline). One completion thread
// per board waits on the runs in submission order (xrt::run::wait blocks in
// XRT; nothing here polls), syncs each run's output from the device and
// calls its DoneCallback.
//
// Failures: every XRT exception is caught here. The run it concerns fails
// with UNAVAILABLE naming the board, the operation and XRT's message; the
// board then reports UNAVAILABLE from Health() and fails every later run at
// once, so the scheduler sends images elsewhere. A run that does not finish
// within `run_timeout` fails the same way (DEADLINE_EXCEEDED).
//
// Program loads another xclbin (Bitstream::xclbin_path): its manifest is read
// and validated (bitstream_file.h), the slot pool and kernel are released, the
// xclbin is loaded, the kernel found again and the pool reallocated for the
// new geometry (same number of slots and images per run). Reset answers every
// run in flight ABORTED (a run still going on the device is stopped with
// xrt::run::abort; one that already finished is not read back), releases the
// pool and kernel and re-opens the device handle; the board then holds no
// bitstream until Program. Both wait until every run submitted before them
// has been answered, run on a board-owned operations thread in call order and
// report through `done` there, so they never block the caller; meanwhile
// Submit refuses runs (FAILED_PRECONDITION "not programmed"). A successful
// Program or Reset clears a recorded failure. Program refuses (InvalidArgument)
// a bitstream without an xclbin path or whose manifest's geometry is not the
// file's, and (FailedPrecondition) to start with a run in flight.
//
// Health: UNAVAILABLE after a failure; FAILED_PRECONDITION while a Program or
// Reset is queued or running, after Reset and after a failed Program;
// otherwise OK.
//
// Thread safety: as Board. Completion callbacks run on the board's completion
// thread, in submission order. Destroying the board finishes a Program or
// Reset in progress, answers queued ones CANCELLED, and waits for the runs in
// flight and delivers their callbacks.
#ifndef HGPIPE_ACCEL_XRT_XRT_BOARD_H_
#define HGPIPE_ACCEL_XRT_XRT_BOARD_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "accel/board.h"

namespace hgpipe::accel {

struct XrtBoardOptions {
  // The board's name in the server (metrics, errors). Default (empty):
  // "xrt<device>".
  std::string name;
  // The device: an index ("0", as ListXrtDevices returns) or a PCIe BDF
  // ("0000:3b:00.1"). Required.
  std::string device;
  // The bitstream to program. Its manifest (bitstream_file.h) is read and
  // validated. Required.
  std::string xclbin_path;
  // Images per run (the slot size). Must be >= 1 and within the manifest's
  // max_images_per_run when it has one. Default: 64.
  uint32_t max_images_per_run = 64;
  // Runs queued on the board at once (the pool size). Default: 4.
  int num_slots = 4;
  // A run not finished after this long fails and marks the board unhealthy.
  // Default: 30 s (a full 64-image run takes about 11 ms on HG-PIPE).
  absl::Duration run_timeout = absl::Seconds(30);

  // Test only: every run after this many fails in its completion path
  // because the driver then issues an invalid XRT call there (a read past
  // the end of the run's output buffer object), so XRT itself raises the
  // exception a lost device would; the failure takes the same path as any
  // XRT error. Runs are counted from OpenXrtBoard, across Program and Reset,
  // so the fault persists through recovery. Default: never.
  std::optional<uint64_t> test_fault_after_runs;
};

// Opens a board, programmed with options.xclbin_path. Errors name the board and, where one is at
// fault, the file:
//   NotFound / InvalidArgument / FailedPrecondition from ReadBitstreamFile
//     (missing xclbin, bad magic, bad or missing manifest, unknown kernel,
//     xclbin id mismatch);
//   InvalidArgument   bad options; the kernel's arguments break the contract;
//   Unavailable       XRT refused: no such device, the xclbin does not load,
//                     buffers cannot be allocated (XRT's message included).
absl::StatusOr<std::unique_ptr<Board>> OpenXrtBoard(const XrtBoardOptions& options);

// The devices XRT sees, as strings for XrtBoardOptions::device: "0", "1", ...
// Empty if there are none (XRT's no-op device is not enumerated: open it as
// "0"). Unavailable if XRT cannot enumerate (e.g. no driver).
absl::StatusOr<std::vector<std::string>> ListXrtDevices();

}  // namespace hgpipe::accel

#endif  // HGPIPE_ACCEL_XRT_XRT_BOARD_H_
