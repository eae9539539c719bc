#include "server/model_manager.h"

#include <algorithm>
#include <filesystem>
#include <set>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "glog/logging.h"
#include "server/canary.h"
#include "server/client_text.h"
#include "server/model_config.h"

namespace hgpipe::server {

namespace fs = std::filesystem;

// One load of a model. Its admission token's deleter holds it; the state
// of its name points to it while it is the current load.
struct ModelManager::Generation {
  std::string name;
  scheduler::ModelHandle handle;
  int number = 0;
  // Every scheduler model of the load (one per variant), and how many the
  // scheduler has not finished removing (guarded by the manager's mu_).
  std::vector<scheduler::ModelHandle> variant_handles;
  int removals_left = 0;
  // Guarded by the manager's mu_: set by Unload, called once the scheduler
  // has answered everything the load accepted.
  bool unloading = false;
  absl::AnyInvocable<void(absl::Status)> on_removed;
  // The boards made for this load alone (sim:N; scheduler id, name),
  // removed with it. Set before the load is published.
  std::vector<std::pair<int, std::string>> own_boards;
};

scheduler::ModelOptions SchedulerModelOptions(const ModelEntry& e,
                                              std::shared_ptr<const accel::Bitstream> bitstream) {
  const config::BatchingConfig& b = e.config.batching();
  scheduler::ModelOptions mo;
  mo.name = e.config.name();
  mo.bitstream = std::move(bitstream);
  mo.max_images_per_run = b.max_images_per_run();
  mo.max_queue_delay = absl::Microseconds(static_cast<int64_t>(b.max_queue_delay_us()));
  mo.max_queue_images = b.max_queue_images();
  mo.priority_levels = b.priority_levels();
  mo.default_priority = b.default_priority_level();
  mo.max_starvation = absl::Microseconds(static_cast<int64_t>(b.max_starvation_us()));
  mo.low_priority_run_images = b.low_priority_run_images();
  return mo;
}

absl::StatusOr<ModelManager::ControlMode> ModelManager::ParseControlMode(absl::string_view mode) {
  if (mode == "none") return ControlMode::kNone;
  if (mode == "explicit") return ControlMode::kExplicit;
  return absl::InvalidArgumentError(
      absl::StrCat("--model-control-mode: ", Quote(mode), " is not none or explicit"));
}

ModelManager::ModelManager(Options options)
    : options_(std::move(options)),
      // One thread: loads run one at a time, in order.
      loader_(std::make_unique<WorkerPool>(1, 256, "hgpipe-load")) {}

ModelManager::~ModelManager() {
  Clock::TimerId retry = 0;
  {
    hgpipe::MutexLock l(&mu_);
    loader_open_ = false;  // OnRemoved queues nothing more
    retry = std::exchange(retry_timer_, 0);
  }
  if (retry != 0) options_.clock->Cancel(retry);  // waits if it runs: it takes mu_
  loader_.reset();                                // finishes the load in progress and those queued
  std::vector<std::shared_ptr<const void>> admissions;
  {
    hgpipe::MutexLock l(&mu_);
    closing_ = true;
    for (auto& [name, st] : states_) {
      admissions.push_back(std::move(st.admission));
      st.model.reset();
    }
  }
  // Dropped without the lock: their deleters see closing_ and do nothing.
  admissions.clear();
}

absl::StatusOr<std::shared_ptr<LoadedModel>> ModelManager::Build(const std::string& name,
                                                                 const ConfigEdit& edit) {
  ASSIGN_OR_RETURN(ModelEntry entry,
                   LoadModelDirectory(options_.repository, name, options_.resolve, edit));
  auto m = std::make_shared<LoadedModel>();
  m->entry = std::move(entry);
  if (m->entry.config.input_format() != config::DEVICE_PATCHES) {
    absl::StatusOr<preprocess::Options> po =
        PreprocessOptions(m->entry.config, m->entry.manifest.geometry);
    if (!po.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(m->entry.config_path, ": ", po.status().message()));
    }
    absl::StatusOr<preprocess::Preprocessor> pre = preprocess::Preprocessor::Create(*po);
    if (!pre.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(m->entry.config_path, ": preprocess: ", pre.status().message()));
    }
    m->preprocessor.emplace(*std::move(pre));
  }
  if (options_.canaries) {
    ASSIGN_OR_RETURN(m->canary, LoadModelCanary(m->entry));
  }
  return m;
}

