// Threads for host work that must not run on gRPC threads: the scheduler's
// fill step (decoding and preprocessing images into board slots, as its
// Executor) and the model manager's loads. TrySubmitAll's queue is bounded:
// when it is full, work is refused at once instead of piling up memory.
// Schedule (the Executor's) never refuses: the scheduler bounds its fills by
// the boards' slots.
//
// Thread safety: all methods are thread-safe. The destructor runs what is
// queued, then joins.
#ifndef HGPIPE_SERVER_WORKER_POOL_H_
#define HGPIPE_SERVER_WORKER_POOL_H_

#include <cstddef>
#include <deque>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/strings/string_view.h"
#include "base/executor.h"
#include "base/mutex.h"

namespace hgpipe::server {

class WorkerPool final : public Executor {
 public:
  using Task = absl::AnyInvocable<void()>;
  // `threads` >= 1; TrySubmitAll lets at most `max_queued` tasks wait.
  // Its threads are named `name`-0, `name`-1, ... (base/thread_name.h).
  WorkerPool(int threads, size_t max_queued, absl::string_view name = "hgpipe-pool");
  ~WorkerPool() override;
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Queues all of `tasks`, or none of them (returns false) if they do not
  // fit. Tasks run in order of submission, on any pool thread.
  bool TrySubmitAll(std::vector<Task> tasks);
  // Executor: queues `task` whatever the queue holds. A task scheduled
  // once the destructor started may never run.
  void Schedule(Task task) override;
  int concurrency() const override { return static_cast<int>(threads_.size()); }

 private:
  void Loop();

  const size_t max_queued_;
  hgpipe::Mutex mu_;
  std::deque<Task> queue_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace hgpipe::server

#endif  // HGPIPE_SERVER_WORKER_POOL_H_
