#include "scheduler/scheduler.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "scheduler/rebalance.h"
#include "scheduler/run_sizing.h"

namespace hgpipe::scheduler {

SchedulerLockName scheduler_lock;

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
    return absl::InvalidArgumentError("scheduler: max_recovery_attempts must be >= 1");
  }
  return std::unique_ptr<Scheduler>(new Scheduler(options));
}

namespace {

BoardLifecycle::Options LifecycleOptions(const Scheduler::Options& o) {
  BoardLifecycle::Options l;
  l.clock = o.clock;
  l.watchdog_margin = o.watchdog_margin;
  l.recovery_backoff = o.recovery_backoff;
  l.max_recovery_attempts = o.max_recovery_attempts;
  l.reprogram = o.reprogram;
  l.canary_interval = o.canary_interval;
  return l;
}

}  // namespace

Scheduler::Scheduler(Options options)
    : clock_(options.clock),
      observer_(options.observer),
      fill_executor_(options.fill_executor),
      options_(options),
      lifecycle_(LifecycleOptions(options), this) {}

Scheduler::~Scheduler() {
  Shutdown();
  std::vector<Clock::TimerId> timers;
  {
    SchedulerMutexLock l(&mu_);
    destroying_ = true;  // no new timers, no new board operations
    lifecycle_.Stop();
    for (const auto& [seq, id] : timers_) timers.push_back(id);
  }
  // Without the lock: Cancel waits for a running callback, which takes it.
  for (Clock::TimerId id : timers) clock_->Cancel(id);
  std::vector<std::unique_ptr<accel::Board>> boards;
  {
    SchedulerMutexLock l(&mu_);
    // A board may still be resetting or running a probe (on a SimClock
    // nobody advances, it never finishes: boards deliver CANCELLED then).
    mu_.AwaitWithTimeout(absl::Condition(this, &Scheduler::BoardsQuiet), absl::Seconds(10));
    for (const auto& b : lifecycle_.boards()) boards.push_back(std::move(b->board));
  }
  // Without the lock: a board's destructor may deliver completions.
  boards.clear();
}

bool Scheduler::BoardsQuiet() const { return lifecycle_.operations() == 0; }

ModelState* Scheduler::FindLocked(ModelHandle h) const {
  if (!h.valid() || h.id() >= static_cast<int>(models_.size())) return nullptr;
  return models_[h.id()].get();
}

absl::StatusOr<ModelHandle> Scheduler::AddModel(const ModelOptions& options,
                                                std::vector<std::unique_ptr<accel::Board>> boards) {
  const std::string& name = options.name;
  if (name.empty()) {
    return absl::InvalidArgumentError("scheduler: model name is empty");
  }
  if (boards.empty() && options.bitstream == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("model ", name, ": no boards and no bitstream to program one with"));
  }
  if (options.max_images_per_run == 0 || options.max_queue_images == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("model ", name, ": max_images_per_run and max_queue_images must be > 0"));
  }
  if (options.priority_levels == 0 || options.default_priority == 0 ||
      options.default_priority > options.priority_levels) {
    return absl::InvalidArgumentError(
        absl::StrCat("model ", name, ": priority_levels must be >= 1 and default_priority in 1..",
                     options.priority_levels));
  }
  if (options.canary != nullptr) {
    const accel::BitstreamManifest& cm =
        options.bitstream != nullptr ? options.bitstream->manifest : boards[0]->manifest();
    absl::Status s = accel::ValidateCanary(*options.canary, cm.geometry);
    if (!s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("model ", name, ": ", s.message()));
    }
  }
  if (options.low_priority_run_images == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("model ", name, ": low_priority_run_images must be > 0"));
  }
  const accel::BitstreamManifest& mf =
      options.bitstream != nullptr ? options.bitstream->manifest : boards[0]->manifest();
  const accel::DeviceGeometry g = mf.geometry;
  for (const auto& b : boards) {
    const accel::DeviceGeometry& bg = b->manifest().geometry;
    if (bg.tokens != g.tokens || bg.token_values != g.token_values || bg.classes != g.classes) {
      return absl::InvalidArgumentError(absl::StrCat("model ", name, ": board ", b->info().name,
                                                     " has a different device geometry"));
    }
  }
  Pending p;
  ModelHandle handle;
  {
    SchedulerMutexLock l(&mu_);
    const int id = static_cast<int>(models_.size());
    models_.push_back(std::make_unique<ModelState>(id, options, g, mf.timing));
    ModelState& m = *models_.back();
    handle = ModelHandle(id);
    if (observer_) observer_->ModelAdded(id, name);
    for (auto& b : boards) {
      BoardState& bs = AddBoardLocked(std::move(b));
      lifecycle_.ServeNew(bs, m, options.bitstream, &p);
    }
  }
  Finish(std::move(p));
  return handle;
}

int Scheduler::AddIdleBoard(std::unique_ptr<accel::Board> board) {
  Pending p;
  int id;
  {
    SchedulerMutexLock l(&mu_);
    id = AddBoardLocked(std::move(board)).id;
    Rebalance(&p);
  }
  Finish(std::move(p));
  return id;
}

BoardState& Scheduler::AddBoardLocked(std::unique_ptr<accel::Board> board) {
  BoardState& b = lifecycle_.Add(std::move(board));
  if (observer_) observer_->BoardAdded(b.id, b.name);
  return b;
}

