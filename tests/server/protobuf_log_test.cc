#include "server/protobuf_log.h"

#include "gtest/gtest.h"

namespace hgpipe::server {
namespace {

TEST(LogRateLimiterTest, OneLinePerIntervalWithTheCountHeldBack) {
  LogRateLimiter limiter(absl::Seconds(60));
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  uint64_t held = 99;
  ASSERT_TRUE(limiter.Admit(t0, &held));
  EXPECT_EQ(held, 0u);
  for (int i = 0; i < 1000; ++i) {
    EXPECT_FALSE(limiter.Admit(t0 + absl::Milliseconds(i), &held));
  }
  EXPECT_FALSE(limiter.Admit(t0 + absl::Seconds(59), &held));
  ASSERT_TRUE(limiter.Admit(t0 + absl::Seconds(60), &held));
  EXPECT_EQ(held, 1001u);
  ASSERT_TRUE(limiter.Admit(t0 + absl::Seconds(200), &held));
  EXPECT_EQ(held, 0u);
}

}  // namespace
}  // namespace hgpipe::server
