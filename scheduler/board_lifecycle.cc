#include "scheduler/board_lifecycle.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"

namespace hgpipe::scheduler {

BoardLifecycle::BoardLifecycle(const Options& options, Host* host)
    : options_(options), host_(host) {}

BoardState& BoardLifecycle::Add(std::unique_ptr<accel::Board> board) {
  auto b = std::make_unique<BoardState>(static_cast<int>(boards_.size()), std::move(board));
  for (int s = b->device->num_slots() - 1; s >= 0; --s) b->free_slots.push_back(s);
  b->RefreshPrediction();
  boards_.push_back(std::move(b));
  return *boards_.back();
}

BoardState* BoardLifecycle::Find(int id) const {
  if (id < 0 || id >= static_cast<int>(boards_.size())) return nullptr;
  return boards_[id].get();
}

absl::StatusOr<std::unique_ptr<accel::Board>> BoardLifecycle::Remove(BoardState& b, Pending* p) {
  // Idle with nothing outstanding: no run, no late completion of an
  // abandoned one, no delivery, no reset or probe whose callback is still
  // to come.
  if (b.life.phase != BoardPhase::kIdle || b.model != nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("board ", b.name, " is ", BoardPhaseName(b.life.phase),
                     b.model != nullptr ? absl::StrCat(" for model ", b.model->options.name) : "",
                     ", not idle"));
  }
  // Idle, but the last model's runs (abandoned ones too), a delivery or a
  // reset are still to finish: within a run's latency. Worth retrying.
  if (!b.runs.empty() || b.abandoned_runs > 0 || b.delivering_runs > 0 || b.life.resetting) {
    return absl::UnavailableError(
        absl::StrCat("board ", b.name, " is idle but still finishing ",
                     b.runs.size() + b.abandoned_runs, " runs, ", b.delivering_runs, " deliveries",
                     b.life.resetting ? " and a reset" : "", "; try again"));
  }
  SetPhase(b, BoardPhase::kRemoved, nullptr, absl::OkStatus(), p);
  // The state stays (ids are not reused); the bitstream it last held (a
  // model's weights, megabytes for DeiT-tiny) goes with the board.
  b.loaded = nullptr;
  return std::move(b.board);
}

void BoardLifecycle::SetPhase(BoardState& b, BoardPhase phase, ModelState* m,
                              const absl::Status& why, Pending* p) {
  if (b.life.phase == BoardPhase::kServing && b.model != nullptr) {
    auto& s = b.model->serving;
    s.erase(std::remove(s.begin(), s.end(), &b), s.end());
  }
  b.life.phase = phase;
  b.model = m;
  // An idle board has nothing to recover for: what programs it next is a
  // new assignment, not the end of a recovery.
  if (phase == BoardPhase::kIdle) b.life.recovering = false;
  if (phase == BoardPhase::kServing) {
    m->serving.push_back(&b);
    m->blocked_until = absl::InfinitePast();
  }
  p->phases.push_back({b.id, m != nullptr ? m->id : -1, phase, why, b.life.counts});
}

void BoardLifecycle::ServeNew(BoardState& b, ModelState& m,
                              std::shared_ptr<const accel::Bitstream> loaded, Pending* p) {
  b.loaded = std::move(loaded);
  SetPhase(b, BoardPhase::kServing, &m, absl::OkStatus(), p);
  // Programmed before the scheduler had it: prove it at once.
  b.served_since_canary = true;
  ArmCanary(b, options_.clock->Now());
}

bool BoardLifecycle::Servable(const ModelState& m) const {
  // A model being removed still counts: the requests it accepted are
  // served (or failed when nothing can serve them), never left waiting.
  if (m.removed) return false;
  if (!m.serving.empty()) return true;
  for (const auto& b : boards_) {
    if (b->life.phase == BoardPhase::kRetired || b->life.phase == BoardPhase::kRemoved) continue;
    if (b->model == &m) return true;  // coming: programming, probing, recovering
    if (options_.reprogram && m.bitstream != nullptr) return true;
  }
  return false;
}

