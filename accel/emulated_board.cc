#include "accel/emulated_board.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/thread_name.h"

namespace hgpipe::accel {

absl::StatusOr<std::unique_ptr<EmulatedBoard>> EmulatedBoard::Create(Options options) {
  auto invalid = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("board ", options.name, ": ", what));
  };
  if (options.kernel == nullptr) return invalid("no kernel");
  if (options.clock == nullptr) return invalid("no clock");
  if (options.max_images_per_run == 0) {
    return invalid("max_images_per_run must be > 0");
  }
  if (options.num_slots < 0) {
    return invalid("num_slots must be >= 0 (0: from the pipeline depth)");
  }
  if (options.program_time < absl::ZeroDuration() || options.reset_time < absl::ZeroDuration()) {
    return invalid("program_time and reset_time must be >= 0");
  }
  const PipelineTiming timing = options.timing.value_or(options.kernel->manifest().timing);
  if (absl::Status s = timing.Validate(); !s.ok()) return invalid(s.message());
  options.timing = timing;
  if (options.num_slots == 0) {
    options.num_slots = static_cast<int>(std::ceil(timing.pipeline_depth())) + 2;
  }
  return std::unique_ptr<EmulatedBoard>(new EmulatedBoard(std::move(options)));
}

EmulatedBoard::EmulatedBoard(Options options)
    : max_images_per_run_(options.max_images_per_run),
      num_slots_(options.num_slots),
      clock_(options.clock),
      compute_inline_(options.compute_inline),
      compute_(options.compute),
      program_time_(options.program_time),
      reset_time_(options.reset_time),
      kernel_(std::move(options.kernel)),
      model_(*options.timing, kernel_->manifest().geometry.input_bytes()) {
  info_.name = options.name;
  info_.kind = "emulated";
  info_.device = "hgpipe-sim";
  manifest_ = kernel_->manifest();
  manifest_.timing = *options.timing;
  const DeviceGeometry& g = manifest_.geometry;
  slots_.resize(num_slots_);
  for (Slot& s : slots_) {
    s.input.assign(g.input_bytes() * max_images_per_run_, 0);
    s.output.assign(g.output_words() * max_images_per_run_, 0);
  }
  hgpipe::MutexLock l(&mu_);
  slot_busy_.assign(num_slots_, false);
  if (compute_ && !compute_inline_) {
    worker_ = std::thread([this] {
      NameThisThread(absl::StrCat("emu-", info_.name));
      WorkerLoop();
    });
  }
}

EmulatedBoard::~EmulatedBoard() {
  std::vector<std::shared_ptr<Run>> cancelled;
  std::vector<Clock::TimerId> timers;
  DoneCallback op_done;
  {
    hgpipe::MutexLock l(&mu_);
    stop_ = true;
    for (auto& [id, run] : runs_) {
      if (run->timer != 0) timers.push_back(run->timer);
      run->timer = 0;
      cancelled.push_back(run);  // a computing one: the worker leaves it
    }
    runs_.clear();
    work_.clear();
    if (op_ != Op::kNone) {
      if (op_timer_ != 0) timers.push_back(op_timer_);
      op_done = std::move(op_done_);
      op_ = Op::kNone;
      programming_.reset();
    }
  }
  // Each of these timers' callbacks is a no-op now (its run or op is gone);
  // Cancel waits if one is running, so none touches the board afterwards.
  for (Clock::TimerId t : timers) clock_->Cancel(t);
  if (worker_.joinable()) worker_.join();
  const absl::Status why =
      absl::CancelledError(absl::StrCat("board ", info_.name, ": board destroyed"));
  for (auto& run : cancelled) {
    DoneCallback d = std::move(run->done);
    if (d) d(why);
  }
  if (op_done) op_done(why);
}

RunSlotBuffers EmulatedBoard::slot(int index) {
  Slot& s = slots_.at(index);
  return {absl::MakeSpan(s.input), absl::MakeConstSpan(s.output)};
}

