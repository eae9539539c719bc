#include "base/clock.h"

#include <thread>
#include <tuple>

#include "base/mutex.h"
#include "base/thread_name.h"

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

std::pair<Clock::TimerId, TimerQueue::Fn> TimerQueue::PopNext() {
  auto it = timers_.begin();
  const Clock::TimerId id = it->first.second;
  Fn fn = std::move(it->second);
  due_by_id_.erase(id);
  timers_.erase(it);
  return {id, std::move(fn)};
}

RealClock::RealClock() {
  thread_ = std::thread([this] {
    NameThisThread("hgpipe-clock");
    Loop();
  });
  timer_thread_ = thread_.get_id();
}

RealClock::~RealClock() {
  {
    hgpipe::MutexLock l(&mu_);
    stop_ = true;
  }
  thread_.join();
}

Clock::TimerId RealClock::RunAt(absl::Time when, absl::AnyInvocable<void()> fn) {
  hgpipe::MutexLock l(&mu_);
  return timers_.Add(when, std::move(fn));
}

bool RealClock::Cancel(TimerId id) {
  hgpipe::MutexLock l(&mu_);
  if (timers_.Cancel(id)) return true;
  if (running_ == id && std::this_thread::get_id() != timer_thread_) {
    auto done = [this, id]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return running_ != id; };
    mu_.Await(absl::Condition(&done));
  }
  return false;
}

bool RealClock::ShouldWake() const {
  return stop_ || (!timers_.empty() && timers_.next_due() < wait_due_);
}

void RealClock::Loop() {
  mu_.Lock();
  while (!stop_) {
    if (timers_.empty() || absl::Now() < timers_.next_due()) {
      // Sleep until the earliest timer is due; a new earlier timer or stop_
      // ends the wait at once (hgpipe::Mutex re-checks the condition whenever
      // mu_ is released, so RunAt needs no separate signal).
      wait_due_ = timers_.empty() ? absl::InfiniteFuture() : timers_.next_due();
      mu_.AwaitWithDeadline(absl::Condition(this, &RealClock::ShouldWake), wait_due_);
      continue;
    }
    auto [id, fn] = timers_.PopNext();
    running_ = id;
    mu_.Unlock();
    fn();
    fn = nullptr;  // captures die before Cancel(id) may return
    mu_.Lock();
    running_ = 0;
  }
  mu_.Unlock();
}

absl::Time SimClock::Now() {
  hgpipe::MutexLock l(&mu_);
  return now_;
}

Clock::TimerId SimClock::RunAt(absl::Time when, absl::AnyInvocable<void()> fn) {
  hgpipe::MutexLock l(&mu_);
  return timers_.Add(when, std::move(fn));
}

bool SimClock::Cancel(TimerId id) {
  hgpipe::MutexLock l(&mu_);
  if (timers_.Cancel(id)) return true;
  if (running_ == id && std::this_thread::get_id() != running_thread_) {
    auto done = [this, id]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return running_ != id; };
    mu_.Await(absl::Condition(&done));
  }
  return false;
}

bool SimClock::RunNext(absl::Time limit) {
  TimerQueue::Fn fn;
  TimerId id;
  {
    hgpipe::MutexLock l(&mu_);
    if (timers_.empty() || timers_.next_due() > limit) return false;
    if (timers_.next_due() > now_) now_ = timers_.next_due();
    std::tie(id, fn) = timers_.PopNext();
    running_ = id;
    running_thread_ = std::this_thread::get_id();
  }
  fn();
  fn = nullptr;
  hgpipe::MutexLock l(&mu_);
  running_ = 0;
  return true;
}

void SimClock::AdvanceTo(absl::Time until) {
  while (RunNext(until)) {
  }
  hgpipe::MutexLock l(&mu_);
  if (until > now_) now_ = until;
}

int64_t SimClock::RunUntilIdle(int64_t limit) {
  int64_t ran = 0;
  while (ran < limit && RunNext(absl::InfiniteFuture())) ++ran;
  return ran;
}

bool SimClock::HasPendingTimers() {
  hgpipe::MutexLock l(&mu_);
  return !timers_.empty();
}

}  // namespace hgpipe
