// The scheduler's per-model and per-board state, shared by its rooms (the
// Scheduler's dispatch in scheduler.cc, the board life cycle in
// board_lifecycle.h, rebalancing in rebalance.h). Internal to scheduler/.
//
// Thread safety: every mutable field is guarded by the owning Scheduler's
// lock (scheduler/lock.h); fields marked constant are set before the state
// is published and never change.
#ifndef HGPIPE_SCHEDULER_STATE_H_
#define HGPIPE_SCHEDULER_STATE_H_

#include <algorithm>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "accel/board.h"
#include "accel/pipeline_model.h"
#include "scheduler/lock.h"
#include "scheduler/model_options.h"
#include "scheduler/request_queue.h"
#include "scheduler/run_sizing.h"

namespace hgpipe::scheduler {

struct BoardState;
struct ModelState;

// A run: images of one model in one slot of one board.
struct Run {
  Run(ModelState* m, BoardState* b, int slot, absl::Time submitted)
      : model(m), board(b), slot(slot), submitted(submitted) {}

  // Constant after the run is formed.
  ModelState* const model;
  BoardState* const board;
  const int slot;
  const absl::Time submitted;
  // A periodic canary run (no request images): its model's canary, held by
  // the run (a removed model's data is released while the run may last).
  bool canary = false;
  uint32_t canary_images = 0;
  std::shared_ptr<const accel::Canary> canary_data;
  // The scheduler's prediction, including the board's observed lag, and the
  // timing model's completion alone.
  accel::RunTimes predicted;
  absl::Time model_done;
  // The images. Read without the lock by the fill step until `filled`;
  // then under the lock (requeue, completion), and without it by the
  // thread delivering the completed run's outputs.
  std::vector<ImageRef> images;
  // Images the fill step could not fill (index into `images`, why); the
  // fill step's own until it submits the run.
  absl::InlinedVector<std::pair<uint32_t, absl::Status>, 1> fill_errors;
  // Set when it is formed: whether any image decodes
  // (InferRequest::heavy_fill), and the decode work that adds to the fill
  // executor's backlog (Scheduler::fill_backlog_) until it is filled.
  bool heavy = false;
  absl::Duration backlog;
  // The fill step's own until it submits the run: its images' thread time,
  // summed over threads (the wait for the executor's threads left out).
  absl::Duration fill_work;
  // Likewise: images not filled because their request was answered early
  // or an earlier image of it failed (Request::fill_limit); their slot holds
  // stale data, their results are dropped, and they do not count in the
  // learned fill costs (Observer::FillsSkipped counts them).
  uint32_t fill_skipped = 0;

  // Images are in the slot: an abandoned run's images may be requeued (and
  // answered elsewhere) only once nothing reads the requests' buffers.
  bool filled ABSL_GUARDED_BY(scheduler_lock) = false;
  // Taken back from a failed board: its images went elsewhere, its
  // completion only returns the slot.
  bool abandoned ABSL_GUARDED_BY(scheduler_lock) = false;

  uint32_t size() const { return canary ? canary_images : static_cast<uint32_t>(images.size()); }
};

// A model's state lives as long as the scheduler (runs, boards and timers
// point to it); what it holds in bulk (the bitstream, the canary) is
// released when its removal completes, so that load/unload cycles do not
// grow the process.
struct ModelState {
  ModelState(int id, const ModelOptions& options, const accel::DeviceGeometry& geometry,
             const accel::PipelineTiming& timing)
      : id(id),
        options(WithoutData(options)),
        geometry(geometry),
        timing(timing),
        image_time(timing.image_input_time(geometry.input_bytes())),
        queue({options.priority_levels, options.max_starvation, options.low_priority_run_images}),
        bitstream(options.bitstream),
        canary(options.canary) {}

  // Constant after construction. `options` without its bitstream and canary
  // (below).
  const int id;
  const ModelOptions options;
  const accel::DeviceGeometry geometry;
  const accel::PipelineTiming timing;  // for estimates
  const absl::Duration image_time;

  // The least time from dispatch to the answer of one image.
  absl::Duration MinServiceTime() const { return timing.run_overhead + timing.latency(); }