absl::Status EmulatedBoard::NotProgrammedLocked() const {
  const std::string what = absl::StrCat("board ", info_.name, ": not programmed");
  switch (op_) {
    case Op::kProgram:
      return absl::FailedPreconditionError(absl::StrCat(what, " (programming in progress)"));
    case Op::kReset:
      return absl::FailedPreconditionError(absl::StrCat(what, " (reset in progress)"));
    case Op::kNone: break;
  }
  if (!program_error_.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, " (the last Program failed: ", program_error_.message(), ")"));
  }
  return absl::FailedPreconditionError(what);
}

void EmulatedBoard::SetTimingLocked(const PipelineTiming& timing) {
  model_ = PipelineModel(timing, manifest_.geometry.input_bytes());
}

void EmulatedBoard::Submit(int index, uint32_t n, DoneCallback done) {
  if (index < 0 || index >= num_slots_ || n == 0 || n > max_images_per_run_) {
    done(absl::InvalidArgumentError(absl::StrCat("board ", info_.name, ": bad run (slot ", index,
                                                 ", ", n, " images; ", num_slots_, " slots of ",
                                                 max_images_per_run_, " images)")));
    return;
  }
  auto run = std::make_shared<Run>();
  run->slot = index;
  run->n = n;
  run->done = std::move(done);
  absl::Status refused;
  bool compute_here = false;
  const absl::Time now = clock_->Now();
  {
    hgpipe::MutexLock l(&mu_);
    if (!programmed_ || op_ != Op::kNone) {
      refused = NotProgrammedLocked();
    } else if (slot_busy_[index]) {
      refused = absl::FailedPreconditionError(
          absl::StrCat("board ", info_.name, ": slot ", index, " is still in flight"));
    } else {
      run->id = ++next_run_id_;
      run->kernel = kernel_;
      const RunTimes t =
          model_.Submit(std::max(now, input_floor_ - model_.timing().run_overhead), n);
      last_run_ = t;
      runs_[run->id] = run;
      slot_busy_[index] = true;
      run->parts = compute_ ? 2 : 1;
      // Set under mu_, so the id is recorded before the timer can fire.
      run->timer = clock_->RunAt(t.done, [this, id = run->id] { OnRunTimer(id); });
      if (compute_ && compute_inline_) {
        run->computing = true;
        compute_here = true;
      } else if (compute_) {
        work_.push_back(run);
      }
    }
  }
  if (!refused.ok()) {
    DoneCallback d = std::move(run->done);
    d(std::move(refused));
    return;
  }
  if (compute_here) ComputeAndArrive(run);
}

void EmulatedBoard::ComputeAndArrive(const std::shared_ptr<Run>& run) {
  // The slot is the run's until it is answered, and no Program can resize
  // the slots meanwhile: Program needs no run in flight and no Reset in
  // progress, and a Reset is in progress until this computation ends.
  Slot& s = slots_[run->slot];
  run->kernel->Compute(s.input.data(), run->n, s.output.data());
  DoneCallback deliver;
  absl::Status status;
  DoneCallback reset_done;
  {
    hgpipe::MutexLock l(&mu_);
    run->computing = false;
    if (run->aborted) {
      deliver = std::move(run->done);
      status = absl::AbortedError(absl::StrCat("board ", info_.name, ": run aborted by reset"));
      reset_done = ResetPartDoneLocked();
    } else if (auto it = runs_.find(run->id); it != runs_.end() && --run->parts == 0) {
      ForgetLocked(*run);
      deliver = std::move(run->done);  // OK: an emulated run does not fail
    }
    // Otherwise the timer is still to come, or the destructor answers it.
  }
  if (deliver) deliver(std::move(status));
  if (reset_done) reset_done(absl::OkStatus());
}

