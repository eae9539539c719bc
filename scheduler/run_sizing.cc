#include "scheduler/run_sizing.h"

#include <algorithm>
#include <cmath>

#include "absl/container/inlined_vector.h"

namespace hgpipe::scheduler {

BoardChoice ChooseBoard(absl::Span<const BoardView> boards, absl::Time now, absl::Duration lead) {
  BoardChoice c;
  // now + lead once rather than input_free_at - lead per board: the same
  // comparison, a fraction of the Time arithmetic on many boards.
  const absl::Time ready_by = now + lead;
  absl::Time first_free = absl::InfiniteFuture();
  for (size_t i = 0; i < boards.size(); ++i) {
    const BoardView& b = boards[i];
    if (!b.free_slot) continue;  // a completion dispatches again
    if (b.input_free_at > ready_by) {
      first_free = std::min(first_free, b.input_free_at);
      continue;
    }
    if (b.next_done < c.best_done) {
      c.best = static_cast<int>(i);
      c.best_done = b.next_done;
    }
  }
  c.next_ready = first_free - lead;
  return c;
}

uint32_t RunSize(absl::Span<const BoardView> boards, int best, uint64_t queued,
                 uint32_t max_images_per_run) {
  const BoardView& b = boards[best];
  const uint32_t cap =
      static_cast<uint32_t>(std::min<uint64_t>({max_images_per_run, b.max_run, queued}));
  const int64_t t_best = absl::ToInt64Nanoseconds(b.image_time);
  // The others' first completions and intervals, in ns relative to best's.
  struct Other {
    int64_t first;
    int64_t interval;
  };
  absl::InlinedVector<Other, 16> others;
  const int64_t horizon = t_best * cap;
  // A board whose first completion is past best's whole run never gets
  // ahead within it; compared as Times (a whole number of ns past best's,
  // so the same test as on the truncated difference) before any conversion:
  // on many boards most are out, and the conversions are not inline.
  const absl::Time horizon_at = b.next_done + absl::Nanoseconds(horizon);
  for (size_t i = 0; i < boards.size(); ++i) {
    const BoardView& o = boards[i];
    if (static_cast<int>(i) == best || !o.free_slot || o.next_done >= horizon_at) continue;
    const int64_t first = absl::ToInt64Nanoseconds(o.next_done - b.next_done);
    others.push_back({first, absl::ToInt64Nanoseconds(o.image_time)});
  }
  // Images completing elsewhere strictly before best's image i.
  auto earlier_elsewhere = [&](uint32_t i) {
    const int64_t d = t_best * i;
    uint64_t count = 0;
    for (const Other& o : others) {
      if (d > o.first) count += static_cast<uint64_t>((d - o.first + o.interval - 1) / o.interval);
    }
    return count;
  };
  // The largest n with image n-1 still best's; the predicate is monotone.
  uint32_t lo = 0, hi = cap;
  while (lo < hi) {
    const uint32_t mid = lo + (hi - lo + 1) / 2;
    if (mid - 1 + earlier_elsewhere(mid - 1) < queued) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

absl::Time EstimateCompletion(uint64_t images, absl::Time start,
                              absl::Span<const absl::Time> input_free_at, absl::Duration image_time,
                              absl::Duration latency) {
  double boards = 1;
  if (!input_free_at.empty()) {
    absl::Time first = absl::InfiniteFuture();
    for (absl::Time t : input_free_at) first = std::min(first, std::max(start, t));
    start = first;
    boards = static_cast<double>(input_free_at.size());
  }
  const double images_before_last = std::ceil(static_cast<double>(images) / boards) - 1;
  return start + image_time * images_before_last + latency;
}

}  // namespace hgpipe::scheduler