absl::Status Scheduler::RemoveModel(ModelHandle model, absl::AnyInvocable<void()> done) {
  Pending p;
  {
    SchedulerMutexLock l(&mu_);
    ModelState* m = FindLocked(model);
    if (m == nullptr || m->removing) {
      return absl::NotFoundError(
          m == nullptr ? absl::StrCat("scheduler: no model ", model.id())
                       : absl::StrCat("model ", m->options.name, " is already being removed"));
    }
    m->removing = true;
    m->on_removed = std::move(done);
    MaybeFinishRemovalLocked(*m, &p);
  }
  Finish(std::move(p));
  return absl::OkStatus();
}

absl::Status Scheduler::RemoveBoard(int board_id) {
  Pending p;
  absl::StatusOr<std::unique_ptr<accel::Board>> board;
  {
    SchedulerMutexLock l(&mu_);
    BoardState* b = lifecycle_.Find(board_id);
    if (b == nullptr) {
      return absl::NotFoundError(absl::StrCat("scheduler: no board ", board_id));
    }
    board = lifecycle_.Remove(*b, &p);
    if (!board.ok()) return board.status();
  }
  Finish(std::move(p));
  // Without the lock: a board's destructor joins its threads.
  board->reset();
  return absl::OkStatus();
}

void Scheduler::MaybeFinishRemovalLocked(ModelState& m, Pending* p) {
  if (!m.removing || m.removed || !m.requests.empty()) return;
  m.removed = true;
  for (const auto& b : lifecycle_.boards()) {
    if (b->model == &m) lifecycle_.ModelRemoved(*b, p);
  }
  if (m.on_removed) p->callbacks.push_back(std::move(m.on_removed));
  // Runs, probes and programmings under way hold their own pointers.
  m.bitstream = nullptr;
  m.canary = nullptr;
  Rebalance(p);
}

absl::Status Scheduler::Enqueue(ModelHandle model, std::unique_ptr<InferRequest> request) {
  if (request == nullptr || request->n_images == 0) {
    return absl::InvalidArgumentError("scheduler: a request needs at least one image");
  }
  Pending p;
  p.on_caller = true;
  {
    SchedulerMutexLock l(&mu_);
    if (!accepting_) {
      return absl::UnavailableError("the server is shutting down");
    }
    ModelState* mp = FindLocked(model);
    if (mp == nullptr || mp->removing) {
      return absl::NotFoundError(mp == nullptr
                                     ? absl::StrCat("scheduler: no model ", model.id())
                                     : absl::StrCat("model ", mp->options.name, " was removed"));
    }
    ModelState& m = *mp;
    const uint32_t levels = m.options.priority_levels;
    const uint32_t priority =
        request->priority == 0 ? m.options.default_priority : request->priority;
    if (priority > levels) {
      return absl::InvalidArgumentError(
          absl::StrCat("model ", m.options.name, ": priority ", priority, " is outside 1..", levels,
                       " (0 means the default, ", m.options.default_priority, ")"));
    }
    if (!lifecycle_.Servable(m)) {
      return absl::UnavailableError(
          absl::StrCat("model ", m.options.name, " has no board that can serve it"));
    }
    // The limit counts the images a request would wait behind: its own
    // level and higher ones, so a flood of low priority never refuses
    // higher-priority requests.
    const uint32_t level = priority - 1;
    const uint64_t ahead = m.queue.ImagesAtOrAbove(level);
    if (ahead + request->n_images > m.options.max_queue_images) {
      return absl::ResourceExhaustedError(
          absl::StrCat("model ", m.options.name, ": queue full (", ahead,
                       " images queued at priority ", priority, " or higher, ", request->n_images,
                       " more would pass the limit of ", m.options.max_queue_images, ")"));
    }
    const absl::Time now = clock_->Now();
    if (request->deadline != absl::InfiniteFuture()) {
      const absl::Time done = EstimateDoneLocked(m, level, request->n_images, now);
      if (done > request->deadline) {
        return absl::DeadlineExceededError(absl::StrCat(
            "model ", m.options.name,
            ": the request cannot finish before its "
            "deadline (",
            absl::FormatDuration(request->deadline - now), " from now; predicted completion in ",
            absl::FormatDuration(done - now), ")"));
      }
    }
    auto r = std::make_unique<Request>(std::move(request), now, level);
    Request* raw = r.get();
    m.queue.Push(raw);
    m.requests.emplace(raw, std::move(r));
    ++open_requests_;
    if (m.serving.empty()) Rebalance(&p);
    if (now >= m.blocked_until) {
      DispatchLocked(m, &p);
    } else {
      if (raw->deadline != absl::InfiniteFuture()) {
        ArmDispatchTimerLocked(m, raw->deadline - m.MinServiceTime());
      }
      if (observer_) observer_->QueueDepth(m.id, m.queue.size());
    }
    CountLocked(&p);
  }
  Finish(std::move(p));
  return absl::OkStatus();
}