void EmulatedBoard::OnRunTimer(uint64_t id) {
  DoneCallback deliver;
  {
    hgpipe::MutexLock l(&mu_);
    auto it = runs_.find(id);
    if (it == runs_.end()) return;  // aborted or cancelled
    Run& run = *it->second;
    run.timer = 0;
    if (--run.parts > 0) return;  // still computing
    deliver = std::move(run.done);
    ForgetLocked(run);
  }
  deliver(absl::OkStatus());  // last: the board may be destroyed after this
}

void EmulatedBoard::ForgetLocked(const Run& run) {
  slot_busy_[run.slot] = false;
  runs_.erase(run.id);
}

void EmulatedBoard::WorkerLoop() {
  for (;;) {
    std::shared_ptr<Run> run;
    {
      hgpipe::MutexLock l(&mu_);
      mu_.Await(absl::Condition(
          +[](EmulatedBoard* b)
               ABSL_EXCLUSIVE_LOCKS_REQUIRED(b->mu_) { return b->stop_ || !b->work_.empty(); },
          this));
      if (stop_) return;  // the destructor answers what is left
      run = std::move(work_.front());
      work_.pop_front();
      // Reset and the destructor take runs out of work_; this is a guard.
      if (run->aborted || !runs_.contains(run->id)) continue;
      run->computing = true;
    }
    ComputeAndArrive(run);
  }
}

void EmulatedBoard::Program(std::shared_ptr<const Bitstream> bitstream, DoneCallback done) {
  auto invalid = [&](absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat("board ", info_.name, ": cannot program: ", what));
  };
  absl::Status refused;
  if (bitstream == nullptr || bitstream->kernel == nullptr) {
    refused = invalid("no bitstream or no kernel in it");
  } else if (absl::Status g = bitstream->manifest.geometry.Validate(); !g.ok()) {
    refused = invalid(g.message());
  } else if (absl::Status t = bitstream->manifest.timing.Validate(); !t.ok()) {
    refused = invalid(t.message());
  } else {
    const DeviceGeometry& want = bitstream->manifest.geometry;
    const DeviceGeometry& have = bitstream->kernel->manifest().geometry;
    if (want.tokens != have.tokens || want.token_values != have.token_values ||
        want.classes != have.classes) {
      refused = invalid(absl::StrCat("the manifest of ", bitstream->manifest.name,
                                     " and its kernel's disagree on the geometry"));
    }
  }
  if (refused.ok()) {
    hgpipe::MutexLock l(&mu_);
    if (op_ == Op::kProgram) {
      refused = absl::FailedPreconditionError(
          absl::StrCat("board ", info_.name, ": a Program is already in progress"));
    } else if (op_ == Op::kReset) {
      refused = absl::FailedPreconditionError(
          absl::StrCat("board ", info_.name, ": a Reset is in progress"));
    } else if (!runs_.empty()) {
      refused = absl::FailedPreconditionError(absl::StrCat(
          "board ", info_.name, ": cannot program with ", runs_.size(), " runs in flight"));
    } else {
      op_ = Op::kProgram;
      const uint64_t op_id = ++op_id_;
      op_done_ = std::move(done);
      programming_ = std::move(bitstream);
      programmed_ = false;  // the old bitstream is gone from here on
      program_error_ = absl::OkStatus();
      op_timer_ =
          clock_->RunAt(clock_->Now() + program_time_, [this, op_id] { OnProgramTimer(op_id); });
      return;
    }
  }
  done(std::move(refused));
}

