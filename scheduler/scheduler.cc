#include "scheduler/scheduler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "accel/device_layout.h"

namespace hgpipe::scheduler {

absl::string_view BoardPhaseName(BoardPhase phase) {
  switch (phase) {
    case BoardPhase::kServing: return "serving";
    case BoardPhase::kIdle: return "idle";
    case BoardPhase::kDraining: return "draining";
    case BoardPhase::kProgramming: return "programming";
    case BoardPhase::kProbing: return "probing";
    case BoardPhase::kRecovering: return "recovering";
    case BoardPhase::kRetired: return "retired";
    case BoardPhase::kRemoved: return "removed";
  }
  return "unknown";
}

struct Scheduler::Request {
  std::unique_ptr<InferRequest> request;
  absl::Time arrival;
  absl::Time deadline;
  uint32_t level;       // 0-based priority level
  uint32_t unanswered;  // images neither computed nor failed yet
  uint32_t queued = 0;  // images in a queue (not on a board)
  // Images in runs not yet packed: the caller's image buffer is still read.
  uint32_t unpacked = 0;
  absl::Status status;  // the first error, if any
  // The deadline passed with images still on a board: answered as soon as
  // no run still reads its images (detach_pending), then `detached`: done
  // was called, the caller's buffers are no longer ours, and the board
  // results still to come are dropped (counted as late).
  bool detach_pending = false;
  bool detached = false;
};

struct Scheduler::Run {
  Model* model;
  BoardState* board;
  int slot;
  std::vector<ImageRef> images;
  absl::Time submitted;
  // The scheduler's prediction, including the board's observed lag, and
  // the timing model's completion alone.
  accel::RunTimes predicted;
  absl::Time model_done;
  // Images are in the slot: an abandoned run's images may be requeued (and
  // answered elsewhere) only once nothing reads the requests' buffers.
  bool packed = false;
  // Taken back from a failed board: its images went elsewhere, its
  // completion only returns the slot.
  bool abandoned = false;
  // A periodic canary run (no request images): its model's canary.
  bool canary = false;
  uint32_t canary_images = 0;
  uint32_t size() const {
    return canary ? canary_images : static_cast<uint32_t>(images.size());
  }
};

struct Scheduler::BoardState {
  std::unique_ptr<accel::Board> board;
  int id;
  std::string name;
  uint32_t max_run;
  Model* model = nullptr;  // served, or being given to
  BoardPhase phase = BoardPhase::kIdle;
  // What the board holds, when the scheduler programmed it (or was told).
  std::shared_ptr<const accel::Bitstream> loaded;
  // The scheduler's copy of the board's timing model, fed with what it
  // submitted; `lag` is how late its runs complete against it (smoothed).
  std::optional<accel::PipelineModel> prediction;
  absl::Duration lag;
  std::vector<int> free_slots;
  std::deque<Run*> runs;  // in flight, in submission order
  absl::Time head_since;  // when runs.front() became the oldest
  uint32_t in_flight_images = 0;
  uint32_t abandoned_runs = 0;  // completions still to come
  bool resetting = false;
  bool reset_ok = false;
  bool watchdog_armed = false;
  uint64_t probe_generation = 0;
  bool recovering = false;  // the current programming/probe follows a failure
  // Periodic canaries: a timer with an older generation is stale; `due`
  // waits for a free slot.
  // How long its last Reset and Program took, and when the one under way
  // started; when a recovery backing off resumes. For the earliest time it
  // can serve again (ReadyEstimateLocked); zero until observed.
  absl::Duration reset_took;
  absl::Duration program_took;
  absl::Time op_started;
  absl::Time recovery_resumes = absl::InfinitePast();
  uint64_t canary_generation = 0;
  bool canary_armed = false;
  bool canary_due = false;
  // Whether it ran requests since its last canary: an idle board answers
  // nothing, so it needs no proving (and leaves no timer behind).
  bool served_since_canary = false;
  int attempts = 0;
  BoardCounts counts;
  absl::Time last_used = absl::InfinitePast();

  void RefreshPrediction() {
    const accel::BitstreamManifest& mf = board->manifest();
    prediction.emplace(mf.timing, mf.geometry.input_bytes());
    lag = absl::ZeroDuration();
  }
  absl::Time input_free_at() const { return prediction->input_free_at() + lag; }
  // When a run submitted now would start streaming its input.
  absl::Time NextStart(absl::Time now) const {
    return std::max(now + prediction->timing().run_overhead, input_free_at());
  }
};

struct Scheduler::Model {
  int id;
  ModelOptions options;
  accel::DeviceGeometry geometry;
  accel::PipelineTiming timing;  // for estimates
  absl::Duration image_time;
  // One FIFO per priority level, and when each level last went into a run.
  std::vector<std::deque<ImageRef>> levels;
  std::vector<absl::Time> level_served;
  uint64_t queued = 0;
  // Accepted requests, owned here until answered.
  absl::flat_hash_map<Request*, std::unique_ptr<Request>> requests;
  // Requests with a deadline and images still queued, by deadline.
  std::set<std::pair<absl::Time, Request*>> deadlines;
  // Every request with a deadline not yet answered, by deadline: the
  // deadline is a promise even once its images are on a board.
  std::set<std::pair<absl::Time, Request*>> promises;
  std::vector<BoardState*> serving;
  // The earliest pending dispatch timer; later ones fire harmlessly.
  absl::Time next_timer = absl::InfiniteFuture();
  // Until then no board can take a run unless a run completes or a board
  // is admitted (which dispatch themselves): Enqueue need not look.
  absl::Time blocked_until = absl::InfinitePast();
  bool removing = false;
  bool removed = false;
  absl::AnyInvocable<void()> on_removed;

  // The least time from dispatch to the answer of one image.
  absl::Duration MinServiceTime() const {
    return timing.run_overhead + timing.latency();
  }
};

struct Scheduler::Pending {
  struct CanaryEvent {
    int board_id;
    int model_id;
    absl::Status what;
  };
  std::vector<CanaryEvent> canaries;
  struct PhaseEvent {
    int board_id;
    int model_id;
    BoardPhase phase;
    absl::Status why;
    BoardCounts counts;
  };
  struct Expired {
    int model_id;
    uint32_t images;
  };
  struct Late {
    int model_id;
    uint32_t images;
  };
  std::vector<std::unique_ptr<Run>> runs;
  std::vector<std::unique_ptr<Request>> done;
  std::vector<absl::AnyInvocable<void()>> callbacks;
  std::vector<PhaseEvent> phases;
  std::vector<Expired> expired;
  std::vector<Late> late;
  // Whether delivering_ counts this (it answers requests).
  bool counted = false;
};

absl::StatusOr<std::unique_ptr<Scheduler>> Scheduler::Create(Options options) {
  if (options.clock == nullptr) {
    return absl::InvalidArgumentError("scheduler: no clock");
  }
  if (options.dispatch_lead < absl::ZeroDuration() ||
      options.watchdog_margin < absl::ZeroDuration() ||
      options.recovery_backoff < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "scheduler: dispatch_lead, watchdog_margin and recovery_backoff must "
        "be >= 0");
  }
  if (options.max_recovery_attempts < 1) {
    return absl::InvalidArgumentError(
        "scheduler: max_recovery_attempts must be >= 1");
  }
  return std::unique_ptr<Scheduler>(new Scheduler(options));
}

Scheduler::Scheduler(Options options)
    : clock_(options.clock), observer_(options.observer), options_(options) {}