absl::Time Scheduler::EstimateDoneLocked(const ModelState& m, uint32_t level, uint32_t n,
                                         absl::Time now) const {
  // Without a serving board: when one can serve at the earliest (boards
  // recovering or being programmed, as long as their last steps took).
  absl::Time ready = lifecycle_.ReadyEstimate(m, now);
  if (ready == absl::InfiniteFuture()) ready = now;  // not servable: refused elsewhere
  absl::InlinedVector<absl::Time, 16> free_at;
  for (const BoardState* b : m.serving) free_at.push_back(b->input_free_at());
  const uint64_t ahead = m.queue.ImagesAtOrAbove(level);
  const absl::Time boards = EstimateCompletion(
      ahead + n, ready + FillDelayLocked(m, 1, m.decoding_share) + m.timing.run_overhead, free_at,
      m.image_time, m.timing.latency());
  // Decoding can be slower than the boards (a photo takes about 1 ms of a
  // core, a board takes an image every 140 us): the images ahead reach a
  // board no faster than the executor's threads decode them, after what
  // it already has.
  const absl::Duration decodes =
      fill_backlog_ + m.decode_image_cost * m.decoding_share * static_cast<double>(ahead + n);
  // The backlog counts a run's decodes whole until the run is filled, also
  // those under way: forming this request's run in the middle of a decode
  // sees up to one decode more than is left (RequestQueue::Take expires the
  // request if that makes it late). Admit against that view, or requests
  // admitted between two decodes are expired queued. An empty backlog has
  // no decode under way to allow for.
  const absl::Duration under_way = fill_backlog_ > absl::ZeroDuration()
                                       ? m.decode_image_cost * m.decoding_share
                                       : absl::ZeroDuration();
  return std::max(boards, std::max(ready, now) + decodes / FillThreads() + under_way +
                              m.timing.run_overhead + m.timing.latency());
}

uint32_t Scheduler::RunCapLocked(const ModelState& m) const {
  // A run reaches its board only once all its images are decoded, so each
  // round of decodes beyond the first adds its time to every image's wait
  // and brings the run's deadlines that much closer, while a board that
  // decoding starves gains nothing a later run could not bring. Without
  // deadlines bigger runs cost less CPU (fewer runs to form, submit and
  // answer), so they stay.
  const uint32_t cap = m.options.max_images_per_run;
  const int threads = FillThreads();
  if (!m.queue.HasDeadlines() || m.decoding_share < 0.5 ||
      m.decode_image_cost <= m.image_time * threads) {
    return cap;
  }
  return std::min(cap, static_cast<uint32_t>(threads));
}

absl::Duration Scheduler::FillDelayLocked(const ModelState& m, uint64_t n, double decoding) const {
  const int threads = FillThreads();
  const uint64_t rounds = (n + threads - 1) / threads;
  return fill_backlog_ / threads + m.decode_image_cost * (decoding * static_cast<double>(rounds)) +
         m.copy_fill_time * (1 - decoding);
}

void Scheduler::DispatchLocked(ModelState& m, Pending* p) {
  const absl::Time now = clock_->Now();
  ExpireLocked(m, now, p);
  m.blocked_until = absl::InfinitePast();
  const uint32_t cap = RunCapLocked(m);
  while (m.queue.size() > 0 && !destroying_) {
    // Filling takes time before a run reaches its board: form it that much
    // earlier (for a run of what is queued), so that a busy board's input
    // does not wait for a decode.
    const absl::Duration lead =
        options_.dispatch_lead +
        FillDelayLocked(m, std::min<uint64_t>(m.queue.size(), cap), m.decoding_share);
    // At saturation most dispatches find every board busy: look at their
    // input ends alone before describing them to run sizing.
    const absl::Time ready_by = now + lead;
    absl::Time first_free = absl::InfiniteFuture();
    bool any_ready = false;
    for (const BoardState* b : m.serving) {
      if (b->free_slots.empty()) continue;
      const absl::Time free_at = b->prediction->input_free_at();
      if (free_at <= ready_by) {
        any_ready = true;
        break;
      }
      first_free = std::min(first_free, free_at);
    }
    BoardChoice choice;
    choice.next_ready = first_free - lead;
    if (any_ready) {
      m.views.resize(m.serving.size());
      for (size_t i = 0; i < m.serving.size(); ++i) m.serving[i]->View(now, ready_by, m.views[i]);
      choice = ChooseBoard(m.views, now, lead);
    }
    uint32_t n = 0;
    if (choice.best >= 0) {
      for (size_t i = 0; i < m.views.size(); ++i) {
        m.serving[i]->CompleteView(now, ready_by, m.views[i]);
      }
      n = RunSize(m.views, choice.best, m.queue.HighestLevelImages(), cap);
    }
    if (n == 0) {
      // Busy (or a busy board will complete the next image sooner): hold
      // images back until a board is about to need them, so that its next
      // run carries everything that queued meanwhile.
      if (choice.next_ready != absl::InfiniteFuture()) {
        ArmDispatchTimerLocked(m, choice.next_ready);
        m.blocked_until = choice.next_ready;
      }
      break;
    }
    BoardState& best = *m.serving[choice.best];
    if (m.options.max_queue_delay > absl::ZeroDuration() && best.input_free_at() <= now &&
        m.queue.size() < std::min(cap, best.max_run)) {
      const absl::Time fill_by = m.queue.OldestArrival() + m.options.max_queue_delay;
      if (fill_by > now) {
        ArmDispatchTimerLocked(m, fill_by);
        break;
      }
    }
    auto run = std::make_unique<Run>(&m, &best, best.free_slots.back(), now);
    // A run that decodes starts later the more it holds: its deadlines, not
    // only the board, bound its size, and a request is given up only if it
    // would be late even alone.
    const absl::Time copied = best.NextStart(now + FillDelayLocked(m, 1, 0));
    auto start = [&](uint32_t images) ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) {
      return m.decoding_share == 0
                 ? copied
                 : best.NextStart(now + FillDelayLocked(m, images, m.decoding_share));
    };
    m.queue.Take(
        n, now, start, best.prediction->image_time(), best.prediction->latency(), &run->images,
        [&](Request* r, uint32_t images, absl::Duration late)
            ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) {
              // Even first in a run on the board where it
              // completes first, it would be late: answer it now.
              p->expired.push_back({m.id, images});
              AnswerFailedLocked(m, r,
                                 absl::DeadlineExceededError(absl::StrCat(
                                     "model ", m.options.name,
                                     ": the request cannot finish before its deadline (predicted ",
                                     absl::FormatDuration(late), " late)")),
                                 images, p);
            });
    if (run->images.empty()) continue;  // all expired: look again
    for (const ImageRef& img : run->images) {
      ++img.request->filling;
      run->heavy = run->heavy || img.request->request->heavy_fill;
    }
    const uint32_t taken = static_cast<uint32_t>(run->images.size());
    best.free_slots.pop_back();
    run->predicted =
        best.prediction->Submit(now + FillDelayLocked(m, taken, run->heavy ? 1 : 0), taken);
    if (run->heavy) {
      run->backlog = m.decode_image_cost * static_cast<double>(taken);
      fill_backlog_ += run->backlog;
    }
    run->model_done = run->predicted.done;
    run->predicted.done += best.lag;
    if (best.runs.empty()) best.head_since = now;
    best.runs.push_back(run.get());
    best.in_flight_images += taken;
    lifecycle_.RunFormed(best, now, /*requests=*/true);
    p->runs.push_back(std::move(run));
  }
  if (observer_) observer_->QueueDepth(m.id, m.queue.size());
}

