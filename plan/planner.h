// Capacity planning on the simulation (simulation.h): how many boards a
// model needs for its load to meet a p99 latency objective, and what they
// then do (utilization, images/s, p50/p99). hgpipe-plan is its command line.
//
// Boards are dedicated to a model, so each model is planned on its own: the
// search simulates the model on n boards for n = the least count whose
// capacity covers the offered load (fewer cannot keep up: the queue would
// grow without bound), then n + 1, ... until every objective is met and no
// request failed, or `max_boards` is passed.
#ifndef HGPIPE_PLAN_PLANNER_H_
#define HGPIPE_PLAN_PLANNER_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "plan/simulation.h"

namespace hgpipe::plan {

// A model and its load, with a p99 objective per stream (none: not checked).
struct PlanTarget {
  ModelSpec model;
  std::vector<std::optional<absl::Duration>> p99_objectives;  // per stream
};

// Parses workload specs, one per item:
//   NAME ":" KEY "=" VALUE { ":" KEY "=" VALUE }
// Items naming the same model are its streams (a priority mix); their model
// keys must agree. Stream keys:
//   rate=R            requests/s (required)
//   images=N          images per request (default 1)
//   arrivals=poisson|constant
//   priority=P        1 (highest) .. levels; 0: the model's default
//   timeout_ms=T      per-request deadline
//   p99_ms=T          the latency objective of this stream
//   stream=NAME       name in reports
// Model keys (the board type and the model's scheduler options):
//   boards=N          simulate exactly N boards instead of searching
//                     (default: the template's; 0 there means "search")
//   ii_cycles=C  latency_cycles=C  clock_mhz=F  overhead_us=U (run overhead)
//   host_us=U         host overhead per request (arrival to Enqueue)
//   max_run=N  max_queue=N  levels=N  default_priority=P  low_run=N
//   starvation_ms=T  queue_delay_us=U  board_max_run=N  slots=N
// Unset model fields come from `model_template` (its name and streams are
// ignored), except board_max_run, which defaults to the model's max_run (as
// hgpipe-server sizes a board's runs from the model's config).
// InvalidArgument quoting the item otherwise.
absl::StatusOr<std::vector<PlanTarget>> ParseWorkloads(const std::vector<std::string>& items,
                                                       const ModelSpec& model_template);

// Parses a host overhead in microseconds: a constant ("950"), or points of
// its distribution as PERCENTILE:MICROSECONDS pairs ("50:950,90:1100,
// 99:2400,100:3500"), percentiles increasing within [0, 100]. The first
// value holds below the first percentile and the last above the last one.
// Sets model.host_overhead or model.host_overhead_quantiles.
// InvalidArgument quoting the spec otherwise.
absl::Status ParseHostOverhead(absl::string_view spec, ModelSpec& model);

struct PlanOptions {
  // Scheduler options, duration, warmup, seed of every simulation; its
  // `models` is ignored.
  SimulationSpec simulation;
  int max_boards = 64;
};

struct PlanStep {
  int boards = 0;
  bool meets = false;
  std::string why_not;  // empty when it meets
  ModelResult result;
};

struct PlanAnswer {
  std::string model;
  // The least board count that meets every objective; 0 if none up to
  // max_boards does.
  int boards = 0;
  // The count the search started from (the load's lower bound).
  int lower_bound = 0;
  std::vector<PlanStep> tried;  // in order; the last is the answer if found
  // The least latency a request of the model can have (host overhead, run
  // overhead, pipeline latency, its images' input time).
  absl::Duration min_latency;
};

// The least latency one request of `stream` can have on `model`'s boards
// (with the least host overhead).
absl::Duration MinLatency(const ModelSpec& model, const StreamSpec& stream);

// Whether `result` meets `target`'s objectives with no failed request; if
// not, why.
bool MeetsObjectives(const PlanTarget& target, const ModelResult& result, std::string* why_not);

// Searches the least board count for `target` (its model's `boards` is
// ignored). InvalidArgument if no stream has an objective or an objective
// is below the least possible latency; errors from Simulate otherwise.
absl::StatusOr<PlanAnswer> PlanBoards(const PlanTarget& target, const PlanOptions& options);

std::string PlanAnswerToJson(const PlanAnswer& answer);

}  // namespace hgpipe::plan

#endif  // HGPIPE_PLAN_PLANNER_H_