Scheduler::~Scheduler() {
  Shutdown();
  std::vector<Clock::TimerId> timers;
  {
    hgpipe::MutexLock l(&mu_);
    destroying_ = true;  // no new timers, no new board operations
    for (const auto& [seq, id] : timers_) timers.push_back(id);
  }
  // Without mu_: Cancel waits for a running callback, which takes mu_.
  for (Clock::TimerId id : timers) clock_->Cancel(id);
  std::vector<std::unique_ptr<accel::Board>> boards;
  {
    hgpipe::MutexLock l(&mu_);
    // A board may still be resetting or running a probe (on a SimClock
    // nobody advances, it never finishes: boards deliver CANCELLED then).
    mu_.AwaitWithTimeout(absl::Condition(this, &Scheduler::BoardsQuiet),
                         absl::Seconds(10));
    for (auto& b : boards_) boards.push_back(std::move(b->board));
  }
  // Without mu_: a board's destructor may deliver completions.
  boards.clear();
  hgpipe::MutexLock l(&mu_);
  models_.clear();
  boards_.clear();
}

bool Scheduler::BoardsQuiet() const { return board_ops_ == 0; }

Scheduler::Model* Scheduler::FindModelLocked(absl::string_view name) const {
  auto it = model_ids_.find(name);
  return it == model_ids_.end() ? nullptr : models_[it->second].get();
}

absl::StatusOr<int> Scheduler::AddModel(
    const ModelOptions& options,
    std::vector<std::unique_ptr<accel::Board>> boards) {
  const std::string& name = options.name;
  if (name.empty()) {
    return absl::InvalidArgumentError("scheduler: model name is empty");
  }
  if (boards.empty() && options.bitstream == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model ", name, ": no boards and no bitstream to program one with"));
  }
  if (options.max_images_per_run == 0 || options.max_queue_images == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model ", name, ": max_images_per_run and max_queue_images must be > 0"));
  }
  if (options.priority_levels == 0 || options.default_priority == 0 ||
      options.default_priority > options.priority_levels) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model ", name, ": priority_levels must be >= 1 and default_priority in 1..",
        options.priority_levels));
  }
  if (options.canary != nullptr) {
    const accel::BitstreamManifest& cm = options.bitstream != nullptr
                                             ? options.bitstream->manifest
                                             : boards.empty() ? accel::BitstreamManifest{}
                                                              : boards[0]->manifest();
    absl::Status s = accel::ValidateCanary(*options.canary, cm.geometry);
    if (!s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("model ", name, ": ", s.message()));
    }
  }
  if (options.low_priority_run_images == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("model ", name, ": low_priority_run_images must be > 0"));
  }
  const accel::BitstreamManifest& mf = options.bitstream != nullptr
                                           ? options.bitstream->manifest
                                           : boards[0]->manifest();
  const accel::DeviceGeometry g = mf.geometry;
  for (const auto& b : boards) {
    const accel::DeviceGeometry& bg = b->manifest().geometry;
    if (bg.tokens != g.tokens || bg.token_values != g.token_values ||
        bg.classes != g.classes) {
      return absl::InvalidArgumentError(
          absl::StrCat("model ", name, ": board ", b->info().name,
                       " has a different device geometry"));
    }
  }
  Pending p;
  int id;
  {
    hgpipe::MutexLock l(&mu_);
    if (model_ids_.contains(name)) {
      return absl::AlreadyExistsError(
          absl::StrCat("model ", name, " is already loaded"));
    }
    auto m = std::make_unique<Model>();
    m->id = id = static_cast<int>(models_.size());
    m->options = options;
    m->geometry = g;
    m->timing = mf.timing;
    m->image_time = mf.timing.image_input_time(g.input_bytes());
    m->levels.resize(options.priority_levels);
    m->level_served.assign(options.priority_levels, absl::InfinitePast());
    Model* raw = m.get();
    model_ids_[name] = id;
    models_.push_back(std::move(m));
    for (auto& b : boards) {
      const int bid = AddBoardLocked(std::move(b));
      BoardState& bs = *boards_[bid];
      bs.loaded = options.bitstream;
      SetPhaseLocked(bs, BoardPhase::kServing, raw, absl::OkStatus(), &p);
      // Programmed before the scheduler had them: prove them at once.
      bs.served_since_canary = true;
      ArmCanaryLocked(bs, clock_->Now());
    }
  }
  Finish(std::move(p));
  return id;
}

int Scheduler::AddIdleBoard(std::unique_ptr<accel::Board> board) {
  Pending p;
  int id;
  {
    hgpipe::MutexLock l(&mu_);
    id = AddBoardLocked(std::move(board));
    RebalanceLocked(&p);
  }
  Finish(std::move(p));
  return id;
}

int Scheduler::AddBoardLocked(std::unique_ptr<accel::Board> board) {
  auto b = std::make_unique<BoardState>();
  b->id = static_cast<int>(boards_.size());
  b->name = board->info().name;
  b->max_run = board->max_images_per_run();
  b->board = std::move(board);
  for (int s = b->board->num_slots() - 1; s >= 0; --s) b->free_slots.push_back(s);
  b->RefreshPrediction();
  boards_.push_back(std::move(b));
  return boards_.back()->id;
}

void Scheduler::SetPhaseLocked(BoardState& b, BoardPhase phase, Model* model,
                               const absl::Status& why, Pending* p) {
  if (b.phase == BoardPhase::kServing && b.model != nullptr) {
    auto& s = b.model->serving;
    s.erase(std::remove(s.begin(), s.end(), &b), s.end());
  }
  b.phase = phase;
  b.model = model;
  if (phase == BoardPhase::kServing) {
    model->serving.push_back(&b);
    model->blocked_until = absl::InfinitePast();
  }
  p->phases.push_back({b.id, model != nullptr ? model->id : -1, phase, why, b.counts});
}

bool Scheduler::ServableLocked(const Model& m) const {
  // A model being removed still counts: the requests it accepted are
  // served (or failed when nothing can serve them), never left waiting.
  if (m.removed) return false;
  if (!m.serving.empty()) return true;
  for (const auto& b : boards_) {
    if (b->phase == BoardPhase::kRetired || b->phase == BoardPhase::kRemoved) continue;
    if (b->model == &m) return true;  // coming: programming, probing, recovering
    if (options_.reprogram && m.options.bitstream != nullptr) return true;
  }
  return false;
}

absl::Status Scheduler::RemoveModel(absl::string_view model,
                                    absl::AnyInvocable<void()> done) {
  Pending p;
  {
    hgpipe::MutexLock l(&mu_);
    Model* m = FindModelLocked(model);
    if (m == nullptr) {
      return absl::NotFoundError(absl::StrCat("unknown model '", model, "'"));
    }
    m->removing = true;
    m->on_removed = std::move(done);
    model_ids_.erase(m->options.name);
    MaybeFinishRemovalLocked(*m, &p);
  }
  Finish(std::move(p));
  return absl::OkStatus();
}

absl::Status Scheduler::RemoveBoard(int board_id) {
  Pending p;
  std::unique_ptr<accel::Board> board;
  {
    hgpipe::MutexLock l(&mu_);
    if (board_id < 0 || board_id >= static_cast<int>(boards_.size())) {
      return absl::NotFoundError(absl::StrCat("scheduler: no board ", board_id));
    }
    BoardState& b = *boards_[board_id];
    // Idle with nothing outstanding: no run, no late completion of an
    // abandoned one, no reset or probe whose callback is still to come.
    if (b.phase != BoardPhase::kIdle || b.model != nullptr || !b.runs.empty() ||
        b.abandoned_runs > 0 || b.resetting) {
      return absl::FailedPreconditionError(absl::StrCat(
          "board ", b.name, " is ", BoardPhaseName(b.phase),
          b.model != nullptr ? absl::StrCat(" for model ", b.model->options.name) : "",
          ", not idle"));
    }
    SetPhaseLocked(b, BoardPhase::kRemoved, nullptr, absl::OkStatus(), &p);
    board = std::move(b.board);
  }
  Finish(std::move(p));
  // Without mu_: a board's destructor joins its threads.
  board.reset();
  return absl::OkStatus();
}

