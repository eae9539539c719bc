#include "server/board_factory.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "accel/faulty_board.h"
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
    const bool pool = absl::StartsWith(item, "sim-pool:");
    if (pool || absl::StartsWith(item, "sim:")) {
      in_xrt = false;
      const absl::string_view prefix = pool ? "sim-pool:" : "sim:";
      absl::string_view count = item.substr(prefix.size());
      uint32_t n;
      if (!absl::SimpleAtoi(count, &n) || n == 0 || n > 64) {
        return absl::InvalidArgumentError(
            absl::StrCat("--boards: '", item, "': N must be a number from 1 to 64"));
      }
      (pool ? out.sim_pool : out.sim_per_model) += n;
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
      return absl::InvalidArgumentError(
          absl::StrCat("--boards: '", item, "' is not sim:N, sim-pool:N, xrt:all or xrt:DEVICE"));
    }
  }
  if (out.sim_per_model > 0 && out.sim_pool > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--boards: '", spec,
                     "': sim:N (boards per model) and sim-pool:N (boards "
                     "shared by all models) do not mix"));
  }
  if (!out.has_sim() && !out.has_xrt()) {
    return absl::InvalidArgumentError(absl::StrCat("--boards: '", spec, "' names no board"));
  }
  return out;
}

absl::StatusOr<absl::flat_hash_map<std::string, accel::FaultInjection>> ParseEmulatedFaults(
    absl::string_view spec) {
  absl::flat_hash_map<std::string, accel::FaultInjection> out;
  for (absl::string_view item : absl::StrSplit(spec, ',', absl::SkipWhitespace())) {
    item = absl::StripAsciiWhitespace(item);
    const size_t eq = item.find('=');
    if (eq == absl::string_view::npos || eq == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--emulated-faults: '", item, "' is not BOARD=FAULT (e.g. sim1=hang@100)"));
    }
    const std::string board(absl::StripAsciiWhitespace(item.substr(0, eq)));
    absl::StatusOr<accel::FaultInjection> fault =
        accel::ParseFaultInjection(absl::StripAsciiWhitespace(item.substr(eq + 1)));
    if (!fault.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--emulated-faults: '", item, "': ", fault.status().message()));
    }
    if (!out.emplace(board, *fault).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("--emulated-faults: '", item, "': board ", board, " named twice"));
    }
  }
  return out;
}

std::string XclbinPath(const ModelEntry& model) {
  if (model.config.xclbin().empty() || model.config.xclbin()[0] == '/') {
    return model.config.xclbin();
  }
  return absl::StrCat(model.directory, "/", model.config.xclbin());
}

BoardFactory::BoardFactory(BoardSpec spec, BoardOptions options, Clock* clock)
    : spec_(std::move(spec)), options_(std::move(options)), clock_(clock) {}

absl::StatusOr<std::shared_ptr<const accel::Bitstream>> BoardFactory::MakeBitstream(
    const ModelEntry& model) const {
  auto b = std::make_shared<accel::Bitstream>();
  b->manifest = model.manifest;
  b->kernel = model.kernel;
  b->xclbin_path = XclbinPath(model);
  const bool emulated = spec_.has_sim() && b->kernel != nullptr;
  const bool xrt = spec_.has_xrt() && !b->xclbin_path.empty();
  if (!emulated && !xrt) {
    return absl::FailedPreconditionError(absl::StrCat(
        model.config_path, ": no board of --boards can run model ", model.config.name(),
        spec_.has_xrt() ? ": XRT boards need an `xclbin` in its config"
                        : ": it has no emulated kernel"));
  }
  return b;
}