absl::Time BoardLifecycle::ReadyEstimate(const ModelState& m, absl::Time now) const {
  if (!m.serving.empty()) return now;
  absl::Time ready = absl::InfiniteFuture();
  for (const auto& bp : boards_) {
    const BoardState& b = *bp;
    const BoardLife& life = b.life;
    absl::Time t = absl::InfiniteFuture();
    const bool ours = b.model == &m;
    switch (life.phase) {
      case BoardPhase::kProbing:
        if (ours) t = now;
        break;
      case BoardPhase::kProgramming:
        if (ours) t = std::max(now, life.op_started + life.program_took);
        break;
      case BoardPhase::kRecovering:
        if (ours) {
          const absl::Time resets =
              life.resetting ? life.op_started : std::max(now, life.recovery_resumes);
          t = std::max(now, resets + life.reset_took) + life.program_took;
        }
        break;
      case BoardPhase::kIdle:
      case BoardPhase::kServing:
      case BoardPhase::kDraining:
        // Another model's (or no model's) board it may be given.
        if (options_.reprogram && m.bitstream != nullptr) t = now + life.program_took;
        break;
      case BoardPhase::kRetired:
      case BoardPhase::kRemoved: break;
    }
    ready = std::min(ready, t);
  }
  return ready;
}

void BoardLifecycle::Give(BoardState& b, ModelState& m, Pending* p) {
  if (!b.runs.empty()) {
    SetPhase(b, BoardPhase::kDraining, &m, absl::OkStatus(), p);
  } else if (b.loaded != nullptr && b.loaded == m.bitstream) {
    Probe(b, &m, p);
  } else {
    Program(b, &m, p);
  }
}

void BoardLifecycle::ModelRemoved(BoardState& b, Pending* p) {
  if (b.life.phase == BoardPhase::kServing) {
    SetPhase(b, BoardPhase::kIdle, nullptr, absl::OkStatus(), p);
  } else if (b.life.phase == BoardPhase::kRecovering || b.life.phase == BoardPhase::kRetired) {
    b.model = nullptr;
  }
  // Boards programming, probing or draining for it go idle when done.
}

void BoardLifecycle::RunFormed(BoardState& b, absl::Time now, bool requests) {
  if (requests) {
    b.last_used = now;
    b.served_since_canary = true;
    if (!b.canary_armed && options_.canary_interval > absl::ZeroDuration()) {
      ArmCanary(b, now + options_.canary_interval);
    }
  }
  ArmWatchdog(b);
}

void BoardLifecycle::RunCompleted(BoardState& b, absl::Time now, Pending* p) {
  if (b.life.phase == BoardPhase::kDraining && b.runs.empty()) Program(b, b.model, p);
  if (b.canary_due && b.life.phase == BoardPhase::kServing) {
    ArmCanary(b, now);  // its timer found no free slot
  }
}

void BoardLifecycle::Fail(BoardState& b, const absl::Status& why, Pending* p) {
  ++b.life.counts.failures;
  ModelState* m = b.model;
  absl::InlinedVector<ModelState*, 2> affected;
  for (Run* r : b.runs) {
    r->abandoned = true;
    ++b.abandoned_runs;
    if (r->filled) {
      ++operations_;  // its completion is still to come
      host_->Requeue(*r, p);
    }
    // An unfilled run is requeued by the fill step, which never submits it.
    if (std::find(affected.begin(), affected.end(), r->model) == affected.end()) {
      affected.push_back(r->model);
    }
  }
  b.runs.clear();
  b.in_flight_images = 0;
  SetPhase(b, BoardPhase::kRecovering, m, why, p);
  Reset(b);
  for (ModelState* a : affected) {
    if (a != m) host_->Dispatch(*a, p);
  }
  if (m != nullptr) host_->LostBoard(*m, why, p);
}

void BoardLifecycle::ContinueRecovery(BoardState& b, Pending* p) {
  if (b.life.phase != BoardPhase::kRecovering || b.life.resetting || !b.life.reset_ok ||
      b.abandoned_runs > 0 || b.delivering_runs > 0 || stopping_) {
    return;
  }
  b.life.reset_ok = false;
  b.loaded = nullptr;  // a reset board holds no bitstream
  if (b.model == nullptr || b.model->removed || b.model->bitstream == nullptr) {
    SetPhase(b, BoardPhase::kIdle, nullptr, absl::OkStatus(), p);
    host_->Rebalance(p);
    return;
  }
  b.life.recovering = true;
  Program(b, b.model, p);
}

