#include "server/statistics.h"

#include <vector>

#include "gtest/gtest.h"

namespace hgpipe::server {
namespace {

TEST(StatisticsTest, RequestsRunsAndBatchesAddUp) {
  InferStatistics s;
  const std::vector<absl::Duration> waits = {absl::Microseconds(10), absl::Microseconds(30)};
  s.RunStarted(3, 0, 2, waits, absl::Microseconds(5));
  s.RunFinished(3, 0, 2, absl::Milliseconds(2), absl::OkStatus());
  s.RunStarted(3, 0, 1, {absl::Microseconds(1)}, absl::Microseconds(4));
  s.RunFinished(3, 0, 1, absl::Milliseconds(1), absl::UnavailableError("board failed"));
  s.RequestDone(3, true, 2, {absl::Milliseconds(3), absl::Microseconds(100), absl::Microseconds(7)});
  s.RequestDone(3, false, 1, {absl::Milliseconds(1), {}, {}});
  s.RequestDone(-1, true, 9, {});  // no model: ignored

  inference::ModelStatistics m;
  s.Fill(3, &m);
  EXPECT_EQ(m.inference_count(), 2u);
  EXPECT_EQ(m.execution_count(), 1u);
  EXPECT_GT(m.last_inference(), 0u);
  const inference::InferStatistics& i = m.inference_stats();
  EXPECT_EQ(i.success().count(), 1u);
  EXPECT_EQ(i.success().ns(), 3'000'000u);
  EXPECT_EQ(i.fail().count(), 1u);
  EXPECT_EQ(i.fail().ns(), 1'000'000u);
  EXPECT_EQ(i.queue().count(), 3u);  // images that left the queue
  EXPECT_EQ(i.queue().ns(), 41'000u);
  EXPECT_EQ(i.compute_infer().count(), 2u);  // images of good runs
  EXPECT_EQ(i.compute_infer().ns(), 4'000'000u);  // 2 images x 2 ms
  EXPECT_EQ(i.compute_input().ns(), 100'000u);
  EXPECT_EQ(i.compute_output().ns(), 7'000u);
  ASSERT_EQ(m.batch_stats_size(), 2);
  EXPECT_EQ(m.batch_stats(0).batch_size(), 1u);
  EXPECT_EQ(m.batch_stats(0).compute_infer().count(), 0u);  // its run failed
  EXPECT_EQ(m.batch_stats(1).batch_size(), 2u);
  EXPECT_EQ(m.batch_stats(1).compute_input().ns(), 5'000u);
  EXPECT_EQ(m.batch_stats(1).compute_infer().ns(), 2'000'000u);

  inference::ModelStatistics empty;
  s.Fill(7, &empty);
  EXPECT_EQ(empty.inference_count(), 0u);
  EXPECT_TRUE(empty.inference_stats().has_cache_miss());  // present, zero
}

}  // namespace
}  // namespace hgpipe::server