void Scheduler::MaybeFinishRemovalLocked(Model& m, Pending* p) {
  if (!m.removing || m.removed || !m.requests.empty()) return;
  m.removed = true;
  for (auto& b : boards_) {
    if (b->model != &m) continue;
    if (b->phase == BoardPhase::kServing) {
      SetPhaseLocked(*b, BoardPhase::kIdle, nullptr, absl::OkStatus(), p);
    } else if (b->phase == BoardPhase::kRecovering ||
               b->phase == BoardPhase::kRetired) {
      b->model = nullptr;
    }
    // Boards programming, probing or draining for it go idle when done.
  }
  if (m.on_removed) p->callbacks.push_back(std::move(m.on_removed));
  RebalanceLocked(p);
}

absl::Status Scheduler::Enqueue(absl::string_view model,
                                std::unique_ptr<InferRequest> request) {
  if (request == nullptr || request->n_images == 0 ||
      request->images == nullptr || request->logits == nullptr) {
    return absl::InvalidArgumentError(
        "scheduler: a request needs at least one image and its buffers");
  }
  Pending p;
  {
    hgpipe::MutexLock l(&mu_);
    if (!accepting_) {
      return absl::UnavailableError("the server is shutting down");
    }
    Model* mp = FindModelLocked(model);
    if (mp == nullptr) {
      return absl::NotFoundError(absl::StrCat("unknown model '", model, "'"));
    }
    Model& m = *mp;
    const uint32_t levels = m.options.priority_levels;
    const uint32_t priority =
        request->priority == 0 ? m.options.default_priority : request->priority;
    if (priority > levels) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model ", m.options.name, ": priority ", priority,
          " is outside 1..", levels, " (0 means the default, ",
          m.options.default_priority, ")"));
    }
    if (!ServableLocked(m)) {
      return absl::UnavailableError(absl::StrCat(
          "model ", m.options.name, " has no board that can serve it"));
    }
    // The limit counts the images a request would wait behind: its own
    // level and higher ones, so a flood of low priority never refuses
    // higher-priority requests.
    const uint32_t level = priority - 1;
    uint64_t ahead = 0;
    for (uint32_t i = 0; i <= level; ++i) ahead += m.levels[i].size();
    if (ahead + request->n_images > m.options.max_queue_images) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "model ", m.options.name, ": queue full (", ahead,
          " images queued at priority ", priority, " or higher, ",
          request->n_images, " more would pass the limit of ",
          m.options.max_queue_images, ")"));
    }
    const absl::Time now = clock_->Now();
    if (request->deadline != absl::InfiniteFuture()) {
      const absl::Time done = EstimateDoneLocked(m, level, request->n_images, now);
      if (done > request->deadline) {
        return absl::DeadlineExceededError(absl::StrCat(
            "model ", m.options.name, ": the request cannot finish before its "
            "deadline (", absl::FormatDuration(request->deadline - now),
            " from now; predicted completion in ",
            absl::FormatDuration(done - now), ")"));
      }
    }
    auto r = std::make_unique<Request>();
    r->arrival = now;
    r->deadline = request->deadline;
    r->level = level;
    r->unanswered = r->queued = request->n_images;
    r->request = std::move(request);
    Request* raw = r.get();
    for (uint32_t i = 0; i < raw->unanswered; ++i) {
      m.levels[level].push_back({raw, i});
    }
    m.queued += raw->unanswered;
    if (raw->deadline != absl::InfiniteFuture()) {
      m.deadlines.emplace(raw->deadline, raw);
      m.promises.emplace(raw->deadline, raw);
    }
    m.requests.emplace(raw, std::move(r));
    ++open_requests_;
    if (m.serving.empty()) RebalanceLocked(&p);
    if (now >= m.blocked_until) {
      DispatchLocked(m, &p);
    } else {
      if (raw->deadline != absl::InfiniteFuture()) {
        ArmDispatchTimerLocked(m, raw->deadline - m.MinServiceTime());
      }
      if (observer_) observer_->QueueDepth(m.id, m.queued);
    }
    CountLocked(&p);
  }
  Finish(std::move(p));
  return absl::OkStatus();
}

absl::Time Scheduler::ReadyEstimateLocked(const Model& m, absl::Time now) const {
  if (!m.serving.empty()) return now;
  absl::Time ready = absl::InfiniteFuture();
  for (const auto& bp : boards_) {
    const BoardState& b = *bp;
    absl::Time t = absl::InfiniteFuture();
    const bool ours = b.model == &m;
    switch (b.phase) {
      case BoardPhase::kProbing:
        if (ours) t = now;
        break;
      case BoardPhase::kProgramming:
        if (ours) t = std::max(now, b.op_started + b.program_took);
        break;
      case BoardPhase::kRecovering:
        if (ours) {
          const absl::Time resets = b.resetting ? b.op_started
                                                : std::max(now, b.recovery_resumes);
          t = std::max(now, resets + b.reset_took) + b.program_took;
        }
        break;
      case BoardPhase::kIdle:
      case BoardPhase::kServing:
      case BoardPhase::kDraining:
        // Another model's (or no model's) board it may be given.
        if (options_.reprogram && m.options.bitstream != nullptr) t = now + b.program_took;
        break;
      case BoardPhase::kRetired:
      case BoardPhase::kRemoved:
        break;
    }
    ready = std::min(ready, t);
  }
  return ready;
}

absl::Time Scheduler::EstimateDoneLocked(const Model& m, uint32_t level,
                                         uint32_t n, absl::Time now) const {
  uint64_t ahead = 0;
  for (uint32_t i = 0; i <= level; ++i) ahead += m.levels[i].size();
  // Without a serving board: when one can serve at the earliest (boards
  // recovering or being programmed, as long as their last steps took).
  absl::Time ready = ReadyEstimateLocked(m, now);
  if (ready == absl::InfiniteFuture()) ready = now;  // not servable: refused elsewhere
  absl::Time start = ready + m.timing.run_overhead;
  double boards = 1;
  if (!m.serving.empty()) {
    absl::Time first = absl::InfiniteFuture();
    for (const BoardState* b : m.serving) {
      first = std::min(first, std::max(start, b->input_free_at()));
    }
    start = first;
    boards = static_cast<double>(m.serving.size());
  }
  const double images_before_last =
      std::ceil(static_cast<double>(ahead + n) / boards) - 1;
  return start + m.image_time * images_before_last + m.timing.latency();
}