absl::Status ModelManager::AddAndPublish(std::shared_ptr<LoadedModel> model,
                                         std::vector<std::unique_ptr<accel::Board>> boards) {
  const std::string name = model->name();
  // The load this one replaces, retired once dropped (outside every lock).
  std::shared_ptr<const void> previous;
  {
    int number;
    {
      hgpipe::MutexLock l(&mu_);
      number = ++states_[name].generations;
    }
    scheduler::ModelOptions mo = SchedulerModelOptions(model->entry, model->bitstream);
    mo.canary = model->canary;
    std::vector<std::string> board_names;
    for (const auto& b : boards) board_names.push_back(b->info().name);
    // The scheduler tells the metrics about the model and its boards
    // (Observer::ModelAdded, BoardAdded) before it reports anything else.
    absl::StatusOr<scheduler::ModelHandle> handle =
        options_.scheduler->AddModel(mo, std::move(boards));
    if (!handle.ok()) {
      return absl::Status(handle.status().code(),
                          absl::StrCat(model->entry.config_path, ": ", handle.status().message()));
    }
    model->handle = *handle;
    model->variant_handles = {model->handle};
    if (model->entry.variants.size() > 1) {
      if (absl::Status s = AddVariants(*model); !s.ok()) {
        for (scheduler::ModelHandle h : model->variant_handles) {
          options_.scheduler->RemoveModel(h, [] {}).IgnoreError();
        }
        return absl::Status(s.code(), absl::StrCat(model->entry.config_path, ": ", s.message()));
      }
    }
    if (options_.metrics != nullptr) {
      for (const VariantEntry& v : model->entry.variants) {
        model->variant_images.push_back(
            options_.metrics->VariantImagesCounter(model->name(), v.name));
      }
    }
    LOG(INFO) << "model " << name << ": bitstream " << model->entry.config.bitstream()
              << ", boards "
              << (board_names.empty() ? std::string("none (reprogramming)")
                                      : absl::StrJoin(board_names, ","))
              << ", canary " << (model->canary != nullptr ? model->canary->source : "none");

    auto g = std::make_shared<Generation>();
    g->name = name;
    g->handle = model->handle;
    g->variant_handles = model->variant_handles;
    g->number = number;
    // Board names are unique in the server: find the ids of this load's own
    // (it may already have lost one to another model).
    for (const auto& b : options_.scheduler->Boards()) {
      if (options_.boards->MadeForOneLoad(b.name) &&
          std::find(board_names.begin(), board_names.end(), b.name) != board_names.end()) {
        g->own_boards.emplace_back(b.board_id, b.name);
      }
    }
    std::shared_ptr<const void> admission(static_cast<const void*>(g.get()),
                                          [this, g](const void*) { OnAdmissionClosed(g); });
    hgpipe::MutexLock l(&mu_);
    State& st = states_[name];
    previous = std::move(st.admission);
    st.phase = State::Phase::kReady;
    st.reason.clear();
    st.reloading = false;
    st.model = std::move(model);
    st.admission = std::move(admission);
    st.generation = std::move(g);
  }
  return absl::OkStatus();
}

void ModelManager::OnAdmissionClosed(const std::shared_ptr<Generation>& g) {
  {
    hgpipe::MutexLock l(&mu_);
    if (closing_) return;
    g->removals_left = static_cast<int>(g->variant_handles.size());
  }
  // The load is gone once the scheduler has removed every variant's model.
  auto removed = [this, g] {
    bool last;
    {
      hgpipe::MutexLock l(&mu_);
      last = --g->removals_left == 0;
    }
    if (last) OnRemoved(g);
  };
  for (scheduler::ModelHandle h : g->variant_handles) {
    absl::Status s = options_.scheduler->RemoveModel(h, removed);
    if (!s.ok()) {
      LOG(WARNING) << "model " << g->name << ": " << s.message();
      removed();
    }
  }
}

