// The models the server serves, and loading and unloading them at run time
// (Triton's model control): what RepositoryIndex, RepositoryModelLoad and
// RepositoryModelUnload do, while InferenceService stays about the wire.
//
// Control modes (--model-control-mode, as Triton's):
//   none      every model of the repository is loaded at start-up (any bad
//             one fails the start); Load and Unload are refused with
//             UNAVAILABLE.
//   explicit  only the models named at start-up (--load-model; "*" for all)
//             are loaded; Load and Unload are allowed.
//
// Load reads the model's directory again (config, bitstream), builds its
// preprocessing, gives it boards as --boards says (sim:N: N new emulated
// boards; sim-pool and XRT: none, a board is reprogrammed for it when it has
// requests) and adds it to the scheduler and the metrics. The work runs on a
// loader thread; `done` reports the outcome. Loading a model that is loaded
// reloads it, as Triton does: the new one is built while the old one keeps
// serving, then takes over new requests at once; the old one finishes what
// it accepted and then gives its boards back. If the reload fails, the old
// one stays.
//
// Unload stops admitting requests for the model at once (new ones get
// UNAVAILABLE "being unloaded" until it is gone, NOT_FOUND after); requests
// it accepted - queued, on a board, or still being preprocessed - are
// answered, then its boards go idle (free to be reprogrammed for other
// models) and `done` is called.
//
// A second Load or Unload of a model while one is in progress is refused
// with UNAVAILABLE (retry when it is done).
//
// Thread safety: all methods are thread-safe.
#ifndef HGPIPE_SERVER_MODEL_MANAGER_H_
#define HGPIPE_SERVER_MODEL_MANAGER_H_

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "accel/board.h"
#include "base/mutex.h"
#include "preprocess/preprocessor.h"
#include "base/clock.h"
#include "scheduler/scheduler.h"
#include "scheduler/variant_router.h"
#include "server/board_factory.h"
#include "server/metrics.h"
#include "server/model_repository.h"
#include "server/worker_pool.h"

namespace hgpipe::server {

// A model as it is served. Immutable once published.
struct LoadedModel {
  ModelEntry entry;
  // This load in the scheduler. Two loads of a model (the old one draining
  // while the new one serves) are two scheduler models of the same name.
  scheduler::ModelHandle handle;
  std::shared_ptr<const accel::Bitstream> bitstream;
  // For ENCODED_IMAGE and PIXELS models.
  std::optional<preprocess::Preprocessor> preprocessor;
  // What boards run to prove their output (server/canary.h), or null.
  std::shared_ptr<const accel::Canary> canary;
  // Per variant (entry.variants' order), the scheduler model that runs it:
  // the first is `handle`, the others are named "NAME@VARIANT".
  std::vector<scheduler::ModelHandle> variant_handles;
  // With two variants or more: picks the variant of each request
  // (scheduler/variant_router.h); null otherwise.
  std::shared_ptr<scheduler::VariantRouter> router;
  // Per variant, its hgpipe_variant_images_total child (looked up once per
  // load, not per request); empty without metrics.
  std::vector<prometheus::Counter*> variant_images;

  const std::string& name() const { return entry.config.name(); }
  // The scheduler's, the metrics' and the statistics' id of this load.
  int model_id() const { return handle.id(); }
};

// A model found for a request. `model` stays valid while held. `admission`
// must be held until the request has been handed to the scheduler (or has
// failed before): an unload or reload of the model waits for it.
struct ModelRef {
  std::shared_ptr<const LoadedModel> model;
  std::shared_ptr<const void> admission;
};

// What the model would be scheduled with: its batching config and bitstream.
scheduler::ModelOptions SchedulerModelOptions(const ModelEntry& entry,
                                              std::shared_ptr<const accel::Bitstream> bitstream);

class ModelManager {
 public:
  enum class ControlMode { kNone, kExplicit };
  // "none" or "explicit"; InvalidArgument otherwise.
  static absl::StatusOr<ControlMode> ParseControlMode(absl::string_view mode);

  struct Options {
    std::string repository;
    BitstreamResolver resolve = ResolveEmulatedBitstream;
    ControlMode control_mode = ControlMode::kNone;
    // Required; must outlive the manager.
    scheduler::Scheduler* scheduler = nullptr;
    Metrics* metrics = nullptr;
    BoardFactory* boards = nullptr;
    // Required for models with variants (their router's demand windows).
    Clock* clock = nullptr;
    // Whether models get canaries (server/canary.h): false when boards do
    // not compute (emulated boards with timing only).
    bool canaries = false;
  };
  explicit ModelManager(Options options);
  // Finishes a load in progress. Models still loaded stay in the scheduler.
  ~ModelManager();
  ModelManager(const ModelManager&) = delete;
  ModelManager& operator=(const ModelManager&) = delete;

  ControlMode control_mode() const { return options_.control_mode; }