void Scheduler::DispatchLocked(Model& m, Pending* p) {
  const absl::Time now = clock_->Now();
  ExpireLocked(m, now, p);
  const absl::Duration lead = options_.dispatch_lead;
  m.blocked_until = absl::InfinitePast();
  while (m.queued > 0 && !destroying_) {
    // The ready board (a free slot, input ending within the lead) where the
    // next image would complete first, and when the next busy one is ready.
    BoardState* best = nullptr;
    absl::Time best_done = absl::InfiniteFuture();
    absl::Time next_ready = absl::InfiniteFuture();
    for (BoardState* b : m.serving) {
      if (b->free_slots.empty()) continue;  // a completion dispatches again
      // Readiness follows the board's timing model alone: a board running
      // late only queues the run on it a little earlier, while a lag
      // inflated by one late timer would hold images back for nothing.
      const absl::Time due = b->prediction->input_free_at() - lead;
      if (due > now) {
        next_ready = std::min(next_ready, due);
        continue;
      }
      const absl::Time done = b->NextStart(now) + b->prediction->latency();
      if (done < best_done) {
        best = b;
        best_done = done;
      }
    }
    uint32_t n = 0;
    if (best != nullptr) n = RunSizeLocked(m, *best, best_done, now);
    if (n == 0) {
      // Busy (or a busy board will complete the next image sooner): hold
      // images back until a board is about to need them, so that its next
      // run carries everything that queued meanwhile.
      if (next_ready != absl::InfiniteFuture()) {
        ArmDispatchTimerLocked(m, next_ready);
        m.blocked_until = next_ready;
      }
      break;
    }
    if (m.options.max_queue_delay > absl::ZeroDuration() &&
        best->input_free_at() <= now &&
        m.queued < std::min(m.options.max_images_per_run, best->max_run)) {
      absl::Time oldest = absl::InfiniteFuture();
      for (const auto& q : m.levels) {
        if (!q.empty()) oldest = std::min(oldest, q.front().request->arrival);
      }
      const absl::Time fill_by = oldest + m.options.max_queue_delay;
      if (fill_by > now) {
        ArmDispatchTimerLocked(m, fill_by);
        break;
      }
    }
    auto run = std::make_unique<Run>();
    TakeImagesLocked(m, n, best->NextStart(now), best->prediction->image_time(),
                     best->prediction->latency(), &run->images, p);
    if (run->images.empty()) continue;  // all expired: look again
    const uint32_t taken = static_cast<uint32_t>(run->images.size());
    run->model = &m;
    run->board = best;
    run->slot = best->free_slots.back();
    best->free_slots.pop_back();
    run->submitted = now;
    run->predicted = best->prediction->Submit(now, taken);
    run->model_done = run->predicted.done;
    run->predicted.done += best->lag;
    if (best->runs.empty()) best->head_since = now;
    best->runs.push_back(run.get());
    best->in_flight_images += taken;
    best->last_used = now;
    best->served_since_canary = true;
    if (!best->canary_armed && options_.canary_interval > absl::ZeroDuration()) {
      ArmCanaryLocked(*best, now + options_.canary_interval);
    }
    ArmWatchdogLocked(*best);
    p->runs.push_back(std::move(run));
  }
  if (observer_) observer_->QueueDepth(m.id, m.queued);
}

