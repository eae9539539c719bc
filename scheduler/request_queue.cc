#include "scheduler/request_queue.h"

#include <algorithm>

#include "absl/container/inlined_vector.h"

namespace hgpipe::scheduler {

RequestQueue::RequestQueue(const Options& options) : options_(options) {
  levels_.resize(options.levels);
  level_served_.assign(options.levels, absl::InfinitePast());
}

void RequestQueue::Push(Request* r) {
  for (uint32_t i = 0; i < r->queued; ++i) levels_[r->level].push_back({r, i});
  size_ += r->queued;
  if (r->deadline != absl::InfiniteFuture()) {
    deadlines_.emplace(r->deadline, r);
    promises_.emplace(r->deadline, r);
  }
}

uint64_t RequestQueue::ImagesAtOrAbove(uint32_t level) const {
  uint64_t n = 0;
  for (uint32_t i = 0; i <= level; ++i) n += levels_[i].size();
  return n;
}

uint64_t RequestQueue::HighestLevelImages() const {
  for (const auto& q : levels_) {
    if (!q.empty()) return q.size();
  }
  return 0;
}

absl::Time RequestQueue::OldestArrival() const {
  absl::Time oldest = absl::InfiniteFuture();
  for (const auto& q : levels_) {
    if (!q.empty()) oldest = std::min(oldest, q.front().request->arrival);
  }
  return oldest;
}

void RequestQueue::Take(uint32_t max, absl::Time now, RunStart start, absl::Duration image_time,
                        absl::Duration latency, std::vector<ImageRef>* out, Hopeless hopeless) {
  const uint32_t levels = options_.levels;
  // Levels whose oldest image waited past max_starvation go first, oldest
  // first; then every level in priority order.
  absl::InlinedVector<std::pair<absl::Time, uint32_t>, 4> starved;
  for (uint32_t i = 1; i < levels; ++i) {
    if (levels_[i].empty()) continue;
    const absl::Time since = std::max(levels_[i].front().request->arrival, level_served_[i]);
    if (now - since >= options_.max_starvation) starved.push_back({since, i});
  }
  std::sort(starved.begin(), starved.end());
  absl::InlinedVector<uint32_t, 4> order;
  for (const auto& [since, i] : starved) order.push_back(i);
  for (uint32_t i = 0; i < levels; ++i) {
    if (std::find(order.begin(), order.end(), i) == order.end()) order.push_back(i);
  }
  const uint32_t low_cap = std::min(max, options_.low_priority_run_images);
  // Every image of a run is answered when the run completes (its last image
  // is out), so adding image k moves every included request's answer to
  // start(k + 1) + k*T + latency: stop before that passes a deadline in the
  // run.
  absl::Time run_deadline = absl::InfiniteFuture();
  bool full = false;
  for (uint32_t level : order) {
    if (full) break;
    const uint32_t cap = level == 0 ? max : low_cap;
    std::deque<ImageRef>& q = levels_[level];
    bool took = false;
    while (out->size() < cap && !q.empty()) {
      Request* r = q.front().request;
      const uint32_t k = static_cast<uint32_t>(out->size());
      const absl::Time done = start(k + 1) + image_time * static_cast<int64_t>(k) + latency;
      if (done > r->deadline && out->empty()) {
        // Even first in a run on the board where it completes first, it
        // would be late.
        const uint32_t removed = Remove(r);
        hopeless(r, removed, done - r->deadline);
        continue;
      }
      if (done > std::min(run_deadline, r->deadline)) {
        full = true;  // the rest go in a later run
        break;
      }
      run_deadline = std::min(run_deadline, r->deadline);
      out->push_back(q.front());
      q.pop_front();
      --size_;
      if (--r->queued == 0 && r->deadline != absl::InfiniteFuture()) {
        deadlines_.erase({r->deadline, r});
      }
      took = true;
    }
    if (took) level_served_[level] = now;
    if (out->size() >= max) break;
  }
}

void RequestQueue::Requeue(absl::Span<const ImageRef> images,
                           absl::FunctionRef<void(Request*)> failed) {
  for (auto it = images.rbegin(); it != images.rend(); ++it) {
    Request* r = it->request;
    if (!r->status.ok()) {  // failed meanwhile (deadline): not worth a retry
      failed(r);
      continue;
    }
    levels_[r->level].push_front(*it);
    ++size_;
    if (r->queued++ == 0 && r->deadline != absl::InfiniteFuture()) {
      deadlines_.emplace(r->deadline, r);
    }
  }
}

uint32_t RequestQueue::Remove(Request* r) {
  if (r->deadline != absl::InfiniteFuture()) deadlines_.erase({r->deadline, r});
  if (r->queued == 0) return 0;
  std::deque<ImageRef>& q = levels_[r->level];
  const auto end =
      std::remove_if(q.begin(), q.end(), [r](const ImageRef& i) { return i.request == r; });
  const uint32_t removed = static_cast<uint32_t>(q.end() - end);
  q.erase(end, q.end());
  size_ -= removed;
  r->queued -= removed;
  return removed;
}

void RequestQueue::Forget(Request* r) {
  if (r->deadline != absl::InfiniteFuture()) promises_.erase({r->deadline, r});
}

absl::Time RequestQueue::ExpirePromises(
    absl::Time now, absl::FunctionRef<void(Request* r, uint32_t images)> expired) {
  while (!promises_.empty() && promises_.begin()->first <= now) {
    Request* r = promises_.begin()->second;
    promises_.erase(promises_.begin());
    const uint32_t removed = Remove(r);
    expired(r, removed);
  }
  return promises_.empty() ? absl::InfiniteFuture() : promises_.begin()->first;
}

void RequestQueue::ExpireQueuedBefore(
    absl::Time t, absl::FunctionRef<void(Request* r, uint32_t images)> expired) {
  while (!deadlines_.empty() && deadlines_.begin()->first < t) {
    Request* r = deadlines_.begin()->second;
    const uint32_t removed = Remove(r);
    expired(r, removed);
  }
}

absl::Time RequestQueue::ExpireQueued(
    absl::Time now, absl::Duration min_service,
    absl::FunctionRef<void(Request* r, uint32_t images)> expired) {
  while (!deadlines_.empty()) {
    const auto [deadline, r] = *deadlines_.begin();
    if (deadline - min_service > now) return deadline - min_service;
    const uint32_t removed = Remove(r);
    expired(r, removed);
  }
  return absl::InfiniteFuture();
}

}  // namespace hgpipe::scheduler