void EmulatedBoard::OnProgramTimer(uint64_t op_id) {
  DoneCallback done;
  absl::Status status;
  {
    hgpipe::MutexLock l(&mu_);
    if (op_ != Op::kProgram || op_id_ != op_id) return;  // Reset took over
    op_ = Op::kNone;
    op_timer_ = 0;
    done = std::move(op_done_);
    std::shared_ptr<const Bitstream> b = std::move(programming_);
    kernel_ = b->kernel;
    manifest_ = b->manifest;
    const DeviceGeometry& g = manifest_.geometry;
    for (Slot& s : slots_) {
      s.input.assign(g.input_bytes() * max_images_per_run_, 0);
      s.output.assign(g.output_words() * max_images_per_run_, 0);
    }
    SetTimingLocked(manifest_.timing);
    input_floor_ = absl::InfinitePast();
    programmed_ = true;
  }
  done(std::move(status));  // last: the board may be destroyed after this
}

void EmulatedBoard::Reset(DoneCallback done) {
  std::vector<std::shared_ptr<Run>> aborted;
  std::vector<Clock::TimerId> timers;
  DoneCallback program_done;
  bool refused = false;
  {
    hgpipe::MutexLock l(&mu_);
    if (op_ == Op::kReset) {
      refused = true;
    } else {
      if (op_ == Op::kProgram) {
        if (op_timer_ != 0) timers.push_back(op_timer_);
        program_done = std::move(op_done_);
        programming_.reset();
      }
      op_ = Op::kReset;
      const uint64_t op_id = ++op_id_;
      op_done_ = std::move(done);
      // Done when the reset time has passed, the runs aborted here have
      // been answered, and each run computing right now has ended.
      reset_parts_ = 2;
      for (auto& [id, run] : runs_) {
        if (run->timer != 0) timers.push_back(run->timer);
        run->timer = 0;
        run->aborted = true;
        if (run->computing) {
          ++reset_parts_;  // ComputeAndArrive answers it
        } else {
          aborted.push_back(run);
        }
      }
      runs_.clear();
      work_.clear();
      slot_busy_.assign(num_slots_, false);
      programmed_ = false;
      program_error_ = absl::OkStatus();
      op_timer_ =
          clock_->RunAt(clock_->Now() + reset_time_, [this, op_id] { OnResetTimer(op_id); });
    }
  }
  if (refused) {
    done(absl::FailedPreconditionError(
        absl::StrCat("board ", info_.name, ": a Reset is already in progress")));
    return;
  }
  // The callbacks of these timers are no-ops now (their run or Program is
  // gone), so Cancel never waits on a completion callback here.
  for (Clock::TimerId t : timers) clock_->Cancel(t);
  const absl::Status why =
      absl::AbortedError(absl::StrCat("board ", info_.name, ": run aborted by reset"));
  for (auto& run : aborted) {
    DoneCallback d = std::move(run->done);
    d(why);
  }
  if (program_done) {
    program_done(
        absl::AbortedError(absl::StrCat("board ", info_.name, ": programming aborted by reset")));
  }
  DoneCallback reset_done;
  {
    hgpipe::MutexLock l(&mu_);
    reset_done = ResetPartDoneLocked();
  }
  if (reset_done) reset_done(absl::OkStatus());
}

Board::DoneCallback EmulatedBoard::ResetPartDoneLocked() {
  if (op_ != Op::kReset || --reset_parts_ > 0) return nullptr;
  op_ = Op::kNone;
  op_timer_ = 0;
  return std::move(op_done_);
}

void EmulatedBoard::OnResetTimer(uint64_t op_id) {
  DoneCallback done;
  {
    hgpipe::MutexLock l(&mu_);
    if (op_ != Op::kReset || op_id_ != op_id) return;
    op_timer_ = 0;
    done = ResetPartDoneLocked();
  }
  if (done) done(absl::OkStatus());  // last: the board may be destroyed after
}

absl::Status EmulatedBoard::Health() const {
  hgpipe::MutexLock l(&mu_);
  if (!programmed_ || op_ != Op::kNone) return NotProgrammedLocked();
  return absl::OkStatus();
}

RunTimes EmulatedBoard::last_run_times() const {
  hgpipe::MutexLock l(&mu_);
  return last_run_;
}

}  // namespace hgpipe::accel