void BoardLifecycle::Program(BoardState& b, ModelState* m, Pending* p) {
  SetPhase(b, BoardPhase::kProgramming, m, absl::OkStatus(), p);
  const int id = b.id;
  host_->AtUnlocked(options_.clock->Now(), [this, id] { StartProgram(id); });
}

void BoardLifecycle::Probe(BoardState& b, ModelState* m, Pending* p) {
  SetPhase(b, BoardPhase::kProbing, m, absl::OkStatus(), p);
  const int id = b.id;
  host_->AtUnlocked(options_.clock->Now(), [this, id] { StartProbe(id); });
}

void BoardLifecycle::Reset(BoardState& b) {
  b.life.resetting = true;
  b.life.reset_ok = false;
  const int id = b.id;
  host_->AtUnlocked(options_.clock->Now(), [this, id] { StartReset(id); });
}

void BoardLifecycle::RetryRecovery(BoardState& b, const absl::Status& why, Pending* p) {
  ++b.life.attempts;
  b.life.recovering = true;
  ModelState* m = b.model != nullptr && !b.model->removed ? b.model : nullptr;
  if (b.life.attempts >= options_.max_recovery_attempts) {
    SetPhase(b, BoardPhase::kRetired, m, why, p);
    if (m != nullptr) host_->LostBoard(*m, why, p);
    // Its model's queued requests may need another board now.
    host_->Rebalance(p);
    return;
  }
  SetPhase(b, BoardPhase::kRecovering, m, why, p);
  const absl::Duration backoff = options_.recovery_backoff * (1 << (b.life.attempts - 1));
  const absl::Time now = options_.clock->Now();
  b.life.recovery_resumes = now + backoff;
  // Requests that cannot wait that long are answered now.
  if (m != nullptr) host_->Expire(*m, p);
  BoardState* bs = &b;
  host_->At(now + backoff, [this, bs](Pending*) ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) {
    if (bs->life.phase == BoardPhase::kRecovering && !stopping_) Reset(*bs);
  });
}

void BoardLifecycle::FailProbe(BoardState& b, const absl::Status& why, Pending* p) {
  ++b.life.probe_generation;  // a late completion or timeout is ignored
  ++b.life.counts.failures;
  RetryRecovery(b, why, p);
}

void BoardLifecycle::Admit(BoardState& b, Pending* p) {
  ModelState* m = b.model;
  if (m == nullptr || m->removed) {
    SetPhase(b, BoardPhase::kIdle, nullptr, absl::OkStatus(), p);
    host_->Rebalance(p);
    return;
  }
  if (b.life.recovering) ++b.life.counts.recoveries;
  b.life.recovering = false;
  b.life.attempts = 0;
  b.RefreshPrediction();
  SetPhase(b, BoardPhase::kServing, m, absl::OkStatus(), p);
  // The probe was the canary: the next one is armed by the next run.
  b.served_since_canary = false;
  b.canary_armed = false;
  ++b.canary_generation;
  host_->Dispatch(*m, p);
}

void BoardLifecycle::ArmWatchdog(BoardState& b) {
  if (options_.watchdog_margin == absl::ZeroDuration() || b.watchdog_armed || b.runs.empty()) {
    return;
  }
  b.watchdog_armed = true;
  BoardState* bs = &b;
  host_->At(WatchdogDue(b), [this, bs](Pending* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) {
    OnWatchdog(*bs, p);
  });
}

absl::Time BoardLifecycle::WatchdogDue(const BoardState& b) const {
  const Run& head = *b.runs.front();
  // The head run is due by its prediction, or - when earlier runs were late
  // - one run's worth of time after it became the oldest.
  const absl::Time own = b.head_since + b.prediction->timing().run_overhead +
                         b.prediction->InputTime(head.size()) + b.prediction->latency();
  return std::max(head.predicted.done, own) + options_.watchdog_margin;
}

