#include "base/mutex.h"
#include "accel/emulated_board.h"

#include <atomic>
#include <utility>

#include "absl/strings/str_cat.h"

namespace hgpipe::accel {

struct EmulatedBoard::Pending {
  explicit Pending(DoneCallback d) : done(std::move(d)) {}
  // Called by the timer and by the computation; the second call delivers.
  void Arrive() {
    if (parts.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      DoneCallback d = std::move(done);
      d(std::move(status));  // last: the board may be destroyed after this
    }
  }
  std::atomic<int> parts{2};
  absl::Status status;  // written before the first Arrive of the computation
  DoneCallback done;
};

absl::StatusOr<std::unique_ptr<EmulatedBoard>> EmulatedBoard::Create(
    Options options) {
  if (options.kernel == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("board ", options.name, ": no kernel"));
  }
  if (options.clock == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("board ", options.name, ": no clock"));
  }
  if (options.max_images_per_run == 0 || options.num_slots <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "board ", options.name,
        ": max_images_per_run and num_slots must be > 0"));
  }
  const PipelineTiming timing =
      options.timing.value_or(options.kernel->manifest().timing);
  if (absl::Status s = timing.Validate(); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("board ", options.name, ": ", s.message()));
  }
  options.timing = timing;
  return std::unique_ptr<EmulatedBoard>(new EmulatedBoard(std::move(options)));
}

EmulatedBoard::EmulatedBoard(Options options)
    : kernel_(std::move(options.kernel)),
      max_images_per_run_(options.max_images_per_run),
      clock_(options.clock),
      compute_inline_(options.compute_inline),
      fail_after_runs_(options.fail_after_runs),
      model_(*options.timing, kernel_->manifest().geometry.input_bytes()) {
  info_.name = options.name;
  info_.kind = "emulated";
  info_.device = "hgpipe-sim";
  manifest_ = kernel_->manifest();
  manifest_.timing = *options.timing;
  const DeviceGeometry& g = manifest_.geometry;
  slots_.resize(options.num_slots);
  for (Slot& s : slots_) {
    s.input.assign(g.input_bytes() * max_images_per_run_, 0);
    s.output.assign(g.output_words() * max_images_per_run_, 0);
  }
  if (!compute_inline_) worker_ = std::thread([this] { WorkerLoop(); });
}

EmulatedBoard::~EmulatedBoard() {
  {
    hgpipe::MutexLock l(&mu_);
    stop_ = true;
  }
  if (worker_.joinable()) worker_.join();
}

RunSlotBuffers EmulatedBoard::slot(int index) {
  Slot& s = slots_.at(index);
  return {absl::MakeSpan(s.input), absl::MakeConstSpan(s.output)};
}

void EmulatedBoard::Submit(int index, uint32_t n, DoneCallback done) {
  auto pending = std::make_shared<Pending>(std::move(done));
  if (index < 0 || index >= num_slots() || n == 0 || n > max_images_per_run_) {
    pending->status = absl::InvalidArgumentError(absl::StrCat(
        "board ", info_.name, ": bad run (slot ", index, ", ", n, " images)"));
    pending->parts.store(1);
    pending->Arrive();
    return;
  }
  const absl::Time now = clock_->Now();
  RunTimes t;
  {
    hgpipe::MutexLock l(&mu_);
    ++runs_submitted_;
    if (fail_after_runs_ && runs_submitted_ > *fail_after_runs_) failed_ = true;
    if (failed_) {
      pending->status = absl::UnavailableError(
          absl::StrCat("board ", info_.name, ": injected fault, run failed"));
    }
    t = model_.Submit(now, n);
    last_run_ = t;
    if (!compute_inline_ && pending->status.ok()) {
      work_.push_back({index, n, pending});
    }
  }
  if (!pending->status.ok()) {
    pending->Arrive();  // nothing to compute
  } else if (compute_inline_) {
    Compute(index, n);
    pending->Arrive();
  }
  clock_->RunAt(t.done, [pending] { pending->Arrive(); });
}

void EmulatedBoard::Compute(int slot, uint32_t n) {
  Slot& s = slots_[slot];
  kernel_->Compute(s.input.data(), n, s.output.data());
}

void EmulatedBoard::WorkerLoop() {
  for (;;) {
    Work w;
    {
      hgpipe::MutexLock l(&mu_);
      mu_.Await(absl::Condition(
          +[](EmulatedBoard* b) ABSL_EXCLUSIVE_LOCKS_REQUIRED(b->mu_) {
            return b->stop_ || !b->work_.empty();
          },
          this));
      if (work_.empty()) return;  // stop_ and nothing left
      w = std::move(work_.front());
      work_.pop_front();
    }
    Compute(w.slot, w.n);
    w.pending->Arrive();
  }
}

absl::Status EmulatedBoard::Health() const {
  hgpipe::MutexLock l(&mu_);
  if (failed_) {
    return absl::UnavailableError(
        absl::StrCat("board ", info_.name, ": injected fault"));
  }
  return absl::OkStatus();
}

RunTimes EmulatedBoard::last_run_times() const {
  hgpipe::MutexLock l(&mu_);
  return last_run_;
}

}  // namespace hgpipe::accel