absl::Status ModelManager::AddVariants(LoadedModel& model) {
  if (options_.clock == nullptr) {
    return absl::FailedPreconditionError("variants: the model manager has no clock");
  }
  const ModelEntry& e = model.entry;
  scheduler::VariantRouter::Options ro;
  ro.model = model.name();
  ro.scheduler = options_.scheduler;
  ro.clock = options_.clock;
  for (size_t i = 0; i < e.variants.size(); ++i) {
    const VariantEntry& v = e.variants[i];
    if (i > 0) {
      // The variant's bitstream as the board factory makes it for a model.
      ModelEntry as_model = e;
      as_model.manifest = v.manifest;
      as_model.kernel = v.kernel;
      as_model.config.set_xclbin(v.xclbin);
      ASSIGN_OR_RETURN(std::shared_ptr<const accel::Bitstream> bitstream,
                       options_.boards->MakeBitstream(as_model));
      scheduler::ModelOptions mo = SchedulerModelOptions(e, std::move(bitstream));
      mo.name = absl::StrCat(model.name(), "@", v.name);
      // Boards come by reprogramming (the router moves them); a variant's
      // outputs differ from the default's, so the default's canary is not
      // its own. The metrics hear of it as "NAME@VARIANT"
      // (Observer::ModelAdded).
      absl::StatusOr<scheduler::ModelHandle> h = options_.scheduler->AddModel(mo, {});
      if (!h.ok()) {
        return absl::Status(h.status().code(), absl::StrCat("variants[", i, "] '", v.name,
                                                            "': ", h.status().message()));
      }
      model.variant_handles.push_back(*h);
    }
    ro.variants.push_back({v.name, model.variant_handles[i], v.manifest.accuracy.top1,
                           v.manifest.timing.max_images_per_second()});
  }
  ASSIGN_OR_RETURN(std::unique_ptr<scheduler::VariantRouter> router,
                   scheduler::VariantRouter::Create(std::move(ro)));
  model.router = std::move(router);
  return absl::OkStatus();
}

void ModelManager::OnRemoved(const std::shared_ptr<Generation>& g) {
  absl::AnyInvocable<void(absl::Status)> done;
  bool unloaded = false;
  {
    hgpipe::MutexLock l(&mu_);
    auto it = states_.find(g->name);
    if (g->unloading && it != states_.end() && it->second.generation == g) {
      it->second.phase = State::Phase::kNotLoaded;
      it->second.reason = "unloaded";
      it->second.generation.reset();
      unloaded = true;
    }
    done = std::move(g->on_removed);
  }
  if (unloaded) {
    LOG(INFO) << "model " << g->name << ": unloaded";
  } else {
    LOG(INFO) << "model " << g->name << ": load " << g->number << " answered its last request";
  }
  if (!g->own_boards.empty()) {
    // Not here: this may run on a thread of one of those boards (the
    // completion that answered the last request), which destroying the
    // board would join. The loader's thread does it.
    hgpipe::MutexLock l(&mu_);
    boards_to_remove_.insert(boards_to_remove_.end(), g->own_boards.begin(), g->own_boards.end());
    if (loader_open_) {
      std::vector<WorkerPool::Task> task;
      task.push_back([this] { RemoveUnloadedBoards(); });
      loader_->TrySubmitAll(std::move(task));  // if full, the next load does it
    }
  }
  if (done) done(absl::OkStatus());
}