  // Start-up, before serving: loads `names` ("*" or, in mode none, an empty
  // list: every model of the repository) with the start-up boards
  // (BoardFactory::CreateStartupBoards), and adds the spare pool boards.
  // The first error stops it, naming the model's file; in mode none a
  // repository without models is NotFound.
  absl::Status LoadAtStartup(const std::vector<std::string>& names);

  // The model for a request. NotFound for a model that is not loaded (or no
  // such version: only "1" and "" exist); Unavailable while it is being
  // unloaded.
  absl::StatusOr<ModelRef> Find(const std::string& name, const std::string& version) const;
  // Whether the model is loaded and a board can serve it. NotFound for a
  // name that is neither loaded nor a model directory of the repository.
  absl::StatusOr<bool> ModelReady(const std::string& name, const std::string& version) const;
  // Whether every loaded model can be served.
  bool AllReady() const;
  // The names of the loaded models, sorted.
  std::vector<std::string> LoadedNames() const;

  // RepositoryIndex: every model directory of the repository and every
  // loaded model, sorted by name.
  struct IndexEntry {
    std::string name;
    std::string version = "1";
    std::string state;   // READY, UNAVAILABLE, LOADING, UNLOADING
    std::string reason;  // why UNAVAILABLE
  };
  absl::StatusOr<std::vector<IndexEntry>> Index(bool ready_only) const;

  // RepositoryModelLoad / RepositoryModelUnload (see the top of the file).
  // `done` is called exactly once, possibly before these return, on the
  // caller's, the loader's or a scheduler thread; it must not block.
  // Unavailable in mode none; NotFound (Unload) for a model not loaded.
  // `edit`, if any, changes the model's config.pbtxt for this load (a
  // load's config override; model_repository.h).
  void Load(const std::string& name, absl::AnyInvocable<void(absl::Status)> done,
            ConfigEdit edit = nullptr);
  void Unload(const std::string& name, absl::AnyInvocable<void(absl::Status)> done);

 private:
  // One load of a model, from its publication until the scheduler has
  // answered everything it accepted.
  struct Generation;
  struct State {
    enum class Phase { kNotLoaded, kLoading, kReady, kUnloading, kFailed };
    Phase phase = Phase::kNotLoaded;
    std::string reason;                        // kNotLoaded (after an unload), kFailed
    bool reloading = false;                    // kReady: a Load is in progress
    std::shared_ptr<const LoadedModel> model;  // kReady
    std::shared_ptr<const void> admission;     // kReady
    std::shared_ptr<Generation> generation;    // kReady, kUnloading
    int generations = 0;                       // loads so far
  };

  // Builds a model from its directory (config, bitstream, preprocessing);
  // its `bitstream` is left to BoardFactory::MakeBitstream.
  absl::StatusOr<std::shared_ptr<LoadedModel>> Build(const std::string& name,
                                                     const ConfigEdit& edit = nullptr);
  // Adds `model` with `boards` to the metrics and the scheduler, then
  // publishes it, replacing (and retiring) the current load if any.
  absl::Status AddAndPublish(std::shared_ptr<LoadedModel> model,
                             std::vector<std::unique_ptr<accel::Board>> boards)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(add_mu_);
  // The model's admission closed: remove it from the scheduler.
  void OnAdmissionClosed(const std::shared_ptr<Generation>& g);
  void OnRemoved(const std::shared_ptr<Generation>& g);
  // Adds the scheduler models of `model`'s variants after the first, and
  // its router. InvalidArgument / the scheduler's errors naming the variant.
  absl::Status AddVariants(LoadedModel& model) ABSL_EXCLUSIVE_LOCKS_REQUIRED(add_mu_);
  // Removes from the scheduler the boards of unloaded loads made for them
  // alone (boards_to_remove_). On the loader's thread. Those still
  // finishing runs stay listed, and a timer tries again.
  void RemoveUnloadedBoards();
  void DoLoad(const std::string& name, const ConfigEdit& edit,
              absl::AnyInvocable<void(absl::Status)> done);

  const Options options_;
  // Serializes loads: the board factory serves one caller at a time.
  hgpipe::Mutex add_mu_ ABSL_ACQUIRED_BEFORE(mu_);

  mutable hgpipe::Mutex mu_;
  absl::flat_hash_map<std::string, State> states_ ABSL_GUARDED_BY(mu_);
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::pair<int, std::string>> boards_to_remove_ ABSL_GUARDED_BY(mu_);
  // False once the destructor starts: loader_ takes no more tasks.
  bool loader_open_ ABSL_GUARDED_BY(mu_) = true;
  // Boards refused because their last runs were still finishing are tried
  // again this much later, from the loader's thread (retry_timer_).
  static constexpr absl::Duration kBoardRemovalRetry = absl::Milliseconds(50);
  Clock::TimerId retry_timer_ ABSL_GUARDED_BY(mu_) = 0;

  // Runs loads, one at a time; reset first by the destructor.
  std::unique_ptr<WorkerPool> loader_;
};

}  // namespace hgpipe::server

#endif  // HGPIPE_SERVER_MODEL_MANAGER_H_
