// When the server gives the heap's free memory back to the system.
//
// main() keeps request buffers on the heap (mallopt), so that a 600 KB
// request does not map, fault in and unmap fresh pages every time. The price
// is that freed buffers stay resident: after a backlog drains, and as glibc
// spreads the buffers over its per-thread arenas (up to 8 per core), RSS
// would ratchet up and never come down. This room decides when to call
// malloc_trim(3) and measures what there is to give back.
//
// Thread safety: HeapReleasePolicy is not thread-safe (one owner thread);
// the free functions are.
#ifndef HGPIPE_SERVER_HEAP_RELEASE_H_
#define HGPIPE_SERVER_HEAP_RELEASE_H_

#include <cstddef>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace hgpipe::server {

// Bytes malloc holds free in all its arenas (fast bins and other bins,
// including each arena's top chunk), from malloc_info(3). mallinfo2(3) is
// no substitute: it covers only the main arena, and request buffers live
// mostly in the arenas of gRPC's threads.
absl::StatusOr<size_t> HeapFreeBytes();

// The same, from malloc_info(3)'s XML: the "fast" and "rest" totals after
// the last </heap>, which sum over the arenas.
absl::StatusOr<size_t> FreeBytesFromMallocInfo(absl::string_view xml);

// Trim once calls have stopped for `idle` (once per quiet spell), and while
// calls go on when more than `min_free_bytes` are free, at most every
// `interval`: in steady state freed buffers are reused within milliseconds,
// and trimming them only trades RSS for page faults on the hot path.
class HeapReleasePolicy {
 public:
  struct Options {
    absl::Duration idle = absl::Seconds(1);
    absl::Duration interval = absl::Seconds(10);
    size_t min_free_bytes = size_t{16} << 20;
  };
  explicit HeapReleasePolicy(Options options) : options_(options) {}

  // Called periodically with the time of the last inference call; true if
  // the caller should trim now. `free_bytes` is asked only when the answer
  // depends on it (it costs a malloc_info).
  bool ShouldTrim(absl::Time now, absl::Time last_call, absl::FunctionRef<size_t()> free_bytes);

 private:
  const Options options_;
  absl::Time trimmed_after_call_ = absl::InfinitePast();
  absl::Time last_trim_ = absl::InfinitePast();
};

}  // namespace hgpipe::server

#endif  // HGPIPE_SERVER_HEAP_RELEASE_H_