void ModelManager::RemoveUnloadedBoards() {
  std::vector<std::pair<int, std::string>> boards;
  {
    hgpipe::MutexLock l(&mu_);
    boards.swap(boards_to_remove_);
  }
  std::vector<std::pair<int, std::string>> retry;
  for (const auto& [id, name] : boards) {
    // Refused if the scheduler already gave the board to another model
    // (reprogramming): it serves on, as a board of the pool.
    absl::Status s = options_.scheduler->RemoveBoard(id);
    if (s.ok()) {
      LOG(INFO) << "board " << name << ": removed with the load it was made for";
    } else if (absl::IsUnavailable(s)) {
      // Runs of the last requests (or of ones that gave up) are still
      // finishing on it. Without a retry it stayed for good, slots and
      // all: each unload left its boards' memory behind.
      retry.emplace_back(id, name);
    } else {
      LOG(INFO) << "board " << name << ": kept: " << s.message();
    }
  }
  if (retry.empty()) return;
  hgpipe::MutexLock l(&mu_);
  boards_to_remove_.insert(boards_to_remove_.end(), retry.begin(), retry.end());
  // Without a clock the next load or removal retries.
  if (!loader_open_ || options_.clock == nullptr || retry_timer_ != 0) return;
  retry_timer_ = options_.clock->RunAt(options_.clock->Now() + kBoardRemovalRetry, [this] {
    hgpipe::MutexLock l(&mu_);
    retry_timer_ = 0;
    if (!loader_open_) return;
    std::vector<WorkerPool::Task> task;
    task.push_back([this] { RemoveUnloadedBoards(); });
    loader_->TrySubmitAll(std::move(task));  // if full, the next load does it
  });
}