uint32_t Scheduler::RunSizeLocked(const Model& m, const BoardState& best,
                                  absl::Time first_done, absl::Time now) const {
  // Water-filling: the images of the level served next go, in completion
  // order, to whichever board completes them first. `best` takes image i of
  // its run (completing at first_done + i*T) only if fewer than the queued
  // images complete earlier elsewhere: an idle pool splits a burst, a
  // saturated board takes everything up to its run cap.
  uint64_t queued = 0;
  for (const auto& q : m.levels) {
    if (!q.empty()) {
      queued = q.size();
      break;
    }
  }
  const uint32_t cap = static_cast<uint32_t>(std::min<uint64_t>(
      {m.options.max_images_per_run, best.max_run, queued}));
  const int64_t t_best = absl::ToInt64Nanoseconds(best.prediction->image_time());
  // Others' first completions and intervals, in ns relative to first_done.
  struct Other {
    int64_t first;
    int64_t interval;
  };
  absl::InlinedVector<Other, 16> others;
  const int64_t horizon = t_best * cap;
  for (const BoardState* b : m.serving) {
    if (b == &best || b->free_slots.empty()) continue;
    const int64_t first = absl::ToInt64Nanoseconds(
        b->NextStart(now) + b->prediction->latency() - first_done);
    if (first >= horizon) continue;  // never ahead within this run
    others.push_back({first, absl::ToInt64Nanoseconds(b->prediction->image_time())});
  }
  // Images completing elsewhere strictly before `best`'s image i.
  auto earlier_elsewhere = [&](uint32_t i) {
    const int64_t d = t_best * i;
    uint64_t count = 0;
    for (const Other& o : others) {
      if (d > o.first) count += static_cast<uint64_t>((d - o.first + o.interval - 1) / o.interval);
    }
    return count;
  };
  // The largest n with image n-1 still ours; the predicate is monotone.
  uint32_t lo = 0, hi = cap;
  while (lo < hi) {
    const uint32_t mid = lo + (hi - lo + 1) / 2;
    if (mid - 1 + earlier_elsewhere(mid - 1) < queued) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

void Scheduler::TakeImagesLocked(Model& m, uint32_t max, absl::Time start,
                                 absl::Duration image_time,
                                 absl::Duration latency,
                                 std::vector<ImageRef>* out, Pending* p) {
  const absl::Time now = clock_->Now();
  const uint32_t levels = m.options.priority_levels;
  // Levels whose oldest image waited past max_starvation go first, oldest
  // first; then every level in priority order.
  std::vector<std::pair<absl::Time, uint32_t>> starved;
  for (uint32_t i = 1; i < levels; ++i) {
    if (m.levels[i].empty()) continue;
    const absl::Time since =
        std::max(m.levels[i].front().request->arrival, m.level_served[i]);
    if (now - since >= m.options.max_starvation) starved.push_back({since, i});
  }
  std::sort(starved.begin(), starved.end());
  std::vector<uint32_t> order;
  for (const auto& [since, i] : starved) order.push_back(i);
  for (uint32_t i = 0; i < levels; ++i) {
    if (std::find(order.begin(), order.end(), i) == order.end()) order.push_back(i);
  }
  const uint32_t low_cap = std::min(max, m.options.low_priority_run_images);
  // Every image of a run is answered when the run completes (its last image
  // is out), so adding image k moves every included request's answer to
  // start + k*T + latency: stop before that passes a deadline in the run.
  absl::Time run_deadline = absl::InfiniteFuture();
  bool full = false;
  for (uint32_t level : order) {
    if (full) break;
    const uint32_t cap = level == 0 ? max : low_cap;
    std::deque<ImageRef>& q = m.levels[level];
    bool took = false;
    while (out->size() < cap && !q.empty()) {
      Request* r = q.front().request;
      const absl::Time done =
          start + image_time * static_cast<int64_t>(out->size()) + latency;
      if (done > r->deadline && out->empty()) {
        // Even first in a run on the board where it completes first, it
        // would be late: answer it now.
        p->expired.push_back({m.id, r->queued});
        FailRequestLocked(
            m, r,
            absl::DeadlineExceededError(absl::StrCat(
                "model ", m.options.name,
                ": the request cannot finish before its deadline (predicted ",
                absl::FormatDuration(done - r->deadline), " late)")),
            p);
        continue;
      }
      if (done > std::min(run_deadline, r->deadline)) {
        full = true;  // the rest go in a later run
        break;
      }
      run_deadline = std::min(run_deadline, r->deadline);
      out->push_back(q.front());
      q.pop_front();
      --m.queued;
      ++r->unpacked;
      if (--r->queued == 0 && r->deadline != absl::InfiniteFuture()) {
        m.deadlines.erase({r->deadline, r});
      }
      took = true;
    }
    if (took) m.level_served[level] = now;
    if (out->size() >= max) break;
  }
}

void Scheduler::ExpireLocked(Model& m, absl::Time now, Pending* p) {
  // Deadlines reached with images on a board: answer now, drop the board's
  // result when it comes.
  while (!m.promises.empty() && m.promises.begin()->first <= now) {
    Request* r = m.promises.begin()->second;
    m.promises.erase(m.promises.begin());
    const absl::Status late = absl::DeadlineExceededError(absl::StrCat(
        "model ", m.options.name, ": the request's deadline passed with ",
        r->unanswered - r->queued, " image(s) still on a board"));
    if (r->queued > 0) p->expired.push_back({m.id, r->queued});
    FailRequestLocked(m, r, late, p);  // its queued images, if any
    if (m.requests.contains(r)) DetachLocked(m, *r, p);
  }
  if (!m.promises.empty()) ArmDispatchTimerLocked(m, m.promises.begin()->first);
  const absl::Duration min_service = m.MinServiceTime();
  // No board serves the model: requests that cannot be answered before the
  // earliest a board can be back are answered now, not at their deadline.
  const absl::Time ready = ReadyEstimateLocked(m, now);
  if (ready > now && ready != absl::InfiniteFuture()) {
    while (!m.deadlines.empty() && m.deadlines.begin()->first < ready + min_service) {
      Request* r = m.deadlines.begin()->second;
      p->expired.push_back({m.id, r->queued});
      FailRequestLocked(
          m, r,
          absl::DeadlineExceededError(absl::StrCat(
              "model ", m.options.name, ": no board can serve it before the request's "
              "deadline (its boards are recovering or being programmed; the earliest in ",
              absl::FormatDuration(ready - now), ")")),
          p);
    }
  }
  while (!m.deadlines.empty()) {
    const auto [deadline, r] = *m.deadlines.begin();
    if (deadline - min_service > now) {
      ArmDispatchTimerLocked(m, deadline - min_service);
      return;
    }
    p->expired.push_back({m.id, r->queued});
    FailRequestLocked(
        m, r,
        absl::DeadlineExceededError(absl::StrCat(
            "model ", m.options.name,
            ": the request's deadline passed while it was queued (",
            r->queued, " image(s) still waiting)")),
        p);
  }
}

void Scheduler::FailRequestLocked(Model& m, Request* r,
                                  const absl::Status& status, Pending* p) {
  if (r->status.ok()) r->status = status;
  if (r->deadline != absl::InfiniteFuture()) m.deadlines.erase({r->deadline, r});
  if (r->queued == 0) return;
  std::deque<ImageRef>& q = m.levels[r->level];
  const auto end = std::remove_if(q.begin(), q.end(),
                                  [r](const ImageRef& i) { return i.request == r; });
  const uint32_t removed = static_cast<uint32_t>(q.end() - end);
  q.erase(end, q.end());
  m.queued -= removed;
  r->queued -= removed;
  for (uint32_t k = 0; k < removed; ++k) AnswerImageLocked(m, r, p);
}

void Scheduler::DetachLocked(Model& m, Request& r, Pending* p) {
  if (r.detached) return;
  if (r.unpacked > 0) {  // Launch is still reading its images
    r.detach_pending = true;
    return;
  }
  r.detach_pending = false;
  r.detached = true;
  if (r.deadline != absl::InfiniteFuture()) m.promises.erase({r.deadline, &r});
  p->callbacks.push_back(
      [done = std::move(r.request->done), status = r.status]() mutable {
        done(status);
      });
}

void Scheduler::AnswerImageLocked(Model& m, Request* r, Pending* p) {
  if (--r->unanswered != 0) return;
  if (r->deadline != absl::InfiniteFuture()) m.promises.erase({r->deadline, r});
  auto it = m.requests.find(r);
  p->done.push_back(std::move(it->second));
  m.requests.erase(it);
  --open_requests_;
  MaybeFinishRemovalLocked(m, p);
}

void Scheduler::FailQueuedLocked(Model& m, const absl::Status& status,
                                 Pending* p) {
  std::vector<Request*> queued;
  for (const auto& [r, owned] : m.requests) {
    if (r->queued > 0) queued.push_back(r);
  }
  for (Request* r : queued) FailRequestLocked(m, r, status, p);
}

void Scheduler::RequeueLocked(Run& run, Pending* p) {
  Model& m = *run.model;
  for (auto it = run.images.rbegin(); it != run.images.rend(); ++it) {
    Request* r = it->request;
    if (!r->status.ok()) {  // failed meanwhile (deadline): not worth a retry
      AnswerImageLocked(m, r, p);
      continue;
    }
    m.levels[r->level].push_front(*it);
    ++m.queued;
    if (r->queued++ == 0 && r->deadline != absl::InfiniteFuture()) {
      m.deadlines.emplace(r->deadline, r);
    }
  }
  run.images.clear();
}

void Scheduler::ArmDispatchTimerLocked(Model& m, absl::Time due) {
  if (due >= m.next_timer) return;  // an earlier timer will re-evaluate
  m.next_timer = due;
  const int model_id = m.id;
  RunAtLocked(due, [this, model_id, due] { OnDispatchTimer(model_id, due); });
}

void Scheduler::OnDispatchTimer(int model_id, absl::Time due) {
  Pending p;
  {
    hgpipe::MutexLock l(&mu_);
    Model& m = *models_[model_id];
    if (m.next_timer == due) m.next_timer = absl::InfiniteFuture();
    DispatchLocked(m, &p);
    CountLocked(&p);
  }
  Finish(std::move(p));
}

void Scheduler::RunAtLocked(absl::Time due, absl::AnyInvocable<void()> fn) {
  if (destroying_) return;
  const uint64_t seq = ++timer_seq_;
  timers_[seq] = clock_->RunAt(due, [this, seq, fn = std::move(fn)]() mutable {
    {
      hgpipe::MutexLock l(&mu_);
      timers_.erase(seq);
    }
    fn();
  });
}

void Scheduler::Launch(std::unique_ptr<Run> run) {
  Model& m = *run->model;
  BoardState& b = *run->board;
  const accel::DeviceGeometry& g = m.geometry;
  accel::Board* board = b.board.get();
  int8_t* dst = board->slot(run->slot).input.data();
  if (run->canary) {  // already in device order
    const accel::Canary& c = *m.options.canary;
    std::copy(c.input.begin(), c.input.end(), dst);
  }
  std::vector<absl::Duration> waits;
  waits.reserve(run->images.size());
  for (const ImageRef& img : run->images) {
    accel::PackImage(g, img.request->request->images + img.index * g.input_bytes(),
                     dst);
    dst += g.input_bytes();
    waits.push_back(run->submitted - img.request->arrival);
  }
  const uint32_t n = run->size();
  Pending p;
  bool abandoned;
  {
    hgpipe::MutexLock l(&mu_);
    // The caller's images are copied: a request whose deadline passed
    // meanwhile can be answered now.
    for (const ImageRef& img : run->images) {
      Request* r = img.request;
      if (--r->unpacked == 0 && r->detach_pending) DetachLocked(m, *r, &p);
    }
    abandoned = run->abandoned;
    if (abandoned) {
      // The board failed while we packed: the images go elsewhere now.
      b.free_slots.push_back(run->slot);
      RequeueLocked(*run, &p);
      --b.abandoned_runs;
      ContinueRecoveryLocked(b, &p);
      DispatchLocked(m, &p);
      CountLocked(&p);
    } else {
      run->packed = true;
      CountLocked(&p);
    }
  }
  if (!abandoned && (!p.callbacks.empty() || p.counted)) {
    Finish(std::move(p));
    p = Pending();
  }
  if (abandoned) {
    Finish(std::move(p));
    return;
  }
  if (observer_ && !run->canary) {
    observer_->RunStarted(m.id, b.id, n, waits, b.prediction->InputTime(n));
  }
  const int slot = run->slot;
  board->Submit(slot, n, [this, r = std::move(run)](absl::Status s) mutable {
    OnRunDone(std::move(r), std::move(s));
  });
}

void Scheduler::OnRunDone(std::unique_ptr<Run> run, absl::Status status) {
  Model& m = *run->model;
  BoardState& b = *run->board;
  const uint32_t n = run->size();
  const absl::Duration device_time = clock_->Now() - run->submitted;
  bool report = false;
  Pending p;
  {
    hgpipe::MutexLock l(&mu_);
    b.free_slots.push_back(run->slot);
    if (run->abandoned) {
      --b.abandoned_runs;
      --board_ops_;
      if (!destroying_) {
        ContinueRecoveryLocked(b, &p);
        DispatchLocked(m, &p);
      }
    } else {
      report = !run->canary;
      const absl::Time now = clock_->Now();
      b.runs.erase(std::find(b.runs.begin(), b.runs.end(), run.get()));
      if (!b.runs.empty()) b.head_since = now;
      b.in_flight_images -= n;
      if (status.ok()) {
        // Smoothed, so that a board that is persistently slow gets less
        // work while one late timer does not move it much.
        const absl::Duration late =
            std::max(absl::ZeroDuration(), now - run->model_done);
        b.lag += (late - b.lag) / 4;
        // The slot is ours until we return: decode straight into each
        // request's buffer (under mu_: a watchdog may not requeue these
        // images while we write).
        const accel::DeviceGeometry& g = m.geometry;
        const uint32_t* words = b.board->slot(run->slot).output.data();
        uint32_t dropped = 0;
        for (const ImageRef& img : run->images) {
          if (img.request->detached) {  // answered at its deadline
            ++dropped;
            words += g.output_words();
            AnswerImageLocked(m, img.request, &p);
            continue;
          }
          int32_t* out =
              img.request->request->logits + size_t{img.index} * g.classes;
          for (uint32_t j = 0; j < g.classes; ++j) {
            out[j] = accel::DecodeLogitWord(words[j]);
          }
          words += g.output_words();
          AnswerImageLocked(m, img.request, &p);
        }
        if (dropped > 0) p.late.push_back({m.id, dropped});
        if (run->canary) {
          absl::Status canary = CheckCanaryLocked(b, m, run->slot, &p);
          if (!canary.ok()) FailBoardLocked(b, canary, &p);
        }
      } else {
        RequeueLocked(*run, &p);
        FailBoardLocked(b, status, &p);
      }
      if (b.phase == BoardPhase::kDraining && b.runs.empty()) {
        ProgramLocked(b, b.model, &p);
      }
      if (b.canary_due && b.phase == BoardPhase::kServing) {
        ArmCanaryLocked(b, now);  // its timer found no free slot
      }
      DispatchLocked(m, &p);
      RebalanceLocked(&p);
    }
    CountLocked(&p);
  }
  if (observer_ && report) {
    observer_->RunFinished(m.id, b.id, n, device_time, status);
  }
  Finish(std::move(p));
}

void Scheduler::FailBoardLocked(BoardState& b, const absl::Status& why,
                                Pending* p) {
  ++b.counts.failures;
  Model* m = b.model;
  std::vector<Model*> affected;
  for (Run* r : b.runs) {
    r->abandoned = true;
    ++b.abandoned_runs;
    if (r->packed) {
      ++board_ops_;  // its completion is still to come
      RequeueLocked(*r, p);
    }
    // An unpacked run is requeued by Launch, which never submits it.
    if (std::find(affected.begin(), affected.end(), r->model) == affected.end()) {
      affected.push_back(r->model);
    }
  }
  b.runs.clear();
  b.in_flight_images = 0;
  SetPhaseLocked(b, BoardPhase::kRecovering, m, why, p);
  ResetLocked(b);
  for (Model* a : affected) {
    if (a != m) DispatchLocked(*a, p);
  }
  if (m != nullptr) CheckServableLocked(*m, why, p);
}

void Scheduler::CheckServableLocked(Model& m, const absl::Status& why,
                                    Pending* p) {
  if (ServableLocked(m)) return;
  FailQueuedLocked(
      m,
      absl::UnavailableError(absl::StrCat(
          "model ", m.options.name,
          ": no board can serve it; last failure: ", why.message())),
      p);
}

void Scheduler::ContinueRecoveryLocked(BoardState& b, Pending* p) {
  if (b.phase != BoardPhase::kRecovering || b.resetting || !b.reset_ok ||
      b.abandoned_runs > 0 || destroying_) {
    return;
  }
  b.reset_ok = false;
  b.loaded = nullptr;  // a reset board holds no bitstream
  if (b.model == nullptr || b.model->removed ||
      b.model->options.bitstream == nullptr) {
    SetPhaseLocked(b, BoardPhase::kIdle, nullptr, absl::OkStatus(), p);
    RebalanceLocked(p);
    return;
  }
  b.recovering = true;
  ProgramLocked(b, b.model, p);
}

void Scheduler::ProgramLocked(BoardState& b, Model* m, Pending* p) {
  SetPhaseLocked(b, BoardPhase::kProgramming, m, absl::OkStatus(), p);
  const int id = b.id;
  RunAtLocked(clock_->Now(), [this, id] { StartProgram(id); });
}

void Scheduler::ProbeLocked(BoardState& b, Model* m, Pending* p) {
  SetPhaseLocked(b, BoardPhase::kProbing, m, absl::OkStatus(), p);
  const int id = b.id;
  RunAtLocked(clock_->Now(), [this, id] { StartProbe(id); });
}

void Scheduler::ResetLocked(BoardState& b) {
  b.resetting = true;
  b.reset_ok = false;
  const int id = b.id;
  RunAtLocked(clock_->Now(), [this, id] { StartReset(id); });
}

void Scheduler::RetryRecoveryLocked(BoardState& b, const absl::Status& why,
                                    Pending* p) {
  ++b.attempts;
  b.recovering = true;
  Model* m = b.model != nullptr && !b.model->removed ? b.model : nullptr;
  if (b.attempts >= options_.max_recovery_attempts) {
    SetPhaseLocked(b, BoardPhase::kRetired, m, why, p);
    if (m != nullptr) CheckServableLocked(*m, why, p);
    // Its model's queued requests may need another board now.
    RebalanceLocked(p);
    return;
  }
  SetPhaseLocked(b, BoardPhase::kRecovering, m, why, p);
  const absl::Duration backoff = options_.recovery_backoff * (1 << (b.attempts - 1));
  b.recovery_resumes = clock_->Now() + backoff;
  // Requests that cannot wait that long are answered now.
  if (m != nullptr) ExpireLocked(*m, clock_->Now(), p);
  const int id = b.id;
  RunAtLocked(clock_->Now() + backoff, [this, id] {
    hgpipe::MutexLock l(&mu_);
    BoardState& bs = *boards_[id];
    if (bs.phase == BoardPhase::kRecovering && !destroying_) ResetLocked(bs);
  });
}

void Scheduler::ArmWatchdogLocked(BoardState& b) {
  if (options_.watchdog_margin == absl::ZeroDuration() || b.watchdog_armed ||
      b.runs.empty()) {
    return;
  }
  b.watchdog_armed = true;
  const int id = b.id;
  RunAtLocked(WatchdogDueLocked(b), [this, id] { OnWatchdog(id); });
}

absl::Time Scheduler::WatchdogDueLocked(const BoardState& b) const {
  const Run& head = *b.runs.front();
  // The head run is due by its prediction, or - when earlier runs were late
  // - one run's worth of time after it became the oldest.
  const absl::Time own =
      b.head_since + b.prediction->timing().run_overhead +
      b.prediction->InputTime(head.size()) +
      b.prediction->latency();
  return std::max(head.predicted.done, own) + options_.watchdog_margin;
}

void Scheduler::OnWatchdog(int board_id) {
  Pending p;
  {
    hgpipe::MutexLock l(&mu_);
    BoardState& b = *boards_[board_id];
    b.watchdog_armed = false;
    if (b.runs.empty() || destroying_ ||
        (b.phase != BoardPhase::kServing && b.phase != BoardPhase::kDraining)) {
      return;
    }
    const absl::Time due = WatchdogDueLocked(b);
    const absl::Time now = clock_->Now();
    if (now < due) {
      ArmWatchdogLocked(b);
      return;
    }
    const Run& head = *b.runs.front();
    Model* m = head.model;
    const absl::Status why = absl::DeadlineExceededError(absl::StrCat(
        "board ", b.name, ": a run of ", head.size(),
        " image(s) is ", absl::FormatDuration(now - head.predicted.done),
        " past its predicted completion (watchdog margin ",
        absl::FormatDuration(options_.watchdog_margin), ")"));
    FailBoardLocked(b, why, &p);
    DispatchLocked(*m, &p);
    RebalanceLocked(&p);
    CountLocked(&p);
  }
  Finish(std::move(p));
}

void Scheduler::StartReset(int board_id) {
  accel::Board* board;
  {
    hgpipe::MutexLock l(&mu_);
    board = boards_[board_id]->board.get();
    boards_[board_id]->op_started = clock_->Now();
    ++board_ops_;
  }
  board->Reset([this, board_id](absl::Status s) {
    OnBoardOpDone(board_id, BoardPhase::kRecovering, std::move(s));
  });
}

void Scheduler::StartProgram(int board_id) {
  accel::Board* board;
  std::shared_ptr<const accel::Bitstream> bitstream;
  {
    hgpipe::MutexLock l(&mu_);
    board = boards_[board_id]->board.get();
    // Models are never freed: the one a board is being programmed for
    // stays valid even if it is removed meanwhile.
    bitstream = boards_[board_id]->model->options.bitstream;
    boards_[board_id]->op_started = clock_->Now();
    ++board_ops_;
  }
  board->Program(std::move(bitstream), [this, board_id](absl::Status s) {
    OnBoardOpDone(board_id, BoardPhase::kProgramming, std::move(s));
  });
}

void Scheduler::StartProbe(int board_id) {
  accel::Board* board;
  int slot;
  uint64_t generation;
  // Models are never freed: the canary stays valid.
  std::shared_ptr<const accel::Canary> canary;
  {
    hgpipe::MutexLock l(&mu_);
    BoardState& b = *boards_[board_id];
    board = b.board.get();
    canary = b.model->options.canary;
    slot = b.free_slots.back();
    b.free_slots.pop_back();
    generation = ++b.probe_generation;
    ++board_ops_;
    if (options_.watchdog_margin > absl::ZeroDuration()) {
      const absl::Time due = b.prediction->Predict(clock_->Now(), 1).done +
                             options_.watchdog_margin;
      RunAtLocked(due, [this, board_id, generation] {
        Pending p;
        {
          hgpipe::MutexLock l2(&mu_);
          BoardState& bs = *boards_[board_id];
          if (bs.phase != BoardPhase::kProbing ||
              bs.probe_generation != generation || destroying_) {
            return;
          }
          FailProbeLocked(bs,
                          absl::DeadlineExceededError(absl::StrCat(
                              "board ", bs.name,
                              ": the probe run did not finish in time")),
                          &p);
          CountLocked(&p);
        }
        Finish(std::move(p));
      });
    }
  }
  // The canary, or a zero image (every bitstream must take it).
  uint32_t images = 1;
  if (canary != nullptr) {
    std::copy(canary->input.begin(), canary->input.end(), board->slot(slot).input.data());
    images = canary->images;
  } else {
    const size_t bytes = board->manifest().geometry.input_bytes();
    std::memset(board->slot(slot).input.data(), 0, bytes);
  }
  board->Submit(slot, images, [this, board_id, slot, generation](absl::Status s) {
    Pending p;
    {
      hgpipe::MutexLock l(&mu_);
      BoardState& b = *boards_[board_id];
      b.free_slots.push_back(slot);
      --board_ops_;
      if (b.phase != BoardPhase::kProbing || b.probe_generation != generation ||
          destroying_) {
        return;
      }
      // The slot is free again but nobody takes it before we return.
      if (s.ok() && b.model->options.canary != nullptr) {
        s = CheckCanaryLocked(b, *b.model, slot, &p);
      }
      if (!s.ok() && absl::IsDataLoss(s)) {
        FailProbeLocked(b, s, &p);
      } else if (!s.ok()) {
        FailProbeLocked(b,
                        absl::UnavailableError(absl::StrCat(
                            "board ", b.name, ": probe run failed: ", s.message())),
                        &p);
      } else {
        ++b.probe_generation;
        AdmitLocked(b, &p);
      }
      CountLocked(&p);
    }
    Finish(std::move(p));
  });
}

void Scheduler::FailProbeLocked(BoardState& b, const absl::Status& why,
                                Pending* p) {
  ++b.probe_generation;  // a late completion or timeout is ignored
  ++b.counts.failures;
  RetryRecoveryLocked(b, why, p);
}

void Scheduler::AdmitLocked(BoardState& b, Pending* p) {
  Model* m = b.model;
  if (m == nullptr || m->removed) {
    SetPhaseLocked(b, BoardPhase::kIdle, nullptr, absl::OkStatus(), p);
    RebalanceLocked(p);
    return;
  }
  if (b.recovering) ++b.counts.recoveries;
  b.recovering = false;
  b.attempts = 0;
  b.RefreshPrediction();
  SetPhaseLocked(b, BoardPhase::kServing, m, absl::OkStatus(), p);
  // The probe was the canary: the next one is armed by the next run.
  b.served_since_canary = false;
  b.canary_armed = false;
  ++b.canary_generation;
  DispatchLocked(*m, p);
}

void Scheduler::ArmCanaryLocked(BoardState& b, absl::Time due) {
  if (b.model == nullptr || b.model->options.canary == nullptr) return;
  b.canary_due = false;
  b.canary_armed = true;
  const uint64_t generation = ++b.canary_generation;
  const int id = b.id;
  RunAtLocked(due, [this, id, generation] { OnCanaryTimer(id, generation); });
}

void Scheduler::OnCanaryTimer(int board_id, uint64_t generation) {
  Pending p;
  {
    hgpipe::MutexLock l(&mu_);
    BoardState& b = *boards_[board_id];
    if (b.canary_generation != generation || b.phase != BoardPhase::kServing ||
        destroying_ || b.model == nullptr || b.model->options.canary == nullptr) {
      return;  // stale: the board left service (its probe re-arms it)
    }
    b.canary_armed = false;
    if (!b.served_since_canary) return;  // its next run arms the next one
    if (b.free_slots.empty()) {
      b.canary_due = true;  // the next completion starts it
      return;
    }
    Model& m = *b.model;
    const absl::Time now = clock_->Now();
    auto run = std::make_unique<Run>();
    run->model = &m;
    run->board = &b;
    run->canary = true;
    b.served_since_canary = false;
    run->canary_images = m.options.canary->images;
    run->slot = b.free_slots.back();
    b.free_slots.pop_back();
    run->submitted = now;
    run->predicted = b.prediction->Submit(now, run->size());
    run->model_done = run->predicted.done;
    run->predicted.done += b.lag;
    if (b.runs.empty()) b.head_since = now;
    b.runs.push_back(run.get());
    b.in_flight_images += run->size();
    ArmWatchdogLocked(b);
    p.runs.push_back(std::move(run));
  }
  Finish(std::move(p));
}

absl::Status Scheduler::CheckCanaryLocked(BoardState& b, const Model& m, int slot,
                                          Pending* p) {
  const accel::Canary& c = *m.options.canary;
  const absl::Span<const uint32_t> got(b.board->slot(slot).output.data(),
                                       c.images * m.geometry.output_words());
  const std::string diff = accel::CompareCanaryOutput(c, m.geometry, got);
  if (diff.empty()) return absl::OkStatus();
  absl::Status why = absl::DataLossError(absl::StrCat(
      "board ", b.name, ": canary (", c.source, ") for model ", m.options.name,
      " differs: ", diff));
  p->canaries.push_back({b.id, m.id, why});
  return why;
}

void Scheduler::OnBoardOpDone(int board_id, BoardPhase phase,
                              absl::Status status) {
  Pending p;
  {
    hgpipe::MutexLock l(&mu_);
    BoardState& b = *boards_[board_id];
    --board_ops_;
    if (destroying_) return;
    const absl::Duration took = clock_->Now() - b.op_started;
    if (phase == BoardPhase::kRecovering) {
      b.reset_took = took;
      b.resetting = false;
      if (!status.ok()) {
        ++b.counts.failures;  // a recovery step failed
        RetryRecoveryLocked(
            b,
            absl::UnavailableError(absl::StrCat("board ", b.name,
                                                ": reset failed: ",
                                                status.message())),
            &p);
      } else {
        b.reset_ok = true;
        ContinueRecoveryLocked(b, &p);
      }
    } else if (!status.ok()) {
      b.program_took = took;
      ++b.counts.failures;
      RetryRecoveryLocked(
          b,
          absl::UnavailableError(absl::StrCat("board ", b.name,
                                              ": programming failed: ",
                                              status.message())),
          &p);
    } else {
      b.program_took = took;
      ++b.counts.programmings;
      b.loaded = b.model->options.bitstream;
      b.RefreshPrediction();
      ProbeLocked(b, b.model, &p);
    }
    CountLocked(&p);
  }
  Finish(std::move(p));
}

void Scheduler::RebalanceLocked(Pending* p) {
  if (!options_.reprogram || destroying_) return;
  for (auto& mp : models_) {
    Model& m = *mp;
    // A model being removed still gets a board for what it accepted.
    if (m.removed || m.queued == 0 || !m.serving.empty() ||
        m.options.bitstream == nullptr) {
      continue;
    }
    bool coming = false;
    for (const auto& b : boards_) {
      if (b->model == &m && (b->phase == BoardPhase::kProgramming ||
                             b->phase == BoardPhase::kProbing ||
                             b->phase == BoardPhase::kDraining)) {
        coming = true;
      }
    }
    if (coming) continue;
    // 1. An idle board, preferably one that still holds the bitstream.
    // 2. A board whose model has nothing to do, least recently used.
    // 3. A board of the model with the most boards, if it has two or more.
    BoardState* donor = nullptr;
    for (auto& b : boards_) {
      if (b->phase != BoardPhase::kIdle) continue;
      if (donor == nullptr || b->loaded == m.options.bitstream) donor = b.get();
    }
    if (donor == nullptr) {
      for (auto& b : boards_) {
        if (b->phase != BoardPhase::kServing || !b->runs.empty() ||
            b->model->queued > 0) {
          continue;
        }
        if (donor == nullptr || b->last_used < donor->last_used) donor = b.get();
      }
    }
    if (donor == nullptr) {
      Model* richest = nullptr;
      for (auto& other : models_) {
        if (other->serving.size() >= 2 &&
            (richest == nullptr || other->serving.size() > richest->serving.size())) {
          richest = other.get();
        }
      }
      if (richest != nullptr) {
        for (BoardState* b : richest->serving) {
          if (donor == nullptr || b->in_flight_images < donor->in_flight_images) {
            donor = b;
          }
        }
      }
    }
    if (donor == nullptr) continue;  // a later completion looks again
    GiveBoardLocked(*donor, m, p);
  }
}

void Scheduler::GiveBoardLocked(BoardState& donor, Model& m, Pending* p) {
  if (!donor.runs.empty()) {
    SetPhaseLocked(donor, BoardPhase::kDraining, &m, absl::OkStatus(), p);
  } else if (donor.loaded != nullptr && donor.loaded == m.options.bitstream) {
    ProbeLocked(donor, &m, p);
  } else {
    ProgramLocked(donor, &m, p);
  }
}

void Scheduler::CountLocked(Pending* p) {
  if (!p->done.empty() || !p->callbacks.empty()) {
    p->counted = true;
    ++delivering_;
  }
}

void Scheduler::Finish(Pending p) {
  if (observer_) {
    for (const auto& e : p.phases) {
      observer_->BoardPhaseChanged(e.board_id, e.model_id, e.phase, e.why, e.counts);
    }
    for (const auto& e : p.expired) observer_->DeadlineExpired(e.model_id, e.images);
    for (const auto& e : p.late) observer_->LateResultsDropped(e.model_id, e.images);
    for (const auto& e : p.canaries) observer_->CanaryFailed(e.board_id, e.model_id, e.what);
  }
  for (auto& run : p.runs) Launch(std::move(run));
  for (auto& r : p.done) {
    auto cb = std::move(r->request->done);
    if (cb) cb(r->status);  // empty: answered at its deadline (detached)
  }
  p.done.clear();
  for (auto& cb : p.callbacks) cb();
  if (p.counted) {
    hgpipe::MutexLock l(&mu_);
    --delivering_;
  }
}

absl::StatusOr<absl::Time> Scheduler::PredictCompletion(absl::string_view model,
                                                        uint32_t images,
                                                        uint32_t priority) const {
  hgpipe::MutexLock l(&mu_);
  const Model* m = FindModelLocked(model);
  if (m == nullptr) return absl::NotFoundError(absl::StrCat("unknown model '", model, "'"));
  if (priority == 0) priority = m->options.default_priority;
  if (priority > m->options.priority_levels) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model ", m->options.name, ": priority ", priority, " is outside 1..",
        m->options.priority_levels));
  }
  if (!ServableLocked(*m)) {
    return absl::UnavailableError(
        absl::StrCat("model ", m->options.name, " has no board that can serve it"));
  }
  return EstimateDoneLocked(*m, priority - 1, std::max<uint32_t>(images, 1), clock_->Now());
}

