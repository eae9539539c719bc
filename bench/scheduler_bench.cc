// The scheduler's hot path, measured as a discrete-event simulation
// (plan/simulation.h): the real Scheduler and EmulatedBoards (timing only)
// on a SimClock, under Poisson arrivals of one-image requests. Wall time per
// image answered is what the scheduler, the boards' timing model and the
// clock's timer queue cost together, with no device and no gRPC in the way.
//
//   build/bin/hgpipe-scheduler-bench [--benchmark_filter=...]
//
// BM_SchedulerPerImage/boards:B   B boards at 97 % of their capacity,
//                                 100,000 images per iteration
// BM_MillionImages/boards:64      1,000,000 images over 64 boards offered at
//                                 their full capacity (issue 6's target: a
//                                 few seconds of wall time)
//
// Counters: ns_per_image (wall), sim_speedup (simulated / wall seconds),
// utilization (boards' input streams), p99_ms (request latency).
#include <cstdint>
#include <cstdio>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "plan/simulation.h"

namespace hgpipe::plan {
namespace {

SimulationSpec Saturated(int boards, double load, uint64_t images) {
  ModelSpec m;
  m.name = "verify";
  m.boards = boards;
  m.options.max_images_per_run = 32;
  m.board_max_images_per_run = 32;
  StreamSpec s;
  s.rate = load * boards * m.timing.max_images_per_second();
  m.streams.push_back(s);
  SimulationSpec spec;
  spec.models.push_back(m);
  spec.max_images = images;
  // Long enough that max_images ends the arrivals.
  spec.duration = absl::Seconds(2.0 * images / s.rate + 1);
  return spec;
}

void Report(benchmark::State& state, uint64_t images, double wall_s, double simulated_s,
            const SimulationResult& last) {
  state.SetItemsProcessed(static_cast<int64_t>(images));
  state.counters["ns_per_image"] = benchmark::Counter(1e9 * wall_s / images);
  state.counters["sim_speedup"] = benchmark::Counter(simulated_s / wall_s);
  state.counters["utilization"] = benchmark::Counter(last.models[0].utilization);
  state.counters["p99_ms"] = benchmark::Counter(last.models[0].latency.p99);
  state.counters["mean_run_images"] = benchmark::Counter(last.models[0].mean_run_images);
}

void RunSimulations(benchmark::State& state, const SimulationSpec& spec) {
  uint64_t images = 0;
  double wall_s = 0, simulated_s = 0;
  SimulationResult last;
  for (auto _ : state) {
    absl::StatusOr<SimulationResult> r = Simulate(spec);
    if (!r.ok()) {
      state.SkipWithError(r.status().ToString().c_str());
      return;
    }
    images += r->images;
    wall_s += absl::ToDoubleSeconds(r->wall);
    simulated_s += absl::ToDoubleSeconds(r->simulated);
    last = *std::move(r);
  }
  Report(state, images, wall_s, simulated_s, last);
}

void BM_SchedulerPerImage(benchmark::State& state) {
  RunSimulations(state, Saturated(static_cast<int>(state.range(0)), 0.97, 100'000));
}
BENCHMARK(BM_SchedulerPerImage)
    ->ArgName("boards")
    ->Arg(1)
    ->Arg(8)
    ->Arg(64)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_MillionImages(benchmark::State& state) {
  RunSimulations(state, Saturated(static_cast<int>(state.range(0)), 1.0, 1'000'000));
}
BENCHMARK(BM_MillionImages)
    ->ArgName("boards")
    ->Arg(64)
    ->Iterations(1)
    ->Unit(benchmark::kSecond)
    ->UseRealTime();

}  // namespace
}  // namespace hgpipe::plan

int main(int argc, char** argv) {
  // Debian's Abseil leaves absl::Mutex deadlock detection on; the scheduler
  // and the clock take several locks per image.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
