// Which boards the server drives (--boards) and which model each serves.
//
// Grammar: a comma-separated list of items. `sim:N` gives every model N
// emulated boards of its own, programmed with its bitstream. `xrt:all` or
// `xrt:I` (an index or a PCIe BDF) names real boards; a bare item after an
// xrt item is another xrt device, so `xrt:0,1` is boards 0 and 1.
//
// XRT boards serve the models whose config names an `xclbin`: with one such
// model it gets every XRT board; with several, the boards are dealt out in
// turn (each model needs at least one). Each board is programmed with its
// model's xclbin at start-up.
#ifndef HGPIPE_SERVER_BOARD_FACTORY_H_
#define HGPIPE_SERVER_BOARD_FACTORY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "accel/board.h"
#include "base/clock.h"
#include "server/model_repository.h"

namespace hgpipe::server {

struct BoardSpec {
  uint32_t sim_per_model = 0;
  bool xrt_all = false;
  std::vector<std::string> xrt_devices;
};

// InvalidArgument naming the bad item.
absl::StatusOr<BoardSpec> ParseBoardSpec(absl::string_view spec);

// The model's xclbin path (config `xclbin`, relative to its directory), or
// empty if it names none.
std::string XclbinPath(const ModelEntry& model);

struct BoardOptions {
  // Runs each board can have queued at once. Default: 8.
  int num_slots = 8;
};

// Creates and programs the boards, one list per model (same order as
// `models`), each sized for its model's batching.max_images_per_run. Fails if any board cannot be created, naming the board.
// `clock` must outlive the boards.
absl::StatusOr<std::vector<std::vector<std::unique_ptr<accel::Board>>>>
CreateBoards(const BoardSpec& spec, const std::vector<ModelEntry>& models,
             const BoardOptions& options, Clock* clock);

}  // namespace hgpipe::server

#endif  // HGPIPE_SERVER_BOARD_FACTORY_H_