  RequestQueue queue ABSL_GUARDED_BY(scheduler_lock);
  // Accepted requests, owned here until answered.
  absl::flat_hash_map<Request*, std::unique_ptr<Request>> requests ABSL_GUARDED_BY(scheduler_lock);
  std::vector<BoardState*> serving ABSL_GUARDED_BY(scheduler_lock);
  // The earliest pending dispatch timer; later ones fire harmlessly.
  absl::Time next_timer ABSL_GUARDED_BY(scheduler_lock) = absl::InfiniteFuture();
  // Until then no board can take a run unless a run completes or a board
  // is admitted (which dispatch themselves): Enqueue need not look.
  absl::Time blocked_until ABSL_GUARDED_BY(scheduler_lock) = absl::InfinitePast();
  bool removing ABSL_GUARDED_BY(scheduler_lock) = false;
  bool removed ABSL_GUARDED_BY(scheduler_lock) = false;
  // How long filling one of the model's runs of copies takes (Run::
  // fill_work of runs that do not decode), smoothed: microseconds. Runs
  // that decode are modelled from their size and decode_image_cost, and
  // the wait for the executor from its backlog as it is now
  // (Scheduler::FillDelayLocked), so a past burst is not remembered.
  absl::Duration copy_fill_time ABSL_GUARDED_BY(scheduler_lock) = absl::ZeroDuration();
  // One image's decode on one of the fill executor's threads (the work
  // alone, not the wait for a thread), and the share of the model's runs
  // that decode, both smoothed over runs: with photos the executor, not the
  // boards, can bound how fast the queue drains. Copies are left out: they
  // also run on the callers' threads, and cost microseconds.
  absl::Duration decode_image_cost ABSL_GUARDED_BY(scheduler_lock) = absl::ZeroDuration();
  double decoding_share ABSL_GUARDED_BY(scheduler_lock) = 0;
  // ModelOptions' bitstream and canary; null once `removed`. Who needs one
  // beyond the lock copies the pointer.
  std::shared_ptr<const accel::Bitstream> bitstream ABSL_GUARDED_BY(scheduler_lock);
  std::shared_ptr<const accel::Canary> canary ABSL_GUARDED_BY(scheduler_lock);
  absl::AnyInvocable<void()> on_removed ABSL_GUARDED_BY(scheduler_lock);
  // Dispatch's scratch: the serving boards as run sizing sees them.
  std::vector<BoardView> views ABSL_GUARDED_BY(scheduler_lock);

 private:
  static ModelOptions WithoutData(ModelOptions o) {
    o.bitstream = nullptr;
    o.canary = nullptr;
    return o;
  }
};

// Where a board is in its life cycle, and what the life cycle needs to
// know about it (board_lifecycle.h has the transitions).
struct BoardLife {
  BoardPhase phase = BoardPhase::kIdle;
  int attempts = 0;               // failed recovery steps since it last served
  bool recovering = false;        // the current programming/probe follows a failure
  bool resetting = false;         // a Reset is under way
  bool reset_ok = false;          // the last Reset succeeded; recovery may go on
  uint64_t probe_generation = 0;  // a probe's result with an older one is ignored
  // How long its last Reset and Program took, when the one under way started,
  // and when a recovery backing off resumes: the earliest it can serve again
  // (ReadyEstimate). Zero until observed.
  absl::Duration reset_took;
  absl::Duration program_took;
  absl::Time op_started;
  absl::Time recovery_resumes = absl::InfinitePast();
  BoardCounts counts;
};

struct BoardState {
  BoardState(int id, std::unique_ptr<accel::Board> b)
      : id(id),
        name(b->info().name),
        max_run(b->max_images_per_run()),
        device(b.get()),
        board(std::move(b)) {}

  // Constant after construction. `device` stays valid until the scheduler
  // destroys the board (RemoveBoard, or its own destruction), which waits for
  // every operation on it.
  const int id;
  const std::string name;
  const uint32_t max_run;
  accel::Board* const device;

