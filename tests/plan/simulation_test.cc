#include "plan/simulation.h"

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "accel/pipeline_model.h"
#include "gtest/gtest.h"

namespace hgpipe::plan {
namespace {

// HG-PIPE DeiT-tiny: one image every II on a board's input.
double BoardImagesPerSecond() { return accel::PipelineTiming{}.max_images_per_second(); }
absl::Duration ImageTime() { return accel::PipelineTiming{}.interval(); }

StreamSpec Stream(double rate, uint32_t priority = 0, Arrivals arrivals = Arrivals::kPoisson) {
  StreamSpec s;
  s.rate = rate;
  s.priority = priority;
  s.arrivals = arrivals;
  return s;
}

SimulationSpec OneModel(int boards, std::vector<StreamSpec> streams, absl::Duration duration,
                        absl::Duration warmup) {
  ModelSpec m;
  m.name = "verify";
  m.boards = boards;
  m.streams = std::move(streams);
  SimulationSpec spec;
  spec.models.push_back(std::move(m));
  spec.duration = duration;
  spec.warmup = warmup;
  return spec;
}

std::string WithoutWall(SimulationResult r) {
  r.wall = absl::ZeroDuration();
  return SimulationResultToJson(r);
}

TEST(SimulationTest, SameSeedGivesIdenticalResults) {
  SimulationSpec spec = OneModel(2, {Stream(3000, 1), Stream(9000, 2)}, absl::Milliseconds(300),
                                 absl::Milliseconds(50));
  spec.models[0].options.priority_levels = 2;
  absl::StatusOr<SimulationResult> a = Simulate(spec);
  absl::StatusOr<SimulationResult> b = Simulate(spec);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_GT(a->models[0].requests_ok, 2000u);
  EXPECT_EQ(WithoutWall(*a), WithoutWall(*b));

  spec.seed = 2;
  absl::StatusOr<SimulationResult> c = Simulate(spec);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_NE(WithoutWall(*a), WithoutWall(*c));
}

// With one image per request and an idle board, a request's latency is the
// run overhead plus the pipeline latency, to the nanosecond; the host
// overhead adds exactly itself, and k images add (k - 1) intervals.
TEST(SimulationTest, IdleBoardLatencyIsRunOverheadPlusPipelineLatency) {
  const accel::PipelineTiming timing;
  const absl::Duration expected = timing.run_overhead + timing.latency();
  for (const absl::Duration host : {absl::ZeroDuration(), absl::Microseconds(150)}) {
    for (const uint32_t images : {1u, 3u}) {
      SCOPED_TRACE(absl::StrCat("host overhead ", absl::FormatDuration(host), ", images ", images));
      StreamSpec s = Stream(50, 0, Arrivals::kConstant);  // 20 ms apart
      s.images_per_request = images;
      SimulationSpec spec = OneModel(1, {s}, absl::Milliseconds(1010), absl::ZeroDuration());
      spec.models[0].host_overhead = host;
      absl::StatusOr<SimulationResult> r = Simulate(spec);
      ASSERT_TRUE(r.ok()) << r.status();
      const ModelResult& m = r->models[0];
      // Computed as the simulation reports it (seconds, then ms).
      const double want_ms =
          absl::ToDoubleSeconds(expected + host + ImageTime() * (images - 1)) * 1e3;
      EXPECT_EQ(m.requests_ok, 50u);  // at 20, 40, ..., 1000 ms
      EXPECT_EQ(m.latency.count, 50u);
      EXPECT_EQ(m.latency.p50, want_ms);
      EXPECT_EQ(m.latency.max, want_ms);
      EXPECT_EQ(m.queue_wait.max, 0);
      EXPECT_EQ(m.mean_run_images, images);
    }
  }
}

// A host overhead drawn from a distribution: uniform between 100 and 300
// us here, added to the idle-board latency.
TEST(SimulationTest, HostOverheadDistribution) {
  const accel::PipelineTiming timing;
  const double base_ms = absl::ToDoubleMilliseconds(timing.run_overhead + timing.latency());
  SimulationSpec spec = OneModel(1, {Stream(200, 0, Arrivals::kConstant)}, absl::Milliseconds(5001),
                                 absl::ZeroDuration());
  spec.models[0].host_overhead_quantiles = {{0, absl::Microseconds(100)},
                                            {1, absl::Microseconds(300)}};
  absl::StatusOr<SimulationResult> r = Simulate(spec);
  ASSERT_TRUE(r.ok()) << r.status();
  const Percentiles& l = r->models[0].latency;
  EXPECT_EQ(l.count, 1000u);
  EXPECT_NEAR(l.p50, base_ms + 0.200, 0.015);
  EXPECT_NEAR(l.p90, base_ms + 0.280, 0.010);
  EXPECT_LE(l.max, base_ms + 0.300 + 1e-9);

  spec.models[0].host_overhead_quantiles = {
      {0, absl::Microseconds(100)}, {0.5, absl::Microseconds(50)}, {1, absl::Microseconds(300)}};
  EXPECT_EQ(Simulate(spec).status().code(), absl::StatusCode::kInvalidArgument);
}

// Offered 1.5x what the boards can do, with a queue limit: the boards'
// inputs never idle, throughput is their capacity, the excess is refused,
// and the queue wait stays bounded by what the queue limit holds.
class SaturationTest : public testing::TestWithParam<int> {};

TEST_P(SaturationTest, BoardsStayBusyAndQueueWaitIsBounded) {
  const int boards = GetParam();
  const double capacity = boards * BoardImagesPerSecond();
  SimulationSpec spec =
      OneModel(boards, {Stream(1.5 * capacity)}, absl::Milliseconds(500), absl::Milliseconds(150));
  const uint32_t queue_limit = 256 * boards;
  spec.models[0].options.max_queue_images = queue_limit;
  absl::StatusOr<SimulationResult> r = Simulate(spec);
  ASSERT_TRUE(r.ok()) << r.status();
  const ModelResult& m = r->models[0];
  for (size_t b = 0; b < m.board_utilization.size(); ++b) {
    EXPECT_GE(m.board_utilization[b], 0.98) << "board " << b;
    EXPECT_LE(m.board_utilization[b], 1.0 + 1e-9) << "board " << b;
  }
  EXPECT_GE(m.images_per_second, 0.98 * capacity);
  // Completions counted in a window can run a few images ahead of it.
  EXPECT_LE(m.images_per_second, 1.005 * capacity);
  EXPECT_GT(m.streams[0].failed.count("RESOURCE_EXHAUSTED"), 0u);
  // A queued image waits at most for the queue ahead of it to drain over
  // the boards, a run's worth of images and the dispatch lead.
  const absl::Duration bound = ImageTime() * (queue_limit / boards + 32) + absl::Milliseconds(1);
  EXPECT_LE(m.queue_wait.p99, absl::ToDoubleMilliseconds(bound));
  EXPECT_GT(m.queue_wait.p99, 0.5 * absl::ToDoubleMilliseconds(bound))
      << "the queue should be full most of the time";
}

INSTANTIATE_TEST_SUITE_P(Boards, SaturationTest, testing::Values(1, 8));

// Four boards; high priority at 30 % of their capacity, alone and then with
// a low-priority flood at 2.5x their capacity. The flood must not refuse
// high-priority requests (the queue limit counts a level and those above
// it), and high priority's p99 must stay within 10 % of its unloaded value.
TEST(SimulationTest, LowPriorityFloodKeepsHighPriorityLatency) {
  const double capacity = 4 * BoardImagesPerSecond();
  auto spec_with = [&](std::vector<StreamSpec> streams) {
    SimulationSpec spec =
        OneModel(4, std::move(streams), absl::Milliseconds(600), absl::Milliseconds(100));
    ModelSpec& m = spec.models[0];
    m.options.priority_levels = 2;
    // low_priority_run_images: the default, 1.
    m.options.max_queue_images = 4096;
    spec.scheduler.dispatch_lead = absl::Microseconds(20);
    return spec;
  };
  absl::StatusOr<SimulationResult> alone = Simulate(spec_with({Stream(0.3 * capacity, 1)}));
  absl::StatusOr<SimulationResult> flooded =
      Simulate(spec_with({Stream(0.3 * capacity, 1), Stream(2.5 * capacity, 2)}));
  ASSERT_TRUE(alone.ok()) << alone.status();
  ASSERT_TRUE(flooded.ok()) << flooded.status();
  const StreamResult& high_alone = alone->models[0].streams[0];
  const StreamResult& high = flooded->models[0].streams[0];
  const StreamResult& low = flooded->models[0].streams[1];
  EXPECT_EQ(high.requests_ok, high.requests);
  EXPECT_TRUE(high.failed.empty());
  EXPECT_GT(low.failed.count("RESOURCE_EXHAUSTED"), 0u);
  EXPECT_GE(flooded->models[0].utilization, 0.98);
  std::printf("high priority p99: %.4f ms alone, %.4f ms under the flood\n", high_alone.latency.p99,
              high.latency.p99);
  EXPECT_LE(high.latency.p99, 1.10 * high_alone.latency.p99)
      << "high priority p99 " << high.latency.p99 << " ms under the flood, "
      << high_alone.latency.p99 << " ms alone (p50 " << high.latency.p50 << " vs "
      << high_alone.latency.p50 << ", max " << high.latency.max << " vs " << high_alone.latency.max
      << ")";
}

TEST(SimulationTest, MaxImagesEndsArrivalsAndWindow) {
  SimulationSpec spec = OneModel(2, {Stream(10000)}, absl::Seconds(10), absl::ZeroDuration());
  spec.max_images = 3000;
  absl::StatusOr<SimulationResult> r = Simulate(spec);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->requests, 3000u);
  EXPECT_EQ(r->images, 3000u);
  EXPECT_EQ(r->models[0].requests_ok, 3000u);
  // About 0.3 s of arrivals, not the 10 s asked for.
  EXPECT_LT(r->window, absl::Seconds(1));
  EXPECT_GT(r->window, absl::Milliseconds(200));
  EXPECT_GE(r->simulated, r->window);
  const double u = r->models[0].utilization;
  EXPECT_GT(u, 0.5);
  EXPECT_LT(u, 0.8);  // 10,000 of 14,751 images/s
}

TEST(SimulationTest, DeadlinesFailLateRequests) {
  // 1.5x one board's capacity, each request allowed 5 ms: the board keeps
  // busy and what cannot make it is refused or expires, never late.
  StreamSpec s = Stream(1.5 * BoardImagesPerSecond());
  s.timeout = absl::Milliseconds(5);
  SimulationSpec spec = OneModel(1, {s}, absl::Milliseconds(400), absl::Milliseconds(50));
  absl::StatusOr<SimulationResult> r = Simulate(spec);
  ASSERT_TRUE(r.ok()) << r.status();
  const ModelResult& m = r->models[0];
  EXPECT_GT(m.streams[0].failed.count("DEADLINE_EXCEEDED"), 0u);
  EXPECT_LE(m.latency.max, 5.0);
  EXPECT_GE(m.utilization, 0.95);
}

TEST(SimulationTest, RejectsBadSpecs) {
  SimulationSpec spec = OneModel(0, {Stream(100)}, absl::Seconds(1), absl::ZeroDuration());
  absl::StatusOr<SimulationResult> r = Simulate(spec);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("boards"), absl::string_view::npos) << r.status();

