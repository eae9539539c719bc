// Time and timers behind an interface, so the scheduler and the emulated
// boards run unchanged on the wall clock (serving) and on a virtual clock
// (tests, discrete-event simulation), the way LevelDB's Env is swapped for
// memenv in its tests.
#ifndef HGPIPE_BASE_CLOCK_H_
#define HGPIPE_BASE_CLOCK_H_

#include <cstdint>
#include <map>
#include <memory>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "base/mutex.h"
#include "absl/time/time.h"

namespace hgpipe {

// Thread safety: all methods may be called from any thread, including from
// inside a timer callback.
class Clock {
 public:
  using TimerId = uint64_t;
  virtual ~Clock() = default;

  virtual absl::Time Now() = 0;

  // Calls `fn` once, at or after `when`, on the clock's timer thread (a
  // SimClock calls it from Advance*). Timers due at the same time run in the
  // order they were set. Callbacks must not block: they share one thread.
  virtual TimerId RunAt(absl::Time when, absl::AnyInvocable<void()> fn) = 0;

  // Cancels a timer. Returns true if it had not started (it never will);
  // false if it already ran or never existed. If it is running on another
  // thread, waits for it to return first, so that after Cancel the callback's
  // captures may be destroyed. Never call it holding a lock the callback takes.
  virtual bool Cancel(TimerId id) = 0;
};

// Timers keyed by (due time, sequence): the one ordering both clocks share.
class TimerQueue {
 public:
  using Fn = absl::AnyInvocable<void()>;
  Clock::TimerId Add(absl::Time when, Fn fn);
  bool Cancel(Clock::TimerId id);
  bool empty() const { return timers_.empty(); }
  absl::Time next_due() const { return timers_.begin()->first.first; }
  // Removes the earliest timer; returns its id and callback.
  std::pair<Clock::TimerId, Fn> PopNext();

 private:
  Clock::TimerId next_id_ = 1;
  std::map<std::pair<absl::Time, Clock::TimerId>, Fn> timers_;
  std::map<Clock::TimerId, absl::Time> due_by_id_;
};

// The wall clock, with one timer thread. The destructor joins the thread;
// timers still pending then are dropped without running.
class RealClock final : public Clock {
 public:
  RealClock();
  ~RealClock() override;
  RealClock(const RealClock&) = delete;
  RealClock& operator=(const RealClock&) = delete;

  absl::Time Now() override { return absl::Now(); }
  TimerId RunAt(absl::Time when, absl::AnyInvocable<void()> fn) override;
  bool Cancel(TimerId id) override;

 private:
  void Loop();
  bool ShouldWake() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  hgpipe::Mutex mu_;
  TimerQueue timers_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time wait_due_ ABSL_GUARDED_BY(mu_);  // what Loop() is sleeping for
  TimerId running_ ABSL_GUARDED_BY(mu_) = 0;  // callback on the timer thread
  std::thread::id timer_thread_;              // set once, before Loop runs
  std::thread thread_;
};

// A virtual clock that moves only when told to. Timer callbacks run on the
// thread that calls Advance*, with the clock set to their due time, so a
// whole scheduler-plus-boards system runs as a deterministic discrete-event
// simulation.
class SimClock final : public Clock {
 public:
  explicit SimClock(absl::Time start = absl::UnixEpoch()) : now_(start) {}

  absl::Time Now() override;
  TimerId RunAt(absl::Time when, absl::AnyInvocable<void()> fn) override;
  bool Cancel(TimerId id) override;

  // Runs every timer due up to `until` in time order, then sets Now() to it.
  void AdvanceTo(absl::Time until);
  void Advance(absl::Duration d) { AdvanceTo(Now() + d); }
  // Runs timers until none is left, or until `limit` callbacks have run.
  // Returns the number run.
  int64_t RunUntilIdle(int64_t limit = INT64_MAX);
  bool HasPendingTimers();

 private:
  // Pops and runs the next timer due by `limit`; false if there is none.
  bool RunNext(absl::Time limit);

  hgpipe::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
  TimerQueue timers_ ABSL_GUARDED_BY(mu_);
  TimerId running_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread::id running_thread_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hgpipe

#endif  // HGPIPE_BASE_CLOCK_H_