void Scheduler::ExpireLocked(ModelState& m, absl::Time now, Pending* p) {
  // Deadlines reached with images on a board: answer now, drop the board's
  // result when it comes.
  const absl::Time next_promise = m.queue.ExpirePromises(
      now, [&](Request* r, uint32_t images) ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) {
        const absl::Status late = absl::DeadlineExceededError(
            absl::StrCat("model ", m.options.name, ": the request's deadline passed with ",
                         r->unanswered - r->queued - images, " image(s) still on a board"));
        if (images > 0) p->expired.push_back({m.id, images});
        AnswerFailedLocked(m, r, late, images, p);  // its queued images, if any
        if (m.requests.contains(r)) {
          r->late = true;
          DetachLocked(m, *r, p);
        }
      });
  if (next_promise != absl::InfiniteFuture()) ArmDispatchTimerLocked(m, next_promise);
  const absl::Duration min_service = m.MinServiceTime();
  // No board serves the model: requests that cannot be answered before the
  // earliest a board can be back are answered now, not at their deadline.
  const absl::Time ready = lifecycle_.ReadyEstimate(m, now);
  if (ready > now && ready != absl::InfiniteFuture()) {
    m.queue.ExpireQueuedBefore(
        ready + min_service,
        [&](Request* r, uint32_t images) ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) {
          p->expired.push_back({m.id, images});
          AnswerFailedLocked(
              m, r,
              absl::DeadlineExceededError(absl::StrCat(
                  "model ", m.options.name,
                  ": no board can serve it before the request's deadline (its boards are "
                  "recovering or being programmed; the earliest in ",
                  absl::FormatDuration(ready - now), ")")),
              images, p);
        });
  }
  const absl::Time next = m.queue.ExpireQueued(
      now, min_service,
      [&](Request* r, uint32_t images) ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) {
        p->expired.push_back({m.id, images});
        AnswerFailedLocked(
            m, r,
            absl::DeadlineExceededError(absl::StrCat(
                "model ", m.options.name, ": the request's deadline passed while it was queued (",
                images, " image(s) still waiting)")),
            images, p);
      });
  if (next != absl::InfiniteFuture()) ArmDispatchTimerLocked(m, next);
}

void Scheduler::AnswerFailedLocked(ModelState& m, Request* r, const absl::Status& status,
                                   uint32_t images, Pending* p) {
  if (r->status.ok()) r->status = status;
  for (uint32_t k = 0; k < images; ++k) AnswerImageLocked(m, r, p);
}

void Scheduler::FailRequestLocked(ModelState& m, Request* r, const absl::Status& status,
                                  Pending* p) {
  const uint32_t removed = m.queue.Remove(r);
  AnswerFailedLocked(m, r, status, removed, p);
}

void Scheduler::DetachLocked(ModelState& m, Request& r, Pending* p) {
  if (r.detached) return;
  r.fill_limit.store(0, std::memory_order_relaxed);
  if (r.filling > 0 || r.delivering > 0) {  // a run still reads or writes its buffers
    r.detach_pending = true;
    return;
  }
  r.detach_pending = false;
  r.detached = true;
  m.queue.Forget(&r);
  // The request object goes with its answer: nothing calls it after Done.
  p->callbacks.push_back(
      [request = std::move(r.request), status = r.status]() { request->Done(status); });
}

