// Which boards the server drives (--boards), how emulated boards behave
// (--emulated-*), and which model each board starts with.
//
// --boards grammar: a comma-separated list of items.
//   sim:N       every model gets N emulated boards of its own, programmed
//               with its bitstream; a model loaded at run time gets N new
//               ones.
//   sim-pool:N  N emulated boards shared by all models: dealt out in turn
//               to the models loaded at start-up (a model beyond N starts
//               with none; with no model, all N start idle). A model loaded
//               later gets none: the scheduler reprograms a board for a
//               model that has requests and no board.
//   xrt:all, xrt:I (an index or a PCIe BDF)  real boards; a bare item after
//               an xrt item is another xrt device, so `xrt:0,1` is boards 0
//               and 1.
// sim and sim-pool do not mix.
//
// XRT boards serve the models whose config names an `xclbin`: with one such
// model it gets every XRT board; with several, the boards are dealt out in
// turn (each model needs at least one). Each board is programmed with its
// model's xclbin at start-up.
//
// Emulated boards are named sim0, sim1, ... in order of creation, over the
// server's life.
#ifndef HGPIPE_SERVER_BOARD_FACTORY_H_
#define HGPIPE_SERVER_BOARD_FACTORY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "accel/board.h"
#include "accel/emulated_board.h"
#include "accel/faulty_board.h"
#include "base/clock.h"
#include "server/model_repository.h"

namespace hgpipe::server {

struct BoardSpec {
  uint32_t sim_per_model = 0;  // sim:N
  uint32_t sim_pool = 0;       // sim-pool:N
  bool xrt_all = false;
  std::vector<std::string> xrt_devices;

  bool has_xrt() const { return xrt_all || !xrt_devices.empty(); }
  bool has_sim() const { return sim_per_model > 0 || sim_pool > 0; }
};

// InvalidArgument naming the bad item.
absl::StatusOr<BoardSpec> ParseBoardSpec(absl::string_view spec);

// Faults injected into boards by name (--emulated-faults), emulated or XRT:
// "NAME=SPEC[,NAME=SPEC...]" with SPEC as accel::ParseFaultInjection reads
// it, e.g. "sim1=hang@100,xrt0=fail@50:permanent". Empty: none. The factory
// wraps each named board in an accel::FaultyBoard.
// InvalidArgument naming the bad item.
absl::StatusOr<absl::flat_hash_map<std::string, accel::FaultInjection>> ParseEmulatedFaults(
    absl::string_view spec);

// The model's xclbin path (config `xclbin`, relative to its directory), or
// empty if it names none.
std::string XclbinPath(const ModelEntry& model);

struct BoardOptions {
  // Runs each board can have queued at once. 0 (default): the board's own
  // default (emulated boards: from the pipeline depth).
  int num_slots = 0;
  // Emulated boards: how long Program and Reset take.
  absl::Duration program_time = absl::Seconds(1);
  absl::Duration reset_time = absl::Milliseconds(200);
  // Emulated boards: false: timing only, the kernel never runs and outputs
  // stay zero. For host-CPU measurements (bench/plan_vs_server.sh), where
  // computing the kernel on the host takes CPU a real board does not.
  bool compute = true;
  // Faults by board name (emulated or XRT boards).
  absl::flat_hash_map<std::string, accel::FaultInjection> faults;
};

// Boards created at start-up.
struct StartupBoards {
  // One list per model, in the order of the models given.
  std::vector<std::vector<std::unique_ptr<accel::Board>>> per_model;
  // Boards serving no model yet (sim-pool with no model to deal them to).
  std::vector<std::unique_ptr<accel::Board>> idle;
};

// Creates boards as --boards says. Not thread-safe: one caller at a time
// (the model manager serializes loads).
class BoardFactory {
 public:
  // `clock` must outlive the factory and every board it creates.
  BoardFactory(BoardSpec spec, BoardOptions options, Clock* clock);

  const BoardSpec& spec() const { return spec_; }

  // The boards for the models loaded at start-up (see the grammar above),
  // each programmed with its model's bitstream and sized for its model's
  // batching.max_images_per_run (pool boards: the largest). Fails naming
  // the board or model if one cannot be created.
  absl::StatusOr<StartupBoards> CreateStartupBoards(const std::vector<const ModelEntry*>& models);

  // The boards a model loaded at run time starts with: N new emulated
  // boards with sim:N; none otherwise (it gets one by reprogramming).
  absl::StatusOr<std::vector<std::unique_ptr<accel::Board>>> CreateForModel(
      const ModelEntry& model);

  // What the model's boards are programmed with: its manifest, its emulated
  // kernel and, for XRT boards, its xclbin. FailedPrecondition if no kind
  // of board in --boards can run it (only XRT boards and no xclbin).
  absl::StatusOr<std::shared_ptr<const accel::Bitstream>> MakeBitstream(
      const ModelEntry& model) const;

  // Whether the board named `board` was made for one load of one model
  // (sim:N), and should go when that load is unloaded; pool and XRT boards
  // stay for other models.
  bool MadeForOneLoad(absl::string_view board) const;

  // The boards of BoardOptions::faults not created so far, sorted.
  std::vector<std::string> PendingFaults() const;

 private:
  absl::StatusOr<std::unique_ptr<accel::Board>> NewEmulatedBoard(
      std::shared_ptr<const accel::Kernel> kernel, uint32_t max_images_per_run, bool for_one_load);
  // Wraps `board` in a FaultyBoard if options_.faults names it.
  absl::StatusOr<std::unique_ptr<accel::Board>> WithFault(std::unique_ptr<accel::Board> board);
  absl::Status CreateXrtBoards(const std::vector<const ModelEntry*>& models,
                               std::vector<std::vector<std::unique_ptr<accel::Board>>>* out);

  const BoardSpec spec_;
  const BoardOptions options_;
  Clock* const clock_;
  int next_sim_ = 0;
  absl::flat_hash_set<std::string> for_one_load_;
  absl::flat_hash_set<std::string> created_;  // board names, for PendingFaults
};

}  // namespace hgpipe::server

#endif  // HGPIPE_SERVER_BOARD_FACTORY_H_
