// Threads for host work that must not run on gRPC threads: decoding and
// preprocessing images. A bounded queue: when it is full, work is refused at
// once (the caller answers RESOURCE_EXHAUSTED) instead of piling up memory.
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
#include "base/mutex.h"

namespace hgpipe::server {

class WorkerPool {
 public:
  using Task = absl::AnyInvocable<void()>;
  // `threads` >= 1; at most `max_queued` tasks wait at once.
  WorkerPool(int threads, size_t max_queued);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Queues all of `tasks`, or none of them (returns false) if they do not
  // fit. Tasks run in order of submission, on any pool thread.
  bool TrySubmitAll(std::vector<Task> tasks);

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