void Scheduler::AnswerImageLocked(ModelState& m, Request* r, Pending* p) {
  if (--r->unanswered != 0) return;
  m.queue.Forget(r);
  // The caller's request leaves with its answer; our record of it ends here.
  if (r->request != nullptr) p->done.push_back({std::move(r->request), r->status});
  m.requests.erase(r);
  --open_requests_;
  MaybeFinishRemovalLocked(m, p);
}

void Scheduler::FailQueuedLocked(ModelState& m, const absl::Status& status, Pending* p) {
  std::vector<Request*> queued;
  for (const auto& [r, owned] : m.requests) {
    if (r->queued > 0) queued.push_back(r);
  }
  for (Request* r : queued) FailRequestLocked(m, r, status, p);
}

void Scheduler::Requeue(Run& run, Pending* p) {
  ModelState& m = *run.model;
  m.queue.Requeue(run.images, [&](Request* r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) {
    AnswerImageLocked(m, r, p);
  });
  run.images.clear();
}

void Scheduler::Expire(ModelState& m, Pending* p) { ExpireLocked(m, clock_->Now(), p); }

void Scheduler::Rebalance(Pending* p) {
  if (!options_.reprogram || destroying_) return;
  scheduler::Rebalance(models_, lifecycle_, p);
}

void Scheduler::LostBoard(ModelState& m, const absl::Status& why, Pending* p) {
  if (lifecycle_.Servable(m)) return;
  FailQueuedLocked(
      m,
      absl::UnavailableError(absl::StrCat(
          "model ", m.options.name, ": no board can serve it; last failure: ", why.message())),
      p);
}

void Scheduler::ArmDispatchTimerLocked(ModelState& m, absl::Time due) {
  if (due >= m.next_timer) return;  // an earlier timer will re-evaluate
  m.next_timer = due;
  ModelState* mp = &m;
  At(due, [this, mp, due](Pending* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) {
    if (mp->next_timer == due) mp->next_timer = absl::InfiniteFuture();
    DispatchLocked(*mp, p);
  });
}

void Scheduler::RunAtLocked(absl::Time due, absl::AnyInvocable<void()> fn) {
  if (destroying_) return;
  const uint64_t seq = ++timer_seq_;
  timers_[seq] = clock_->RunAt(due, [this, seq, fn = std::move(fn)]() mutable {
    fn();
    ForgetTimer(seq);
  });
}

void Scheduler::ForgetTimer(uint64_t seq) {
  SchedulerMutexLock l(&mu_);
  timers_.erase(seq);
}

void Scheduler::At(absl::Time due, BoardLifecycle::LockedFn fn) {
  if (destroying_) return;
  const uint64_t seq = ++timer_seq_;
  timers_[seq] = clock_->RunAt(due, [this, seq, fn = std::move(fn)]() mutable {
    Pending p;
    {
      SchedulerMutexLock l(&mu_);
      fn(&p);
      CountLocked(&p);
    }
    Finish(std::move(p));
    ForgetTimer(seq);
  });
}

void Scheduler::AtUnlocked(absl::Time due, absl::AnyInvocable<void()> fn) {
  RunAtLocked(due, std::move(fn));
}

void Scheduler::Locked(BoardLifecycle::LockedFn fn) {
  Pending p;
  {
    SchedulerMutexLock l(&mu_);
    fn(&p);
    CountLocked(&p);
  }
  Finish(std::move(p));
}