absl::Status Scheduler::MoveBoard(int board_id, absl::string_view model) {
  Pending p;
  {
    hgpipe::MutexLock l(&mu_);
    if (board_id < 0 || board_id >= static_cast<int>(boards_.size())) {
      return absl::NotFoundError(absl::StrCat("scheduler: no board ", board_id));
    }
    Model* m = FindModelLocked(model);
    if (m == nullptr) return absl::NotFoundError(absl::StrCat("unknown model '", model, "'"));
    BoardState& b = *boards_[board_id];
    if (b.model == m) return absl::OkStatus();
    if (destroying_ || !options_.reprogram || m->options.bitstream == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "model ", m->options.name, ": boards cannot be reprogrammed for it"));
    }
    if (b.phase != BoardPhase::kServing && b.phase != BoardPhase::kIdle) {
      return absl::FailedPreconditionError(
          absl::StrCat("board ", b.name, " is ", BoardPhaseName(b.phase)));
    }
    if (b.phase == BoardPhase::kServing && b.model->serving.size() == 1 &&
        b.model->queued > 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "board ", b.name, " is the last of model ", b.model->options.name,
          ", which has images queued"));
    }
    GiveBoardLocked(b, *m, &p);
    CountLocked(&p);
  }
  Finish(std::move(p));
  return absl::OkStatus();
}

