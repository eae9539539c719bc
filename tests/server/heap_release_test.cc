#include "server/heap_release.h"

#include <malloc.h>

#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hgpipe::server {
namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitizerMalloc = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitizerMalloc = true;
#else
constexpr bool kSanitizerMalloc = false;
#endif
#else
constexpr bool kSanitizerMalloc = false;
#endif

// Buffers freed on another thread than the one measuring are counted
// (glibc's mallinfo2 sums every arena, the freeing thread's too). Counted
// from just after the allocations: when the whole binary runs in one
// process, earlier tests leave free space that the allocations reuse.
TEST(HeapReleaseTest, SeesMemoryFreedOnAnotherThread) {
  if (kSanitizerMalloc) GTEST_SKIP() << "a sanitizer's allocator replaces glibc's malloc";
  ConfigureHeap();
  std::vector<void*> kept;
  size_t before = 0;
  std::thread([&kept, &before] {
    std::vector<void*> all;
    for (int i = 0; i < 64; ++i) all.push_back(malloc(600000));
    before = HeapFreeBytes();
    // Free every other one, so that they cannot merge into the arena's top
    // and be trimmed by free() itself.
    for (size_t i = 0; i < all.size(); ++i) (i % 2 == 0 ? free(all[i]) : kept.push_back(all[i]));
  }).join();
  EXPECT_GE(HeapFreeBytes(), before + 32 * size_t{600000});
  for (void* p : kept) free(p);
  malloc_trim(0);
}

TEST(HeapReleaseTest, TrimsOnceAfterCallsStop) {
  HeapReleasePolicy policy(
      {.idle = absl::Seconds(1), .interval = absl::Seconds(10), .min_free_bytes = 100});
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  int asked = 0;
  const auto none_free = [&asked] {
    ++asked;
    return size_t{0};
  };
  EXPECT_FALSE(policy.ShouldTrim(t0 + absl::Milliseconds(500), t0, none_free));
  EXPECT_TRUE(policy.ShouldTrim(t0 + absl::Seconds(2), t0, none_free));
  EXPECT_FALSE(policy.ShouldTrim(t0 + absl::Seconds(3), t0, none_free));
  EXPECT_FALSE(policy.ShouldTrim(t0 + absl::Seconds(30), t0, none_free))
      << "nothing free, and this quiet spell was already trimmed";
  EXPECT_TRUE(policy.ShouldTrim(t0 + absl::Seconds(33), t0 + absl::Seconds(31), none_free))
      << "a new quiet spell";
  EXPECT_EQ(asked, 2) << "only the first tick and the 30 s check needed the free bytes";
}

TEST(HeapReleaseTest, UnderLoadTrimsWhenEnoughIsFreeAtMostEveryInterval) {
  HeapReleasePolicy policy(
      {.idle = absl::Seconds(1), .interval = absl::Seconds(10), .min_free_bytes = 100});
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  size_t free_bytes = 1000;
  int asked = 0;
  const auto measure = [&] {
    ++asked;
    return free_bytes;
  };
  // Calls never stop: last_call is always just now.
  int trims = 0;
  for (int s = 1; s <= 60; ++s) {
    const absl::Time now = t0 + absl::Seconds(s);
    trims += policy.ShouldTrim(now, now - absl::Milliseconds(1), measure);
  }
  EXPECT_THAT(trims, testing::AllOf(testing::Ge(5), testing::Le(6)));
  EXPECT_EQ(asked, trims) << "free bytes asked once an interval, not every tick";
  free_bytes = 10;
  asked = 0;
  trims = 0;
  for (int s = 61; s <= 120; ++s) {
    const absl::Time now = t0 + absl::Seconds(s);
    trims += policy.ShouldTrim(now, now - absl::Milliseconds(1), measure);
  }
  EXPECT_EQ(trims, 0) << "too little free to be worth the page faults";
  EXPECT_GE(asked, 5);
}

}  // namespace
}  // namespace hgpipe::server
