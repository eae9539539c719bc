// How the server's heap is set up, and when it gives free memory back.
//
// Request buffers (150 KB an image) stay on the heap for reuse instead of
// being mapped, faulted in and unmapped per request; they all live in one
// malloc arena, because glibc's default of up to 8 per core lets each arena
// keep its own share and RSS ratchets up as load moves between threads
// (docs/BENCHMARKS.md, "Soak"). The price of keeping buffers is that freed
// ones stay resident after a backlog drains; this room decides when to call
// malloc_trim(3).
//
// Thread safety: ConfigureHeap runs before any thread starts;
// HeapReleasePolicy is not thread-safe (one owner thread); HeapFreeBytes is.
#ifndef HGPIPE_SERVER_HEAP_RELEASE_H_
#define HGPIPE_SERVER_HEAP_RELEASE_H_

#include <cstddef>

#include "absl/functional/function_ref.h"
#include "absl/time/time.h"

namespace hgpipe::server {

// Sets glibc's malloc up as above (mallopt). Call first thing in main().
void ConfigureHeap();

// Bytes malloc holds free (mallinfo2(3), which in glibc sums every arena;
// after ConfigureHeap there is one).
size_t HeapFreeBytes();

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
  // depends on it.
  bool ShouldTrim(absl::Time now, absl::Time last_call, absl::FunctionRef<size_t()> free_bytes);

 private:
  const Options options_;
  absl::Time trimmed_after_call_ = absl::InfinitePast();
  absl::Time last_trim_ = absl::InfinitePast();
};

}  // namespace hgpipe::server

#endif  // HGPIPE_SERVER_HEAP_RELEASE_H_
