#include "accel/faulty_board.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace hgpipe::accel {
namespace {

absl::string_view KindName(FaultInjection::Kind kind) {
  switch (kind) {
    case FaultInjection::Kind::kNone: return "none";
    case FaultInjection::Kind::kFail: return "fail";
    case FaultInjection::Kind::kHang: return "hang";
    case FaultInjection::Kind::kSlow: return "slow";
    case FaultInjection::Kind::kCorrupt: return "corrupt";
  }
  return "?";
}

// The shortest of %g and %.17g that reads back as `v`.
std::string ExactDouble(double v) {
  std::string s = absl::StrCat(v);
  double back;
  if (absl::SimpleAtod(s, &back) && back == v) return s;
  return absl::StrFormat("%.17g", v);
}

bool ValidSlowFactor(double f) { return std::isfinite(f) && f >= 1; }

}  // namespace

std::string FaultInjection::ToString() const {
  if (kind == Kind::kNone) return "none";
  std::string s = absl::StrCat(KindName(kind), "@", after_runs);
  if (kind == Kind::kSlow) absl::StrAppend(&s, ":x", ExactDouble(slow_factor));
  if (permanent) absl::StrAppend(&s, ":permanent");
  return s;
}

absl::StatusOr<FaultInjection> ParseFaultInjection(absl::string_view spec) {
  auto bad = [spec](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad fault injection \"", spec, "\": ", why,
                     " (expected none, fail@N, hang@N or slow@N[:xFACTOR], optionally "
                     "followed by :permanent)"));
  };
  FaultInjection f;
  if (spec.empty() || spec == "none") return f;
  const std::vector<absl::string_view> parts = absl::StrSplit(spec, ':');
  const absl::string_view head = parts[0];
  const size_t at = head.find('@');
  if (at == absl::string_view::npos) return bad("no @N (runs before the fault)");
  const absl::string_view kind = head.substr(0, at);
  if (kind == "fail") {
    f.kind = FaultInjection::Kind::kFail;
  } else if (kind == "hang") {
    f.kind = FaultInjection::Kind::kHang;
  } else if (kind == "slow") {
    f.kind = FaultInjection::Kind::kSlow;
  } else if (kind == "corrupt") {
    f.kind = FaultInjection::Kind::kCorrupt;
  } else {
    return bad(absl::StrCat("unknown kind \"", kind, "\""));
  }
  const absl::string_view runs = head.substr(at + 1);
  if (runs.empty() ||
      !std::all_of(runs.begin(), runs.end(), [](char c) { return absl::ascii_isdigit(c); }) ||
      !absl::SimpleAtoi(runs, &f.after_runs)) {
    return bad(absl::StrCat("\"", runs, "\" is not a run count"));
  }
  bool factor_seen = false;
  for (size_t i = 1; i < parts.size(); ++i) {
    const absl::string_view p = parts[i];
    if (f.permanent) return bad("\"permanent\" must come last");
    if (p == "permanent") {
      f.permanent = true;
    } else if (!p.empty() && p[0] == 'x') {
      if (f.kind != FaultInjection::Kind::kSlow) {
        return bad("a factor (:xF) is for slow faults only");
      }
      if (factor_seen) return bad("more than one factor");
      factor_seen = true;
      const absl::string_view factor = p.substr(1);
      // SimpleAtod would also take "inf", "nan" and spaces: digits only.
      if (factor.empty() ||
          !std::all_of(factor.begin(), factor.end(),
                       [](char c) {
                         return absl::ascii_isdigit(c) || c == '.' || c == 'e' || c == 'E' ||
                                c == '+' || c == '-';
                       }) ||
          !absl::SimpleAtod(factor, &f.slow_factor) || !ValidSlowFactor(f.slow_factor)) {
        return bad(absl::StrCat("slow factor \"", factor, "\" is not a number >= 1"));
      }
    } else {
      return bad(absl::StrCat("unknown option \"", p, "\""));
    }
  }
  return f;
}

// A run submitted through the wrapper: what the fault does to it, decided
// when it is submitted.
struct FaultyBoard::Run {
  uint64_t id = 0;
  uint64_t epoch = 0;
  int index = 0;
  uint32_t n = 0;
  DoneCallback done;
  bool fail = false;
  bool hang = false;
  bool corrupt = false;
  bool slow = false;
  absl::Time submitted;
  Clock::TimerId timer = 0;  // a slowed run's, once the board completed it
  // A board refuses a run by calling `done` inside Submit, on the caller's
  // thread: how the wrapper tells a refusal (not counted) from a completion.
  std::thread::id submit_thread;
  std::atomic<bool> in_submit{false};
  std::atomic<bool> refused{false};
};