void Scheduler::Launch(std::unique_ptr<Run> run, bool on_caller) {
  if (run->canary) {  // already in device order
    const accel::Canary& c = *run->canary_data;
    std::copy(c.input.begin(), c.input.end(), run->board->device->slot(run->slot).input.data());
    Submit(std::move(run));
    return;
  }
  const bool heavy = run->heavy;
  if (fill_executor_ == nullptr || (on_caller && !heavy)) {
    FillAll(*run);
    Submit(std::move(run));
    return;
  }
  const size_t n = run->images.size();
  FillTaskStarted();
  if (!heavy || n == 1) {
    fill_executor_->Schedule([this, r = std::move(run)]() mutable {
      FillAll(*r);
      Submit(std::move(r));
      FillTaskDone();
    });
    return;
  }
  // Decoding: one task per image, in parallel; the last one submits.
  struct Shared {
    std::unique_ptr<Run> run;
    std::vector<absl::Status> status;  // one per image, each its task's
    std::vector<absl::Duration> work;  // likewise
    std::atomic<uint32_t> skipped{0};
    std::atomic<size_t> remaining;
  };
  auto shared = std::make_shared<Shared>();
  shared->run = std::move(run);
  shared->status.resize(n);
  shared->work.resize(n);
  shared->remaining.store(n);
  for (size_t i = 0; i < n; ++i) {
    fill_executor_->Schedule([this, shared, i] {
      const absl::Time start = clock_->Now();
      bool skipped = false;
      shared->status[i] = FillImage(*shared->run, i, &skipped);
      shared->work[i] = clock_->Now() - start;
      if (skipped) shared->skipped.fetch_add(1, std::memory_order_relaxed);
      if (shared->remaining.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
      Run& r = *shared->run;
      for (size_t k = 0; k < r.images.size(); ++k) {
        if (!shared->status[k].ok()) r.fill_errors.emplace_back(k, std::move(shared->status[k]));
        r.fill_work += shared->work[k];
      }
      r.fill_skipped = shared->skipped.load(std::memory_order_relaxed);
      Submit(std::move(shared->run));
      FillTaskDone();
    });
  }
}

void Scheduler::FillTaskStarted() {
  SchedulerMutexLock l(&mu_);
  ++fill_tasks_;
}

void Scheduler::FillTaskDone() {
  SchedulerMutexLock l(&mu_);
  --fill_tasks_;
}

absl::Status Scheduler::FillImage(Run& run, size_t i, bool* skipped) {
  const ImageRef& img = run.images[i];
  // Answered while the run waited for the executor (its deadline passed),
  // or an earlier image of it failed: a decode now would be thrown away.
  *skipped = img.index >= img.request->fill_limit.load(std::memory_order_relaxed);
  if (*skipped) return absl::OkStatus();
  const accel::DeviceGeometry& g = run.model->geometry;
  const absl::Span<int8_t> dst(run.board->device->slot(run.slot).input.data() + i * g.input_bytes(),
                               g.input_bytes());
  absl::Status s = img.request->request->Fill(img.index, g, dst);
  if (!s.ok()) {
    // The request fails when this run is submitted; its later images that
    // other tasks (of this run or a later one) have not started are spared.
    std::atomic<uint32_t>& limit = img.request->fill_limit;
    uint32_t now = limit.load(std::memory_order_relaxed);
    while (img.index < now &&
           !limit.compare_exchange_weak(now, img.index + 1, std::memory_order_relaxed)) {
    }
    std::memset(dst.data(), 0, dst.size());  // the board computes a blank image
  }
  return s;
}

void Scheduler::FillAll(Run& run) {
  const absl::Time start = clock_->Now();
  for (size_t i = 0; i < run.images.size(); ++i) {
    bool skipped = false;
    absl::Status s = FillImage(run, i, &skipped);
    if (!s.ok()) run.fill_errors.emplace_back(static_cast<uint32_t>(i), std::move(s));
    run.fill_skipped += skipped ? 1 : 0;
  }
  run.fill_work = clock_->Now() - start;
}

void Scheduler::Submit(std::unique_ptr<Run> run) {
  ModelState& m = *run->model;
  BoardState& b = *run->board;
  absl::InlinedVector<absl::Duration, 8> waits;
  waits.reserve(run->images.size());
  // Until the images are in the slot: a decode in the fill step counts.
  const absl::Time filled = clock_->Now();
  for (const ImageRef& img : run->images) waits.push_back(filled - img.request->arrival);
  const uint32_t n = run->size();
  Pending p;
  bool abandoned;
  uint32_t withheld = 0;
  SlotMoves moves;
  absl::Duration input_time;
  {
    SchedulerMutexLock l(&mu_);
    // Smoothed over runs (a quarter each), as the boards' lag.
    if (!run->canary) {
      // Copies are always filled in turn (FillAll): their work is their
      // time; a decode's work is spread over the executor's threads.
      // Skipped images cost nothing and teach nothing.
      const uint32_t filled = n - run->fill_skipped;
      if (run->heavy) {
        if (filled > 0) m.decode_image_cost += (run->fill_work / filled - m.decode_image_cost) / 4;
      } else if (run->fill_skipped == 0) {
        m.copy_fill_time += (run->fill_work - m.copy_fill_time) / 4;
      }
      m.decoding_share += ((run->heavy ? 1.0 : 0.0) - m.decoding_share) / 4;
      fill_backlog_ -= run->backlog;
    }
    // An image that could not be filled fails its request (its other
    // images' results are dropped when they come).
    for (auto& [i, status] : run->fill_errors) {
      Request* r = run->images[i].request;
      if (r->status.ok()) r->status = status;
      FailRequestLocked(m, r, r->status, &p);
      if (m.requests.contains(r)) DetachLocked(m, *r, &p);
    }
    run->fill_errors.clear();
    // The caller's images are copied: a request whose deadline passed
    // meanwhile can be answered now.
    for (const ImageRef& img : run->images) {
      Request* r = img.request;
      if (--r->filling == 0 && r->detach_pending && r->delivering == 0) DetachLocked(m, *r, &p);
    }
    abandoned = run->abandoned;
    if (abandoned) {
      // The board failed while we filled: the images go elsewhere now.
      b.free_slots.push_back(run->slot);
      Requeue(*run, &p);
      --b.abandoned_runs;
      lifecycle_.ContinueRecovery(b, &p);
      DispatchLocked(m, &p);
    } else {
      run->filled = true;
      if (!run->canary) withheld = WithholdUnwantedLocked(*run, &moves, &p);
    }
    input_time = b.prediction->InputTime(n - withheld);
    CountLocked(&p);
  }
  // Before the answers go: whoever got one sees the counts that explain it.
  if (observer_ && run->fill_skipped > 0) observer_->FillsSkipped(m.id, run->fill_skipped);
  if (observer_ && withheld > 0) observer_->ImagesWithheld(m.id, withheld);
  Finish(std::move(p));
  if (abandoned || withheld == n) return;
  // The slot is the run's until it completes, whatever happens to the
  // board meanwhile: no lock needed to move its images.
  const size_t bytes = m.geometry.input_bytes();
  int8_t* input = b.device->slot(run->slot).input.data();
  for (const SlotMove& mv : moves) {
    std::memcpy(input + mv.to * bytes, input + mv.from * bytes, bytes);
    waits[mv.to] = waits[mv.from];
  }
  waits.resize(n - withheld);
  if (observer_ && !run->canary) {
    observer_->RunStarted(m.id, b.id, n - withheld, waits, input_time);
  }
  const int slot = run->slot;
  b.device->Submit(slot, n - withheld, [this, r = std::move(run)](absl::Status s) mutable {
    OnRunDone(std::move(r), std::move(s));
  });
}

uint32_t Scheduler::WithholdUnwantedLocked(Run& run, SlotMoves* moves, Pending* p) {
  // Answered early, or about to be once nothing reads its buffers: the
  // board's result for it would be dropped when the run completes.
  auto unwanted = [](const ImageRef& img) ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) {
    return img.request->detached || img.request->detach_pending;
  };
  ModelState& m = *run.model;
  std::vector<ImageRef>& images = run.images;
  const size_t n = images.size();
  size_t end = n;
  auto drop_tail = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) {
    for (; end > 0 && unwanted(images[end - 1]); --end) {
      AnswerImageLocked(m, images[end - 1].request, p);
    }
  };
  drop_tail();
  // A hole before the end takes the last wanted image: one image's copy
  // against a board interval. Moves read only places at or past the final
  // end and write only places before it, so they do not overlap.
  for (size_t i = 0; i < end; ++i) {
    if (!unwanted(images[i])) continue;
    AnswerImageLocked(m, images[i].request, p);
    images[i] = images[end - 1];  // wanted: the tail was dropped
    moves->push_back({static_cast<uint32_t>(end - 1), static_cast<uint32_t>(i)});
    --end;
    drop_tail();
  }
  const auto withheld = static_cast<uint32_t>(n - end);
  if (withheld == 0) return 0;
  images.resize(end);
  BoardState& b = *run.board;
  // Only the last run planned on the board can give its input time back:
  // the runs after it were timed behind it.
  const bool last = b.runs.back() == &run;
  b.in_flight_images -= withheld;
  if (end > 0) {
    const absl::Duration cut = b.prediction->InputTime(withheld);
    run.predicted.input_end -= cut;
    run.predicted.done -= cut;
    run.model_done -= cut;
    if (last) b.prediction->TakeBack(run.predicted.input_end);
    return withheld;
  }
  // Nothing of it is wanted: it does not go to the board at all, and ends
  // as a completed run with nothing to deliver would.
  const bool head = b.runs.front() == &run;
  b.runs.erase(std::find(b.runs.begin(), b.runs.end(), &run));
  if (head && !b.runs.empty()) b.head_since = clock_->Now();
  if (last) {
    b.prediction->TakeBack(b.runs.empty() ? absl::InfinitePast()
                                          : b.runs.back()->predicted.input_end);
  }
  CompleteRunLocked(run, absl::OkStatus(), p);
  return withheld;
}

