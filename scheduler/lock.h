// The scheduler's lock as Clang's thread-safety analysis sees it.
//
// The Scheduler (scheduler.h) owns one mutex and the API; its rooms - the
// request queue (request_queue.h), the per-model and per-board state
// (state.h) - run under that mutex, as LevelDB's VersionSet runs under
// DBImpl's. The analysis follows no pointer from a room to the mutex of the
// Scheduler that owns it, so the rooms name the lock `scheduler_lock`: their
// fields are ABSL_GUARDED_BY(scheduler_lock) and their methods
// ABSL_EXCLUSIVE_LOCKS_REQUIRED(scheduler_lock), and SchedulerMutexLock,
// which takes a Scheduler's mutex, holds `scheduler_lock` for the analysis
// too. Every field of every room is then checked, not only the Scheduler's
// own members.
//
// `scheduler_lock` is a name, never locked itself (a role, in the analysis'
// terms). The price of one name for every scheduler: the analysis cannot
// tell one Scheduler's lock from another's, and no code touches the state
// of two.
#ifndef HGPIPE_SCHEDULER_LOCK_H_
#define HGPIPE_SCHEDULER_LOCK_H_

#include "absl/base/thread_annotations.h"
#include "base/mutex.h"

namespace hgpipe::scheduler {

class ABSL_LOCKABLE SchedulerLockName {
 public:
  SchedulerLockName() = default;
  SchedulerLockName(const SchedulerLockName&) = delete;
  SchedulerLockName& operator=(const SchedulerLockName&) = delete;
};
extern SchedulerLockName scheduler_lock;

// Holds a Scheduler's mutex, and `scheduler_lock` for the analysis, for its
// scope.
class ABSL_SCOPED_LOCKABLE SchedulerMutexLock {
 public:
  explicit SchedulerMutexLock(hgpipe::Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu, scheduler_lock)
      : mu_(mu) {
    mu_->Lock();
  }
  ~SchedulerMutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  SchedulerMutexLock(const SchedulerMutexLock&) = delete;
  SchedulerMutexLock& operator=(const SchedulerMutexLock&) = delete;

 private:
  hgpipe::Mutex* const mu_;
};

}  // namespace hgpipe::scheduler

#endif  // HGPIPE_SCHEDULER_LOCK_H_