absl::StatusOr<std::unique_ptr<FaultyBoard>> FaultyBoard::Create(std::unique_ptr<Board> board,
                                                                 FaultInjection fault,
                                                                 Clock* clock) {
  if (board == nullptr) return absl::InvalidArgumentError("faulty board: no board");
  const std::string name = board->info().name;
  if (clock == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("board ", name, ": no clock"));
  }
  if (fault.kind == FaultInjection::Kind::kSlow && !ValidSlowFactor(fault.slow_factor)) {
    return absl::InvalidArgumentError(
        absl::StrCat("board ", name, ": fault slow_factor must be >= 1, got ", fault.slow_factor));
  }
  return std::unique_ptr<FaultyBoard>(new FaultyBoard(std::move(board), std::move(fault), clock));
}

FaultyBoard::FaultyBoard(std::unique_ptr<Board> board, FaultInjection fault, Clock* clock)
    : fault_(std::move(fault)), clock_(clock), name_(board->info().name), board_(std::move(board)) {
  hgpipe::MutexLock l(&mu_);
  armed_ = fault_.kind != FaultInjection::Kind::kNone;
}

FaultyBoard::~FaultyBoard() {
  // First the board: afterwards no completion can add to held_.
  board_.reset();
  std::map<uint64_t, std::shared_ptr<Run>> held;
  {
    hgpipe::MutexLock l(&mu_);
    held.swap(held_);
  }
  // A slowed run's timer callback finds nothing held now; Cancel waits if
  // one is running.
  for (auto& [id, run] : held) {
    if (run->timer != 0) clock_->Cancel(run->timer);
  }
  const absl::Status why = absl::CancelledError(absl::StrCat("board ", name_, ": board destroyed"));
  for (auto& [id, run] : held) {
    DoneCallback d = std::move(run->done);
    if (d) d(why);
  }
}

void FaultyBoard::Submit(int index, uint32_t n, DoneCallback done) {
  auto run = std::make_shared<Run>();
  run->index = index;
  run->n = n;
  run->done = std::move(done);
  absl::Status refused;
  bool failed_before = false;
  bool slowed_before = false;
  {
    hgpipe::MutexLock l(&mu_);
    if (!program_error_.ok()) {
      refused = absl::FailedPreconditionError(absl::StrCat(
          "board ", name_, ": not programmed (the last Program failed: ", program_error_.message(),
          ")"));
    } else {
      run->id = ++next_run_id_;
      run->epoch = epoch_;
      ++runs_counted_;
      const FaultInjection::Kind kind =
          armed_ && runs_counted_ > fault_.after_runs ? fault_.kind : FaultInjection::Kind::kNone;
      failed_before = failed_;
      slowed_before = slowed_;
      if (kind == FaultInjection::Kind::kFail) failed_ = true;
      // From the first slow run on, every run is slow until a Program.
      if (kind == FaultInjection::Kind::kSlow) slowed_ = true;
      run->fail = failed_;
      run->hang = kind == FaultInjection::Kind::kHang;
      run->corrupt = kind == FaultInjection::Kind::kCorrupt;
      run->slow = slowed_;
    }
  }
  if (!refused.ok()) {
    DoneCallback d = std::move(run->done);
    d(std::move(refused));
    return;
  }
  run->submitted = clock_->Now();
  run->submit_thread = std::this_thread::get_id();
  run->in_submit = true;
  board_->Submit(index, n, [this, run](absl::Status s) { OnDone(run, std::move(s)); });
  run->in_submit = false;
  if (run->refused) {
    // The board refused the run: as if it had never been submitted.
    hgpipe::MutexLock l(&mu_);
    --runs_counted_;
    failed_ = failed_before;
    slowed_ = slowed_before;
  }
}

void FaultyBoard::OnDone(const std::shared_ptr<Run>& run, absl::Status status) {
  if (!status.ok()) {
    // Refused, aborted by Reset, cancelled, or a real device error: as the
    // board says.
    if (run->in_submit && std::this_thread::get_id() == run->submit_thread) {
      run->refused = true;
    }
    DoneCallback d = std::move(run->done);
    d(std::move(status));
    return;
  }
  if (run->fail) {
    DoneCallback d = std::move(run->done);
    d(absl::UnavailableError(absl::StrCat("board ", name_, ": injected fault, run failed")));
    return;
  }
  // The slot's output is the caller's from here on; the wrapper still holds
  // the run, so it writes it on the caller's behalf.
  if (run->corrupt) Corrupt(*run);
  bool aborted = false;
  {
    hgpipe::MutexLock l(&mu_);
    const absl::Time now = clock_->Now();
    const absl::Time board_done_before = last_board_done_;
    last_board_done_ = now;
    if ((run->hang || run->slow) && run->epoch != epoch_) {
      aborted = true;  // completed while a Reset was taking held runs
    } else if (run->hang) {
      held_[run->id] = run;  // only Reset or the destructor answers it
      return;
    } else if (run->slow) {
      // What the board spent on this run beyond its previous one, scaled:
      // an idle board's latency, a busy board's interval.
      const absl::Duration spent = now - std::max(run->submitted, board_done_before);
      const double f = fault_.slow_factor;
      const absl::Time at = std::max(now + spent * (f - 1), last_delivery_ + spent * f);
      last_delivery_ = at;
      held_[run->id] = run;
      // Set under mu_, so the id is recorded before the timer can fire.
      run->timer = clock_->RunAt(at, [this, id = run->id] { OnSlowTimer(id); });
      return;
    }
  }
  DoneCallback d = std::move(run->done);
  if (aborted) {
    d(absl::AbortedError(absl::StrCat("board ", name_, ": run aborted by reset")));
  } else {
    d(absl::OkStatus());
  }
}