std::vector<std::string> BoardFactory::PendingFaults() const {
  std::vector<std::string> out;
  for (const auto& [name, fault] : options_.faults) {
    if (!created_.contains(name)) out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

absl::StatusOr<std::unique_ptr<accel::Board>> BoardFactory::NewEmulatedBoard(
    std::shared_ptr<const accel::Kernel> kernel, uint32_t max_images_per_run, bool for_one_load) {
  accel::EmulatedBoard::Options o;
  o.name = absl::StrCat("sim", next_sim_++);
  o.kernel = std::move(kernel);
  o.clock = clock_;
  o.max_images_per_run = max_images_per_run;
  o.num_slots = options_.num_slots;
  o.program_time = options_.program_time;
  o.reset_time = options_.reset_time;
  o.compute = options_.compute;
  const std::string name = o.name;
  ASSIGN_OR_RETURN(auto board, accel::EmulatedBoard::Create(std::move(o)));
  ASSIGN_OR_RETURN(auto out, WithFault(std::move(board)));
  if (for_one_load) for_one_load_.insert(name);
  return out;
}

absl::StatusOr<std::unique_ptr<accel::Board>> BoardFactory::WithFault(
    std::unique_ptr<accel::Board> board) {
  const std::string name = board->info().name;
  created_.insert(name);
  auto it = options_.faults.find(name);
  if (it == options_.faults.end()) return board;
  ASSIGN_OR_RETURN(auto faulty, accel::FaultyBoard::Create(std::move(board), it->second, clock_));
  return std::unique_ptr<accel::Board>(std::move(faulty));
}

bool BoardFactory::MadeForOneLoad(absl::string_view board) const {
  return for_one_load_.contains(board);
}

absl::Status BoardFactory::CreateXrtBoards(
    const std::vector<const ModelEntry*>& models,
    std::vector<std::vector<std::unique_ptr<accel::Board>>>* out) {
  if (!spec_.has_xrt()) return absl::OkStatus();
#ifndef HGPIPE_HAVE_XRT
  (void)models;
  (void)out;
  return absl::UnimplementedError(
      "--boards: this hgpipe-server was built without XRT (libxrt-dev); use sim:N");
#else
  std::vector<std::string> devices;
  if (spec_.xrt_all) {
    ASSIGN_OR_RETURN(devices, accel::ListXrtDevices());
    if (devices.empty()) {
      return absl::NotFoundError("--boards xrt:all: XRT sees no device");
    }
  }
  for (const std::string& d : spec_.xrt_devices) {
    if (std::find(devices.begin(), devices.end(), d) == devices.end()) {
      devices.push_back(d);
    }
  }
  std::vector<size_t> served;  // models with an xclbin
  for (size_t m = 0; m < models.size(); ++m) {
    if (!models[m]->config.xclbin().empty()) served.push_back(m);
  }
  if (served.empty()) {
    return absl::InvalidArgumentError(
        "--boards names XRT boards, but no model's config.pbtxt names an xclbin");
  }
  if (devices.size() < served.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--boards: ", devices.size(), " XRT board(s) for ", served.size(),
                     " models with an xclbin; each needs at least one"));
  }
  for (size_t k = 0; k < devices.size(); ++k) {
    const ModelEntry& model = *models[served[k % served.size()]];
    accel::XrtBoardOptions o;
    o.name = absl::StrCat("xrt", k);
    o.device = devices[k];
    o.xclbin_path = XclbinPath(model);
    o.max_images_per_run = model.config.batching().max_images_per_run();
    if (options_.num_slots > 0) o.num_slots = options_.num_slots;
    ASSIGN_OR_RETURN(std::unique_ptr<accel::Board> board, accel::OpenXrtBoard(o));
    const accel::DeviceGeometry& want = model.manifest.geometry;
    const accel::DeviceGeometry& got = board->manifest().geometry;
    if (got.tokens != want.tokens || got.token_values != want.token_values ||
        got.classes != want.classes) {
      return absl::InvalidArgumentError(absl::StrCat(
          model.config_path, ": xclbin: ", o.xclbin_path, " is for ", got.tokens, "x",
          got.token_values, " -> ", got.classes, ", but bitstream '", model.config.bitstream(),
          "' is ", want.tokens, "x", want.token_values, " -> ", want.classes));
    }
    ASSIGN_OR_RETURN(board, WithFault(std::move(board)));
    (*out)[served[k % served.size()]].push_back(std::move(board));
  }
  return absl::OkStatus();
#endif
}

absl::StatusOr<StartupBoards> BoardFactory::CreateStartupBoards(
    const std::vector<const ModelEntry*>& models) {
  StartupBoards out;
  out.per_model.resize(models.size());
  RETURN_IF_ERROR(CreateXrtBoards(models, &out.per_model));
  for (size_t m = 0; m < models.size(); ++m) {
    if (models[m]->kernel == nullptr && spec_.has_sim()) {
      return absl::FailedPreconditionError(
          absl::StrCat("model ", models[m]->config.name(), ": no emulated kernel loaded"));
    }
    for (uint32_t i = 0; i < spec_.sim_per_model; ++i) {
      ASSIGN_OR_RETURN(
          auto board,
          NewEmulatedBoard(models[m]->kernel, models[m]->config.batching().max_images_per_run(),
                           /*for_one_load=*/true));
      out.per_model[m].push_back(std::move(board));
    }
  }
  if (spec_.sim_pool > 0) {
    // Pool boards serve any model: sized for the largest run of those known.
    uint32_t max_run = 0;
    for (const ModelEntry* m : models) {
      max_run = std::max(max_run, m->config.batching().max_images_per_run());
    }
    if (max_run == 0) max_run = 32;
    for (uint32_t i = 0; i < spec_.sim_pool; ++i) {
      if (models.empty()) {
        // Not serving anything yet: starts with the loopback kernel and is
        // programmed for the first model that needs it.
        ASSIGN_OR_RETURN(auto board, NewEmulatedBoard(accel::VerifyKernel(), max_run,
                                                      /*for_one_load=*/false));
        out.idle.push_back(std::move(board));
        continue;
      }
      const size_t m = i % models.size();
      ASSIGN_OR_RETURN(auto board, NewEmulatedBoard(models[m]->kernel, max_run,
                                                    /*for_one_load=*/false));
      out.per_model[m].push_back(std::move(board));
    }
  }
  return out;
}

absl::StatusOr<std::vector<std::unique_ptr<accel::Board>>> BoardFactory::CreateForModel(
    const ModelEntry& model) {
  std::vector<std::unique_ptr<accel::Board>> out;
  if (spec_.sim_per_model > 0 && model.kernel == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("model ", model.config.name(), ": no emulated kernel loaded"));
  }
  for (uint32_t i = 0; i < spec_.sim_per_model; ++i) {
    ASSIGN_OR_RETURN(auto board,
                     NewEmulatedBoard(model.kernel, model.config.batching().max_images_per_run(),
                                      /*for_one_load=*/true));
    out.push_back(std::move(board));
  }
  return out;
}

}  // namespace hgpipe::server
