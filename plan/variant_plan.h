// Planning a model's variants to a target (docs/planning.md, "Variants"):
// for an offered rate, a deadline and an accuracy floor, the fewest boards
// and the variant mix (what VariantRouter makes of them on the real
// scheduler, simulated) that answer at least a goodput share of requests
// within their deadline; and the two policies compared at a given board
// count: `reject` (the most accurate variant only, as servers do today) and
// `variants` (routing above the floor, boards moved as demand moves).
#ifndef HGPIPE_PLAN_VARIANT_PLAN_H_
#define HGPIPE_PLAN_VARIANT_PLAN_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "plan/planner.h"
#include "plan/simulation.h"

namespace hgpipe::plan {

enum class VariantPolicy { kReject, kVariants };
// "reject" or "variants"; InvalidArgument otherwise.
absl::StatusOr<VariantPolicy> ParseVariantPolicy(absl::string_view name);

// Parses variants, one per comma-separated item:
//   NAME ":" "top1=" F { ":" KEY "=" VALUE }
// with KEY one of ii_cycles, latency_cycles, clock_mhz, overhead_us (unset:
// HG-PIPE DeiT-tiny's). Sorted most accurate first (the boards start on
// it). InvalidArgument quoting the item.
absl::StatusOr<std::vector<VariantSpec>> ParseVariants(absl::string_view spec);

struct VariantTarget {
  // The model's scheduler options, host overhead, board options; its
  // timing, streams and boards are ignored.
  ModelSpec model;
  std::vector<VariantSpec> variants;  // most accurate first
  double rate = 0;                    // requests/s, one image each, Poisson
  absl::Duration deadline = absl::Milliseconds(5);
  // The requests' accuracy floor with kVariants; none: every variant.
  std::optional<double> min_accuracy;
  VariantPolicy policy = VariantPolicy::kVariants;
  // The share of offered requests to answer within their deadline.
  double goodput = 0.99;
  // > 0: simulate this many boards; 0: search the fewest that meet the goodput.
  int boards = 0;
};

struct VariantPlanStep {
  int boards = 0;
  bool meets = false;
  ModelResult result;
};

struct VariantPlanAnswer {
  // The fewest boards meeting the goodput (the count given, if it meets); 0
  // if none up to max_boards.
  int boards = 0;
  int lower_bound = 0;
  std::vector<VariantPlanStep> tried;
};

// Simulates the target (options.simulation's duration, warmup, seed and
// scheduler options; reprogramming is turned on). InvalidArgument for a bad
// target; errors from Simulate otherwise.
absl::StatusOr<VariantPlanAnswer> PlanVariants(const VariantTarget& target,
                                               const PlanOptions& options);

// One JSON object: policy, boards (the answer, or the count simulated),
// goodput, mean_accuracy, p99_ms, requests_by_variant, mix (shares),
// board_moves, meets, and every step tried.
std::string VariantPlanAnswerToJson(const VariantTarget& target, const VariantPlanAnswer& answer);

}  // namespace hgpipe::plan

#endif  // HGPIPE_PLAN_VARIANT_PLAN_H_