void BoardLifecycle::OnWatchdog(BoardState& b, Pending* p) {
  b.watchdog_armed = false;
  if (b.runs.empty() || stopping_ ||
      (b.life.phase != BoardPhase::kServing && b.life.phase != BoardPhase::kDraining)) {
    return;
  }
  const absl::Time due = WatchdogDue(b);
  const absl::Time now = options_.clock->Now();
  if (now < due) {
    ArmWatchdog(b);
    return;
  }
  const Run& head = *b.runs.front();
  ModelState* m = head.model;
  const absl::Status why = absl::DeadlineExceededError(
      absl::StrCat("board ", b.name, ": a run of ", head.size(), " image(s) is ",
                   absl::FormatDuration(now - head.predicted.done),
                   " past its predicted completion (watchdog margin ",
                   absl::FormatDuration(options_.watchdog_margin), ")"));
  Fail(b, why, p);
  host_->Dispatch(*m, p);
  host_->Rebalance(p);
}

void BoardLifecycle::ArmCanary(BoardState& b, absl::Time due) {
  if (b.model == nullptr || b.model->canary == nullptr) return;
  b.canary_due = false;
  b.canary_armed = true;
  const uint64_t generation = ++b.canary_generation;
  BoardState* bs = &b;
  host_->At(due, [this, bs, generation](Pending* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) {
    OnCanaryTimer(*bs, generation, p);
  });
}

void BoardLifecycle::OnCanaryTimer(BoardState& b, uint64_t generation, Pending* p) {
  if (b.canary_generation != generation || b.life.phase != BoardPhase::kServing || stopping_ ||
      b.model == nullptr || b.model->canary == nullptr) {
    return;  // stale: the board left service (its probe re-arms it)
  }
  b.canary_armed = false;
  if (!b.served_since_canary) return;  // its next run arms the next one
  if (b.free_slots.empty()) {
    b.canary_due = true;  // the next completion starts it
    return;
  }
  ModelState& m = *b.model;
  const absl::Time now = options_.clock->Now();
  auto run = std::make_unique<Run>(&m, &b, b.free_slots.back(), now);
  b.free_slots.pop_back();
  run->canary = true;
  b.served_since_canary = false;
  run->canary_images = m.canary->images;
  run->canary_data = m.canary;
  run->predicted = b.prediction->Submit(now, run->size());
  run->model_done = run->predicted.done;
  run->predicted.done += b.lag;
  if (b.runs.empty()) b.head_since = now;
  b.runs.push_back(run.get());
  b.in_flight_images += run->size();
  ArmWatchdog(b);
  p->runs.push_back(std::move(run));
}

absl::Status BoardLifecycle::CheckCanary(BoardState& b, const ModelState& m, const accel::Canary& c,
                                         int slot, Pending* p) {
  const absl::Span<const uint32_t> got(b.device->slot(slot).output.data(),
                                       c.images * m.geometry.output_words());
  const std::string diff = accel::CompareCanaryOutput(c, m.geometry, got);
  if (diff.empty()) return absl::OkStatus();
  absl::Status why =
      absl::DataLossError(absl::StrCat("board ", b.name, ": canary (", c.source, ") for model ",
                                       m.options.name, " differs: ", diff));
  p->canaries.push_back({b.id, m.id, why});
  return why;
}

void BoardLifecycle::StartReset(int board_id) {
  accel::Board* board = nullptr;
  host_->Locked([&](Pending*) ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) {
    BoardState& b = *boards_[board_id];
    board = b.device;
    b.life.op_started = options_.clock->Now();
    ++operations_;
  });
  board->Reset([this, board_id](absl::Status s) {
    host_->Locked([this, board_id, s = std::move(s)](Pending* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(
                      scheduler_lock) mutable {
      OnOperationDone(*boards_[board_id], BoardPhase::kRecovering, std::move(s), p);
    });
  });
}

void BoardLifecycle::StartProgram(int board_id) {
  accel::Board* board = nullptr;
  std::shared_ptr<const accel::Bitstream> bitstream;
  host_->Locked([&](Pending*) ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) {
    BoardState& b = *boards_[board_id];
    board = b.device;
    // ModelStates are never freed: the one a board is being programmed for
    // stays valid even if it is removed meanwhile (its bitstream is ours).
    bitstream = b.model->bitstream;
    b.life.op_started = options_.clock->Now();
    ++operations_;
  });
  board->Program(std::move(bitstream), [this, board_id](absl::Status s) {
    host_->Locked([this, board_id, s = std::move(s)](Pending* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(
                      scheduler_lock) mutable {
      OnOperationDone(*boards_[board_id], BoardPhase::kProgramming, std::move(s), p);
    });
  });
}