bool Scheduler::ModelReady(absl::string_view model) const {
  hgpipe::MutexLock l(&mu_);
  const Model* m = FindModelLocked(model);
  return m != nullptr && ServableLocked(*m);
}

int Scheduler::ModelId(absl::string_view model) const {
  hgpipe::MutexLock l(&mu_);
  const Model* m = FindModelLocked(model);
  return m == nullptr ? -1 : m->id;
}

std::vector<Scheduler::BoardStatus> Scheduler::Boards(
    absl::string_view model) const {
  hgpipe::MutexLock l(&mu_);
  std::vector<BoardStatus> out;
  const Model* m = nullptr;
  if (!model.empty()) {
    m = FindModelLocked(model);
    if (m == nullptr) return out;
  }
  for (const auto& b : boards_) {
    if (m != nullptr && b->model != m) continue;
    out.push_back({b->id, b->name, b->model != nullptr ? b->model->id : -1,
                   b->phase, b->in_flight_images, b->counts});
  }
  return out;
}

std::vector<Scheduler::ModelStatus> Scheduler::Models() const {
  hgpipe::MutexLock l(&mu_);
  std::vector<ModelStatus> out;
  for (const auto& m : models_) {
    if (m->removing) continue;
    out.push_back({m->id, m->options.name, ServableLocked(*m), m->queued});
  }
  return out;
}

bool Scheduler::Idle() const { return open_requests_ == 0 && delivering_ == 0; }

void Scheduler::Shutdown() {
  hgpipe::MutexLock l(&mu_);
  accepting_ = false;
  mu_.Await(absl::Condition(this, &Scheduler::Idle));
}

}  // namespace hgpipe::scheduler