  spec = OneModel(1, {Stream(0)}, absl::Seconds(1), absl::ZeroDuration());
  EXPECT_EQ(Simulate(spec).status().code(), absl::StatusCode::kInvalidArgument);

  spec = OneModel(1, {Stream(100, 3)}, absl::Seconds(1), absl::ZeroDuration());
  r = Simulate(spec);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("priority"), absl::string_view::npos) << r.status();

  spec = OneModel(1, {Stream(100)}, absl::Seconds(1), absl::Seconds(1));
  EXPECT_EQ(Simulate(spec).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(PercentilesTest, NearestRank) {
  std::vector<double> v;
  for (int i = 100; i >= 1; --i) v.push_back(i * 1e-3);  // 1..100 ms
  const Percentiles p = ComputePercentiles(v);
  EXPECT_EQ(p.count, 100u);
  EXPECT_DOUBLE_EQ(p.p50, 50);
  EXPECT_DOUBLE_EQ(p.p90, 90);
  EXPECT_DOUBLE_EQ(p.p99, 99);
  EXPECT_DOUBLE_EQ(p.max, 100);
  EXPECT_DOUBLE_EQ(p.mean, 50.5);
  std::vector<double> empty;
  EXPECT_EQ(ComputePercentiles(empty).count, 0u);
}

// The host as a queue: with its CPU time per request under the overhead,
// evenly spaced requests that leave the core idle in between never wait,
// and Poisson arrivals at the same rate do, so the tail grows with load.
TEST(SimulationTest, HostCpuIsAQueueThatGrowsTheTailWithLoad) {
  auto run = [](Arrivals arrivals, absl::Duration cpu) {
    SimulationSpec spec =
        OneModel(2, {Stream(2000, 0, arrivals)}, absl::Milliseconds(600), absl::Milliseconds(100));
    spec.models[0].host_overhead = absl::Microseconds(450);
    spec.models[0].host_cpu = cpu;
    absl::StatusOr<SimulationResult> r = Simulate(spec);
    EXPECT_TRUE(r.ok()) << r.status();
    return r->models[0].latency;
  };
  const auto even_none = run(Arrivals::kConstant, absl::ZeroDuration());
  const auto even_cpu = run(Arrivals::kConstant, absl::Microseconds(400));
  EXPECT_DOUBLE_EQ(even_cpu.p99, even_none.p99);  // 500 us apart: no wait
  const auto poisson_none = run(Arrivals::kPoisson, absl::ZeroDuration());
  const auto poisson_cpu = run(Arrivals::kPoisson, absl::Microseconds(400));
  EXPECT_GT(poisson_cpu.p99, poisson_none.p99 + 0.4);  // ms: 80 % busy core
  EXPECT_GT(poisson_cpu.p50, poisson_none.p50);

  SimulationSpec bad = OneModel(1, {Stream(10)}, absl::Seconds(1), absl::ZeroDuration());
  bad.models[0].host_cores = 0;
  bad.models[0].host_cpu = absl::Microseconds(1);
  EXPECT_EQ(Simulate(bad).status().code(), absl::StatusCode::kInvalidArgument);
}

// Twice what the full variant's boards can take, 5 ms deadlines: with a
// faster variant above the floor the router keeps nearly every deadline,
// where the full variant alone answers about half (the setting, at
// a size the sanitizer builds can run).
TEST(SimulationTest, VariantsKeepDeadlinesUnderOverloadWhereRejectAnswersHalf) {
  accel::PipelineTiming full;
  accel::PipelineTiming taylor = full;
  taylor.interval_cycles = full.interval_cycles / 3;
  StreamSpec stream = Stream(2 * 2 * BoardImagesPerSecond());
  stream.timeout = absl::Milliseconds(5);
  stream.min_accuracy = 0.85;
  SimulationSpec spec = OneModel(2, {stream}, absl::Seconds(2), absl::Seconds(1));
  spec.scheduler.reprogram = true;
  spec.scheduler.dispatch_lead = absl::Microseconds(100);
  ModelSpec& m = spec.models[0];
  m.program_time = absl::Milliseconds(100);
  m.min_move_interval = absl::Milliseconds(200);
  m.variants = {{"full", full, 0.90}, {"taylor", taylor, 0.88}, {"tiny", taylor, 0.60}};
  absl::StatusOr<SimulationResult> v = Simulate(spec);
  ASSERT_TRUE(v.ok()) << v.status();
  const ModelResult& rv = v->models[0];
  EXPECT_GE(rv.goodput, 0.95) << ModelResultToJson(rv);
  EXPECT_GE(rv.board_moves, 1u);
  EXPECT_EQ(rv.requests_by_variant.at("tiny"), 0u);  // below every floor
  EXPECT_GT(rv.requests_by_variant.at("taylor"), 0u);
  EXPECT_GE(rv.mean_accuracy, 0.88);
  EXPECT_LE(rv.mean_accuracy, 0.90);
  EXPECT_EQ(rv.requests_in_deadline, rv.requests_ok);  // a deadline is a promise

  // The floor at the full variant: what servers do today.
  m.streams[0].min_accuracy = std::nullopt;
  absl::StatusOr<SimulationResult> r = Simulate(spec);
  ASSERT_TRUE(r.ok()) << r.status();
  const ModelResult& rr = r->models[0];
  EXPECT_LE(rr.goodput, 0.55) << ModelResultToJson(rr);
  EXPECT_GE(rr.goodput, 0.40);
  EXPECT_EQ(rr.board_moves, 0u);
  EXPECT_DOUBLE_EQ(rr.mean_accuracy, 0.90);
}

TEST(SimulationTest, BadVariantsAreRefusedNamingTheField) {
  SimulationSpec spec = OneModel(1, {Stream(100)}, absl::Seconds(1), absl::ZeroDuration());
  spec.models[0].variants = {{"full", {}, 0.9}};
  spec.scheduler.reprogram = false;
  EXPECT_NE(Simulate(spec).status().message().find("variants need the scheduler's reprogram"),
            std::string::npos);
  spec.scheduler.reprogram = true;
  spec.models[0].variants = {{"full", {}, 0.9}, {"full", {}, 0.8}};
  EXPECT_NE(Simulate(spec).status().message().find("variant 'full': appears twice"),
            std::string::npos);
  spec.models[0].variants = {{"full", {}, 1.5}};
  EXPECT_NE(Simulate(spec).status().message().find("top1 must be in (0, 1]"), std::string::npos);
}

}  // namespace
}  // namespace hgpipe::plan
