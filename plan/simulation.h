// Discrete-event simulation of serving: the real Scheduler and real
// EmulatedBoards on a SimClock, fed by generated arrivals. Nothing is
// computed: the boards run in timing-only mode (EmulatedBoard::Options::
// compute = false) and every model uses a tiny device geometry (2 tokens x 2
// values in, 2 classes out) with the real pipeline timing, so what is
// simulated is exactly the scheduling - queues, priorities, run forming,
// dispatch, deadlines, the boards' pipeline model - at a cost of about a
// microsecond of wall time per image.
//
// A simulation has a measurement window [warmup, duration): arrivals are
// generated from 0 to `duration` (or until `max_images` have arrived), then
// the system drains. Requests that arrive in the window are measured
// (latency, outcome); throughput and board utilization are measured over
// the window itself.
//
// Used by tests (deterministic checks of the scheduler's behaviour), by
// hgpipe-plan (capacity questions, plan/planner.h) and by
// bench/scheduler_bench.cc (the scheduler's cost per image).
#ifndef HGPIPE_PLAN_SIMULATION_H_
#define HGPIPE_PLAN_SIMULATION_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "accel/bitstream.h"
#include "scheduler/scheduler.h"

namespace hgpipe::plan {

// How a stream's requests arrive.
enum class Arrivals {
  kPoisson,   // exponential gaps (random, from the simulation's seed)
  kConstant,  // evenly spaced, the first at 1/rate
};

// One source of requests for a model. Several streams per model make a
// priority mix.
struct StreamSpec {
  // For reports; default "p<priority>" (or "default" with priority 0).
  std::string name;
  // Requests per second (> 0).
  double rate = 0;
  uint32_t images_per_request = 1;
  Arrivals arrivals = Arrivals::kPoisson;
  // Scheduler priority, 1 (highest) .. the model's priority_levels; 0: the
  // model's default.
  uint32_t priority = 0;
  // Deadline of each request, from its arrival; infinite: none.
  absl::Duration timeout = absl::InfiniteDuration();
  // The request's accuracy floor (a top-1 fraction) with `variants`; none:
  // the most accurate variant only (what the server does without one).
  std::optional<double> min_accuracy;
};

// One bitstream variant of a model (docs/scheduling.md, "Variants").
struct VariantSpec {
  std::string name;
  accel::PipelineTiming timing;
  double top1 = 0;  // measured top-1, a fraction in (0, 1]
};

struct ModelSpec {
  std::string name = "model";
  // The bitstream's timing on the boards (default: HG-PIPE DeiT-tiny).
  accel::PipelineTiming timing;
  // Boards dedicated to the model (>= 1).
  int boards = 1;
  std::vector<StreamSpec> streams;
  // Scheduler options; `name` and `bitstream` are filled in by the
  // simulation.
  scheduler::ModelOptions options;
  // Host time between a request's arrival and its Enqueue (the gRPC and
  // preprocessing path of a server); counted in its latency. A constant,
  // or, if `host_overhead_quantiles` is set, drawn per request.
  absl::Duration host_overhead = absl::ZeroDuration();
  // The host overhead's distribution as points (q, value) of its quantile
  // function: q increasing from 0 (first) to 1 (last), values >= 0 and
  // non-decreasing. Each request draws u uniform in [0, 1) and gets the
  // value interpolated linearly at u. Empty: the constant above.
  std::vector<std::pair<double, absl::Duration>> host_overhead_quantiles;
  // The host's CPU as a queue: each request occupies one of `host_cores`
  // for `host_cpu` (first come, first served) before its host overhead
  // elapses, so host time grows with load as it does on a real server. The
  // host overhead above includes that CPU time (it is calibrated at low
  // load, where nobody waits for a core). Zero: no queue.
  absl::Duration host_cpu = absl::ZeroDuration();
  int host_cores = 1;
  // Emulated board options (EmulatedBoard::Options).
  uint32_t board_max_images_per_run = 64;
  int board_slots = 0;  // 0: from the pipeline depth
  // The model's variants. Empty: one bitstream with `timing`. Otherwise the
  // boards start on the first (`timing` is ignored), every variant is a
  // scheduler model, and requests are routed by scheduler::VariantRouter,
  // which moves boards between variants (`reprogram` must be on).
  std::vector<VariantSpec> variants;
  // How long reprogramming a board takes (EmulatedBoard::program_time).
  absl::Duration program_time = absl::Seconds(1);
  // The router's least time between two board moves.
  absl::Duration min_move_interval = absl::Seconds(1);
};

struct SimulationSpec {
  std::vector<ModelSpec> models;
  // `clock` and `observer` are set by the simulation.
  scheduler::Scheduler::Options scheduler;
  // Arrivals are generated in [0, duration); requests arriving in
  // [warmup, duration) are measured.
  absl::Duration duration = absl::Seconds(1);
  absl::Duration warmup = absl::ZeroDuration();
  // If > 0, arrivals also stop once this many images have arrived (over all
  // streams); the window then ends at the last arrival.
  uint64_t max_images = 0;
  uint64_t seed = 1;
};

// Exact (nearest-rank) percentiles, in milliseconds; zeros if no samples.
struct Percentiles {
  uint64_t count = 0;
  double p50 = 0, p90 = 0, p99 = 0, max = 0, mean = 0;
};

struct StreamResult {
  std::string name;
  uint32_t priority = 0;
  double rate = 0;  // offered, requests/s
  // Requests that arrived in the window, and how they ended.
  uint64_t requests = 0;
  uint64_t requests_ok = 0;
  uint64_t images_ok = 0;
  // Failures by status code name ("RESOURCE_EXHAUSTED", ...): refused by
  // Enqueue or answered with an error.
  std::map<std::string, uint64_t> failed;
  // Arrival to answer (host overhead included), requests answered OK.
  Percentiles latency;
  // Requests answered OK within their deadline (all of them without one).
  uint64_t requests_in_deadline = 0;
};

struct ModelResult {
  std::string name;
  int boards = 0;
  std::vector<StreamResult> streams;
  // All streams together.
  uint64_t requests = 0;
  uint64_t requests_ok = 0;
  uint64_t requests_failed = 0;
  Percentiles latency;
  // Per image, Enqueue to the run leaving for a board (runs launched in the
  // window).
  Percentiles queue_wait;
  // Offered and achieved load: images/s arriving, and answered OK in the
  // window (by answer time).
  double offered_images_per_second = 0;
  double images_per_second = 0;
  // What the boards can do at best: boards / image input time.
  double capacity_images_per_second = 0;
  // Fraction of the window each board's input stream was busy (the pipeline
  // takes a new image), and their mean.
  std::vector<double> board_utilization;
  double utilization = 0;
  // Runs launched in the window and their mean size.
  uint64_t runs = 0;
  double mean_run_images = 0;
  // Requests answered OK within their deadline, over those that arrived.
  uint64_t requests_in_deadline = 0;
  double goodput = 0;
  // With variants: requests answered OK by each (measured), the mean top-1
  // of the variants that answered them (0 if none), and board moves.
  std::map<std::string, uint64_t> requests_by_variant;
  double mean_accuracy = 0;
  uint64_t board_moves = 0;
};

struct SimulationResult {
  std::vector<ModelResult> models;
  absl::Duration window;     // the measurement window's length
  absl::Duration simulated;  // virtual time until the last answer
  absl::Duration wall;       // real time the simulation took
  uint64_t images = 0;       // images answered, whole run
  uint64_t requests = 0;     // requests generated, whole run
};

// Runs the simulation. InvalidArgument for a spec that is out of range
// (message names the field); errors from the scheduler or boards otherwise.
absl::StatusOr<SimulationResult> Simulate(const SimulationSpec& spec);

// Nearest-rank percentiles of `values` (seconds), reported in ms. Reorders
// `values`.
Percentiles ComputePercentiles(std::vector<double>& values);

// One JSON object.
std::string SimulationResultToJson(const SimulationResult& result);
std::string ModelResultToJson(const ModelResult& result);

}  // namespace hgpipe::plan

#endif  // HGPIPE_PLAN_SIMULATION_H_