void Scheduler::OnRunDone(std::unique_ptr<Run> run, absl::Status status) {
  ModelState& m = *run->model;
  BoardState& b = *run->board;
  const uint32_t n = run->size();
  const absl::Duration device_time = clock_->Now() - run->submitted;
  bool report = false;
  bool deliver = false;
  Pending p;
  {
    SchedulerMutexLock l(&mu_);
    if (run->abandoned) {
      b.free_slots.push_back(run->slot);
      --b.abandoned_runs;
      lifecycle_.EndOperation();
      if (!destroying_) {
        lifecycle_.ContinueRecovery(b, &p);
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
        const absl::Duration late = std::max(absl::ZeroDuration(), now - run->model_done);
        b.lag += (late - b.lag) / 4;
        for (ImageRef& img : run->images) {
          img.deliver = !img.request->detached;  // else answered early: dropped
          if (!img.deliver) continue;
          ++img.request->delivering;
          deliver = true;
        }
      }
      if (deliver) {
        // The slot stays ours (not free) until the outputs are out of it,
        // and no Program or Reset may start on the board meanwhile.
        ++b.delivering_runs;
        lifecycle_.BeginOperation();
      } else {
        CompleteRunLocked(*run, status, &p);
      }
    }
    CountLocked(&p);
  }
  if (deliver) {
    // Outside the lock, on this (the answering) thread: each image's words
    // to its request, which decodes them into its response.
    const accel::DeviceGeometry& g = m.geometry;
    const uint32_t* words = b.device->slot(run->slot).output.data();
    for (size_t i = 0; i < run->images.size(); ++i) {
      const ImageRef& img = run->images[i];
      if (!img.deliver) continue;
      img.request->request->Output(
          img.index, g, absl::MakeConstSpan(words + i * g.output_words(), g.output_words()));
    }
    SchedulerMutexLock l(&mu_);
    --b.delivering_runs;
    lifecycle_.EndOperation();
    CompleteRunLocked(*run, status, &p);
    lifecycle_.ContinueRecovery(b, &p);  // a reset may have waited for the slot
    CountLocked(&p);
  }
  if (observer_ && report) {
    observer_->RunFinished(m.id, b.id, n, device_time, status);
  }
  Finish(std::move(p));
}