void BoardLifecycle::StartProbe(int board_id) {
  accel::Board* board = nullptr;
  int slot = 0;
  uint64_t generation = 0;
  // Ours: the model's may be released if it is removed meanwhile.
  std::shared_ptr<const accel::Canary> canary;
  host_->Locked([&](Pending*) ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) {
    BoardState& b = *boards_[board_id];
    board = b.device;
    canary = b.model->canary;
    slot = b.free_slots.back();
    b.free_slots.pop_back();
    generation = ++b.life.probe_generation;
    ++operations_;
    if (options_.watchdog_margin > absl::ZeroDuration()) {
      const absl::Time due =
          b.prediction->Predict(options_.clock->Now(), 1).done + options_.watchdog_margin;
      BoardState* bs = &b;
      host_->At(due,
                [this, bs, generation](Pending* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) {
                  if (bs->life.phase != BoardPhase::kProbing ||
                      bs->life.probe_generation != generation || stopping_) {
                    return;
                  }
                  FailProbe(*bs,
                            absl::DeadlineExceededError(absl::StrCat(
                                "board ", bs->name, ": the probe run did not finish in time")),
                            p);
                });
    }
  });
  // The canary, or a zero image (every bitstream must take it).
  uint32_t images = 1;
  if (canary != nullptr) {
    std::copy(canary->input.begin(), canary->input.end(), board->slot(slot).input.data());
    images = canary->images;
  } else {
    const size_t bytes = board->manifest().geometry.input_bytes();
    std::memset(board->slot(slot).input.data(), 0, bytes);
  }
  board->Submit(slot, images, [this, board_id, slot, generation, canary](absl::Status s) {
    host_->Locked([this, board_id, slot, generation, &canary, s = std::move(s)](
                      Pending* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock) mutable {
      OnProbeDone(*boards_[board_id], slot, generation, canary.get(), std::move(s), p);
    });
  });
}

void BoardLifecycle::OnProbeDone(BoardState& b, int slot, uint64_t generation,
                                 const accel::Canary* canary, absl::Status s, Pending* p) {
  b.free_slots.push_back(slot);
  --operations_;
  if (b.life.phase != BoardPhase::kProbing || b.life.probe_generation != generation || stopping_) {
    return;
  }
  // The slot is free again but nobody takes it before we return.
  if (s.ok() && canary != nullptr) s = CheckCanary(b, *b.model, *canary, slot, p);
  if (!s.ok() && absl::IsDataLoss(s)) {
    FailProbe(b, s, p);
  } else if (!s.ok()) {
    FailProbe(
        b,
        absl::UnavailableError(absl::StrCat("board ", b.name, ": probe run failed: ", s.message())),
        p);
  } else {
    ++b.life.probe_generation;
    Admit(b, p);
  }
}

void BoardLifecycle::OnOperationDone(BoardState& b, BoardPhase phase, absl::Status status,
                                     Pending* p) {
  --operations_;
  if (stopping_) return;
  const absl::Duration took = options_.clock->Now() - b.life.op_started;
  if (phase == BoardPhase::kRecovering) {
    b.life.reset_took = took;
    b.life.resetting = false;
    if (!status.ok()) {
      ++b.life.counts.failures;  // a recovery step failed
      RetryRecovery(b,
                    absl::UnavailableError(
                        absl::StrCat("board ", b.name, ": reset failed: ", status.message())),
                    p);
    } else {
      b.life.reset_ok = true;
      ContinueRecovery(b, p);
    }
  } else if (!status.ok()) {
    b.life.program_took = took;
    ++b.life.counts.failures;
    RetryRecovery(b,
                  absl::UnavailableError(
                      absl::StrCat("board ", b.name, ": programming failed: ", status.message())),
                  p);
  } else {
    b.life.program_took = took;
    ++b.life.counts.programmings;
    b.loaded = b.model->bitstream;
    b.RefreshPrediction();
    Probe(b, b.model, p);
  }
}

}  // namespace hgpipe::scheduler
