#include "server/board_factory.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "accel/emulated_board.h"
#include "accel/kernel.h"
#include "base/status_macros.h"

#ifdef HGPIPE_HAVE_XRT
#include "accel/xrt/xrt_board.h"
#endif

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

namespace {

absl::Status CreateXrtBoards(
    const BoardSpec& spec, const std::vector<ModelEntry>& models,
    const BoardOptions& options,
    std::vector<std::vector<std::unique_ptr<accel::Board>>>* out) {
  if (!spec.xrt_all && spec.xrt_devices.empty()) return absl::OkStatus();
#ifndef HGPIPE_HAVE_XRT
  return absl::UnimplementedError(
      "--boards: this hgpipe-server was built without XRT (libxrt-dev); use sim:N");
#else
  std::vector<std::string> devices;
  if (spec.xrt_all) {
    ASSIGN_OR_RETURN(devices, accel::ListXrtDevices());
    if (devices.empty()) {
      return absl::NotFoundError("--boards xrt:all: XRT sees no device");
    }
  }
  for (const std::string& d : spec.xrt_devices) {
    if (std::find(devices.begin(), devices.end(), d) == devices.end()) {
      devices.push_back(d);
    }
  }
  std::vector<size_t> served;  // models with an xclbin
  for (size_t m = 0; m < models.size(); ++m) {
    if (!models[m].config.xclbin().empty()) served.push_back(m);
  }
  if (served.empty()) {
    return absl::InvalidArgumentError(
        "--boards names XRT boards, but no model's config.pbtxt names an xclbin");
  }
  if (devices.size() < served.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--boards: ", devices.size(), " XRT board(s) for ", served.size(),
        " models with an xclbin; each needs at least one"));
  }
  for (size_t k = 0; k < devices.size(); ++k) {
    const ModelEntry& model = models[served[k % served.size()]];
    accel::XrtBoardOptions o;
    o.name = absl::StrCat("xrt", k);
    o.device = devices[k];
    o.xclbin_path = XclbinPath(model);
    o.max_images_per_run = model.config.batching().max_images_per_run();
    o.num_slots = options.num_slots;
    ASSIGN_OR_RETURN(auto board, accel::OpenXrtBoard(o));
    const accel::DeviceGeometry& want = model.manifest.geometry;
    const accel::DeviceGeometry& got = board->manifest().geometry;
    if (got.tokens != want.tokens || got.token_values != want.token_values ||
        got.classes != want.classes) {
      return absl::InvalidArgumentError(absl::StrCat(
          model.config_path, ": xclbin: ", o.xclbin_path, " is for ", got.tokens,
          "x", got.token_values, " -> ", got.classes, ", but bitstream '",
          model.config.bitstream(), "' is ", want.tokens, "x", want.token_values,
          " -> ", want.classes));
    }
    (*out)[served[k % served.size()]].push_back(std::move(board));
  }
  return absl::OkStatus();
#endif
}

}  // namespace

std::string XclbinPath(const ModelEntry& model) {
  if (model.config.xclbin().empty() || model.config.xclbin()[0] == '/') {
    return model.config.xclbin();
  }
  return absl::StrCat(model.directory, "/", model.config.xclbin());
}

absl::StatusOr<std::vector<std::vector<std::unique_ptr<accel::Board>>>>
CreateBoards(const BoardSpec& spec, const std::vector<ModelEntry>& models,
             const BoardOptions& options, Clock* clock) {
  std::vector<std::vector<std::unique_ptr<accel::Board>>> out(models.size());
  RETURN_IF_ERROR(CreateXrtBoards(spec, models, options, &out));
  int next = 0;
  for (size_t m = 0; m < models.size(); ++m) {
    const std::shared_ptr<const accel::Kernel>& kernel = models[m].kernel;
    if (kernel == nullptr && spec.sim_per_model > 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "model ", models[m].config.name(), ": no emulated kernel loaded"));
    }
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