void Scheduler::CompleteRunLocked(Run& run, const absl::Status& status, Pending* p) {
  ModelState& m = *run.model;
  BoardState& b = *run.board;
  b.free_slots.push_back(run.slot);
  if (status.ok()) {
    uint32_t dropped = 0;
    for (const ImageRef& img : run.images) {
      Request* r = img.request;
      if (img.deliver) {
        if (--r->delivering == 0 && r->detach_pending && r->filling == 0) {
          DetachLocked(m, *r, p);
        }
      } else if (r->late) {
        ++dropped;  // its deadline passed while a board computed it
      }
      AnswerImageLocked(m, r, p);
    }
    if (dropped > 0) p->late.push_back({m.id, dropped});
    if (run.canary) {
      absl::Status canary = lifecycle_.CheckCanary(b, m, *run.canary_data, run.slot, p);
      if (!canary.ok()) lifecycle_.Fail(b, canary, p);
    }
  } else {
    Requeue(run, p);
    lifecycle_.Fail(b, status, p);
  }
  lifecycle_.RunCompleted(b, clock_->Now(), p);
  DispatchLocked(m, p);
  Rebalance(p);
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
  for (auto& run : p.runs) Launch(std::move(run), p.on_caller);
  for (auto& [request, status] : p.done) request->Done(std::move(status));
  p.done.clear();
  for (auto& cb : p.callbacks) cb();
  if (p.counted) {
    SchedulerMutexLock l(&mu_);
    --delivering_;
  }
}

absl::StatusOr<absl::Time> Scheduler::PredictCompletion(ModelHandle model, uint32_t images,
                                                        uint32_t priority) const {
  SchedulerMutexLock l(&mu_);
  const ModelState* m = FindLocked(model);
  if (m == nullptr || m->removing) {
    return absl::NotFoundError(m == nullptr
                                   ? absl::StrCat("scheduler: no model ", model.id())
                                   : absl::StrCat("model ", m->options.name, " was removed"));
  }
  if (priority == 0) priority = m->options.default_priority;
  if (priority > m->options.priority_levels) {
    return absl::InvalidArgumentError(absl::StrCat("model ", m->options.name, ": priority ",
                                                   priority, " is outside 1..",
                                                   m->options.priority_levels));
  }
  if (!lifecycle_.Servable(*m)) {
    return absl::UnavailableError(
        absl::StrCat("model ", m->options.name, " has no board that can serve it"));
  }
  return EstimateDoneLocked(*m, priority - 1, std::max<uint32_t>(images, 1), clock_->Now());
}

absl::Status Scheduler::MoveBoard(int board_id, ModelHandle model) {
  Pending p;
  {
    SchedulerMutexLock l(&mu_);
    BoardState* b = lifecycle_.Find(board_id);
    if (b == nullptr) return absl::NotFoundError(absl::StrCat("scheduler: no board ", board_id));
    ModelState* m = FindLocked(model);
    if (m == nullptr) return absl::NotFoundError(absl::StrCat("scheduler: no model ", model.id()));
    if (destroying_ || !accepting_) {
      return absl::FailedPreconditionError("the scheduler is shutting down");
    }
    RETURN_IF_ERROR(scheduler::MoveBoard(*b, *m, options_.reprogram, lifecycle_, &p));
    CountLocked(&p);
  }
  Finish(std::move(p));
  return absl::OkStatus();
}

bool Scheduler::ModelReady(ModelHandle model) const {
  SchedulerMutexLock l(&mu_);
  const ModelState* m = FindLocked(model);
  return m != nullptr && !m->removing && lifecycle_.Servable(*m);
}

std::vector<Scheduler::BoardStatus> Scheduler::Boards(ModelHandle model) const {
  SchedulerMutexLock l(&mu_);
  std::vector<BoardStatus> out;
  const ModelState* m = nullptr;
  if (model.valid()) {
    m = FindLocked(model);
    if (m == nullptr) return out;
  }
  for (const auto& b : lifecycle_.boards()) {
    if (m != nullptr && b->model != m) continue;
    out.push_back({b->id, b->name, b->model != nullptr ? b->model->id : -1, b->life.phase,
                   b->in_flight_images, b->life.counts,
                   b->life.phase == BoardPhase::kRecovering ||
                       (b->life.recovering && (b->life.phase == BoardPhase::kProgramming ||
                                               b->life.phase == BoardPhase::kProbing))});
  }
  return out;
}

std::vector<Scheduler::ModelStatus> Scheduler::Models() const {
  SchedulerMutexLock l(&mu_);
  std::vector<ModelStatus> out;
  for (const auto& m : models_) {
    if (m->removing) continue;
    out.push_back({ModelHandle(m->id), m->options.name, lifecycle_.Servable(*m), m->queue.size()});
  }
  return out;
}

bool Scheduler::Idle() const { return open_requests_ == 0 && delivering_ == 0 && fill_tasks_ == 0; }

void Scheduler::Shutdown() {
  SchedulerMutexLock l(&mu_);
  accepting_ = false;
  mu_.Await(absl::Condition(this, &Scheduler::Idle));
}

}  // namespace hgpipe::scheduler