void FaultyBoard::OnSlowTimer(uint64_t id) {
  std::shared_ptr<Run> run;
  {
    hgpipe::MutexLock l(&mu_);
    auto it = held_.find(id);
    if (it == held_.end()) return;  // aborted or cancelled
    run = std::move(it->second);
    held_.erase(it);
    run->timer = 0;
  }
  DoneCallback d = std::move(run->done);
  d(absl::OkStatus());  // last: the board may be destroyed after this
}

void FaultyBoard::Corrupt(const Run& run) {
  const RunSlotBuffers b = board_->slot(run.index);
  const size_t words = board_->manifest().geometry.output_words();
  // The board lends the output read-only to callers; the wrapper stands in
  // for the device that writes it.
  uint32_t* out = const_cast<uint32_t*>(b.output.data());
  for (uint32_t i = 0; i < run.n && (i + 1) * words <= b.output.size(); ++i) {
    out[i * words] ^= 1u;
  }
}

absl::Status FaultyBoard::Health() const {
  {
    hgpipe::MutexLock l(&mu_);
    if (failed_) {
      return absl::UnavailableError(absl::StrCat("board ", name_, ": injected fault"));
    }
    if (!program_error_.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "board ", name_, ": not programmed (the last Program failed: ", program_error_.message(),
          ")"));
    }
  }
  return board_->Health();
}

void FaultyBoard::Program(std::shared_ptr<const Bitstream> bitstream, DoneCallback done) {
  absl::Status refused;
  {
    hgpipe::MutexLock l(&mu_);
    if (!held_.empty()) {
      refused = absl::FailedPreconditionError(
          absl::StrCat("board ", name_, ": cannot program with ", held_.size(), " runs in flight"));
    } else {
      program_error_ = absl::OkStatus();
    }
  }
  if (!refused.ok()) {
    done(std::move(refused));
    return;
  }
  const std::string what = bitstream != nullptr ? bitstream->manifest.name : "";
  board_->Program(
      std::move(bitstream), [this, what, done = std::move(done)](absl::Status s) mutable {
        if (s.ok()) {
          hgpipe::MutexLock l(&mu_);
          if (failed_) {
            // A board that lost its link (a kFail no Reset cleared) cannot be
            // programmed either.
            s = absl::UnavailableError(
                absl::StrCat("board ", name_, ": injected fault, programming ", what, " failed"));
            program_error_ = s;
          } else {
            runs_counted_ = 0;
            slowed_ = false;
            last_board_done_ = absl::InfinitePast();
            last_delivery_ = absl::InfinitePast();
          }
        }
        done(std::move(s));  // last: the board may be destroyed after this
      });
}

namespace {

// Reset's `done` waits for the wrapped board's Reset and for the held runs
// to be answered, whichever comes last.
struct ResetJoin {
  hgpipe::Mutex mu;
  int parts ABSL_GUARDED_BY(mu) = 2;
  absl::Status status ABSL_GUARDED_BY(mu);
  Board::DoneCallback done;

  void Part(absl::Status s) {
    absl::Status result;
    {
      hgpipe::MutexLock l(&mu);
      if (!s.ok()) status = std::move(s);
      if (--parts > 0) return;
      result = status;
    }
    done(std::move(result));
  }
};

}  // namespace

void FaultyBoard::Reset(DoneCallback done) {
  auto join = std::make_shared<ResetJoin>();
  join->done = std::move(done);
  {
    hgpipe::MutexLock l(&mu_);
    ++epoch_;  // a held-to-be run completing from here on is aborted
    program_error_ = absl::OkStatus();
    if (!fault_.permanent) {
      armed_ = false;  // cleared for good
      failed_ = false;
    }
  }
  board_->Reset([join](absl::Status s) { join->Part(std::move(s)); });
  std::map<uint64_t, std::shared_ptr<Run>> held;
  {
    hgpipe::MutexLock l(&mu_);
    held.swap(held_);
  }
  for (auto& [id, run] : held) {
    if (run->timer != 0) clock_->Cancel(run->timer);
  }
  const absl::Status why =
      absl::AbortedError(absl::StrCat("board ", name_, ": run aborted by reset"));
  for (auto& [id, run] : held) {
    DoneCallback d = std::move(run->done);
    d(why);
  }
  join->Part(absl::OkStatus());
}

}  // namespace hgpipe::accel
