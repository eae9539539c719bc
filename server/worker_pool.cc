#include "server/worker_pool.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "base/mutex.h"
#include "base/thread_name.h"

namespace hgpipe::server {

WorkerPool::WorkerPool(int threads, size_t max_queued, absl::string_view name)
    : max_queued_(max_queued) {
  for (int i = 0; i < std::max(threads, 1); ++i) {
    threads_.emplace_back([this, thread_name = absl::StrCat(name, "-", i)] {
      NameThisThread(thread_name);
      Loop();
    });
  }
}

WorkerPool::~WorkerPool() {
  {
    hgpipe::MutexLock l(&mu_);
    stop_ = true;
  }
  for (auto& t : threads_) t.join();
}

bool WorkerPool::TrySubmitAll(std::vector<Task> tasks) {
  hgpipe::MutexLock l(&mu_);
  if (stop_ || queue_.size() + tasks.size() > max_queued_) return false;
  for (auto& t : tasks) queue_.push_back(std::move(t));
  return true;
}

void WorkerPool::Schedule(Task task) {
  hgpipe::MutexLock l(&mu_);
  queue_.push_back(std::move(task));
}

void WorkerPool::Loop() {
  for (;;) {
    Task task;
    {
      hgpipe::MutexLock l(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || !queue_.empty(); };
      mu_.Await(absl::Condition(&ready));
      if (queue_.empty()) return;  // stopping, nothing left
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();
  }
}

}  // namespace hgpipe::server
