#include "server/board_factory.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "accel/emulated_board.h"
#include "accel/kernel.h"
#include "base/status_macros.h"

namespace hgpipe::server {

absl::StatusOr<BoardSpec> ParseBoardSpec(absl::string_view spec) {
  BoardSpec out;
  bool in_xrt = false;
  for (absl::string_view item : absl::StrSplit(spec, ',', absl::SkipWhitespace())) {
    item = absl::StripAsciiWhitespace(item);
    if (absl::ConsumePrefix(&item, "sim:")) {
      in_xrt = false;
      uint32_t n;
      if (!absl::SimpleAtoi(item, &n) || n == 0 || n > 64) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--boards: 'sim:", item, "': N must be a number from 1 to 64"));
      }
      out.sim_per_model += n;
    } else if (absl::ConsumePrefix(&item, "xrt:") || in_xrt) {
      in_xrt = true;
      if (item == "all") {
        out.xrt_all = true;
      } else if (item.empty()) {
        return absl::InvalidArgumentError("--boards: 'xrt:' needs 'all', an index or a BDF");
      } else {
        out.xrt_devices.emplace_back(item);
      }
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "--boards: '", item, "' is not sim:N, xrt:all or xrt:DEVICE"));
    }
  }
  if (out.sim_per_model == 0 && !out.xrt_all && out.xrt_devices.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--boards: '", spec, "' names no board"));
  }
  return out;
}

absl::StatusOr<std::vector<std::vector<std::unique_ptr<accel::Board>>>>
CreateBoards(const BoardSpec& spec, const std::vector<ModelEntry>& models,
             const BoardOptions& options, Clock* clock) {
  if (spec.xrt_all || !spec.xrt_devices.empty()) {
    return absl::UnimplementedError(
        "--boards: XRT boards are not available in this build of hgpipe-server "
        "(use sim:N)");
  }
  std::vector<std::vector<std::unique_ptr<accel::Board>>> out(models.size());
  int next = 0;
  for (size_t m = 0; m < models.size(); ++m) {
    ASSIGN_OR_RETURN(auto kernel,
                     accel::FindEmulatedKernel(models[m].config.bitstream()));
    for (uint32_t i = 0; i < spec.sim_per_model; ++i) {
      accel::EmulatedBoard::Options o;
      o.name = absl::StrCat("sim", next++);
      o.kernel = kernel;
      o.clock = clock;
      o.max_images_per_run = models[m].config.batching().max_images_per_run();
      o.num_slots = options.num_slots;
      ASSIGN_OR_RETURN(auto board, accel::EmulatedBoard::Create(std::move(o)));
      out[m].push_back(std::move(board));
    }
  }
  return out;
}

}  // namespace hgpipe::server