  std::unique_ptr<accel::Board> board ABSL_GUARDED_BY(scheduler_lock);
  ModelState* model ABSL_GUARDED_BY(scheduler_lock) = nullptr;  // served, or being given to
  BoardLife life ABSL_GUARDED_BY(scheduler_lock);
  // What the board holds, when the scheduler programmed it (or was told).
  std::shared_ptr<const accel::Bitstream> loaded ABSL_GUARDED_BY(scheduler_lock);
  // The scheduler's copy of the board's timing model, fed with what it
  // submitted; `lag` is how late its runs complete against it (smoothed).
  std::optional<accel::PipelineModel> prediction ABSL_GUARDED_BY(scheduler_lock);
  absl::Duration lag ABSL_GUARDED_BY(scheduler_lock);
  std::vector<int> free_slots ABSL_GUARDED_BY(scheduler_lock);
  std::deque<Run*> runs ABSL_GUARDED_BY(scheduler_lock);  // in flight, in submission order
  absl::Time head_since ABSL_GUARDED_BY(scheduler_lock);  // when runs.front() became the oldest
  uint32_t in_flight_images ABSL_GUARDED_BY(scheduler_lock) = 0;
  // Completions still to come of abandoned runs, and completed runs whose
  // outputs are being delivered from their slots: no Program or Reset may
  // start meanwhile (it could resize or reuse the slots).
  uint32_t abandoned_runs ABSL_GUARDED_BY(scheduler_lock) = 0;
  uint32_t delivering_runs ABSL_GUARDED_BY(scheduler_lock) = 0;
  bool watchdog_armed ABSL_GUARDED_BY(scheduler_lock) = false;
  // Periodic canaries: a timer with an older generation is stale; `due`
  // waits for a free slot. Whether it ran requests since its last canary:
  // an idle board answers nothing, so it needs no proving (and keeps no
  // timer).
  uint64_t canary_generation ABSL_GUARDED_BY(scheduler_lock) = 0;
  bool canary_armed ABSL_GUARDED_BY(scheduler_lock) = false;
  bool canary_due ABSL_GUARDED_BY(scheduler_lock) = false;
  bool served_since_canary ABSL_GUARDED_BY(scheduler_lock) = false;
  absl::Time last_used ABSL_GUARDED_BY(scheduler_lock) = absl::InfinitePast();

  void RefreshPrediction() ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) {
    const accel::BitstreamManifest& mf = device->manifest();
    prediction.emplace(mf.timing, mf.geometry.input_bytes());
    lag = absl::ZeroDuration();
  }
  absl::Time input_free_at() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) {
    return prediction->input_free_at() + lag;
  }
  // When a run submitted now would start streaming its input.
  absl::Time NextStart(absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) {
    return std::max(now + prediction->timing().run_overhead, input_free_at());
  }
  // When an image submitted now would complete.
  absl::Time NextDone(absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) {
    return NextStart(now) + prediction->latency();
  }
  // As run sizing sees it at `now`, for choosing a board: next_done is set
  // only for boards ready within `lead` (the only ones ChooseBoard reads it
  // of); CompleteView adds it for the others once a board was chosen. Most
  // dispatches at saturation find no board ready and stop there.
  // `ready_by` is now + the dispatch lead (computed once per dispatch: on
  // 64 boards the Time arithmetic is a measurable part of the hot path).
  // Written in place (the model's views are reused from one dispatch to
  // the next); a field that is not set is not read.
  void View(absl::Time now, absl::Time ready_by, BoardView& v) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) {
    v.free_slot = !free_slots.empty();
    if (!v.free_slot) return;  // takes part in neither choice nor sizing
    v.input_free_at = prediction->input_free_at();
    if (v.input_free_at <= ready_by) v.next_done = NextDone(now);
    v.image_time = prediction->image_time();
    v.max_run = max_run;
  }
  // Sets next_done where View left it out: what RunSize needs of every
  // board with a free slot.
  void CompleteView(absl::Time now, absl::Time ready_by, BoardView& v) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) {
    if (v.free_slot && v.input_free_at > ready_by) v.next_done = NextDone(now);
  }
};

// Work collected under the lock and carried out after releasing it (the
// Scheduler's deliver-after-unlock step, Scheduler::Finish): runs to fill
// and launch, requests to answer, observer events, callbacks.
struct Pending {
  struct PhaseEvent {
    int board_id;
    int model_id;
    BoardPhase phase;
    absl::Status why;
    BoardCounts counts;
  };
  struct ModelEvent {
    int model_id;
    uint32_t images;
  };
  struct CanaryEvent {
    int board_id;
    int model_id;
    absl::Status what;
  };
  std::vector<std::unique_ptr<Run>> runs;
  // Requests answered (not those answered early: they are callbacks).
  std::vector<std::pair<std::unique_ptr<InferRequest>, absl::Status>> done;
  std::vector<absl::AnyInvocable<void()>> callbacks;
  std::vector<PhaseEvent> phases;
  std::vector<ModelEvent> expired;
  std::vector<ModelEvent> late;
  std::vector<CanaryEvent> canaries;
  // Whether the Scheduler's delivering count includes this (it answers
  // requests, which Shutdown waits for).
  bool counted = false;
  // Formed on the caller of Enqueue: light fills may run right there.
  bool on_caller = false;
};

}  // namespace hgpipe::scheduler

#endif  // HGPIPE_SCHEDULER_STATE_H_
