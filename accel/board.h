// A board: one accelerator card programmed with one bitstream, fed runs of
// images. Implementations: EmulatedBoard (timing model + a software kernel)
// and, with XRT, a driver for real cards.
//
// A board owns `num_slots()` run slots, each an input and an output buffer
// sized for `max_images_per_run()` images (on hardware, device buffer objects
// allocated once). The caller owns the slot bookkeeping: it writes a run's
// images into a free slot's input, calls Submit, and may reuse the slot after
// the completion callback has returned. The number of slots is how many runs
// can be queued on the board at once; queueing the next run before the
// current one drains is what keeps the pipeline full (image overlap).
//
// Thread safety: all methods may be called from any thread. Completion
// callbacks run on a board-owned thread, must not block, and must not call
// the board's destructor.
#ifndef HGPIPE_ACCEL_BOARD_H_
#define HGPIPE_ACCEL_BOARD_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/types/span.h"
#include "accel/bitstream.h"
#include "accel/kernel.h"

namespace hgpipe::accel {

struct RunSlotBuffers {
  // max_images_per_run() * geometry.input_bytes(), device order.
  absl::Span<int8_t> input;
  // max_images_per_run() * geometry.output_words(); valid once the run's
  // completion reports OK, until the slot is submitted again.
  absl::Span<const uint32_t> output;
};

// What a board can be programmed with. The manifest says what the bitstream
// is; each kind of board uses the part it can load.
struct Bitstream {
  BitstreamManifest manifest;
  // The function an emulated board computes for it.
  std::shared_ptr<const Kernel> kernel;
  // The file an XRT board loads (xclbin).
  std::string xclbin_path;
};

// Descriptive information; fields a driver cannot read stay empty.
struct BoardInfo {
  std::string name;    // unique within the server, e.g. "sim0", "xrt0"
  std::string kind;    // "emulated", "xrt"
  std::string device;  // e.g. PCIe BDF or device name
  std::optional<double> temperature_celsius;
  std::optional<double> power_watts;
};

class Board {
 public:
  // Called exactly once per Submit: OK with outputs in the slot, or the
  // reason the run failed.
  using DoneCallback = absl::AnyInvocable<void(absl::Status)>;

  virtual ~Board() = default;

  virtual const BoardInfo& info() const = 0;
  virtual const BitstreamManifest& manifest() const = 0;
  virtual int num_slots() const = 0;
  virtual uint32_t max_images_per_run() const = 0;
  virtual RunSlotBuffers slot(int index) = 0;

  // Starts a run of n images (1 <= n <= max_images_per_run()) from slot
  // `index`, which must not be in flight. Never blocks on the device: the
  // run is queued behind runs already submitted, and `done` reports it.
  virtual void Submit(int index, uint32_t n, DoneCallback done) = 0;

  // OK while the board accepts runs; otherwise why not.
  virtual absl::Status Health() const = 0;

  // Loads `bitstream` in place of the current one, for reprogramming at run
  // time. Requires that no run is in flight. Takes the device's programming
  // time (seconds on hardware; modelled on an emulated board) and reports
  // through `done`; afterwards manifest() describes the new bitstream and the
  // slots are sized for its geometry (max_images_per_run() is unchanged). On
  // failure the board accepts no run until a later Program succeeds.
  // manifest() and slot() must not be called while Program is in progress.
  virtual void Program(std::shared_ptr<const Bitstream> bitstream, DoneCallback done) = 0;

  // Recovers a board that failed or hung: every run in flight is aborted
  // (its callback reports ABORTED, before `done` is called), the device is
  // reset, and `done` reports whether that worked. A run that completed
  // before the Reset may still be in its callback, on another thread, when
  // `done` is called. A reset board holds no bitstream: it accepts runs
  // again only after Program.
  virtual void Reset(DoneCallback done) = 0;
};

}  // namespace hgpipe::accel

#endif  // HGPIPE_ACCEL_BOARD_H_
