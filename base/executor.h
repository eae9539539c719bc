// Somewhere to run work off the caller's thread: the scheduler fills runs
// (scheduler.h, Options::fill_executor) on one.
#ifndef HGPIPE_BASE_EXECUTOR_H_
#define HGPIPE_BASE_EXECUTOR_H_

#include "absl/functional/any_invocable.h"

namespace hgpipe {

class Executor {
 public:
  virtual ~Executor() = default;
  // Runs `task` soon, on a thread of the executor's. Never blocks, never
  // refuses (callers bound what they schedule), and runs every task
  // scheduled before the executor is destroyed.
  virtual void Schedule(absl::AnyInvocable<void()> task) = 0;
  // How many tasks it runs at once (>= 1): what estimates of its
  // throughput divide by.
  virtual int concurrency() const = 0;
};

}  // namespace hgpipe

#endif  // HGPIPE_BASE_EXECUTOR_H_
