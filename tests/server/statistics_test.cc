#include <map>
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
  s.RequestDone(3, true, 2,
                {absl::Milliseconds(3), absl::Microseconds(100), absl::Microseconds(7)});
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
  EXPECT_EQ(i.compute_infer().count(), 2u);       // images of good runs
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

namespace hgpipe::server {
namespace {

// Counts every Observer call it receives.
class Recorder final : public scheduler::Observer {
 public:
  void ModelAdded(int, absl::string_view) override { ++calls["ModelAdded"]; }
  void BoardAdded(int, absl::string_view) override { ++calls["BoardAdded"]; }
  void QueueDepth(int, uint64_t) override { ++calls["QueueDepth"]; }
  void RunStarted(int, int, uint32_t, absl::Span<const absl::Duration>, absl::Duration) override {
    ++calls["RunStarted"];
  }
  void RunFinished(int, int, uint32_t, absl::Duration, const absl::Status&) override {
    ++calls["RunFinished"];
  }
  void BoardPhaseChanged(int, int, scheduler::BoardPhase, const absl::Status&,
                         const scheduler::BoardCounts&) override {
    ++calls["BoardPhaseChanged"];
  }
  void CanaryFailed(int, int, const absl::Status&) override { ++calls["CanaryFailed"]; }
  void DeadlineExpired(int, uint32_t) override { ++calls["DeadlineExpired"]; }
  void LateResultsDropped(int, uint32_t) override { ++calls["LateResultsDropped"]; }
  void FillsSkipped(int, uint32_t) override { ++calls["FillsSkipped"]; }
  void ImagesWithheld(int, uint32_t) override { ++calls["ImagesWithheld"]; }
  std::map<std::string, int> calls;
};

// A method the fanout does not forward loses its event for every observer
// but the scheduler's default no-op (late results once went missing so).
TEST(ObserverFanoutTest, ForwardsEveryEventToEveryObserver) {
  Recorder a, b;
  ObserverFanout fanout({&a, &b});
  scheduler::Observer& o = fanout;
  o.ModelAdded(0, "verify");
  o.BoardAdded(0, "sim0");
  o.QueueDepth(0, 1);
  o.RunStarted(0, 0, 1, {}, absl::ZeroDuration());
  o.RunFinished(0, 0, 1, absl::ZeroDuration(), absl::OkStatus());
  o.BoardPhaseChanged(0, 0, scheduler::BoardPhase::kServing, absl::OkStatus(), {});
  o.CanaryFailed(0, 0, absl::DataLossError("word 3"));
  o.DeadlineExpired(0, 1);
  o.LateResultsDropped(0, 1);
  o.FillsSkipped(0, 1);
  o.ImagesWithheld(0, 1);
  for (const Recorder* r : {&a, &b}) {
    EXPECT_EQ(r->calls.size(), 11u);
    for (const auto& [name, n] : r->calls) EXPECT_EQ(n, 1) << name;
  }
}

}  // namespace
}  // namespace hgpipe::server
