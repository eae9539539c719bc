// hgpipe::Mutex: absl::Mutex (Condition, Await, thread-safety annotations)
// that ThreadSanitizer can see.
//
// Why: Debian's libabsl is not built with -fsanitize=thread, so TSan never
// observes absl::Mutex's acquire and release and reports races on every
// field it guards. In TSan builds this wrapper tells TSan about each acquire
// and release (including around conditions, which absl evaluates with the
// lock held, on the waiting or the releasing thread); in other builds it is
// absl::Mutex with nothing added. Use it, MutexLock and Notification instead
// of the absl types everywhere.
#ifndef HGPIPE_BASE_MUTEX_H_
#define HGPIPE_BASE_MUTEX_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

#if defined(__SANITIZE_THREAD__)
#define HGPIPE_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define HGPIPE_TSAN 1
#endif
#endif

#ifdef HGPIPE_TSAN
#include <sanitizer/tsan_interface.h>
#endif

namespace hgpipe {

class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() {
    mu_.Lock();
    Acquired();
  }
  void Unlock() ABSL_UNLOCK_FUNCTION() {
    Releasing();
    mu_.Unlock();
  }
  void AssertHeld() const ABSL_ASSERT_EXCLUSIVE_LOCK() { mu_.AssertHeld(); }

  // As absl::Mutex: release the lock until `cond` holds, then hold it again.
  void Await(const absl::Condition& cond) ABSL_EXCLUSIVE_LOCKS_REQUIRED(this) {
#ifdef HGPIPE_TSAN
    Guarded g{this, &cond};
    Releasing();
    mu_.Await(absl::Condition(&Guarded::Eval, &g));
    Acquired();
#else
    mu_.Await(cond);
#endif
  }
  // True if `cond` holds on return (false: the deadline passed first).
  bool AwaitWithDeadline(const absl::Condition& cond, absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(this) {
#ifdef HGPIPE_TSAN
    Guarded g{this, &cond};
    Releasing();
    const bool ok = mu_.AwaitWithDeadline(absl::Condition(&Guarded::Eval, &g), deadline);
    Acquired();
    return ok;
#else
    return mu_.AwaitWithDeadline(cond, deadline);
#endif
  }
  bool AwaitWithTimeout(const absl::Condition& cond, absl::Duration timeout)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(this) {
    return AwaitWithDeadline(cond, absl::Now() + timeout);
  }

 private:
#ifdef HGPIPE_TSAN
  // A condition evaluated with the lock held, on whichever thread absl
  // chooses: it sees everything released under the lock before, and what
  // it read is ordered before the next holder (absl may release the lock
  // right after a false evaluation, out of TSan's sight).
  struct Guarded {
    Mutex* mu;
    const absl::Condition* cond;
    static bool Eval(Guarded* g) {
      __tsan_acquire(g->mu);
      const bool holds = g->cond->Eval();
      __tsan_release(g->mu);
      return holds;
    }
  };
  void Acquired() { __tsan_acquire(this); }
  void Releasing() { __tsan_release(this); }
#else
  void Acquired() {}
  void Releasing() {}
#endif

  absl::Mutex mu_;
};

// Holds a Mutex for its scope.
class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

// absl::Notification on hgpipe::Mutex: one Notify, any number of waiters.
class Notification {
 public:
  void Notify() {
    MutexLock l(&mu_);
    notified_ = true;
  }
  bool HasBeenNotified() const {
    MutexLock l(&mu_);
    return notified_;
  }
  void WaitForNotification() const {
    MutexLock l(&mu_);
    mu_.Await(absl::Condition(&notified_));
  }
  bool WaitForNotificationWithTimeout(absl::Duration timeout) const {
    MutexLock l(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&notified_), timeout);
  }

 private:
  mutable Mutex mu_;
  bool notified_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace hgpipe

#endif  // HGPIPE_BASE_MUTEX_H_
