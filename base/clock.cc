#include "base/clock.h"

#include <thread>

namespace hgpipe {

Clock::TimerId TimerQueue::Add(absl::Time when, Fn fn) {
  const Clock::TimerId id = next_id_++;
  timers_.emplace(std::make_pair(when, id), std::move(fn));
  due_by_id_.emplace(id, when);
  return id;
}

bool TimerQueue::Cancel(Clock::TimerId id) {
  auto it = due_by_id_.find(id);
  if (it == due_by_id_.end()) return false;
  timers_.erase(std::make_pair(it->second, id));
  due_by_id_.erase(it);
  return true;
}

TimerQueue::Fn TimerQueue::PopNext() {
  auto it = timers_.begin();
  Fn fn = std::move(it->second);
  due_by_id_.erase(it->first.second);
  timers_.erase(it);
  return fn;
}

class ThreadHandle {
 public:
  explicit ThreadHandle(std::thread t) : t_(std::move(t)) {}
  ~ThreadHandle() { t_.join(); }

 private:
  std::thread t_;
};

RealClock::RealClock()
    : thread_(std::make_unique<ThreadHandle>(std::thread([this] { Loop(); }))) {}

RealClock::~RealClock() {
  {
    absl::MutexLock l(&mu_);
    stop_ = true;
  }
  thread_.reset();  // joins
}

Clock::TimerId RealClock::RunAt(absl::Time when, absl::AnyInvocable<void()> fn) {
  absl::MutexLock l(&mu_);
  return timers_.Add(when, std::move(fn));
}

bool RealClock::Cancel(TimerId id) {
  absl::MutexLock l(&mu_);
  return timers_.Cancel(id);
}

bool RealClock::ShouldWake() const {
  return stop_ || (!timers_.empty() && timers_.next_due() < wait_due_);
}

void RealClock::Loop() {
  mu_.Lock();
  while (!stop_) {
    if (timers_.empty() || absl::Now() < timers_.next_due()) {
      // Sleep until the earliest timer is due; a new earlier timer or stop_
      // ends the wait at once (absl::Mutex re-checks the condition whenever
      // mu_ is released, so RunAt needs no separate signal).
      wait_due_ = timers_.empty() ? absl::InfiniteFuture() : timers_.next_due();
      mu_.AwaitWithDeadline(absl::Condition(this, &RealClock::ShouldWake),
                            wait_due_);
      continue;
    }
    TimerQueue::Fn fn = timers_.PopNext();
    mu_.Unlock();
    fn();
    mu_.Lock();
  }
  mu_.Unlock();
}

absl::Time SimClock::Now() {
  absl::MutexLock l(&mu_);
  return now_;
}

Clock::TimerId SimClock::RunAt(absl::Time when, absl::AnyInvocable<void()> fn) {
  absl::MutexLock l(&mu_);
  return timers_.Add(when, std::move(fn));
}

bool SimClock::Cancel(TimerId id) {
  absl::MutexLock l(&mu_);
  return timers_.Cancel(id);
}

void SimClock::AdvanceTo(absl::Time until) {
  for (;;) {
    TimerQueue::Fn fn;
    {
      absl::MutexLock l(&mu_);
      if (timers_.empty() || timers_.next_due() > until) {
        if (until > now_) now_ = until;
        return;
      }
      if (timers_.next_due() > now_) now_ = timers_.next_due();
      fn = timers_.PopNext();
    }
    fn();
  }
}

int64_t SimClock::RunUntilIdle(int64_t limit) {
  int64_t ran = 0;
  while (ran < limit) {
    TimerQueue::Fn fn;
    {
      absl::MutexLock l(&mu_);
      if (timers_.empty()) break;
      if (timers_.next_due() > now_) now_ = timers_.next_due();
      fn = timers_.PopNext();
    }
    fn();
    ++ran;
  }
  return ran;
}

bool SimClock::HasPendingTimers() {
  absl::MutexLock l(&mu_);
  return !timers_.empty();
}

}  // namespace hgpipe