absl::Status ModelManager::LoadAtStartup(const std::vector<std::string>& names) {
  std::vector<std::string> list;
  const bool all = options_.control_mode == ControlMode::kNone ||
                   std::find(names.begin(), names.end(), "*") != names.end();
  if (all) {
    ASSIGN_OR_RETURN(list, ListModelDirectories(options_.repository));
    if (list.empty() && options_.control_mode == ControlMode::kNone) {
      return absl::NotFoundError(absl::StrCat("model repository ", options_.repository,
                                              ": no model (a directory with config.pbtxt)"));
    }
  } else {
    std::set<std::string> unique(names.begin(), names.end());
    list.assign(unique.begin(), unique.end());
  }
  std::vector<std::shared_ptr<LoadedModel>> models;
  std::vector<const ModelEntry*> entries;
  for (const std::string& name : list) {
    ASSIGN_OR_RETURN(std::shared_ptr<LoadedModel> m, Build(name));
    entries.push_back(&m->entry);
    models.push_back(std::move(m));
  }
  hgpipe::MutexLock add(&add_mu_);
  ASSIGN_OR_RETURN(StartupBoards boards, options_.boards->CreateStartupBoards(entries));
  for (auto& m : models) {
    ASSIGN_OR_RETURN(m->bitstream, options_.boards->MakeBitstream(m->entry));
  }
  for (size_t i = 0; i < models.size(); ++i) {
    RETURN_IF_ERROR(AddAndPublish(std::move(models[i]), std::move(boards.per_model[i])));
  }
  for (auto& board : boards.idle) {
    LOG(INFO) << "board " << board->info().name << ": idle, for any model";
    options_.scheduler->AddIdleBoard(std::move(board));
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelRef> ModelManager::Find(const std::string& name,
                                            const std::string& version) const {
  ModelRef ref;
  {
    hgpipe::MutexLock l(&mu_);
    auto it = states_.find(name);
    if (it == states_.end() || it->second.phase != State::Phase::kReady) {
      if (it != states_.end() && it->second.phase == State::Phase::kUnloading) {
        return absl::UnavailableError(absl::StrCat("model ", Quote(name), " is being unloaded"));
      }
      return absl::NotFoundError(absl::StrCat("unknown model ", Quote(name)));
    }
    ref.model = it->second.model;
    ref.admission = it->second.admission;
  }
  if (!version.empty() && version != "1") {
    return absl::NotFoundError(
        absl::StrCat("model ", Quote(name), " has no version ", Quote(version), " (versions: 1)"));
  }
  return ref;
}

absl::StatusOr<bool> ModelManager::ModelReady(const std::string& name,
                                              const std::string& version) const {
  absl::StatusOr<ModelRef> ref = Find(name, version);
  if (ref.ok()) return options_.scheduler->ModelReady(ref->model->handle);
  if (absl::IsUnavailable(ref.status())) return false;
  {
    hgpipe::MutexLock l(&mu_);
    if (states_.contains(name)) return false;
  }
  std::error_code ec;
  // A name with a NUL would be cut short by the file system: check first.
  if (IsValidModelName(name) &&
      fs::exists(fs::path(options_.repository) / name / "config.pbtxt", ec)) {
    return false;  // in the repository, not loaded
  }
  return ref.status();
}

bool ModelManager::AllReady() const {
  std::vector<scheduler::ModelHandle> handles;
  {
    hgpipe::MutexLock l(&mu_);
    for (const auto& [name, st] : states_) {
      if (st.phase == State::Phase::kReady) handles.push_back(st.model->handle);
    }
  }
  for (scheduler::ModelHandle h : handles) {
    if (!options_.scheduler->ModelReady(h)) return false;
  }
  return true;
}

std::vector<std::string> ModelManager::LoadedNames() const {
  std::vector<std::string> names;
  {
    hgpipe::MutexLock l(&mu_);
    for (const auto& [name, st] : states_) {
      if (st.phase == State::Phase::kReady) names.push_back(name);
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

absl::StatusOr<std::vector<ModelManager::IndexEntry>> ModelManager::Index(bool ready_only) const {
  ASSIGN_OR_RETURN(std::vector<std::string> dirs, ListModelDirectories(options_.repository));
  std::set<std::string> names(dirs.begin(), dirs.end());
  std::vector<IndexEntry> out;
  hgpipe::MutexLock l(&mu_);
  for (const auto& [name, st] : states_) {
    if (st.phase != State::Phase::kNotLoaded && st.phase != State::Phase::kFailed) {
      names.insert(name);
    }
  }
  for (const std::string& name : names) {
    IndexEntry e;
    e.name = name;
    auto it = states_.find(name);
    const State::Phase phase = it == states_.end() ? State::Phase::kNotLoaded : it->second.phase;
    switch (phase) {
      case State::Phase::kReady: e.state = "READY"; break;
      case State::Phase::kLoading: e.state = "LOADING"; break;
      case State::Phase::kUnloading: e.state = "UNLOADING"; break;
      case State::Phase::kFailed:
        e.state = "UNAVAILABLE";
        e.reason = it->second.reason;
        break;
      case State::Phase::kNotLoaded:
        e.state = "UNAVAILABLE";
        e.reason =
            it == states_.end() || it->second.reason.empty() ? "not loaded" : it->second.reason;
        break;
    }
    if (ready_only && e.state != "READY") continue;
    out.push_back(std::move(e));
  }
  return out;
}

namespace {

absl::Status ControlRefused(absl::string_view what, const std::string& name) {
  return absl::UnavailableError(
      absl::StrCat("explicit model ", what, " (", Quote(name),
                   ") is not allowed with --model-control-mode=none; start hgpipe-server "
                   "with --model-control-mode=explicit"));
}

absl::Status Busy(const std::string& name, absl::string_view doing) {
  return absl::UnavailableError(
      absl::StrCat("model ", Quote(name), " is being ", doing, "; retry when that is done"));
}

}  // namespace

void ModelManager::Load(const std::string& name, absl::AnyInvocable<void(absl::Status)> done,
                        ConfigEdit edit) {
  if (options_.control_mode == ControlMode::kNone) {
    done(ControlRefused("load", name));
    return;
  }
  std::error_code ec;
  if (!IsValidModelName(name) ||
      !fs::exists(fs::path(options_.repository) / name / "config.pbtxt", ec)) {
    done(absl::NotFoundError(absl::StrCat("model repository ", options_.repository, ": no model ",
                                          Quote(name), " (a directory with config.pbtxt)")));
    return;
  }
  absl::Status refused;
  {
    hgpipe::MutexLock l(&mu_);
    State& st = states_[name];
    if (st.phase == State::Phase::kLoading || (st.phase == State::Phase::kReady && st.reloading)) {
      refused = Busy(name, "loaded");
    } else if (st.phase == State::Phase::kUnloading) {
      refused = Busy(name, "unloaded");
    } else if (st.phase == State::Phase::kReady) {
      st.reloading = true;
    } else {
      st.phase = State::Phase::kLoading;
      st.reason.clear();
    }
  }
  if (!refused.ok()) {
    done(std::move(refused));
    return;
  }
  LOG(INFO) << "model " << name << ": loading";
  auto shared = std::make_shared<absl::AnyInvocable<void(absl::Status)>>(std::move(done));
  std::vector<WorkerPool::Task> task;
  task.push_back(
      [this, name, shared, edit = std::move(edit)] { DoLoad(name, edit, std::move(*shared)); });
  if (!loader_->TrySubmitAll(std::move(task))) {
    {
      hgpipe::MutexLock l(&mu_);
      State& st = states_[name];
      if (st.phase == State::Phase::kReady) {
        st.reloading = false;
      } else {
        st.phase = State::Phase::kNotLoaded;
      }
    }
    (*shared)(absl::ResourceExhaustedError("too many model loads queued; retry later"));
  }
}

void ModelManager::DoLoad(const std::string& name, const ConfigEdit& edit,
                          absl::AnyInvocable<void(absl::Status)> done) {
  absl::Status s;
  {
    hgpipe::MutexLock l(&mu_);
    if (closing_) s = absl::UnavailableError("hgpipe-server is shutting down");
  }
  if (s.ok()) {
    RemoveUnloadedBoards();
    absl::StatusOr<std::shared_ptr<LoadedModel>> model = Build(name, edit);
    s = model.status();
    if (s.ok()) {
      absl::StatusOr<std::shared_ptr<const accel::Bitstream>> bitstream =
          options_.boards->MakeBitstream((*model)->entry);
      s = bitstream.status();
      if (s.ok()) (*model)->bitstream = *std::move(bitstream);
    }
    if (s.ok()) {
      hgpipe::MutexLock add(&add_mu_);
      absl::StatusOr<std::vector<std::unique_ptr<accel::Board>>> boards =
          options_.boards->CreateForModel((*model)->entry);
      s = boards.ok() ? AddAndPublish(*std::move(model), *std::move(boards)) : boards.status();
    }
  }
  if (!s.ok()) {
    bool kept = false;
    {
      hgpipe::MutexLock l(&mu_);
      State& st = states_[name];
      if (st.phase == State::Phase::kReady) {
        st.reloading = false;  // the previous load keeps serving
        kept = true;
      } else {
        st.phase = State::Phase::kFailed;
        st.reason = std::string(s.message());
      }
    }
    LOG(WARNING) << "model " << name << ": load failed" << (kept ? " (the loaded one stays)" : "")
                 << ": " << s.message();
  }
  done(std::move(s));
}

void ModelManager::Unload(const std::string& name, absl::AnyInvocable<void(absl::Status)> done) {
  if (options_.control_mode == ControlMode::kNone) {
    done(ControlRefused("unload", name));
    return;
  }
  std::shared_ptr<const void> admission;  // dropped below, without the lock
  absl::Status refused;
  {
    hgpipe::MutexLock l(&mu_);
    auto it = states_.find(name);
    if (it == states_.end() || it->second.phase == State::Phase::kNotLoaded ||
        it->second.phase == State::Phase::kFailed) {
      refused = absl::NotFoundError(absl::StrCat("model ", Quote(name), " is not loaded"));
    } else if (it->second.phase == State::Phase::kLoading || it->second.reloading) {
      refused = Busy(name, "loaded");
    } else if (it->second.phase == State::Phase::kUnloading) {
      refused = Busy(name, "unloaded");
    } else {
      State& st = it->second;
      st.phase = State::Phase::kUnloading;
      st.model.reset();
      admission = std::move(st.admission);
      st.generation->unloading = true;
      st.generation->on_removed = std::move(done);
    }
  }
  if (!refused.ok()) {
    done(std::move(refused));
    return;
  }
  LOG(INFO) << "model " << name << ": unloading";
  admission.reset();
}

}  // namespace hgpipe::server
